//! `kiseki bench PATH`: the big file, small file and stat workload of `juicefs bench`,
//! run through any mounted file system (a Kiseki mount, or another for comparison), so
//! that a user can measure without installing anything else.
//!
//! Each of `threads` workers uses files of its own in a fresh directory under PATH,
//! removed afterwards. Reads are cold as far as this machine's page cache goes: the
//! files' pages are dropped (posix_fadvise) before they are read.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::mount::BoxError;

pub struct BenchArgs {
    pub block_size: u64,
    pub big_file_size: u64,
    pub small_file_size: u64,
    pub small_file_count: u64,
    pub threads: usize,
}

fn drop_pages(f: &std::fs::File) {
    // SAFETY: a valid descriptor; the call only advises the kernel.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Runs `work(thread)` on every thread at once; returns the wall time.
fn timed(
    threads: usize,
    work: impl Fn(usize) -> std::io::Result<()> + Sync,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn({
                    let work = &work;
                    move || work(t)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a worker panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(start.elapsed())
}

pub fn bench(path: &Path, a: &BenchArgs) -> Result<ExitCode, BoxError> {
    if a.block_size == 0 || a.block_size > 64 << 20 {
        return Err("--block-size: from 1 byte to 64M".into());
    }
    if a.threads == 0 || a.threads > 256 {
        return Err("--threads: from 1 to 256".into());
    }
    let dir: PathBuf = path.join(format!("__kiseki_bench_{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run(&dir, a);
    let cleanup = std::fs::remove_dir_all(&dir);
    let rows = result?;
    cleanup.map_err(|e| format!("removing {}: {e}", dir.display()))?;
    let line = format!("+{}+{}+{}+", "-".repeat(18), "-".repeat(18), "-".repeat(16));
    println!("{line}");
    println!("| {:^16} | {:^16} | {:^14} |", "ITEM", "VALUE", "COST");
    println!("{line}");
    for (item, value, cost) in rows {
        println!("| {item:>16} | {value:>16} | {cost:>14} |");
    }
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn run(dir: &Path, a: &BenchArgs) -> Result<Vec<(&'static str, String, String)>, BoxError> {
    let big = |t: usize| dir.join(format!("big.{t}"));
    let small = |t: usize, i: u64| dir.join(format!("small.{t}.{i}"));
    let block = vec![0x5au8; a.block_size as usize];
    let mib = (1u64 << 20) as f64;
    let n = a.threads as f64;
    let mut rows = Vec::new();

    if a.big_file_size > 0 {
        let took = timed(a.threads, |t| {
            let mut f = std::fs::File::create(big(t))?;
            let mut left = a.big_file_size;
            while left > 0 {
                let k = left.min(a.block_size) as usize;
                f.write_all(&block[..k])?;
                left -= k as u64;
            }
            f.sync_all()
        })?;
        let secs = took.as_secs_f64();
        rows.push((
            "Write big file",
            format!("{:.2} MiB/s", a.big_file_size as f64 * n / mib / secs),
            format!("{:.2} s/file", secs),
        ));
        let took = timed(a.threads, |t| {
            let mut f = std::fs::File::open(big(t))?;
            drop_pages(&f);
            let mut buf = vec![0u8; a.block_size as usize];
            let mut total = 0u64;
            loop {
                match f.read(&mut buf)? {
                    0 => break,
                    k => total += k as u64,
                }
            }
            if total != a.big_file_size {
                return Err(std::io::Error::other(format!(
                    "read {total} bytes of {}",
                    a.big_file_size
                )));
            }
            Ok(())
        })?;
        let secs = took.as_secs_f64();
        rows.push((
            "Read big file",
            format!("{:.2} MiB/s", a.big_file_size as f64 * n / mib / secs),
            format!("{:.2} s/file", secs),
        ));
    }
    if a.small_file_count > 0 {
        let data = vec![0xa5u8; a.small_file_size as usize];
        let files = a.small_file_count as f64 * n;
        let per = |took: Duration| {
            let secs = took.as_secs_f64();
            (
                format!("{:.1} files/s", files / secs),
                format!("{:.2} ms/file", secs * 1e3 * n / files),
            )
        };
        let took = timed(a.threads, |t| {
            for i in 0..a.small_file_count {
                let mut f = std::fs::File::create(small(t, i))?;
                f.write_all(&data)?;
            }
            Ok(())
        })?;
        let (v, c) = per(took);
        rows.push(("Write small file", v, c));
        let took = timed(a.threads, |t| {
            let mut buf = Vec::with_capacity(data.len());
            for i in 0..a.small_file_count {
                let mut f = std::fs::File::open(small(t, i))?;
                drop_pages(&f);
                buf.clear();
                f.read_to_end(&mut buf)?;
                if buf.len() != data.len() {
                    return Err(std::io::Error::other("a small file read back short"));
                }
            }
            Ok(())
        })?;
        let (v, c) = per(took);
        rows.push(("Read small file", v, c));
        let took = timed(a.threads, |t| {
            for i in 0..a.small_file_count {
                std::fs::metadata(small(t, i))?;
            }
            Ok(())
        })?;
        let (v, c) = per(took);
        rows.push(("Stat file", v, c));
    }
    Ok(rows)
}
