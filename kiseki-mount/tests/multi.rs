//! Two FUSE mounts (separate `kiseki` processes) of one volume on a real 3-member etcd
//! cluster with a shared bucket: close-to-open consistency, page caches kept across
//! opens of unchanged files, the negative-entry cache, namespace races, locks
//! across mounts, a mount killed with SIGKILL, the etcd leader killed under load, and
//! a volume moved from RocksDB to etcd and back with dump and load.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiseki_testkit::etcd::{etcd_available, shared, unique_prefix, EtcdCluster};
use kiseki_testkit::mount::*;

/// A volume in etcd with its bucket in a temp dir, and any number of mounts of it.
struct Volume {
    dir: tempfile::TempDir,
    url: String,
    mounts: Vec<PathBuf>,
}

impl Volume {
    fn new(url: String) -> Volume {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("data");
        let o = kiseki(
            &[
                "format",
                &url,
                "multi",
                "--bucket",
                bucket.to_str().unwrap(),
                "--block-size",
                "1M",
            ],
            dir.path(),
        );
        assert!(o.status.success(), "format: {}", combined(&o));
        Volume {
            dir,
            url,
            mounts: Vec::new(),
        }
    }

    /// Mounts the volume once more (a new process, its own session); returns its index.
    fn mount(&mut self, extra: &[&str]) -> usize {
        let i = self.mounts.len();
        let mp = self.dir.path().join(format!("mnt{i}"));
        std::fs::create_dir(&mp).unwrap();
        let log = self.dir.path().join(format!("mount{i}.log"));
        let mut args = vec![
            "mount",
            &self.url,
            mp.to_str().unwrap(),
            "-d",
            "--log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = kiseki(&args, self.dir.path());
        assert!(o.status.success(), "mount: {}", combined(&o));
        self.mounts.push(mp);
        i
    }

    fn path(&self, mount: usize, rel: &str) -> PathBuf {
        self.mounts[mount].join(rel)
    }

    fn umount(&self, mount: usize) {
        let o = kiseki(
            &["umount", self.mounts[mount].to_str().unwrap()],
            self.dir.path(),
        );
        assert!(o.status.success(), "umount: {}", combined(&o));
    }

    fn fsck(&self) -> String {
        let o = kiseki(&["fsck", &self.url], self.dir.path());
        let out = combined(&o);
        assert!(o.status.success(), "fsck failed:\n{out}");
        out
    }

    fn status(&self) -> String {
        let o = kiseki(&["status", &self.url, "--json"], self.dir.path());
        assert!(o.status.success(), "status: {}", combined(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        for mp in &self.mounts {
            if is_mounted(mp) {
                let o = kiseki(&["umount", mp.to_str().unwrap()], self.dir.path());
                if !o.status.success() {
                    let _ = std::process::Command::new("umount")
                        .arg("-l")
                        .arg(mp)
                        .status();
                }
            }
        }
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn flock(f: &File, op: i32) -> std::io::Result<()> {
    // SAFETY: a valid descriptor and a flock operation.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fcntl record lock: F_SETLK / F_SETLKW / F_GETLK on `start..start+len`.
fn fcntl_lock(f: &File, cmd: i32, typ: i32, start: i64, len: i64) -> std::io::Result<libc::flock> {
    // SAFETY: zeroed flock is valid; the descriptor is open.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    // SAFETY: as above.
    if unsafe { libc::fcntl(f.as_raw_fd(), cmd, &mut fl) } == 0 {
        Ok(fl)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn write_file(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    // close(2) is where Kiseki commits; its error must be seen.
    f.sync_all().unwrap();
}

#[test]
fn close_to_open_between_mounts() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("c2o")));
    let (a, b) = (v.mount(&[]), v.mount(&[]));
    let f_a = v.path(a, "shared.bin");
    let f_b = v.path(b, "shared.bin");
    // Each round B has the previous version cached (attributes and pages); after A's
    // close, B's next open must see the new size and bytes. Sizes grow and shrink.
    for (round, len) in [1usize, 5 << 20, 3000, 0, 2 << 20, 70_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(round as u64, len);
        {
            let mut f = File::create(&f_a).unwrap();
            f.write_all(&data).unwrap();
        } // close on A
        let mut got = Vec::new();
        File::open(&f_b).unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), len, "round {round}: size seen by B");
        assert!(got == data, "round {round}: content seen by B");
        assert_eq!(std::fs::metadata(&f_b).unwrap().len(), len as u64);
        // And back: B overwrites a prefix, A sees it after B's close.
        if len > 10 {
            let mut f = OpenOptions::new().write(true).open(&f_b).unwrap();
            f.write_all(b"from-b").unwrap();
            drop(f);
            let mut got = Vec::new();
            File::open(&f_a).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(&got[..6], b"from-b", "round {round}: A sees B's write");
            assert_eq!(got.len(), len);
        }
    }
    // Directory changes appear on the other mount within the entry timeout (1 s).
    std::fs::create_dir(v.path(a, "d")).unwrap();
    write_file(&v.path(a, "d/x"), b"x");
    assert!(wait_until(Duration::from_secs(3), || v
        .path(b, "d/x")
        .exists()));
    std::fs::remove_file(v.path(b, "d/x")).unwrap();
    assert!(wait_until(Duration::from_secs(3), || !v
        .path(a, "d/x")
        .exists()));
    v.umount(a);
    v.umount(b);
    let report = v.fsck();
    assert!(report.contains("volume is consistent"), "{report}");
}

/// Pages of `path` in the page cache, of `len` bytes (mincore on a fresh mapping).
fn resident_pages(path: &Path, len: usize) -> usize {
    let f = File::open(path).unwrap();
    // SAFETY: a shared read-only mapping of an open file, unmapped below; mincore
    // fills one byte per page of it.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED, "mmap {}", path.display());
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| **b & 1 == 1).count()
    }
}

#[test]
fn an_unchanged_file_keeps_its_page_cache_across_opens_on_a_shared_volume() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("keep")));
    let (a, b) = (v.mount(&[]), v.mount(&[]));
    let (f_a, f_b) = (v.path(a, "data.bin"), v.path(b, "data.bin"));
    let len = 4 << 20;
    write_file(&f_b, &pattern(1, len));
    let read_all = |p: &Path| {
        let mut got = Vec::new();
        File::open(p).unwrap().read_to_end(&mut got).unwrap();
        got
    };
    // A reads it: cached. Nobody writes it: A's next open keeps the pages.
    assert!(read_all(&f_a) == pattern(1, len));
    let cached = resident_pages(&f_a, len);
    assert!(
        cached >= len / 4096 / 2,
        "{cached} pages cached after a read"
    );
    assert!(read_all(&f_a) == pattern(1, len));
    assert_eq!(
        resident_pages(&f_a, len),
        cached,
        "reopening an unchanged file dropped its pages"
    );
    // B rewrites it (same length): A's next open drops the pages and reads the new
    // bytes (close-to-open).
    write_file(&f_b, &pattern(2, len));
    let _ = File::open(&f_a).unwrap();
    assert_eq!(
        resident_pages(&f_a, len),
        0,
        "stale pages kept after B's close"
    );
    assert!(read_all(&f_a) == pattern(2, len), "A sees B's close");
    v.umount(a);
    v.umount(b);
}

