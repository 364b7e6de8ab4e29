//! The write buffer bounds memory: writing many times the pool size through several
//! files at once keeps the process's peak RSS under the pool plus a stated overhead.
//! (This file holds one test so the measurement is this workload's alone.)

use kiseki_core::meta::FormatOptions;
use kiseki_core::vfs::{Client, ClientOptions};

const POOL: usize = 32 << 20;
const WRITTEN: usize = 8 * POOL;
/// Allowance beyond the pool: code, RocksDB memtables and caches, tokio, test buffers.
const OVERHEAD: u64 = 160 << 20;

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb << 10
}

#[test]
fn writing_many_times_the_pool_stays_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rocksdb://{}/meta", dir.path().display());
    let mut o = FormatOptions::new("mem");
    o.bucket = dir.path().join("data").display().to_string();
    o.block_size = 1 << 20;
    Client::format(&url, &o).unwrap();
    let mut opts = ClientOptions::default();
    opts.data.buffer_memory = POOL / 2;
    opts.data.buffer_spill = POOL / 2;
    opts.data.spill_dir = Some(dir.path().join("spill"));
    opts.data.cache_memory = 8 << 20;
    let client = Client::connect(Some(&url), &opts).unwrap();
    let before = peak_rss();
    let chunk = vec![0x5au8; 256 << 10];
    std::thread::scope(|s| {
        for t in 0..4 {
            let client = &client;
            let chunk = &chunk;
            s.spawn(move || {
                let f = client
                    .open(&format!("/big{t}"), libc::O_CREAT | libc::O_WRONLY, 0o644)
                    .unwrap();
                for _ in 0..WRITTEN / 4 / chunk.len() {
                    f.write(chunk).unwrap();
                }
                f.close().unwrap();
            });
        }
    });
    let peak = peak_rss();
    for t in 0..4 {
        assert_eq!(
            client.stat(&format!("/big{t}")).unwrap().attr.length,
            (WRITTEN / 4) as u64
        );
    }
    eprintln!(
        "wrote {} MiB through a {} MiB pool: peak RSS {} MiB (before writing {} MiB)",
        WRITTEN >> 20,
        POOL >> 20,
        peak >> 20,
        before >> 20
    );
    assert!(
        peak < POOL as u64 + OVERHEAD,
        "peak RSS {} MiB exceeds the {} MiB pool plus {} MiB overhead",
        peak >> 20,
        POOL >> 20,
        OVERHEAD >> 20
    );
}
