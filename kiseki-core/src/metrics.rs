//! What the file system is doing, counted for operators: FUSE operations, metadata
//! transactions, object storage requests, caches, the write buffer.
//!
//! The counters are process-wide statics of plain atomics, so that counting on the read
//! and write paths costs an atomic add (no lock, no allocation, no lookup by name); a
//! process with several library clients reports their sum. Levels that already exist
//! elsewhere (cache and buffer occupancy, staged blocks, usage counters) are not kept
//! twice: they are read from every live client when the metrics are rendered.
//!
//! [`render`] encodes everything as OpenMetrics text with `prometheus-client`; [`serve`]
//! answers `GET /metrics` with it on a TCP address (`metrics=ADDR`, on by default for
//! mounts).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A level that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Latency buckets: bucket `i` counts durations under 2^i microseconds (1 µs to 8.4 s),
/// the last one everything longer.
const BUCKETS: usize = 24;

/// A latency histogram with fixed power-of-two buckets, so an observation is two
/// atomic adds and a bucket index computed from the bits of the duration.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS + 1],
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = ((u64::BITS - us.leading_zeros()) as usize).min(BUCKETS);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Total of the observed durations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Relaxed))
    }

    /// (upper bound in seconds, count) per bucket, not cumulative; `f64::MAX` is +Inf.
    fn buckets(&self) -> Vec<(f64, u64)> {
        (0..=BUCKETS)
            .map(|i| {
                let le = if i == BUCKETS {
                    f64::MAX
                } else {
                    (1u64 << i) as f64 / 1e6
                };
                (le, self.counts[i].load(Relaxed))
            })
            .collect()
    }
}

/// Calls of one kind: their latency (and so their count) and their failures.
#[derive(Debug, Default)]
pub struct Calls {
    pub latency: Histogram,
    pub errors: Counter,
}

impl Calls {
    pub const fn new() -> Self {
        Calls {
            latency: Histogram::new(),
            errors: Counter::new(),
        }
    }

    /// Records a call that started at `start`.
    pub fn record(&self, start: Instant, ok: bool) {
        self.latency.observe(start.elapsed());
        if !ok {
            self.errors.inc();
        }
    }
}

/// FUSE operations, as the front-end names them in [`Metrics::fuse`].
pub const FUSE_OPS: [&str; 36] = [
    "lookup",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "getlk",
    "setlk",
    "flock",
    "ioctl",
    "fallocate",
    "lseek",
    "copy_file_range",
];