#[test]
fn a_negative_entry_cache_hides_another_mounts_create_until_it_expires() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("neg")));
    let (a, b) = (v.mount(&["-o", "negative-entry-cache=3"]), v.mount(&[]));
    let (on_a, on_b) = (v.path(a, "late"), v.path(b, "late"));
    assert!(!on_a.exists());
    write_file(&on_b, b"x");
    let created = Instant::now();
    // A remembers that the name is missing for 3 s...
    let hidden = !on_a.exists();
    assert!(
        hidden || created.elapsed() >= Duration::from_secs(3),
        "A asked again within the negative entry's lifetime"
    );
    // ...then sees B's file.
    assert!(wait_until(Duration::from_secs(10), || on_a.exists()));
    // A's own create replaces its negative entry at once.
    let mine = v.path(a, "mine");
    assert!(!mine.exists());
    write_file(&mine, b"y");
    assert_eq!(std::fs::read(&mine).unwrap(), b"y");
    v.umount(a);
    v.umount(b);
}

#[test]
fn rename_and_unlink_races_between_mounts_keep_the_volume_consistent() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("races")));
    let (a, b) = (
        v.mount(&["-o", "entry-cache=0,attr-cache=0"]),
        v.mount(&["-o", "entry-cache=0,attr-cache=0"]),
    );
    std::fs::create_dir(v.path(a, "r")).unwrap();
    for i in 0..40 {
        write_file(&v.path(a, &format!("r/f{i}")), &pattern(i, 1000));
    }
    // Both mounts race to rename the same sources onto the same targets and to
    // unlink them: each operation succeeds for exactly one side or fails cleanly.
    let run = |mount: usize, salt: u64| {
        let base = v.mounts[mount].join("r");
        std::thread::spawn(move || {
            let mut ok = 0;
            for i in 0..40u64 {
                let src = base.join(format!("f{i}"));
                let dst = base.join(format!("g{}", i % 10));
                match std::fs::rename(&src, &dst) {
                    Ok(()) => ok += 1,
                    Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "rename: {e}"),
                }
                if (i + salt) % 3 == 0 {
                    match std::fs::remove_file(base.join(format!("g{}", (i + salt) % 10))) {
                        Ok(()) | Err(_) => {}
                    }
                }
            }
            ok
        })
    };
    let (ta, tb) = (run(a, 0), run(b, 1));
    // Each source is renamed by one side; the other gets ENOENT, or success when its
    // kernel resolved both names after the first rename and found one inode behind
    // them (rename of two links to one file is a no-op, as on NFS).
    let renamed = ta.join().unwrap() + tb.join().unwrap();
    assert!(renamed >= 40, "only {renamed} of 40 sources renamed");
    let list = |m: usize| {
        let mut names: Vec<String> = std::fs::read_dir(v.path(m, "r"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(list(a), list(b));
    assert!(list(a).iter().all(|n| n.starts_with('g')));
    // Every surviving target holds one whole source file.
    for n in list(a) {
        let got = std::fs::read(v.path(b, &format!("r/{n}"))).unwrap();
        assert!((0..40).any(|i| got == pattern(i, 1000)), "{n} is torn");
    }
    v.umount(a);
    v.umount(b);
    let report = v.fsck();
    assert!(report.contains("volume is consistent"), "{report}");
}

#[test]
fn locks_hold_across_mounts() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("locks")));
    let (a, b) = (v.mount(&[]), v.mount(&[]));
    write_file(&v.path(a, "lockfile"), b"0");
    let fa = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.path(a, "lockfile"))
        .unwrap();
    let fb = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.path(b, "lockfile"))
        .unwrap();

    // flock: exclusive on A excludes B; shared locks coexist.
    flock(&fa, libc::LOCK_EX | libc::LOCK_NB).unwrap();
    let e = flock(&fb, libc::LOCK_SH | libc::LOCK_NB).unwrap_err();
    assert_eq!(errno(&e), libc::EWOULDBLOCK);
    flock(&fa, libc::LOCK_SH).unwrap();
    flock(&fb, libc::LOCK_SH | libc::LOCK_NB).unwrap();
    flock(&fb, libc::LOCK_UN).unwrap();

    // POSIX record locks are a separate space: a flock does not block them.
    fcntl_lock(&fa, libc::F_SETLK, libc::F_WRLCK, 0, 100).unwrap();
    let e = fcntl_lock(&fb, libc::F_SETLK, libc::F_RDLCK, 50, 10).unwrap_err();
    assert!(matches!(errno(&e), libc::EAGAIN | libc::EACCES), "{e}");
    fcntl_lock(&fb, libc::F_SETLK, libc::F_WRLCK, 100, 50).unwrap();
    let seen = fcntl_lock(&fb, libc::F_GETLK, libc::F_WRLCK, 0, 0).unwrap();
    assert_eq!(seen.l_type as i32, libc::F_WRLCK);
    assert_eq!((seen.l_start, seen.l_len), (0, 100));

    // A blocking request on B waits for A's unlock, without holding up the mount.
    let waiter = {
        let fb = fb.try_clone().unwrap();
        std::thread::spawn(move || {
            let t = Instant::now();
            fcntl_lock(&fb, libc::F_SETLKW, libc::F_WRLCK, 0, 100).unwrap();
            t.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The mounts still serve other requests while B waits.
    write_file(&v.path(b, "meanwhile"), b"ok");
    drop(fa); // close releases A's POSIX locks and (last close) its flock
    let waited = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    drop(fb);

    // Mutual exclusion under contention: two workers per mount increment a counter
    // in a file guarded by an exclusive flock on a lock file.
    write_file(&v.path(a, "counter"), b"0");
    let workers: Vec<_> = [a, a, b, b]
        .into_iter()
        .map(|m| {
            let lock = v.path(m, "lockfile");
            let counter = v.path(m, "counter");
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let l = File::open(&lock).unwrap();
                    flock(&l, libc::LOCK_EX).unwrap();
                    let n: u64 = std::fs::read_to_string(&counter).unwrap().parse().unwrap();
                    write_file(&counter, (n + 1).to_string().as_bytes());
                    drop(l);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(std::fs::read_to_string(v.path(b, "counter")).unwrap(), "40");
    v.umount(a);
    v.umount(b);
    let report = v.fsck();
    assert!(report.contains("volume is consistent"), "{report}");
}

#[test]
fn a_mount_killed_with_sigkill_is_cleaned_up_by_the_other() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("killed")));
    let ttl = ["-o", "session-ttl=2"];
    let (a, b) = (v.mount(&ttl), v.mount(&ttl));
    write_file(&v.path(a, "kept"), &pattern(7, 3 << 20));
    // A holds a flock, a POSIX lock and an open file it unlinked.
    let locked = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(v.path(a, "locked"))
        .unwrap();
    flock(&locked, libc::LOCK_EX).unwrap();
    fcntl_lock(&locked, libc::F_SETLK, libc::F_WRLCK, 0, 0).unwrap();
    let mut doomed = File::create(v.path(a, "doomed")).unwrap();
    doomed.write_all(&pattern(8, 1 << 20)).unwrap();
    doomed.sync_all().unwrap();
    std::fs::remove_file(v.path(a, "doomed")).unwrap();

    let pid = mount_pid(&v.mounts[a]).expect("the mount's process");
    // SAFETY: signalling a process we started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    drop(locked);
    drop(doomed);
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&v.mounts[a])
        .status();

    // B gets both locks once A's session expires and a heartbeat of B cleans it.
    let fb = OpenOptions::new()
        .read(true)
        .write(true)
        .open(v.path(b, "locked"))
        .unwrap();
    let t = Instant::now();
    flock(&fb, libc::LOCK_EX).unwrap();
    fcntl_lock(&fb, libc::F_SETLKW, libc::F_WRLCK, 0, 0).unwrap();
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    drop(fb);
    assert!(
        wait_until(Duration::from_secs(10), || {
            v.status().matches("\"sid\"").count() == 1
        }),
        "A's session is still listed:\n{}",
        v.status()
    );
    // What A wrote and closed survives; its open-unlinked file is gone for good.
    assert!(std::fs::read(v.path(b, "kept")).unwrap() == pattern(7, 3 << 20));
    v.umount(b);
    let report = v.fsck();
    assert!(report.contains("volume is consistent"), "{report}");
}

