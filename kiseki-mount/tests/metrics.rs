//! A mount's metrics, end to end: a real Prometheus server scrapes a mount under load
//! and its HTTP API must show the series moving; `kiseki stats` shows the same load.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiseki_testkit::mount::*;

/// The Prometheus server (Debian package `prometheus`); the test command requires it.
fn prometheus() -> Option<PathBuf> {
    let found = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("KISEKI_REQUIRE_PROMETHEUS").is_some() {
            panic!("KISEKI_REQUIRE_PROMETHEUS is set but prometheus is not installed (apt-get install prometheus)");
        }
        eprintln!("skipping: prometheus is not installed");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `addr`: (status line, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut all = String::new();
    c.read_to_string(&mut all)?;
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The largest value Prometheus has for instant query `q` (a bare series name).
fn query(prom: &str, q: &str) -> f64 {
    let Ok((_, body)) = http_get(prom, &format!("/api/v1/query?query={q}")) else {
        return 0.0;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
        return 0.0;
    };
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn prometheus_scrapes_a_mount_under_load_and_kiseki_stats_shows_it() {
    if !fuse_available() {
        return;
    }
    let Some(prom_bin) = prometheus() else {
        return;
    };
    let m = Mounted::new(&[]);
    // The mount says where it serves its metrics in its log.
    let mut target = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = std::fs::read_to_string(m.log()).unwrap_or_default();
            target = log
                .split("metrics at http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default()
                .to_string();
            !target.is_empty()
        }),
        "no metrics address in the mount's log"
    );
    let (status, text) = http_get(&target, "/metrics").unwrap();
    assert!(status.contains("200"), "{status}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text: {text}");
    let (status, _) = http_get(&target, "/nothing").unwrap();
    assert!(status.contains("404"), "{status}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kiseki\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let _server = Server(
        Command::new(prom_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Load: files written, read back and listed, on another thread while `kiseki stats`
    // watches.
    let root = m.path("load");
    std::fs::create_dir(&root).unwrap();
    let load = std::thread::spawn(move || {
        for round in 0..6u64 {
            for i in 0..8 {
                let p = root.join(format!("f{i}"));
                std::fs::write(&p, pattern(round * 8 + i, 1 << 20)).unwrap();
                // Out of the page cache, so the reads reach the mount.
                let f = std::fs::File::open(&p).unwrap();
                // SAFETY: a valid descriptor.
                unsafe {
                    use std::os::fd::AsRawFd;
                    libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
                }
                assert_eq!(std::fs::read(&p).unwrap().len(), 1 << 20);
            }
            assert_eq!(std::fs::read_dir(&root).unwrap().count(), 8);
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let o = kiseki(
        &[
            "stats",
            m.mp.to_str().unwrap(),
            "--count",
            "3",
            "--interval",
            "0.5",
        ],
        m.home(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "a header and 3 rows:\n{out}");
    assert!(
        lines[0].contains("ops/s") && lines[0].contains("hit%"),
        "{out}"
    );
    let busy = lines[1..].iter().any(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
            > Some(0.0)
    });
    assert!(busy, "no operations shown under load:\n{out}");
    load.join().unwrap();

    // Every kind of series has moved, as Prometheus saw it.
    let series = [
        "up",
        "kiseki_fuse_op_duration_seconds_count",
        "kiseki_fuse_op_duration_seconds_bucket",
        "kiseki_meta_txn_duration_seconds_count",
        "kiseki_object_request_duration_seconds_count",
        "kiseki_object_bytes_total",
        "kiseki_cache_hits_total",
        "kiseki_written_bytes_total",
        "kiseki_read_bytes_total",
        "kiseki_used_bytes",
        "kiseki_used_inodes",
        "kiseki_sessions",
        "kiseki_buffer_size_bytes",
    ];
    let mut last = Vec::new();
    let moved = wait_until(Duration::from_secs(60), || {
        last = series.iter().map(|s| (*s, query(&prom, s))).collect();
        last.iter().all(|(_, v)| *v > 0.0)
    });
    assert!(moved, "series that did not move in Prometheus: {last:?}");
    // The written bytes counted are at least what the load wrote.
    assert!(query(&prom, "kiseki_written_bytes_total") >= (48 << 20) as f64);

    // Another mount option: no metrics, and `kiseki stats` says so.
    m.umount();
    m.mount(&["-o", "metrics=off"]);
    let o = kiseki(&["stats", m.mp.to_str().unwrap(), "--count", "1"], m.home());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("serves no metrics"), "{}", stderr(&o));
    let o = kiseki(&["stats", "/usr", "--count", "1"], m.home());
    assert!(
        stderr(&o).contains("not in a kiseki mount"),
        "{}",
        stderr(&o)
    );
}
