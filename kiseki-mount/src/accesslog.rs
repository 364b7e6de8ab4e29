//! The access log: a line per FUSE operation (time, caller, operation, arguments,
//! result, duration), read by tailing `.accesslog` in the mount's root. Lookup finds
//! the file; readdir does not list it. While nobody reads it, an operation pays one
//! atomic load for it.
//!
//! Each open of the file gets a queue of its own (bounded: a reader that falls behind
//! loses lines, and is told how many). A read waits up to a second for lines and then
//! answers `#` alone on a line, so a reader is never blocked for long; readers skip
//! those lines.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The log's inode: far above any inode the volume allocates.
pub const INO: u64 = 0x7fff_ffff_ffff_f001;
pub const NAME: &[u8] = b".accesslog";
/// Handles of the log have this bit set (the core's never do).
const HANDLE_BIT: u64 = 1 << 63;
/// Lines kept per reader.
const QUEUE: usize = 1 << 16;

struct Reader {
    fh: u64,
    lines: Mutex<(VecDeque<String>, u64)>,
    ready: Condvar,
}

pub struct AccessLog {
    readers: AtomicUsize,
    queues: Mutex<Vec<Arc<Reader>>>,
    next: AtomicU64,
}

pub static LOG: AccessLog = AccessLog {
    readers: AtomicUsize::new(0),
    queues: Mutex::new(Vec::new()),
    next: AtomicU64::new(1),
};

impl AccessLog {
    /// Whether anyone reads the log.
    pub fn active(&self) -> bool {
        self.readers.load(Relaxed) > 0
    }

    pub fn is_handle(fh: u64) -> bool {
        fh & HANDLE_BIT != 0
    }

    pub fn open(&self) -> u64 {
        let fh = HANDLE_BIT | self.next.fetch_add(1, Relaxed);
        let r = Arc::new(Reader {
            fh,
            lines: Mutex::new((VecDeque::new(), 0)),
            ready: Condvar::new(),
        });
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
        self.readers.fetch_add(1, Relaxed);
        fh
    }

    pub fn release(&self, fh: u64) {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let before = q.len();
        q.retain(|r| r.fh != fh);
        if q.len() < before {
            self.readers.fetch_sub(1, Relaxed);
        }
    }

    /// Hands `line` to every reader.
    pub fn push(&self, line: &str) {
        let q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for r in q.iter() {
            let mut l = r.lines.lock().unwrap_or_else(|p| p.into_inner());
            if l.0.len() >= QUEUE {
                l.1 += 1;
                continue;
            }
            l.0.push_back(line.to_string());
            r.ready.notify_one();
        }
    }

    /// Up to `size` bytes of whole lines for reader `fh`, waiting up to a second for
    /// the first; `#\n` when none came.
    pub fn read(&self, fh: u64, size: usize) -> Vec<u8> {
        let reader = {
            let q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            q.iter().find(|r| r.fh == fh).cloned()
        };
        let Some(r) = reader else {
            return Vec::new();
        };
        let mut l = r.lines.lock().unwrap_or_else(|p| p.into_inner());
        if l.0.is_empty() {
            l = r
                .ready
                .wait_timeout(l, Duration::from_secs(1))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let mut out = Vec::new();
        if l.1 > 0 {
            out.extend_from_slice(
                format!("# {} lines dropped: the reader fell behind\n", l.1).as_bytes(),
            );
            l.1 = 0;
        }
        while let Some(line) = l.0.front() {
            if out.len() + line.len() > size && !out.is_empty() {
                break;
            }
            if let Some(line) = l.0.pop_front() {
                out.extend_from_slice(line.as_bytes());
            }
        }
        if out.is_empty() {
            out.extend_from_slice(b"#\n");
        }
        out.truncate(size.max(2));
        out
    }
}

/// `YYYY.MM.DD HH:MM:SS.micro` (UTC) of now.
pub fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}.{month:02}.{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_every_line_and_a_slow_one_is_told_what_it_lost() {
        let log = AccessLog {
            readers: AtomicUsize::new(0),
            queues: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
        };
        assert!(!log.active());
        let a = log.open();
        assert!(log.active() && AccessLog::is_handle(a));
        log.push("one\n");
        log.push("two\n");
        assert_eq!(log.read(a, 4096), b"one\ntwo\n");
        assert_eq!(log.read(a, 4096), b"#\n", "a second with nothing");
        log.push("three\n");
        log.push("four\n");
        assert_eq!(log.read(a, 7), b"three\n", "whole lines that fit");
        assert_eq!(log.read(a, 7), b"four\n");
        for _ in 0..QUEUE + 5 {
            log.push("x\n");
        }
        let first = String::from_utf8(log.read(a, 100)).unwrap();
        assert!(first.starts_with("# 5 lines dropped"), "{first}");
        log.release(a);
        assert!(!log.active());
    }

    #[test]
    fn timestamps_are_civil_dates() {
        let t = now();
        assert_eq!(t.len(), 26, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
