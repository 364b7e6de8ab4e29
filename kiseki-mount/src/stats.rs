//! `kiseki stats MOUNTPOINT`: a row a second of what the mount is doing (operations,
//! latency, throughput, metadata and object requests, cache hit rate, write buffer),
//! computed from two scrapes of its metrics endpoint, whose address the mount gives
//! through an ioctl.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::fuse::KISEKI_IOC_METRICS;
use crate::mount::BoxError;

pub fn stats(mountpoint: &Path, interval: f64, count: u64) -> Result<ExitCode, BoxError> {
    if !(interval.is_finite() && (0.1..=3600.0).contains(&interval)) {
        return Err(format!("--interval {interval}: seconds, 0.1 to 3600").into());
    }
    let addr = endpoint(mountpoint)?;
    let mut last = (Instant::now(), scrape(&addr)?);
    let mut rows = 0u64;
    while count == 0 || rows < count {
        std::thread::sleep(Duration::from_secs_f64(interval));
        let now = (Instant::now(), scrape(&addr)?);
        if rows % 20 == 0 {
            println!(
                "{:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>7} {:>7} {:>6} {:>9}",
                "time",
                "ops/s",
                "lat ms",
                "read MB/s",
                "write MB/s",
                "meta/s",
                "get/s",
                "put/s",
                "hit%",
                "buffer MB"
            );
        }
        println!("{}", row(&last.1, &now.1, (now.0 - last.0).as_secs_f64()));
        std::io::stdout().flush()?;
        last = now;
        rows += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// The mount's metrics address, asked of the mount itself.
fn endpoint(mountpoint: &Path) -> Result<String, BoxError> {
    let f =
        std::fs::File::open(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let mut out = [0u8; 64];
    // SAFETY: a valid descriptor and a 64-byte buffer, as the command's size says.
    if unsafe { libc::ioctl(f.as_raw_fd(), KISEKI_IOC_METRICS as _, out.as_mut_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTTY) {
            return Err(format!("{}: not in a kiseki mount", mountpoint.display()).into());
        }
        return Err(format!("{}: {e}", mountpoint.display()).into());
    }
    let end = out.iter().position(|&b| b == 0).unwrap_or(out.len());
    let addr = String::from_utf8_lossy(&out[..end]).into_owned();
    if addr.is_empty() {
        return Err(format!(
            "{} serves no metrics (mounted with metrics=off)",
            mountpoint.display()
        )
        .into());
    }
    Ok(addr)
}

/// Samples of one scrape: `name{labels}` to value.
type Samples = HashMap<String, f64>;

fn scrape(addr: &str) -> Result<Samples, BoxError> {
    let mut conn =
        std::net::TcpStream::connect(addr).map_err(|e| format!("metrics at {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    let text = body.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(kiseki_core::metrics::parse(text).into_iter().collect())
}

/// Sum of the samples named `name` (any labels) whose labels contain `with`.
fn total(s: &Samples, name: &str, with: &str) -> f64 {
    s.iter()
        .filter(|(k, _)| {
            k.strip_prefix(name).is_some_and(|rest| {
                (rest.is_empty() || rest.starts_with('{')) && rest.contains(with)
            })
        })
        .map(|(_, v)| v)
        .sum()
}

fn row(a: &Samples, b: &Samples, secs: f64) -> String {
    let d = |name: &str, with: &str| (total(b, name, with) - total(a, name, with)).max(0.0);
    let ops = d("kiseki_fuse_op_duration_seconds_count", "");
    let busy = d("kiseki_fuse_op_duration_seconds_sum", "");
    let lat = if ops > 0.0 { busy / ops * 1e3 } else { 0.0 };
    let hits = d("kiseki_cache_hits_total", "memory");
    let misses = d("kiseki_cache_misses_total", "memory");
    let hit = if hits + misses > 0.0 {
        format!("{:.0}", hits * 100.0 / (hits + misses))
    } else {
        "-".into()
    };
    let mb = 1e6;
    format!(
        "{:>8} {:>9.0} {:>8.2} {:>9.1} {:>9.1} {:>8.0} {:>7.0} {:>7.0} {:>6} {:>9.1}",
        clock(),
        ops / secs,
        lat,
        d("kiseki_read_bytes_total", "") / mb / secs,
        d("kiseki_written_bytes_total", "") / mb / secs,
        d("kiseki_meta_txn_duration_seconds_count", "") / secs,
        d("kiseki_object_request_duration_seconds_count", "\"get\"") / secs,
        d("kiseki_object_request_duration_seconds_count", "\"put\"") / secs,
        hit,
        total(b, "kiseki_buffer_used_bytes", "") / mb,
    )
}

/// The time of day, HH:MM:SS (UTC).
fn clock() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}