/// `kiseki destroy` of a shared volume is refused while a mount has a live session
/// (nothing is removed), and removes every object and key once it has unmounted.
#[test]
fn destroy_is_refused_while_a_mount_has_a_live_session() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("destroy")));
    let a = v.mount(&[]);
    write_file(&v.path(a, "kept"), &pattern(3, 2 << 20));
    let objects = || kiseki_testkit::blocks_under(&v.dir.path().join("data")).len();
    let before = objects();
    assert!(before >= 2, "{before} objects");
    let destroy = || kiseki(&["destroy", &v.url, "--yes", "multi"], v.dir.path());
    let o = destroy();
    assert!(
        !o.status.success() && combined(&o).contains("in use by"),
        "{}",
        combined(&o)
    );
    assert_eq!(objects(), before, "a refused destroy removed objects");
    assert!(std::fs::read(v.path(a, "kept")).unwrap() == pattern(3, 2 << 20));
    v.umount(a);
    let o = destroy();
    assert!(
        o.status.success() && combined(&o).contains("destroyed: "),
        "{}",
        combined(&o)
    );
    let left = kiseki_testkit::files_under(&v.dir.path().join("data"));
    assert!(
        left.is_empty(),
        "objects left (blocks or backups): {left:?}"
    );
    let o = kiseki(&["status", &v.url], v.dir.path());
    assert!(
        !o.status.success() && combined(&o).contains("no volume is formatted"),
        "{}",
        combined(&o)
    );
}

