//! The faults production brings, each against the real parts: the S3 server (SeaweedFS)
//! going away and coming back under a mount and a libkiseki client, a flipped byte in a
//! stored block, the metadata engine (etcd) gone when the mount is asked to stop, and
//! full disks under the bucket, the cache, the write buffer's spill file and RocksDB.
//! docs/SEMANTICS.md ("Faults") lists what each test shows.
//!
//! Needs root and /dev/fuse (skips otherwise, fails with KISEKI_REQUIRE_FUSE=1), and
//! `weed` and etcd for their parts (KISEKI_REQUIRE_S3, KISEKI_REQUIRE_ETCD).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiseki_testkit::c::{compile, Driver, Link};
use kiseki_testkit::mount::*;
use kiseki_testkit::s3::{s3_available, Weed};

const MIB: usize = 1 << 20;

fn write_file(path: &Path, len: usize, seed: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&pattern(seed, len))?;
    f.sync_all()
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

fn check_file(path: &Path, len: usize, seed: u64) {
    let got = read_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got.len() == len && got == pattern(seed, len),
        "{}: {} bytes, content as written: {}",
        path.display(),
        got.len(),
        got.len() == len && got == pattern(seed, len)
    );
}

/// Forgets the kernel's page cache, so reads through a mount reach Kiseki.
fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop the page cache (root)");
}

