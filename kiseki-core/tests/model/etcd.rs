//! The etcd engine against a real 3-member cluster: the optimistic transaction
//! contract, paging past etcd's limits, several clients of one volume, and a leader
//! killed under load.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiseki_core::meta::kv::{open_engine, KvError, TxnMode};
use kiseki_core::meta::{Ctx, FormatOptions, Ino, LockType, LockWait, Meta, MetaConfig};
use kiseki_testkit::etcd::{etcd_available, shared, unique_prefix, EtcdCluster};

const RW: TxnMode = TxnMode::ReadWrite { durable: false };

fn format(url: &str) {
    let mut o = FormatOptions::new("etcdtest");
    o.storage = "memory".into();
    Meta::format(url, &o).expect("format");
}

/// Every entry name of a directory, paged as the FUSE adapter pages them.
fn names(m: &Meta, dir: Ino) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = m.readdir(dir, offset, 100, false).unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        offset = last.offset;
        for e in page {
            if e.name != b"." && e.name != b".." {
                assert!(
                    out.insert(String::from_utf8(e.name).unwrap()),
                    "listed twice"
                );
            }
        }
    }
}

fn client(url: &str) -> Arc<Meta> {
    Meta::open(url, MetaConfig::default()).expect("open")
}

#[test]
fn optimistic_transactions_conflict_and_see_one_snapshot() {
    if !etcd_available() {
        return;
    }
    let url = shared().url(&unique_prefix("txn"));
    let kv = open_engine(&url, false).unwrap();
    let mut a = kv.begin(RW).unwrap();
    let mut b = kv.begin(RW).unwrap();
    assert_eq!(a.get(b"k").unwrap(), None);
    b.put(b"k", b"1").unwrap();
    b.commit().unwrap();
    // `a` read k before b wrote it: still sees its snapshot, and cannot commit.
    assert_eq!(a.get(b"k").unwrap(), None);
    a.put(b"z", b"2").unwrap();
    assert!(matches!(a.commit(), Err(KvError::Conflict)));

    // Blind writes conflict with writes made after the snapshot.
    let mut c = kv.begin(RW).unwrap();
    assert_eq!(c.get(b"k").unwrap(), Some(b"1".to_vec()));
    let mut d = kv.begin(RW).unwrap();
    d.put(b"w", b"d").unwrap();
    d.commit().unwrap();
    c.put(b"w", b"c").unwrap();
    assert!(matches!(c.commit(), Err(KvError::Conflict)));

    // Counters and own writes.
    let mut w = kv.begin(RW).unwrap();
    assert_eq!(w.incr_by(b"c", 3).unwrap(), 3);
    assert_eq!(w.incr_by(b"c", 4).unwrap(), 7);
    w.delete(b"k").unwrap();
    assert_eq!(w.get(b"k").unwrap(), None);
    w.commit().unwrap();
    let mut r = kv.begin(TxnMode::ReadOnly).unwrap();
    assert_eq!(r.get(b"c").unwrap(), Some(7i64.to_le_bytes().to_vec()));
    assert_eq!(r.get(b"k").unwrap(), None);
    assert_eq!(r.get(b"w").unwrap(), Some(b"d".to_vec()));
}

