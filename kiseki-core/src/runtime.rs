//! The process-wide tokio runtime the synchronous front-ends (C, Python, the path-level
//! `Client`) run the async core on. Created on first use, never per call.
//!
//! A forked child inherits the runtime's memory but none of its threads, so blocking on
//! it would hang forever. The runtime therefore belongs to the process that built it:
//! a child that needs one gets its own. (Clients connected before the fork refuse to
//! work in the child; see `vfs::Client`.)

use std::sync::{Mutex, OnceLock};

use tokio::runtime::{Builder, Runtime};

fn build() -> Runtime {
    Builder::new_multi_thread()
        .thread_name("kiseki-io")
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)))
        .enable_all()
        .build()
        .expect("cannot start the kiseki I/O runtime (out of threads or memory)")
}

pub fn runtime() -> &'static Runtime {
    static FIRST: OnceLock<(u32, Runtime)> = OnceLock::new();
    let pid = std::process::id();
    let (owner, rt) = FIRST.get_or_init(|| (pid, build()));
    if *owner == pid {
        return rt;
    }
    // A forked child. The parent's runtime is leaked (its threads do not exist here,
    // and dropping it would wait for them); a runtime per child pid is leaked too, as
    // the first one is static.
    static CHILD: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);
    let mut child = CHILD.lock().unwrap_or_else(|p| p.into_inner());
    match *child {
        Some((p, rt)) if p == pid => rt,
        _ => {
            let rt: &'static Runtime = Box::leak(Box::new(build()));
            *child = Some((pid, rt));
            rt
        }
    }
}

/// Runs `fut` to completion on the shared runtime from a synchronous caller.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}
