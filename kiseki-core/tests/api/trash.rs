//! The trash through the path-level client: what unlink, rmdir, rename and O_TRUNC
//! remove is kept, read-only, under `.trash/<hour>/`; `restore` puts it back without
//! overwriting; expiry releases it, one client at a time; the counters and fsck agree
//! at every step.

use std::collections::BTreeMap;
use std::time::Duration;

use kiseki_core::admin::{fsck, ObjectCheck};
use kiseki_core::meta::trash::{hour_name, TRASH_NAME};
use kiseki_core::meta::{Ctx, FileKind, Ino};
use kiseki_core::vfs::Client;
use kiseki_testkit::volume::Volume;

fn put(c: &Client, path: &str, data: &[u8]) {
    kiseki_testkit::write_all(c, path, data)
}

fn get(c: &Client, path: &str) -> Vec<u8> {
    kiseki_testkit::read_all(c, path).unwrap()
}

fn ino(c: &Client, path: &str) -> u64 {
    c.lstat(path).unwrap().ino.0
}

/// The entries of a trash hour directory: name -> inode.
fn listing(c: &Client, dir: &str) -> BTreeMap<String, u64> {
    c.readdir(dir)
        .unwrap()
        .into_iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .map(|e| (String::from_utf8(e.name).unwrap(), e.ino.0))
        .collect()
}

/// The hour directory removals go to now, for `c`'s clock.
fn hour_dir(c: &Client) -> String {
    let now = c.fs().unwrap().meta().config().clock.now();
    format!("/.trash/{}", hour_name(now - now.rem_euclid(3600)))
}

fn assert_clean(url: &str) {
    let r = fsck(url, ObjectCheck::Skip).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

fn errno<T>(r: kiseki_core::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error, got a success"),
        Err(e) => e.errno(),
    }
}

fn trash_usage(c: &Client) -> (u64, u64) {
    c.fs().unwrap().meta().trash_usage().unwrap()
}

