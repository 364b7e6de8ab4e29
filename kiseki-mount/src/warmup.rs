//! `kiseki warmup PATH...`: fills a mount's caches with the blocks of files or whole
//! trees, so that a job's first pass reads warm data; `--check` only reports how much
//! of them the caches hold. The work is done by the mount itself (an ioctl per range
//! of a file), so the blocks land in the caches of the process that will serve the
//! reads.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::admin::collect_files;
use crate::fuse::{KISEKI_IOC_WARMUP, WARMUP_FILL};
use crate::mount::BoxError;

/// The range one ioctl covers: a FUSE request thread of the mount is busy for as long
/// as its range takes, and the progress bar moves by it.
const RANGE: u64 = 64 << 20;

/// Data bytes and how many of them are cached.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    data: u64,
    cached: u64,
}

pub fn warmup(paths: &[PathBuf], threads: usize, check: bool) -> Result<ExitCode, BoxError> {
    let mut files = Vec::new();
    for p in paths {
        // Before walking a tree: a path outside a kiseki mount fails at once.
        range(
            &std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?,
            0,
            0,
            0,
        )
        .map_err(|e| format!("{}: {e}", p.display()))?;
        collect_files(p, &mut files)?;
    }
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let pb = crate::progress::bytes(
        sizes.iter().sum(),
        if check { "checking" } else { "warming up" },
    );
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(Totals::default());
    let failed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, 64) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = files.get(i) else { break };
                match one(f, check, |n| pb.inc(n)) {
                    Ok(t) => {
                        let mut all = totals.lock().unwrap_or_else(|p| p.into_inner());
                        all.data += t.data;
                        all.cached += t.cached;
                    }
                    Err(e) => {
                        pb.suspend(|| eprintln!("kiseki: warmup {}: {e}", f.display()));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    pb.finish_and_clear();
    let t = totals.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed = failed.into_inner();
    let pct = if t.data == 0 {
        100.0
    } else {
        t.cached as f64 * 100.0 / t.data as f64
    };
    println!(
        "{} files{}: {} of {} cached ({pct:.1}%)",
        files.len() - failed,
        if check { "" } else { " warmed up" },
        crate::progress::human_bytes(t.cached),
        crate::progress::human_bytes(t.data),
    );
    if failed > 0 {
        eprintln!("kiseki: {failed} files failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One file, range by range.
fn one(path: &Path, check: bool, progress: impl Fn(u64)) -> Result<Totals, BoxError> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut t = Totals::default();
    let mut off = 0;
    while off < len {
        let n = RANGE.min(len - off);
        let r = range(&f, off, n, if check { 0 } else { WARMUP_FILL })?;
        t.data += r.data;
        t.cached += r.cached;
        progress(n);
        off += n;
    }
    Ok(t)
}

/// One `KISEKI_IOC_WARMUP` call on `f`.
fn range(f: &std::fs::File, off: u64, len: u64, flags: u64) -> Result<Totals, BoxError> {
    let mut arg = [off, len, flags, 0u64];
    // SAFETY: a valid descriptor and a 32-byte buffer, as the command's size says.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), KISEKI_IOC_WARMUP as _, arg.as_mut_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTTY) {
            return Err("not in a kiseki mount".into());
        }
        return Err(e.into());
    }
    Ok(Totals {
        data: arg[0],
        cached: arg[1],
    })
}