/// The index of FUSE operation `name` in [`FUSE_OPS`] (a constant, for the front-end).
pub const fn fuse_op(name: &str) -> usize {
    let mut i = 0;
    while i < FUSE_OPS.len() {
        if const_eq(FUSE_OPS[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("not a FUSE operation of FUSE_OPS")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Kinds of object storage request, in [`Metrics::object`].
pub const OBJECT_OPS: [&str; 4] = ["get", "put", "delete", "list"];
pub const OBJ_GET: usize = 0;
pub const OBJ_PUT: usize = 1;
pub const OBJ_DELETE: usize = 2;
pub const OBJ_LIST: usize = 3;

/// The caches, in the cache counters.
pub const CACHES: [&str; 2] = ["memory", "disk"];
pub const MEMORY: usize = 0;
pub const DISK: usize = 1;

/// Every counter of the process.
#[derive(Debug)]
pub struct Metrics {
    pub fuse: [Calls; FUSE_OPS.len()],
    /// Metadata transactions by kind (read-only, read-write), each attempt.
    pub meta_read: Calls,
    pub meta_write: Calls,
    /// Attempts that lost to a concurrent transaction and were retried.
    pub meta_conflicts: Counter,
    pub object: [Calls; OBJECT_OPS.len()],
    /// Bytes fetched from and stored to object storage.
    pub object_bytes_in: Counter,
    pub object_bytes_out: Counter,
    pub cache_hits: [Counter; 2],
    pub cache_misses: [Counter; 2],
    pub cache_evictions: [Counter; 2],
    /// Bytes read and written through the file system (all front-ends).
    pub read_bytes: Counter,
    pub write_bytes: Counter,
    /// Writers that had to wait for a free buffer page, and how many wait now.
    pub buffer_waits: Counter,
    pub buffer_waiting: Gauge,
    /// Chunk rewrites done by compaction.
    pub compactions: Counter,
    /// Slices whose blocks the deletion worker removed.
    pub deleted_slices: Counter,
}

pub static METRICS: Metrics = Metrics {
    fuse: [const { Calls::new() }; FUSE_OPS.len()],
    meta_read: Calls::new(),
    meta_write: Calls::new(),
    meta_conflicts: Counter::new(),
    object: [const { Calls::new() }; OBJECT_OPS.len()],
    object_bytes_in: Counter::new(),
    object_bytes_out: Counter::new(),
    cache_hits: [const { Counter::new() }; 2],
    cache_misses: [const { Counter::new() }; 2],
    cache_evictions: [const { Counter::new() }; 2],
    read_bytes: Counter::new(),
    write_bytes: Counter::new(),
    buffer_waits: Counter::new(),
    buffer_waiting: Gauge::new(),
    compactions: Counter::new(),
    deleted_slices: Counter::new(),
};

/// Levels a live client reports when the metrics are rendered.
#[derive(Debug, Default, Clone)]
pub struct Levels {
    /// The metadata engine's kind (`rocksdb`, `etcd`, `memory`).
    pub engine: String,
    pub memory_cache_bytes: u64,
    pub disk_cache_bytes: u64,
    pub buffer_used_bytes: u64,
    pub buffer_size_bytes: u64,
    pub staged_blocks: u64,
    pub pending_deletions: u64,
    pub used_bytes: u64,
    pub used_inodes: u64,
    pub sessions: u64,
}

/// A live client, asked for its [`Levels`] at render time.
pub trait Source: Send + Sync {
    fn levels(&self) -> Levels;
}

fn sources() -> &'static Mutex<Vec<Weak<dyn Source>>> {
    static S: Mutex<Vec<Weak<dyn Source>>> = Mutex::new(Vec::new());
    &S
}

/// Adds a client to those [`render`] reports (until it is dropped).
pub fn register(source: Weak<dyn Source>) {
    let mut s = sources().lock().unwrap_or_else(|p| p.into_inner());
    s.retain(|w| w.strong_count() > 0);
    s.push(source);
}

#[derive(Debug)]
struct Snapshot;

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, unit, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A family of `Calls` labelled `label` = `names[i]`: a latency histogram (whose count
/// is the number of calls) and an error counter. Kinds never called are left out.
fn calls_family(
    e: &mut DescriptorEncoder,
    name: &str,
    what: &str,
    label: &str,
    names: &[&str],
    calls: &[&Calls],
) -> std::fmt::Result {
    let used: Vec<usize> = (0..names.len())
        .filter(|&i| calls[i].latency.count() > 0)
        .collect();
    let (duration, errors) = (format!("{name}_duration"), format!("{name}_errors"));
    {
        let mut fam = e.encode_descriptor(
            &duration,
            &format!("Latency of {what}"),
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for &i in &used {
            let h = &calls[i].latency;
            let buckets = h.buckets();
            let count = buckets.iter().map(|b| b.1).sum();
            fam.encode_family(&[(label, names[i])])?
                .encode_histogram::<NoLabelSet>(h.sum().as_secs_f64(), count, &buckets, None)?;
        }
    }
    let mut fam = e.encode_descriptor(
        &errors,
        &format!("Failed {what}"),
        None,
        MetricType::Counter,
    )?;
    for &i in &used {
        ConstCounter::new(calls[i].errors.get())
            .encode(fam.encode_family(&[(label, names[i])])?)?;
    }
    Ok(())
}

/// A counter family over `names`.
fn counter_family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    names: &[&str],
    values: &[u64],
) -> std::fmt::Result {
    let mut fam = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (n, v) in names.iter().zip(values) {
        ConstCounter::new(*v).encode(fam.encode_family(&[(label, *n)])?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &METRICS;
        calls_family(
            &mut e,
            "kiseki_fuse_op",
            "FUSE operations",
            "op",
            &FUSE_OPS,
            &m.fuse.each_ref(),
        )?;
        calls_family(
            &mut e,
            "kiseki_meta_txn",
            "metadata transactions (each attempt)",
            "kind",
            &["read", "write"],
            &[&m.meta_read, &m.meta_write],
        )?;
        counter(
            &mut e,
            "kiseki_meta_conflicts",
            "Metadata transaction attempts that conflicted and were retried",
            None,
            m.meta_conflicts.get(),
        )?;
        calls_family(
            &mut e,
            "kiseki_object_request",
            "object storage requests",
            "kind",
            &OBJECT_OPS,
            &m.object.each_ref(),
        )?;
        counter_family(
            &mut e,
            "kiseki_object_bytes",
            "Bytes fetched from (get) and stored to (put) object storage",
            "kind",
            &["get", "put"],
            &[m.object_bytes_in.get(), m.object_bytes_out.get()],
        )?;
        let each = |c: &[Counter; 2]| [c[0].get(), c[1].get()];
        counter_family(
            &mut e,
            "kiseki_cache_hits",
            "Block cache hits",
            "cache",
            &CACHES,
            &each(&m.cache_hits),
        )?;
        counter_family(
            &mut e,
            "kiseki_cache_misses",
            "Block cache misses",
            "cache",
            &CACHES,
            &each(&m.cache_misses),
        )?;
        counter_family(
            &mut e,
            "kiseki_cache_evictions",
            "Blocks evicted from the cache",
            "cache",
            &CACHES,
            &each(&m.cache_evictions),
        )?;
        counter(
            &mut e,
            "kiseki_read",
            "Bytes read through the file system",
            Some(&Unit::Bytes),
            m.read_bytes.get(),
        )?;
        counter(
            &mut e,
            "kiseki_written",
            "Bytes written through the file system",
            Some(&Unit::Bytes),
            m.write_bytes.get(),
        )?;
        counter(
            &mut e,
            "kiseki_buffer_waits",
            "Writes that waited for a free write-buffer page",
            None,
            m.buffer_waits.get(),
        )?;
        gauge(
            &mut e,
            "kiseki_buffer_waiting",
            "Writers waiting for a write-buffer page now",
            m.buffer_waiting.get(),
        )?;
        counter(
            &mut e,
            "kiseki_compactions",
            "Chunks rewritten by compaction",
            None,
            m.compactions.get(),
        )?;
        counter(
            &mut e,
            "kiseki_deleted_slices",
            "Slices whose objects the deletion worker removed",
            None,
            m.deleted_slices.get(),
        )?;

        let live: Vec<Arc<dyn Source>> = sources()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let levels: Vec<Levels> = live.iter().map(|s| s.levels()).collect();
        let sum = |f: fn(&Levels) -> u64| levels.iter().map(f).sum::<u64>() as i64;
        let gauges: [(&str, &str, i64); 9] = [
            (
                "kiseki_memory_cache_bytes",
                "Bytes in the memory block cache",
                sum(|l| l.memory_cache_bytes),
            ),
            (
                "kiseki_disk_cache_bytes",
                "Bytes in the disk block cache",
                sum(|l| l.disk_cache_bytes),
            ),
            (
                "kiseki_buffer_used_bytes",
                "Write buffer in use",
                sum(|l| l.buffer_used_bytes),
            ),
            (
                "kiseki_buffer_size_bytes",
                "Write buffer size",
                sum(|l| l.buffer_size_bytes),
            ),
            (
                "kiseki_staged_blocks",
                "Blocks staged by write-back and not uploaded yet",
                sum(|l| l.staged_blocks),
            ),
            (
                "kiseki_pending_deletions",
                "Slices queued for deletion",
                sum(|l| l.pending_deletions),
            ),
            (
                "kiseki_used_bytes",
                "Space the volume's files use",
                sum(|l| l.used_bytes),
            ),
            (
                "kiseki_used_inodes",
                "Inodes the volume uses",
                sum(|l| l.used_inodes),
            ),
            (
                "kiseki_sessions",
                "Live client sessions of the volume",
                sum(|l| l.sessions),
            ),
        ];
        for (name, help, v) in gauges {
            gauge(&mut e, name, help, v)?;
        }
        let mut fam = e.encode_descriptor(
            "kiseki_client",
            "The clients of this process",
            None,
            MetricType::Info,
        )?;
        for l in &levels {
            fam.encode_info(&[
                ("engine", l.engine.as_str()),
                ("version", env!("CARGO_PKG_VERSION")),
            ])?;
        }
        Ok(())
    }
}

/// Every metric, as OpenMetrics text.
pub fn render() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Every sample of [`render`]: (`name{labels}`, value), in the order rendered.
pub fn samples() -> Vec<(String, f64)> {
    parse(&render())
}

/// The samples of OpenMetrics (or Prometheus) text: comment lines skipped, each other
/// line split at its last space into the series and its value.
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The default address of a mount's metrics endpoint; when it is taken, the next ports
/// are tried.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9567";

/// Serves [`render`] at `GET /metrics` on `addr` from a background thread, for the rest
/// of the process; returns the address bound. One endpoint per process: later calls
/// return the first one's address. With `next_free`, a taken port moves the endpoint to
/// the next free one (up to 100 further).
pub fn serve(addr: &str, next_free: bool) -> std::io::Result<std::net::SocketAddr> {
    static STARTING: Mutex<()> = Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(a) = BOUND.get() {
        return Ok(*a);
    }
    let want: std::net::SocketAddr = addr.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("metrics address {addr:?}: expected IP:PORT such as {DEFAULT_ADDR}"),
        )
    })?;
    let tries = if next_free { 100 } else { 1 };
    let mut last = None;
    let mut listener = None;
    for i in 0..tries {
        let mut a = want;
        a.set_port(want.port().saturating_add(i));
        match std::net::TcpListener::bind(a) {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    let Some(listener) = listener else {
        return Err(last.unwrap_or_else(|| std::io::Error::other("no port")));
    };
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("kiseki-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                // One scrape at a time is plenty; a stuck client cannot hold it long.
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
                let _ = answer(conn);
            }
        })?;
    let _ = BOUND.set(bound);
    Ok(bound)
}

/// The address [`serve`] bound, if it ran in this process.
pub fn served() -> Option<std::net::SocketAddr> {
    BOUND.get().copied()
}

static BOUND: OnceLock<std::net::SocketAddr> = OnceLock::new();

fn answer(mut conn: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers are read and ignored (up to the blank line).
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = match (request.split_whitespace().next(), path) {
        (Some("GET"), "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(),
        ),
        (Some("GET"), _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", String::new()),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two_microseconds() {
        let h = Histogram::new();
        h.observe(Duration::from_nanos(500));
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_secs(100));
        let b = h.buckets();
        assert_eq!(b[0], (1e-6, 1), "under 1 µs");
        assert_eq!(b[2], (4e-6, 2), "3 µs is under 4 µs");
        assert_eq!(b[BUCKETS], (f64::MAX, 1));
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn render_is_openmetrics_with_the_counted_operations() {
        METRICS.fuse[fuse_op("read")].record(Instant::now(), true);
        METRICS.fuse[fuse_op("read")].record(Instant::now(), false);
        let text = render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE kiseki_fuse_op_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("kiseki_fuse_op_duration_seconds_count{op=\"read\"}"),
            "{text}"
        );
        assert!(
            text.contains("kiseki_fuse_op_errors_total{op=\"read\"}"),
            "{text}"
        );
        assert!(
            !text.contains("op=\"mknod\""),
            "operations never called are left out"
        );
        assert!(
            text.contains("kiseki_cache_hits_total{cache=\"memory\"}"),
            "{text}"
        );
    }
}