#[test]
fn removed_replaced_and_truncated_files_are_kept_read_only_in_the_trash() {
    let vol = Volume::memory();
    let c = vol.connect("");
    c.mkdir("/d", 0o755).unwrap();
    let d = ino(&c, "/d");
    put(&c, "/d/a", b"alpha");
    c.link("/d/a", "/d/a2").unwrap();
    put(&c, "/d/b", b"beta");
    put(&c, "/d/c", b"gamma");
    put(&c, "/d/t", b"old content");
    c.symlink("target", "/d/s").unwrap();
    c.mkdir("/d/e", 0o700).unwrap();
    let (a, b, t, s, e) = (
        ino(&c, "/d/a"),
        ino(&c, "/d/b"),
        ino(&c, "/d/t"),
        ino(&c, "/d/s"),
        ino(&c, "/d/e"),
    );
    assert!(!c.exists("/.trash"), "no trash before the first removal");
    let open = c.open("/d/a", libc::O_RDONLY, 0).unwrap();
    // One of two links: nothing to keep.
    c.unlink("/d/a").unwrap();
    assert!(!c.exists("/.trash"));
    assert_eq!(c.stat("/d/a2").unwrap().attr.nlink, 1);
    // The last link, a file replaced by rename, the old content of O_TRUNC, a symlink,
    // an empty directory.
    c.unlink("/d/a2").unwrap();
    assert_eq!(open.fstat().unwrap().attr.nlink, 0, "POSIX: no links left");
    assert_eq!(kiseki_testkit::pread_full(&open, 0, 5).unwrap(), b"alpha");
    c.rename("/d/c", "/d/b", 0).unwrap();
    let f = c.open("/d/t", libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    f.write(b"new").unwrap();
    f.close().unwrap();
    c.unlink("/d/s").unwrap();
    c.rmdir("/d/e").unwrap();
    assert_eq!(get(&c, "/d/t"), b"new");
    assert_eq!(get(&c, "/d/b"), b"gamma");

    // `.trash` is found by name, not listed.
    assert!(c.readdir("/").unwrap().iter().all(|e| e.name != TRASH_NAME));
    let st = c.stat("/.trash").unwrap();
    assert_eq!((st.ino, st.attr.kind), (Ino::TRASH, FileKind::Dir));
    let hour = hour_dir(&c);
    assert_eq!(
        listing(&c, "/.trash").keys().collect::<Vec<_>>(),
        [&hour["/.trash/".len()..]]
    );
    let kept = listing(&c, &hour);
    let truncated = kept
        .iter()
        .find(|(n, _)| n.ends_with(&format!("-{t}.truncated")))
        .map(|(n, i)| (n.clone(), *i))
        .expect("the truncated content");
    let expected: BTreeMap<String, u64> = [
        (format!("{d}-{a}-a2"), a),
        (format!("{d}-{b}-b"), b),
        (format!("{d}-{s}-s"), s),
        (format!("{d}-{e}-e"), e),
        truncated.clone(),
    ]
    .into_iter()
    .collect();
    assert_eq!(kept, expected);
    assert_eq!(get(&c, &format!("{hour}/{d}-{a}-a2")), b"alpha");
    assert_eq!(get(&c, &format!("{hour}/{d}-{b}-b")), b"beta");
    assert_eq!(get(&c, &format!("{hour}/{}", truncated.0)), b"old content");
    assert_eq!(c.readlink(&format!("{hour}/{d}-{s}-s")).unwrap(), b"target");
    // Trash, hour directory and five entries, all counted in the usage too.
    let (space, inodes) = trash_usage(&c);
    assert_eq!(inodes, 7);
    assert!(space >= 7 * 4096, "{space}");
    assert_clean(&vol.meta_url);

    // Read-only to everyone, root included.
    let entry = format!("{hour}/{d}-{b}-b");
    assert_eq!(errno(c.open(&entry, libc::O_WRONLY, 0)), libc::EPERM);
    assert_eq!(
        errno(c.open(&entry, libc::O_RDONLY | libc::O_TRUNC, 0)),
        libc::EPERM
    );
    assert_eq!(errno(c.chmod(&entry, 0o777)), libc::EPERM);
    assert_eq!(errno(c.truncate(&entry, 0)), libc::EPERM);
    assert_eq!(
        errno(c.setxattr(&entry, b"user.x", b"1", 0, true)),
        libc::EPERM
    );
    let user = vol.connect("uid=1000,gid=1000");
    assert_eq!(errno(user.unlink(&entry)), libc::EPERM);
    assert_eq!(errno(user.rmdir(&hour)), libc::EPERM);
    user.close().unwrap();
    assert_eq!(errno(c.rename(&entry, "/d/back", 0)), libc::EPERM);
    assert_eq!(
        errno(c.rename("/d/b", &format!("{hour}/x"), 0)),
        libc::EPERM
    );
    assert_eq!(errno(c.mkdir(&format!("{hour}/x"), 0o755)), libc::EPERM);
    assert_eq!(errno(c.link("/d/b", &format!("{hour}/x"))), libc::EPERM);
    assert_eq!(errno(c.rmdir(&hour)), libc::ENOTEMPTY);
    assert_eq!(errno(c.mkdir("/.trash", 0o755)), libc::EPERM);
    assert_eq!(errno(c.rename("/d/b", "/.trash", 0)), libc::EPERM);
    // The handle opened before the removal still reads; its close keeps the inode.
    open.close().unwrap();
    assert_eq!(get(&c, &format!("{hour}/{d}-{a}-a2")), b"alpha");
    // Root removes entries from the trash for good, then the empty hour directory.
    for name in kept.keys() {
        let path = format!("{hour}/{name}");
        match c.lstat(&path).unwrap().attr.kind {
            FileKind::Dir => c.rmdir(&path).unwrap(),
            _ => c.unlink(&path).unwrap(),
        }
    }
    assert_eq!(trash_usage(&c).1, 2, "the trash and its hour directory");
    c.rmdir(&hour).unwrap();
    assert_eq!(trash_usage(&c), (4096, 1));
    c.close().unwrap();
    assert_clean(&vol.meta_url);
}

#[test]
fn restore_puts_a_removed_tree_back_and_never_overwrites() {
    let vol = Volume::memory();
    let c = vol.connect("");
    for dir in ["/p", "/p/q", "/p/q/r"] {
        c.mkdir(dir, 0o750).unwrap();
    }
    let files = [
        ("/p/g", &b"g"[..]),
        ("/p/q/r/f1", b"one"),
        ("/p/q/r/f2", b"two"),
    ];
    for (path, data) in files {
        put(&c, path, data);
    }
    put(&c, "/x", b"old x");
    let inos: Vec<u64> = ["/p", "/p/q", "/p/q/r", "/p/g", "/p/q/r/f1", "/p/q/r/f2"]
        .iter()
        .map(|p| ino(&c, p))
        .collect();
    // rm -rf: files first, then directories bottom up.
    for path in ["/p/q/r/f1", "/p/q/r/f2", "/p/g"] {
        c.unlink(path).unwrap();
    }
    for path in ["/p/q/r", "/p/q", "/p"] {
        c.rmdir(path).unwrap();
    }
    c.unlink("/x").unwrap();
    put(&c, "/x", b"new x");
    assert!(!c.exists("/p"));

    let fs = c.fs().unwrap();
    let hour = hour_dir(&c);
    let hour_ino = c.stat(&hour).unwrap().ino;
    // Not root, not the owner (root made them): refused, nothing moves.
    let user = Ctx::user(1000, 1000, vec![]);
    let r = fs.restore(&user, hour_ino).unwrap();
    assert_eq!(r.restored, 0);
    assert_eq!(r.failed.len(), 7, "{:?}", r.failed);
    assert!(
        r.failed.iter().all(|f| f.contains("owner")),
        "{:?}",
        r.failed
    );

    let r = fs.restore(&Ctx::root(), hour_ino).unwrap();
    assert_eq!(r.restored, 6, "{:?}", r.failed);
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(r.failed[0].contains("not overwritten"), "{:?}", r.failed);
    assert_eq!(get(&c, "/x"), b"new x");
    for (path, data) in files {
        assert_eq!(get(&c, path), data, "{path}");
    }
    let back: Vec<u64> = ["/p", "/p/q", "/p/q/r", "/p/g", "/p/q/r/f1", "/p/q/r/f2"]
        .iter()
        .map(|p| ino(&c, p))
        .collect();
    assert_eq!(back, inos, "the same inodes come back");
    let st = c.stat("/p/q").unwrap().attr;
    assert_eq!((st.nlink, st.mode & 0o7777), (3, 0o750));
    assert_eq!(c.stat("/p/g").unwrap().attr.nlink, 1);
    assert_clean(&vol.meta_url);

    // The old /x comes back once its name is free, restored by itself.
    c.unlink("/x").unwrap();
    let kept = listing(&c, &hour);
    assert_eq!(kept.len(), 2, "{kept:?}");
    let old_x = kept
        .iter()
        .find(|(name, _)| get(&c, &format!("{hour}/{name}")) == b"old x")
        .map(|(_, i)| Ino(*i))
        .expect("the old /x in the trash");
    let r = fs.restore(&Ctx::root(), old_x).unwrap();
    assert_eq!((r.restored, r.failed.len()), (1, 0), "{:?}", r.failed);
    assert_eq!(get(&c, "/x"), b"old x");

    // The content O_TRUNC replaced comes back into its file while nothing was written
    // since; after a write it is refused.
    put(&c, "/t", b"before");
    let t = ino(&c, "/t");
    c.open("/t", libc::O_WRONLY | libc::O_TRUNC, 0)
        .unwrap()
        .close()
        .unwrap();
    let content = |c: &Client| {
        listing(c, &hour_dir(c))
            .into_iter()
            .find(|(n, _)| n.ends_with(&format!("-{t}.truncated")))
            .map(|(_, i)| Ino(i))
            .expect("kept content")
    };
    let r = fs.restore(&Ctx::root(), content(&c)).unwrap();
    assert_eq!((r.restored, r.failed.len()), (1, 0), "{:?}", r.failed);
    assert_eq!(get(&c, "/t"), b"before");
    put(&c, "/t", b"after");
    let r = fs.restore(&Ctx::root(), content(&c)).unwrap();
    assert_eq!(r.restored, 0);
    assert!(r.failed[0].contains("written after"), "{:?}", r.failed);
    assert_eq!(get(&c, "/t"), b"after");
    // The trash itself and what is not in it are refused.
    assert_eq!(errno(fs.restore(&Ctx::root(), Ino::TRASH)), libc::EINVAL);
    assert_eq!(
        errno(fs.restore(&Ctx::root(), Ino(ino(&c, "/t")))),
        libc::EINVAL
    );
    c.close().unwrap();
    assert_clean(&vol.meta_url);
}

#[test]
fn expiry_releases_old_hours_from_one_client_at_a_time() {
    let vol = Volume::memory();
    let (c1, c2) = (vol.connect(""), vol.connect(""));
    for i in 0..10 {
        put(&c1, &format!("/f{i}"), &kiseki_testkit::pattern(i, 100_000));
        c1.unlink(&format!("/f{i}")).unwrap();
    }
    let before = trash_usage(&c1);
    assert_eq!(before.1, 12);
    let (m1, m2) = (
        c1.fs().unwrap().meta().clone(),
        c2.fs().unwrap().meta().clone(),
    );
    // Not due yet: nothing has expired, but the first claim of a volume runs.
    assert!(m1.claim_trash_cleanup().unwrap());
    assert_eq!(m1.expire_trash().unwrap(), 0);
    assert_eq!(trash_usage(&c1), before);
    // A day and an hour later, for both clients: one claim wins the interval.
    for m in [&m1, &m2] {
        m.config().clock.advance(25 * 3600 + 60);
    }
    // Removed now: kept, in this (later) hour.
    put(&c2, "/late", b"late");
    c2.unlink("/late").unwrap();
    assert!(m2.claim_trash_cleanup().unwrap());
    assert!(
        !m1.claim_trash_cleanup().unwrap(),
        "claimed by the other client"
    );
    assert_eq!(m2.expire_trash().unwrap(), 10);
    let hours = listing(&c2, "/.trash");
    assert_eq!(hours.len(), 1, "{hours:?}");
    assert_eq!(listing(&c2, &hour_dir(&c2)).len(), 1);
    assert_eq!(trash_usage(&c2).1, 3, "trash, one hour, one entry");
    assert_clean(&vol.meta_url);
    c1.close().unwrap();
    c2.close().unwrap();
}

#[test]
fn the_heartbeat_empties_the_trash_when_it_is_turned_off() {
    let vol = Volume::memory();
    let c = vol.connect("");
    put(&c, "/f", b"data");
    c.unlink("/f").unwrap();
    c.close().unwrap();
    let changes = kiseki_core::meta::format::Changes {
        trash_days: Some(0),
        ..Default::default()
    };
    kiseki_core::admin::config(&vol.meta_url, &changes).unwrap();
    // The job runs from the heartbeat (every second with this session ttl), in the
    // client that claims it: every entry goes, the current hour's too. (The hour's
    // directory stays until that hour has been over for an hour.)
    let c = vol.connect("session-ttl=3");
    let hour = hour_dir(&c);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while trash_usage(&c).1 > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        trash_usage(&c).1,
        2,
        "the trash and its hour directory are left"
    );
    assert!(listing(&c, &hour).is_empty());
    // No trash any more: a removal keeps nothing.
    put(&c, "/g", b"data");
    c.unlink("/g").unwrap();
    assert_eq!(trash_usage(&c).1, 2);
    c.close().unwrap();
    assert_clean(&vol.meta_url);
}

#[test]
fn a_volume_formatted_without_a_trash_keeps_nothing() {
    let vol = Volume::memory_with(|o| {
        o.block_size = 64 << 10;
        o.trash_days = 0;
    });
    let c = vol.connect("");
    put(&c, "/f", b"data");
    c.unlink("/f").unwrap();
    c.mkdir("/d", 0o755).unwrap();
    c.rmdir("/d").unwrap();
    assert!(!c.exists("/.trash"));
    assert_eq!(trash_usage(&c), (0, 0));
    c.close().unwrap();
    assert_clean(&vol.meta_url);
}