/// Both mounts write files while the etcd leader is killed (and later restarted);
/// operations may pause but must succeed, and every file closed must read back intact.
#[test]
fn etcd_leader_failure_under_load_on_two_mounts() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut cluster = EtcdCluster::start(3);
    let mut v = Volume::new(cluster.url("fault"));
    let (a, b) = (v.mount(&[]), v.mount(&[]));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = [(a, 0u64), (a, 1), (b, 2), (b, 3)]
        .into_iter()
        .map(|(m, w)| {
            let dir = v.mounts[m].clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut written = BTreeMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("w{w}-{i}");
                    let seed = w * 1_000_000 + i;
                    let len = [4096usize, 100_000, 1 << 20, 1_500_000][(i % 4) as usize];
                    let mut f = File::create(dir.join(&name)).unwrap();
                    f.write_all(&pattern(seed, len)).unwrap();
                    drop(f);
                    written.insert(name, (seed, len));
                    i += 1;
                }
                written
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.leader();
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(4));
    cluster.restart(leader);
    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.leader();
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    let mut all = BTreeMap::new();
    for w in workers {
        all.extend(w.join().expect("a worker's file operation failed"));
    }
    assert!(all.len() >= 20, "little progress: {}", all.len());
    // Every file written and closed, read through the other mount.
    for (name, (seed, len)) in &all {
        let w: u64 = name[1..2].parse().unwrap();
        let reader = if w < 2 { b } else { a };
        let got = std::fs::read(v.path(reader, name)).unwrap();
        assert!(
            got.len() == *len && got == pattern(*seed, *len),
            "{name} is wrong"
        );
    }
    v.umount(a);
    v.umount(b);
    let report = v.fsck();
    assert!(report.contains("volume is consistent"), "{report}");
}