fn errno(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn s3_args(weed: &Weed, prefix: &str) -> Vec<String> {
    [
        "--storage",
        "s3",
        "--bucket",
        &weed.bucket_url(prefix),
        "--access-key",
        "kiseki",
        "--secret-key",
        "kiseki-secret",
    ]
    .map(String::from)
    .to_vec()
}

/// The S3 server stops in the middle of writes and reads, under a mount and a C client
/// (each on its own volume in the same bucket), and comes back after 5 s and after 60
/// s. A 5 s outage is ridden out: writers and readers wait and succeed. A 60 s one
/// outlasts the retry bound (30 s and a second per MiB): they fail with EIO, and nothing is committed
/// that points at a missing object. Once the store is back, the same processes write
/// and read again without remounting, and fsck that reads every object is clean.
#[test]
fn the_object_store_goes_away_and_comes_back() {
    if !fuse_available() || !s3_available() {
        return;
    }
    let mut weed = Weed::start();
    let args = s3_args(&weed, "mount");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A small memory cache, so reads of earlier files reach the store.
    let m = Mounted::on_store(&args, &["-o", "memory-cache-size=1M"]);
    let cdir = tempfile::tempdir().unwrap();
    let curl = format!("rocksdb://{}/meta", cdir.path().display());
    let mut fargs = vec!["format", &curl, "cvol", "--block-size", "1M"];
    let cargs = s3_args(&weed, "c");
    fargs.extend(cargs.iter().map(String::as_str));
    let o = kiseki(&fargs, cdir.path());
    assert!(o.status.success(), "format: {}", combined(&o));
    let exe = compile(
        "tests/c/driver.c",
        &cdir.path().join("driver"),
        &[],
        Link::Shared,
    );
    let mut c = Driver::start(&exe, &curl, "memory-cache-size=1M");

    write_file(&m.path("before"), 6 * MIB, 1).unwrap();
    assert_eq!(c.cmd(&format!("write /before {} 1", 6 * MIB)), "ok");
    drop_caches();

    // 5 s: the requests in flight are retried until the store answers again.
    weed.stop();
    let stopped = Instant::now();
    let mp = m.mp.clone();
    let mount_side = std::thread::spawn(move || {
        write_file(&mp.join("short"), 3 * MIB, 2)?;
        read_file(&mp.join("before"))
    });
    let c_write = c.send(&format!("write /short {} 2", 3 * MIB));
    let c_read = c.send(&format!("read /before {} 1", 6 * MIB));
    std::thread::sleep(Duration::from_secs(5).saturating_sub(stopped.elapsed()));
    weed.resume();
    let before = mount_side.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "mount: a 5 s outage: {e}\n{}",
            std::fs::read_to_string(m.log()).unwrap_or_default()
        )
    });
    assert!(
        before == pattern(1, 6 * MIB),
        "mount: read after a 5 s outage"
    );
    assert_eq!(c.wait(c_write), "ok", "C: write in a 5 s outage");
    assert_eq!(c.wait(c_read), "ok", "C: read in a 5 s outage");
    check_file(&m.path("short"), 3 * MIB, 2);
    // A fresh mount, so that no block of "short" is left in its memory cache (moka
    // evicts lazily: a 1 MiB cache may hold more for a while) and the read below
    // must reach the store.
    m.umount();
    m.mount(&["-o", "memory-cache-size=1M"]);
    drop_caches();

    // 60 s: past the retry bound (30 s and a second per MiB of a block request) the
    // calls fail with EIO, long before the store is back.
    weed.stop();
    let stopped = Instant::now();
    let timed = |f: Box<dyn FnOnce() -> Option<i32> + Send>| {
        std::thread::spawn(move || (f(), stopped.elapsed()))
    };
    let (w_mp, r_mp) = (m.mp.clone(), m.mp.clone());
    let mount_write = timed(Box::new(move || {
        errno(write_file(&w_mp.join("long"), 3 * MIB, 3))
    }));
    let mount_read = timed(Box::new(move || errno(read_file(&r_mp.join("short")))));
    let c_write = c.send(&format!("write /long {} 3", 3 * MIB));
    let c_read = c.send(&format!("read /short {} 2", 3 * MIB));
    for (what, t) in [("write", mount_write), ("read", mount_read)] {
        let (e, took) = t.join().unwrap();
        assert_eq!(e, Some(libc::EIO), "mount: {what} in a 60 s outage");
        assert!(
            took < Duration::from_secs(55),
            "mount: {what} failed only after {took:?}"
        );
    }
    for (what, id) in [("write", c_write), ("read", c_read)] {
        let answer = c.wait(id);
        assert!(
            answer.starts_with("err 5 "),
            "C: {what} in a 60 s outage: {answer}"
        );
    }
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(55),
        "C: failed only after {took:?}"
    );
    std::thread::sleep(Duration::from_secs(60).saturating_sub(stopped.elapsed()));
    weed.resume();

    // Back: the same mount and the same connection work again.
    write_file(&m.path("after"), 2 * MIB, 4).unwrap();
    check_file(&m.path("after"), 2 * MIB, 4);
    check_file(&m.path("short"), 3 * MIB, 2);
    check_file(&m.path("before"), 6 * MIB, 1);
    // What the failed write left is readable (it may be empty): nothing points at a
    // block that was never stored.
    read_file(&m.path("long")).expect("the file of the failed write reads");
    assert_eq!(c.cmd(&format!("write /after {} 4", 2 * MIB)), "ok");
    assert_eq!(c.cmd(&format!("read /after {} 4", 2 * MIB)), "ok");
    assert_eq!(c.cmd(&format!("read /short {} 2", 3 * MIB)), "ok");
    c.quit();
    m.umount();
    let out = m.fsck_with(&["--objects"]);
    assert!(out.contains("volume is consistent"), "{out}");
    let o = kiseki(&["fsck", &curl, "--objects"], cdir.path());
    assert!(o.status.success(), "C volume: {}", combined(&o));
}