#[test]
fn scans_page_merge_own_writes_and_stay_inside_the_prefix() {
    if !etcd_available() {
        return;
    }
    let cluster = shared();
    let url = cluster.url(&unique_prefix("scan"));
    let kv = open_engine(&url, false).unwrap();
    // A neighbour volume whose prefix extends ours must stay invisible.
    let other = open_engine(&format!("{url}x"), false).unwrap();
    let mut o = other.begin(RW).unwrap();
    o.put(b"k0000", b"other").unwrap();
    o.commit().unwrap();

    // 1500 keys: more than one range page and more than one transaction's limit.
    for batch in 0..15 {
        let mut t = kv.begin(RW).unwrap();
        for i in 0..100 {
            let n = batch * 100 + i;
            t.put(format!("k{n:04}").as_bytes(), format!("{n}").as_bytes())
                .unwrap();
        }
        t.commit().unwrap();
    }
    let mut t = kv.begin(RW).unwrap();
    let all = t.scan(b"", b"", usize::MAX).unwrap();
    assert_eq!(all.len(), 1500);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(all[0], (b"k0000".to_vec(), b"0".to_vec()));

    // Own writes: a new key, a deleted key, an overwritten key, inside a page.
    t.put(b"k0500a", b"new").unwrap();
    t.delete(b"k0501").unwrap();
    t.put(b"k0502", b"changed").unwrap();
    let got = t.scan(b"k0499", b"k0504", 10).unwrap();
    let keys: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(
        keys,
        vec![&b"k0499"[..], b"k0500", b"k0500a", b"k0502", b"k0503"]
    );
    assert_eq!(got[3].1, b"changed");
    assert_eq!(t.scan(b"k", b"", 3).unwrap().len(), 3);

    // A range deletion is one operation however many keys it covers.
    t.delete_range(b"k0100", b"k1400").unwrap();
    assert_eq!(t.get(b"k0200").unwrap(), None);
    assert_eq!(t.scan(b"", b"", usize::MAX).unwrap().len(), 200);
    t.commit().unwrap();
    let mut r = kv.begin(TxnMode::ReadOnly).unwrap();
    assert_eq!(r.scan(b"", b"", usize::MAX).unwrap().len(), 200);
    let mut o = other.begin(TxnMode::ReadOnly).unwrap();
    assert_eq!(o.scan(b"", b"", usize::MAX).unwrap().len(), 1);

    // Too many writes for one etcd transaction is a clear error, not a partial write.
    let mut big = kv.begin(RW).unwrap();
    for i in 0..200 {
        big.put(format!("big{i}").as_bytes(), b"x").unwrap();
    }
    match big.commit() {
        Err(KvError::Engine(m)) => assert!(m.contains("too large"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut r = kv.begin(TxnMode::ReadOnly).unwrap();
    assert!(r.scan(b"big", b"bih", 10).unwrap().is_empty());
}

#[test]
fn unreachable_clusters_and_unformatted_prefixes_fail_clearly() {
    if !etcd_available() {
        return;
    }
    let start = std::time::Instant::now();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match open_engine(&format!("etcd://127.0.0.1:{port}/v"), false) {
        Err(KvError::Unavailable(m)) => assert!(m.contains("not reachable"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(start.elapsed() < Duration::from_secs(60));
    let url = shared().url(&unique_prefix("nothing"));
    let err = Meta::open(&url, MetaConfig::default())
        .err()
        .expect("unformatted");
    assert!(err.to_string().contains("kiseki format"), "{err}");
}

#[test]
fn two_clients_share_one_namespace_with_unique_ids() {
    if !etcd_available() {
        return;
    }
    let url = shared().url(&unique_prefix("clients"));
    format(&url);
    let a = client(&url);
    let b = client(&url);
    assert_ne!(a.sid(), b.sid());
    let ctx = Ctx::root();
    let dir = a.mkdir(&ctx, Ino::ROOT, b"shared", 0o755, 0).unwrap();
    // b sees a's directory at once (no client-side metadata cache in the core).
    assert_eq!(b.lookup(&ctx, Ino::ROOT, b"shared").unwrap().ino, dir.ino);

    // Both clients create concurrently in one directory: every create lands, inode
    // numbers never collide, and the counters stay exact (fsck).
    let mut handles = Vec::new();
    for (c, m) in [("a", a.clone()), ("b", b.clone())] {
        for t in 0..3 {
            let m = m.clone();
            handles.push(std::thread::spawn(move || {
                let ctx = Ctx::root();
                (0..40)
                    .map(|i| {
                        let name = format!("{c}{t}-{i}");
                        m.create(&ctx, dir.ino, name.as_bytes(), 0o644, 0, 0)
                            .unwrap()
                            .0
                            .ino
                    })
                    .collect::<Vec<Ino>>()
            }));
        }
    }
    let inos: Vec<Ino> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let unique: BTreeSet<u64> = inos.iter().map(|i| i.0).collect();
    assert_eq!(unique.len(), 240);
    assert_eq!(names(&b, dir.ino).len(), 240);
    let slices: BTreeSet<u64> = (0..50)
        .flat_map(|_| [a.next_slice_id().unwrap(), b.next_slice_id().unwrap()])
        .collect();
    assert_eq!(slices.len(), 100);
    assert!(a.check().unwrap().is_clean());
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

/// Kills the leader twice, then freezes one, while two clients create files; every create that returned must be
/// there afterwards, none twice, and the volume must check clean.
#[test]
fn leader_failure_under_load_loses_nothing() {
    if !etcd_available() {
        return;
    }
    let mut cluster = EtcdCluster::start(3);
    let url = cluster.url("fault");
    format(&url);
    let a = client(&url);
    let b = client(&url);
    let ctx = Ctx::root();
    let dir = a.mkdir(&ctx, Ino::ROOT, b"load", 0o755, 0).unwrap().ino;
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (c, m) in [("a", a.clone()), ("b", b.clone())] {
        for t in 0..2 {
            let (m, stop) = (m.clone(), stop.clone());
            workers.push(std::thread::spawn(move || {
                let ctx = Ctx::root();
                let mut done = Vec::new();
                let mut failed = 0;
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("{c}{t}-{i}");
                    i += 1;
                    match m.create(&ctx, dir, name.as_bytes(), 0o644, 0, 0) {
                        Ok(_) => done.push(name),
                        Err(e) => {
                            // Only an outage longer than the engine's deadline may
                            // fail an operation, and then as EIO.
                            assert_eq!(e.errno(), libc::EIO, "{e}");
                            failed += 1;
                        }
                    }
                }
                (done, failed)
            }));
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    let leader = cluster.leader();
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart(leader);
    std::thread::sleep(Duration::from_millis(700));
    let leader = cluster.leader();
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(3));
    cluster.restart(leader);
    std::thread::sleep(Duration::from_millis(700));
    // A frozen leader times requests out after it may have accepted them.
    let leader = cluster.leader();
    cluster.freeze(leader, true);
    std::thread::sleep(Duration::from_secs(5));
    cluster.freeze(leader, false);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut created = Vec::new();
    for w in workers {
        let (done, failed) = w.join().unwrap();
        assert_eq!(failed, 0, "operations failed during a short outage");
        created.extend(done);
    }
    eprintln!("{} files created across two leader failures", created.len());
    assert!(created.len() > 50, "too little progress: {}", created.len());
    let listed = names(&b, dir);
    for name in &created {
        assert!(listed.contains(name), "{name} was created but is gone");
    }
    // A create whose reply was lost and was retried must not exist twice or leave
    // counters off: fsck recomputes every counter and link count.
    let report = a.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

const FOREVER: LockWait<'static> = LockWait::Until(&|| false);

fn client_with_ttl(url: &str, ttl: Duration) -> Arc<Meta> {
    Meta::open(
        url,
        MetaConfig {
            session_ttl: ttl,
            ..MetaConfig::default()
        },
    )
    .expect("open")
}

#[test]
fn locks_are_shared_between_clients_and_freed_when_one_dies() {
    if !etcd_available() {
        return;
    }
    let url = shared().url(&unique_prefix("locks"));
    format(&url);
    let a = client_with_ttl(&url, Duration::from_secs(2));
    let b = client_with_ttl(&url, Duration::from_secs(2));
    let ctx = Ctx::root();
    let ino = a
        .mknod(&ctx, Ino::ROOT, b"f", libc::S_IFREG | 0o644, 0, 0)
        .unwrap()
        .ino;
    let again = |e: kiseki_core::Error| assert_eq!(e.errno(), libc::EAGAIN, "{e}");

    // flock: shared locks coexist, exclusive ones exclude across clients.
    a.flock(ino, 1, LockType::Read, LockWait::No).unwrap();
    b.flock(ino, 1, LockType::Read, LockWait::No).unwrap();
    again(b.flock(ino, 1, LockType::Write, LockWait::No).unwrap_err());
    a.flock(ino, 1, LockType::Unlock, LockWait::No).unwrap();
    b.flock(ino, 1, LockType::Write, LockWait::No).unwrap();
    again(a.flock(ino, 2, LockType::Read, LockWait::No).unwrap_err());

    // A blocking request waits until the other client unlocks.
    let waiter = {
        let a = a.clone();
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            a.flock(ino, 2, LockType::Write, FOREVER).unwrap();
            t.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    b.release_locks(ino, 1, true, false).unwrap();
    let waited = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");

    // POSIX record locks are a separate space from flock, with byte ranges.
    b.setlk(ino, 7, 70, LockType::Write, 0, 99, LockWait::No)
        .unwrap();
    a.setlk(ino, 5, 50, LockType::Write, 100, u64::MAX, LockWait::No)
        .unwrap();
    again(
        a.setlk(ino, 5, 50, LockType::Read, 50, 149, LockWait::No)
            .unwrap_err(),
    );
    let (t, holder) = a
        .getlk(ino, 5, LockType::Read, 0, 10)
        .unwrap()
        .expect("conflict");
    assert_eq!(
        (t, holder.start, holder.end, holder.pid),
        (LockType::Write, 0, 99, 70)
    );
    assert!(b.getlk(ino, 7, LockType::Write, 0, 99).unwrap().is_none());
    assert!(a.getlk(ino, 5, LockType::Read, 200, 300).unwrap().is_none());

    // b dies holding its POSIX lock; a's blocking request is granted once b's session
    // expires and a's heartbeat cleans it up.
    b.simulate_crash();
    let t = std::time::Instant::now();
    a.setlk(ino, 5, 50, LockType::Write, 0, 99, FOREVER)
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // The cleanup frees the locks first; the session record goes last.
    let gone = (0..100).any(|_| {
        let listed = a.sessions().unwrap().iter().any(|s| s.sid == b.sid());
        std::thread::sleep(Duration::from_millis(50));
        !listed
    });
    assert!(gone, "b's session is still listed");
    assert!(a.check().unwrap().is_clean());
    a.shutdown().unwrap();
    // A clean shutdown leaves no locks behind.
    let c = client(&url);
    c.flock(ino, 9, LockType::Write, LockWait::No).unwrap();
    c.setlk(ino, 9, 9, LockType::Write, 0, u64::MAX, LockWait::No)
        .unwrap();
    c.shutdown().unwrap();
}

#[test]
fn racing_renames_of_one_source_succeed_once() {
    if !etcd_available() {
        return;
    }
    let url = shared().url(&unique_prefix("renames"));
    format(&url);
    let a = client(&url);
    let b = client(&url);
    let ctx = Ctx::root();
    for i in 0..100 {
        a.mknod(
            &ctx,
            Ino::ROOT,
            format!("f{i}").as_bytes(),
            libc::S_IFREG | 0o644,
            0,
            0,
        )
        .unwrap();
    }
    let run = |m: Arc<Meta>| {
        std::thread::spawn(move || {
            let ctx = Ctx::root();
            (0..100)
                .filter(|i| {
                    let src = format!("f{i}");
                    let dst = format!("g{}", i % 10);
                    match m.rename(
                        &ctx,
                        Ino::ROOT,
                        src.as_bytes(),
                        Ino::ROOT,
                        dst.as_bytes(),
                        0,
                    ) {
                        Ok(()) => true,
                        Err(e) => {
                            assert_eq!(e.errno(), libc::ENOENT, "{e}");
                            false
                        }
                    }
                })
                .count()
        })
    };
    let (ta, tb) = (run(a.clone()), run(b.clone()));
    assert_eq!(ta.join().unwrap() + tb.join().unwrap(), 100);
    assert!(a.check().unwrap().is_clean());
}