/// POSIX lock waits behave as on a local filesystem: two processes of one mount that
/// would wait for each other get EDEADLK, and a signal ends a blocked F_SETLKW.
#[test]
fn lock_waits_detect_deadlock_and_end_on_signals() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let mut v = Volume::new(shared().url(&unique_prefix("deadlock")));
    let a = v.mount(&[]);
    write_file(&v.path(a, "f"), &[0u8; 100]);
    let script = r#"
import errno, fcntl, os, signal, sys, time
path = sys.argv[1]
r, w = os.pipe()
child = os.fork()
if child == 0:
    f = open(path, "r+b")
    fcntl.lockf(f, fcntl.LOCK_EX, 10, 10)      # child holds [10, 20)
    os.write(w, b"x")
    time.sleep(0.5)
    try:
        fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)   # waits for the parent's [0, 10)
        os._exit(0)
    except OSError as e:
        os._exit(e.errno)
f = open(path, "r+b")
fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)            # parent holds [0, 10)
os.read(r, 1)
# The parent asks for the child's range; one of the two waits must get EDEADLK.
got = 0
try:
    fcntl.lockf(f, fcntl.LOCK_EX, 10, 10)
except OSError as e:
    got = e.errno
    fcntl.lockf(f, fcntl.LOCK_UN, 10, 0)        # let the child through
_, status = os.waitpid(child, 0)
codes = sorted([got, os.waitstatus_to_exitcode(status)])
assert codes == [0, errno.EDEADLK], codes

# A blocked F_SETLKW ends when a signal arrives (the handler raises).
fcntl.lockf(f, fcntl.LOCK_EX, 0, 0)
child = os.fork()
if child == 0:
    class Alarm(Exception):
        pass
    def on_alarm(*_):
        raise Alarm()
    signal.signal(signal.SIGALRM, on_alarm)
    g = open(path, "r+b")
    signal.alarm(1)
    try:
        fcntl.lockf(g, fcntl.LOCK_EX, 0, 0)
        os._exit(1)
    except Alarm:
        os._exit(0)