/// The user's view of end-to-end checksums: a byte flipped in a stored block object
/// under a mount reads back as EIO (never the wrong byte), the log names the object,
/// and `kiseki fsck --objects` finds it without a mount.
/// The volume's count of blocks staged by write-back clients (`kiseki status`).
fn staged_blocks(m: &Mounted) -> u64 {
    let o = kiseki(&["status", &m.meta_url, "--json"], m.home());
    assert!(o.status.success(), "status: {}", combined(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status is JSON");
    v["usage"]["staged_blocks"]
        .as_u64()
        .expect("usage.staged_blocks")
}

/// Write-back through a mount: with the S3 server down, writes and closes (and an
/// fsync) succeed, their blocks staged in the cache directory; the mount is killed with
/// SIGKILL before it can upload them. Once the server is back, the next mount on the
/// same cache directory uploads them, every file reads back byte for byte, and fsck
/// reading every object from S3 is clean.
#[test]
fn writeback_blocks_staged_at_a_sigkill_are_uploaded_by_the_next_mount() {
    if !fuse_available() || !s3_available() {
        return;
    }
    let mut weed = Weed::start();
    let args = s3_args(&weed, "writeback");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cache = tempfile::tempdir().unwrap();
    let opts = format!("writeback,cache-dir={}", cache.path().display());
    let m = Mounted::on_store(&args, &["-o", &opts]);
    weed.stop();
    let files = [
        ("big", 5 * MIB + 3, 1),
        ("mid", 200_000, 2),
        ("small", 1000, 3),
    ];
    for (name, len, seed) in files {
        write_file(&m.path(name), len, seed)
            .unwrap_or_else(|e| panic!("{name} with the store down: {e}"));
    }
    let mut f = std::fs::File::create(m.path("closed")).unwrap();
    f.write_all(&pattern(4, 3 * MIB)).unwrap();
    drop(f);
    drop_caches();
    for (name, len, seed) in files {
        check_file(&m.path(name), len, seed);
    }
    // 6 blocks of "big", 1 of "mid", 3 of "closed" ("small" is inline).
    assert_eq!(staged_blocks(&m), 10);

    let pid = mount_pid(&m.mp).expect("the mount's process");
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = Command::new("umount").arg("-l").arg(&m.mp).status();
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&m.mp)));
    // Its RocksDB lock goes with the process.
    // SAFETY: signal 0 only checks that the process exists.
    assert!(wait_until(Duration::from_secs(30), || unsafe {
        libc::kill(pid, 0)
    } != 0));
    weed.resume();
    m.mount(&["-o", &opts]);
    assert!(
        wait_until(Duration::from_secs(90), || staged_blocks(&m) == 0),
        "staged blocks left after the remount: {}\n{}",
        staged_blocks(&m),
        std::fs::read_to_string(m.log()).unwrap_or_default()
    );
    drop_caches();
    for (name, len, seed) in files {
        check_file(&m.path(name), len, seed);
    }
    check_file(&m.path("closed"), 3 * MIB, 4);
    m.umount();
    let out = m.fsck_with(&["--objects"]);
    assert!(
        out.contains("volume is consistent") && out.contains("0 staged"),
        "{out}"
    );
}

#[test]
fn a_flipped_byte_in_a_block_object_is_eio_through_the_mount() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    write_file(&m.path("f"), 3_000_000, 7).unwrap();
    m.umount();
    let bucket = m.home().join("data");
    let first = kiseki_testkit::files_under(&bucket)
        .into_iter()
        .find(|p| p.to_str().unwrap().ends_with("_0_1048576"))
        .expect("the first block object");
    let mut raw = std::fs::read(&first).unwrap();
    raw[123_456] ^= 0x01;
    std::fs::write(&first, raw).unwrap();
    m.mount(&[]);
    let cat = Command::new("cat").arg(m.path("f")).output().unwrap();
    assert!(
        !cat.status.success(),
        "cat read a corrupt block without an error"
    );
    assert!(
        stderr(&cat).contains("Input/output error"),
        "{}",
        stderr(&cat)
    );
    let name = first.file_name().unwrap().to_str().unwrap().to_string();
    m.umount();
    let log = std::fs::read_to_string(m.log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&name) && l.contains("corrupt")),
        "the log names {name}:\n{log}"
    );
    let listing = m.fsck();
    assert!(listing.contains("volume is consistent"), "{listing}");
    let o = kiseki(&["fsck", &m.meta_url, "--objects"], m.home());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "fsck --objects passed:\n{out}");
    assert!(
        out.contains("1 corrupt") && out.contains(&name),
        "fsck --objects names {name}:\n{out}"
    );
}

