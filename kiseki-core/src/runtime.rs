//! The process-wide tokio runtime the synchronous front-ends (C, Python, the path-level
//! `Client`) run the async core on. Created on first use, never per call.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Builder::new_multi_thread()
            .thread_name("kiseki-io")
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)))
            .enable_all()
            .build()
            .expect("cannot start the kiseki I/O runtime (out of threads or memory)")
    })
}

/// Runs `fut` to completion on the shared runtime from a synchronous caller.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}