_, status = os.waitpid(child, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
print("ok")
"#;
    let start = Instant::now();
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(v.path(a, "f"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", combined(&o));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    v.umount(a);
}

/// Each regular file and symlink under `dir`: relative path -> content or target.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            if t.is_dir() {
                stack.push(e.path());
                out.insert(rel, b"<dir>".to_vec());
            } else if t.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else {
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// The supported migration: a RocksDB volume dumped while mounted, loaded into etcd and
/// mounted from there (same bucket, no data copied), then back into RocksDB with the
/// dump unchanged by the round trip.
#[test]
fn a_volume_moves_from_rocksdb_to_etcd_and_back_with_dump_and_load() {
    if !fuse_available() || !etcd_available() {
        return;
    }
    let m = Mounted::new(&[]);
    std::fs::create_dir_all(m.path("data/nested")).unwrap();
    write_file(&m.path("data/big"), &pattern(7, 5 << 20));
    write_file(&m.path("data/nested/small"), b"small");
    std::fs::hard_link(m.path("data/big"), m.path("data/nested/big-link")).unwrap();
    std::os::unix::fs::symlink("../big", m.path("data/nested/sym")).unwrap();
    // Inline files (RocksDB volumes keep files under 64 KiB in the metadata): more
    // bytes than etcd takes in one request, so the load must batch by size.
    std::fs::create_dir(m.path("data/many")).unwrap();
    for i in 0..120 {
        write_file(&m.path(&format!("data/many/{i}")), &pattern(i, 20_000));
    }
    write_file(&m.path("data/gone"), b"to the trash");
    std::fs::remove_file(m.path("data/gone")).unwrap();
    let before = contents(&m.path("data"));
    let objects = kiseki_testkit::blocks_under(&m.home().join("data")).len();

    // Dumped while mounted, gzip by its name.
    let dump = m.home().join("vol.json.gz");
    let o = kiseki(&["dump", &m.meta_url, dump.to_str().unwrap()], m.home());
    assert!(o.status.success(), "{}", combined(&o));
    assert!(
        combined(&o).contains("the volume is mounted"),
        "{}",
        combined(&o)
    );
    let etcd = shared().url(&unique_prefix("migrate"));
    let o = kiseki(&["load", &etcd, dump.to_str().unwrap()], m.home());
    assert!(
        o.status.success() && combined(&o).contains("volume test loaded"),
        "{}",
        combined(&o)
    );
    // Into a store that holds a volume: refused.
    let o = kiseki(&["load", &etcd, dump.to_str().unwrap()], m.home());
    assert!(
        !o.status.success() && combined(&o).contains("already formatted"),
        "{}",
        combined(&o)
    );
    m.umount();

    let mut v = Volume {
        dir: tempfile::tempdir().unwrap(),
        url: etcd.clone(),
        mounts: Vec::new(),
    };
    let i = v.mount(&[]);
    let mp = v.path(i, "");
    assert_eq!(contents(&mp.join("data")), before);
    assert_eq!(
        kiseki_testkit::blocks_under(&m.home().join("data")).len(),
        objects,
        "no object copied"
    );
    assert_eq!(std::fs::read_dir(mp.join(".trash")).unwrap().count(), 1);
    write_file(&mp.join("data/written-on-etcd"), &pattern(8, 1 << 20));
    v.umount(0);
    let o = kiseki(&["fsck", &etcd, "--objects"], m.home());
    assert!(
        o.status.success() && combined(&o).contains("volume is consistent"),
        "{}",
        combined(&o)
    );

    // And back: etcd -> RocksDB, the dump the same bytes after the round trip.
    let back = m.home().join("back.json");
    let o = kiseki(&["dump", &etcd, back.to_str().unwrap()], m.home());
    assert!(o.status.success(), "{}", combined(&o));
    let rocks = format!("rocksdb://{}/meta-back", m.home().display());
    let o = kiseki(&["load", &rocks, back.to_str().unwrap()], m.home());
    assert!(o.status.success(), "{}", combined(&o));
    let again = m.home().join("again.json");
    let o = kiseki(&["dump", &rocks, again.to_str().unwrap()], m.home());
    assert!(o.status.success(), "{}", combined(&o));
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&again).unwrap());
    let o = kiseki(&["fsck", &rocks], m.home());
    assert!(o.status.success(), "{}", combined(&o));
}