/// A mount whose etcd cluster has gone away is still asked to stop: by `kiseki umount`
/// and by SIGTERM. It must unmount and exit within seconds, not retry for minutes.
#[test]
fn a_mount_without_its_metadata_engine_stops_promptly() {
    if !fuse_available() || !kiseki_testkit::etcd::etcd_available() {
        return;
    }
    let mut cluster = kiseki_testkit::etcd::EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url("gone");
    let bucket = dir.path().join("data");
    let o = kiseki(
        &["format", &url, "gone", "--bucket", bucket.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "format: {}", combined(&o));
    let mps: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("mnt{i}"))).collect();
    let mut pids = Vec::new();
    for (i, mp) in mps.iter().enumerate() {
        std::fs::create_dir(mp).unwrap();
        let log = dir.path().join(format!("mount{i}.log"));
        let o = kiseki(
            &[
                "mount",
                &url,
                mp.to_str().unwrap(),
                "-d",
                "--log",
                log.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(o.status.success(), "mount: {}", combined(&o));
        write_file(&mp.join(format!("f{i}")), 100_000, i as u64).unwrap();
        pids.push(mount_pid(mp).expect("the mount's process"));
    }
    cluster.kill(0);

    // kiseki umount: returns once the process has exited.
    let start = Instant::now();
    let o = kiseki(&["umount", mps[0].to_str().unwrap()], dir.path());
    let took = start.elapsed();
    assert!(o.status.success(), "umount: {}", combined(&o));
    assert!(!is_mounted(&mps[0]));
    assert!(
        took < Duration::from_secs(30),
        "umount with etcd gone took {took:?}"
    );
    // SIGTERM: the process unmounts and exits.
    let start = Instant::now();
    // SAFETY: signalling a child process of this test by pid.
    assert_eq!(unsafe { libc::kill(pids[1], libc::SIGTERM) }, 0);
    let gone = wait_until(Duration::from_secs(60), || {
        !Path::new(&format!("/proc/{}", pids[1])).exists()
    });
    let log = std::fs::read_to_string(dir.path().join("mount1.log")).unwrap_or_default();
    assert!(
        gone,
        "the mount process lives on after SIGTERM with etcd gone:\n{log}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "SIGTERM with etcd gone took {:?}:\n{log}",
        start.elapsed()
    );
    assert!(!is_mounted(&mps[1]));
}

/// Writes 1 MiB files `prefix0`, `prefix1`, ... until one fails; returns how many were
/// written and the errno of the failure.
fn fill_with_files(dir: &Path, prefix: &str, max: usize) -> (usize, Option<i32>) {
    for i in 0..max {
        if let Err(e) = write_file(&dir.join(format!("{prefix}{i}")), MIB, 100 + i as u64) {
            return (i, e.raw_os_error());
        }
    }
    (max, None)
}

/// The bucket's disk fills up: writers get ENOSPC, what was committed reads back, and
/// once files are deleted and root empties the trash they went to (their blocks go
/// with them) writes work again, without a remount.
#[test]
fn a_full_bucket_disk_is_enospc_until_space_is_freed() {
    if !fuse_available() {
        return;
    }
    let disk = Tmpfs::new("12m");
    let bucket = disk.path().join("data");
    let m = Mounted::on_store(&["--bucket", bucket.to_str().unwrap()], &[]);
    let (written, err) = fill_with_files(&m.mp, "f", 40);
    assert_eq!(
        err,
        Some(libc::ENOSPC),
        "after {written} files:\n{}",
        std::fs::read_to_string(m.log()).unwrap_or_default()
    );
    assert!(written >= 6, "only {written} MiB fit on a 12 MiB disk");
    for i in 0..written {
        check_file(&m.path(&format!("f{i}")), MIB, 100 + i as u64);
    }
    for i in 0..written {
        std::fs::remove_file(m.path(&format!("f{i}"))).unwrap();
    }
    // Removed files wait in the trash, still using the disk; root removes them from it
    // for good (`rm -rf .trash/*`).
    for hour in std::fs::read_dir(m.path(".trash")).unwrap() {
        std::fs::remove_dir_all(hour.unwrap().path()).unwrap();
    }
    // The deletion worker frees the blocks within seconds.
    let again = wait_until(Duration::from_secs(30), || {
        write_file(&m.path("again"), MIB, 9).is_ok()
    });
    assert!(again, "writes still fail after the space was freed");
    check_file(&m.path("again"), MIB, 9);
    m.umount();
    let out = m.fsck_with(&["--objects"]);
    assert!(out.contains("volume is consistent"), "{out}");
}

/// The cache disk fills up: the cache stops growing, reads keep working, and no
/// half-written entry is left behind.
#[test]
fn a_full_cache_disk_stops_the_cache_not_the_reads() {
    if !fuse_available() {
        return;
    }
    let disk = Tmpfs::new("3m");
    let cache = disk.path().join("cache");
    let m = Mounted::new(&[
        "-o",
        &format!(
            "cache-dir={},cache-size=1G,memory-cache-size=1M",
            cache.display()
        ),
    ]);
    write_file(&m.path("big"), 10 * MIB, 5).unwrap();
    drop_caches();
    for _ in 0..2 {
        check_file(&m.path("big"), 10 * MIB, 5);
        drop_caches();
    }
    let leftovers: Vec<PathBuf> = kiseki_testkit::files_under(&cache)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written cache entries: {leftovers:?}"
    );
    assert!(
        !kiseki_testkit::files_under(&cache).is_empty(),
        "the cache holds what fitted"
    );
}

/// The write buffer's spill file lives on a small disk: a spill file that cannot fit
/// refuses the mount with ENOSPC, and one that fits is allocated whole, so a disk that
/// fills later cannot kill the mount (a sparse mapped file would, with SIGBUS).
#[test]
fn the_spill_file_is_allocated_up_front() {
    if !fuse_available() {
        return;
    }
    let disk = Tmpfs::new("24m");
    let spill = disk.path().join("spill");
    let m = Mounted::new(&[]);
    m.umount();
    let log = m.home().join("spill.log");
    let too_big = format!(
        "buffer-size=1M,spill-size=64M,spill-dir={}",
        spill.display()
    );
    let o = kiseki(
        &[
            "mount",
            &m.meta_url,
            m.mp.to_str().unwrap(),
            "-d",
            "--log",
            log.to_str().unwrap(),
            "-o",
            &too_big,
        ],
        m.home(),
    );
    assert!(
        !o.status.success(),
        "mounted with a spill file that cannot fit"
    );
    let msg = combined(&o) + &std::fs::read_to_string(&log).unwrap_or_default();
    assert!(msg.contains("spill"), "{msg}");
    assert!(!is_mounted(&m.mp));
    m.mount(&[
        "-o",
        &format!(
            "buffer-size=1M,spill-size=16M,spill-dir={}",
            spill.display()
        ),
    ]);
    // Fill what is left of the disk; the spill file's pages are already allocated.
    disk.fill("filler", 0);
    let data = pattern(8, 12 * MIB);
    {
        let mut f = std::fs::File::create(m.path("through-spill")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    drop_caches();
    check_file(&m.path("through-spill"), 12 * MIB, 8);
}

/// The RocksDB directory's disk fills up: metadata writes fail (ENOSPC or EIO), nothing
/// committed is lost, RocksDB opens again, and the volume works once space is freed.
#[test]
fn a_full_metadata_disk_loses_nothing_committed() {
    if !fuse_available() {
        return;
    }
    let disk = Tmpfs::new("64m");
    let dir = tempfile::tempdir().unwrap();
    let meta_url = format!("rocksdb://{}/meta", disk.path().display());
    let m = Mounted::with(dir, meta_url, &[], &[]);
    for i in 0..20 {
        write_file(&m.path(&format!("kept{i}")), 1000, i).unwrap();
    }
    disk.fill("filler", 64 << 10);
    let mut failed = None;
    for i in 0..20_000 {
        let p = m.path(&format!("more{i}"));
        if let Err(e) = std::fs::File::create(&p).and_then(|f| f.sync_all()) {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("metadata writes on a full disk kept succeeding");
    assert!(
        matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EIO)),
        "metadata write on a full disk: {e}"
    );
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    // Space is back: the volume works again, if need be after a remount.
    let works = |m: &Mounted| {
        wait_until(Duration::from_secs(10), || {
            write_file(&m.path("after-full"), 1000, 77).is_ok()
        })
    };
    if !works(&m) {
        m.umount();
        m.mount(&[]);
        assert!(works(&m), "the volume does not work after space was freed");
    }
    for i in 0..20 {
        check_file(&m.path(&format!("kept{i}")), 1000, i);
    }
    m.umount();
    let out = m.fsck();
    assert!(out.contains("volume is consistent"), "{out}");
}

/// The bench workloads (a big file, many small files, stat of each) on a slow, flaky
/// S3 store: 100 ms added to every request and 5% of requests failing (their
/// connection reset). Everything completes with correct data; the time each workload
/// took, with faults and on the clean store, is printed for comparison (run with
/// `--nocapture`), not asserted.
#[test]
fn a_slow_flaky_store_still_gives_correct_data() {
    if !fuse_available() || !s3_available() {
        return;
    }
    use kiseki_testkit::s3::Faults;
    let weed = Weed::start();
    let mut report = Vec::new();
    for (name, faults) in [
        ("clean", Faults::default()),
        (
            "100 ms, 5% errors",
            Faults {
                latency: Duration::from_millis(100),
                error_rate: 0.05,
            },
        ),
    ] {
        weed.set_faults(faults);
        let args = s3_args(&weed, &name.replace(|c: char| !c.is_alphanumeric(), ""));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let m = Mounted::on_store(&args, &["-o", "memory-cache-size=1M"]);
        let t = Instant::now();
        write_file(&m.path("big"), 64 * MIB, 11).unwrap();
        let big_write = t.elapsed();
        drop_caches();
        let t = Instant::now();
        check_file(&m.path("big"), 64 * MIB, 11);
        let big_read = t.elapsed();
        std::fs::create_dir(m.path("small")).unwrap();
        let t = Instant::now();
        for i in 0..100 {
            write_file(&m.path(&format!("small/{i}")), 128 << 10, i).unwrap();
        }
        let small_write = t.elapsed();
        drop_caches();
        let t = Instant::now();
        for i in 0..100 {
            check_file(&m.path(&format!("small/{i}")), 128 << 10, i);
        }
        let small_read = t.elapsed();
        let t = Instant::now();
        for i in 0..100 {
            std::fs::metadata(m.path(&format!("small/{i}"))).unwrap();
        }
        let stat = t.elapsed();
        m.umount();
        let out = m.fsck_with(&["--objects"]);
        assert!(out.contains("volume is consistent"), "{name}: {out}");
        let mibs = |mib: f64, d: Duration| mib / d.as_secs_f64();
        report.push(format!(
            "{name}: big write {:.1} MiB/s, big read {:.1} MiB/s, small write {:.1} files/s, \
             small read {:.1} files/s, stat {:.0} files/s",
            mibs(64.0, big_write),
            mibs(64.0, big_read),
            100.0 / small_write.as_secs_f64(),
            100.0 / small_read.as_secs_f64(),
            100.0 / stat.as_secs_f64()
        ));
    }
    eprintln!(
        "slow, flaky store against the clean one:\n{}",
        report.join("\n")
    );
}
