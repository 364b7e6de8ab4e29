//! Behaviour of the namespace operations, one POSIX rule per test.

use std::sync::Arc;

use crate::meta::types::*;
use crate::meta::{Error, FormatOptions, Meta, MetaConfig, MAY_EXEC, MAY_READ, MAY_WRITE};

fn volume() -> Arc<Meta> {
    volume_with_trash(1)
}

/// The tests of how a removal releases an inode use a volume without a trash, which
/// would keep it (the trash: `tests/api/trash.rs`).
fn volume_with_trash(days: u32) -> Arc<Meta> {
    let kv = crate::meta::kv::memory::MemoryKv::new();
    let mut o = FormatOptions::new("tt");
    o.storage = "memory".into();
    o.trash_days = days;
    crate::meta::format::format(&*kv, &o).unwrap();
    Meta::with_engine(kv, MetaConfig::default()).unwrap()
}

fn root() -> Ctx {
    Ctx::root()
}

fn user(uid: u32) -> Ctx {
    Ctx::user(uid, uid, vec![])
}

fn errno<T: std::fmt::Debug>(r: Result<T, Error>) -> i32 {
    r.expect_err("operation should fail").errno()
}

fn mkfile(m: &Meta, ctx: &Ctx, parent: Ino, name: &str, mode: u16) -> Entry {
    let (e, created) = m
        .create(
            ctx,
            parent,
            name.as_bytes(),
            mode,
            0,
            libc::O_EXCL | libc::O_WRONLY,
        )
        .unwrap();
    assert!(created);
    m.close_file(e.ino).unwrap();
    e
}

fn assert_clean(m: &Meta) {
    let r = m.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

#[test]
fn names_are_validated_everywhere() {
    let m = volume();
    let long = vec![b'x'; 256];
    let ok = vec![b'x'; 255];
    let r = root();
    assert_eq!(
        errno(m.create(&r, Ino::ROOT, &long, 0o644, 0, libc::O_CREAT)),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(m.mkdir(&r, Ino::ROOT, &long, 0o755, 0)),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(m.unlink(&r, Ino::ROOT, &long)), libc::ENAMETOOLONG);
    assert_eq!(errno(m.rmdir(&r, Ino::ROOT, &long)), libc::ENAMETOOLONG);
    assert_eq!(errno(m.lookup(&r, Ino::ROOT, &long)), libc::ENAMETOOLONG);
    assert_eq!(
        errno(m.symlink(&r, Ino::ROOT, &long, b"t")),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"a", Ino::ROOT, &long, 0)),
        libc::ENAMETOOLONG
    );
    mkfile(&m, &r, Ino::ROOT, std::str::from_utf8(&ok).unwrap(), 0o644);
    assert_eq!(
        errno(m.link(
            &r,
            m.lookup(&r, Ino::ROOT, &ok).unwrap().ino,
            Ino::ROOT,
            &long
        )),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(m.mkdir(&r, Ino::ROOT, b"a/b", 0o755, 0)),
        libc::EINVAL
    );
    assert_eq!(errno(m.mkdir(&r, Ino::ROOT, b"", 0o755, 0)), libc::EINVAL);
    assert_eq!(errno(m.mkdir(&r, Ino::ROOT, b".", 0o755, 0)), libc::EEXIST);
    assert_eq!(errno(m.rmdir(&r, Ino::ROOT, b".")), libc::EINVAL);
    assert_eq!(errno(m.rmdir(&r, Ino::ROOT, b"..")), libc::ENOTEMPTY);
    let long_target = vec![b't'; 4097];
    assert_eq!(
        errno(m.symlink(&r, Ino::ROOT, b"l", &long_target)),
        libc::ENAMETOOLONG
    );
    let e = m
        .symlink(&r, Ino::ROOT, b"l", &long_target[..4096])
        .unwrap();
    assert_eq!(m.readlink(e.ino).unwrap().len(), 4096);
    assert_eq!(e.attr.length, 4096);
    assert_clean(&m);
}

#[test]
fn create_exclusive_and_open_existing() {
    let m = volume();
    let r = root();
    let f = mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    assert_eq!(
        errno(m.create(&r, Ino::ROOT, b"f", 0o644, 0, libc::O_EXCL)),
        libc::EEXIST
    );
    let (e, created) = m
        .create(&r, Ino::ROOT, b"f", 0o600, 0, libc::O_RDWR)
        .unwrap();
    assert!(!created);
    assert_eq!((e.ino, e.attr.mode), (f.ino, 0o644));
    m.close_file(e.ino).unwrap();
    m.mkdir(&r, Ino::ROOT, b"d", 0o755, 0).unwrap();
    assert_eq!(
        errno(m.create(&r, Ino::ROOT, b"d", 0o644, 0, libc::O_RDWR)),
        libc::EISDIR
    );
    assert_eq!(
        errno(m.create(&r, Ino::ROOT, b"g", 0o644, 0, 0x4000_0000)),
        libc::EINVAL
    );
    assert_eq!(errno(m.close_file(f.ino)), libc::EBADF);
}

#[test]
fn umask_and_special_files() {
    let m = volume();
    let r = root();
    let d = m.mkdir(&r, Ino::ROOT, b"d", 0o777, 0o022).unwrap();
    assert_eq!(d.attr.mode, 0o755);
    assert_eq!(d.attr.nlink, 2);
    assert_eq!(m.getattr(Ino::ROOT).unwrap().nlink, 3);
    let fifo = m
        .mknod(&r, Ino::ROOT, b"p", libc::S_IFIFO | 0o666, 0o022, 0)
        .unwrap();
    assert_eq!((fifo.attr.kind, fifo.attr.mode), (FileKind::Fifo, 0o644));
    let dev = m
        .mknod(&r, Ino::ROOT, b"c", libc::S_IFCHR | 0o600, 0, 0x0103)
        .unwrap();
    assert_eq!((dev.attr.kind, dev.attr.rdev), (FileKind::CharDev, 0x0103));
    m.mknod(&r, Ino::ROOT, b"s", libc::S_IFSOCK | 0o600, 0, 0)
        .unwrap();
    m.mknod(&r, Ino::ROOT, b"b", libc::S_IFBLK | 0o600, 0, 7)
        .unwrap();
    assert_eq!(
        m.mknod(&r, Ino::ROOT, b"r", 0o600, 0, 0).unwrap().attr.kind,
        FileKind::File
    );
    assert_eq!(
        errno(m.mknod(&r, Ino::ROOT, b"x", libc::S_IFDIR | 0o600, 0, 0)),
        libc::EINVAL
    );
    m.setattr(
        &r,
        Ino::ROOT,
        &SetAttr {
            mode: Some(0o777),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        errno(m.mknod(&user(5), Ino::ROOT, b"y", libc::S_IFCHR | 0o600, 0, 1)),
        libc::EPERM
    );
    assert_clean(&m);
}

#[test]
fn directory_permissions_are_enforced() {
    let m = volume();
    let r = root();
    let d = m.mkdir(&r, Ino::ROOT, b"d", 0o755, 0).unwrap();
    let alice = user(1000);
    assert_eq!(errno(m.mkdir(&alice, d.ino, b"x", 0o755, 0)), libc::EACCES);
    assert_eq!(
        errno(m.create(&alice, d.ino, b"x", 0o644, 0, libc::O_CREAT)),
        libc::EACCES
    );
    m.setattr(
        &r,
        d.ino,
        &SetAttr {
            mode: Some(0o700),
            ..Default::default()
        },
    )
    .unwrap();
    mkfile(&m, &r, d.ino, "f", 0o644);
    assert_eq!(errno(m.lookup(&alice, d.ino, b"f")), libc::EACCES);
    // Supplementary group membership grants the group class.
    m.setattr(
        &r,
        d.ino,
        &SetAttr {
            gid: Some(50),
            mode: Some(0o770),
            ..Default::default()
        },
    )
    .unwrap();
    let member = Ctx::user(1000, 1000, vec![7, 50]);
    m.lookup(&member, d.ino, b"f").unwrap();
    mkfile(&m, &member, d.ino, "g", 0o600);
    let g = m.lookup(&member, d.ino, b"g").unwrap();
    assert_eq!((g.attr.uid, g.attr.gid), (1000, 1000));
    assert_eq!(
        errno(m.open_file(&user(1001), g.ino, libc::O_RDONLY)),
        libc::EACCES
    );
    m.open_file(&member, g.ino, libc::O_RDWR).unwrap();
    m.close_file(g.ino).unwrap();
    assert_eq!(errno(m.open_file(&r, d.ino, libc::O_WRONLY)), libc::EISDIR);
    m.access(&member, g.ino, MAY_READ | MAY_WRITE).unwrap();
    assert_eq!(errno(m.access(&member, g.ino, MAY_EXEC)), libc::EACCES);
    assert_eq!(errno(m.access(&member, g.ino, 8)), libc::EINVAL);
}

#[test]
fn sticky_directories_protect_other_users_entries() {
    let m = volume();
    let r = root();
    let tmp = m.mkdir(&r, Ino::ROOT, b"tmp", 0o1777, 0).unwrap();
    let (alice, bob) = (user(1000), user(1001));
    mkfile(&m, &alice, tmp.ino, "a", 0o666);
    assert_eq!(errno(m.unlink(&bob, tmp.ino, b"a")), libc::EPERM);
    assert_eq!(
        errno(m.rename(&bob, tmp.ino, b"a", tmp.ino, b"b", 0)),
        libc::EPERM
    );
    mkfile(&m, &bob, tmp.ino, "b", 0o666);
    assert_eq!(
        errno(m.rename(&bob, tmp.ino, b"b", tmp.ino, b"a", 0)),
        libc::EPERM
    );
    m.unlink(&alice, tmp.ino, b"a").unwrap();
    m.unlink(&r, tmp.ino, b"b").unwrap();
    assert_clean(&m);
}

#[test]
fn setgid_directories_pass_their_group_down() {
    let m = volume();
    let r = root();
    let d = m.mkdir(&r, Ino::ROOT, b"shared", 0o777, 0).unwrap();
    m.setattr(
        &r,
        d.ino,
        &SetAttr {
            gid: Some(77),
            mode: Some(0o2777),
            ..Default::default()
        },
    )
    .unwrap();
    let alice = user(1000);
    let f = mkfile(&m, &alice, d.ino, "f", 0o644);
    assert_eq!(f.attr.gid, 77);
    let sub = m.mkdir(&alice, d.ino, b"sub", 0o755, 0).unwrap();
    assert_eq!((sub.attr.gid, sub.attr.mode), (77, 0o2755));
    // Outside a setgid directory, a non-member cannot create a setgid executable.
    let plain = m.mkdir(&r, Ino::ROOT, b"plain", 0o777, 0).unwrap();
    let (e, _) = m
        .create(
            &alice,
            plain.ino,
            b"x",
            0o2755,
            0,
            libc::O_CREAT | libc::O_EXCL,
        )
        .unwrap();
    m.close_file(e.ino).unwrap();
    assert_eq!(e.attr.mode, 0o2755, "own primary group: setgid kept");
    m.setattr(
        &r,
        plain.ino,
        &SetAttr {
            gid: Some(88),
            mode: Some(0o2777),
            ..Default::default()
        },
    )
    .unwrap();
    let (e, _) = m
        .create(
            &alice,
            plain.ino,
            b"y",
            0o2755,
            0,
            libc::O_CREAT | libc::O_EXCL,
        )
        .unwrap();
    m.close_file(e.ino).unwrap();
    assert_eq!((e.attr.gid, e.attr.mode), (88, 0o2755));
}

#[test]
fn suid_is_cleared_on_write_and_chown() {
    let m = volume();
    let r = root();
    m.setattr(
        &r,
        Ino::ROOT,
        &SetAttr {
            mode: Some(0o777),
            ..Default::default()
        },
    )
    .unwrap();
    let alice = user(1000);
    let f = mkfile(&m, &alice, Ino::ROOT, "f", 0o6755);
    let a = m
        .setattr(
            &alice,
            f.ino,
            &SetAttr {
                kill_suid: true,
                via_handle: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.mode, 0o755);
    m.setattr(
        &alice,
        f.ino,
        &SetAttr {
            mode: Some(0o4755),
            ..Default::default()
        },
    )
    .unwrap();
    let a = m
        .setattr(
            &alice,
            f.ino,
            &SetAttr {
                gid: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.mode, 0o755);
    assert_eq!(
        errno(m.setattr(
            &user(1001),
            f.ino,
            &SetAttr {
                mode: Some(0o777),
                ..Default::default()
            }
        )),
        libc::EPERM
    );
}

#[test]
fn times_follow_now_omit_and_ctime_rules() {
    let m = volume();
    let r = root();
    let f = mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    let t = Timespec {
        sec: 1_000_000,
        nsec: 123,
    };
    let a = m
        .setattr(
            &r,
            f.ino,
            &SetAttr {
                mtime: Some(TimeSet::At(t)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.mtime, t);
    assert_eq!(a.atime, f.attr.atime, "omitted atime unchanged");
    assert!(a.ctime >= f.attr.ctime);
    let b = m
        .setattr(
            &r,
            f.ino,
            &SetAttr {
                atime: Some(TimeSet::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(b.atime > t);
    assert_eq!(b.mtime, t);
    // Creating an entry updates the parent's mtime and ctime.
    let before = m.getattr(Ino::ROOT).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    mkfile(&m, &r, Ino::ROOT, "g", 0o644);
    let after = m.getattr(Ino::ROOT).unwrap();
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
}

#[test]
fn truncate_adjusts_space_and_checks_permission() {
    let m = volume();
    let r = root();
    let f = mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    let used = m.statfs().unwrap();
    let a = m
        .setattr(
            &r,
            f.ino,
            &SetAttr {
                size: Some(10_000),
                ..Default::default()
            },
        )
        .unwrap();
    let grown = m.statfs().unwrap();
    // Growing by truncate adds a hole: no data, no space, no blocks.
    assert_eq!(a.length, 10_000);
    assert_eq!(a.blocks(), 0);
    assert_eq!(
        grown.total_space - grown.avail_space,
        used.total_space - used.avail_space
    );
    assert_eq!(
        errno(m.setattr(
            &user(5),
            f.ino,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        )),
        libc::EACCES
    );
    assert_eq!(
        errno(m.setattr(
            &r,
            f.ino,
            &SetAttr {
                size: Some(MAX_FILE_SIZE + 1),
                ..Default::default()
            }
        )),
        libc::EFBIG
    );
    assert_clean(&m);
}

#[test]
fn rmdir_and_unlink_rules() {
    let m = volume_with_trash(0);
    let r = root();
    let d = m.mkdir(&r, Ino::ROOT, b"d", 0o755, 0).unwrap();
    mkfile(&m, &r, d.ino, "f", 0o644);
    assert_eq!(errno(m.rmdir(&r, Ino::ROOT, b"d")), libc::ENOTEMPTY);
    assert_eq!(errno(m.unlink(&r, Ino::ROOT, b"d")), libc::EISDIR);
    assert_eq!(errno(m.rmdir(&r, d.ino, b"f")), libc::ENOTDIR);
    assert_eq!(errno(m.unlink(&r, Ino::ROOT, b"nope")), libc::ENOENT);
    m.unlink(&r, d.ino, b"f").unwrap();
    m.rmdir(&r, Ino::ROOT, b"d").unwrap();
    assert_eq!(m.getattr(Ino::ROOT).unwrap().nlink, 2);
    assert_eq!(errno(m.getattr(d.ino)), libc::ENOENT);
    assert_eq!(errno(m.mkdir(&r, d.ino, b"x", 0o755, 0)), libc::ENOENT);
    assert_clean(&m);
}

#[test]
fn rename_flags_and_directory_rules() {
    let m = volume_with_trash(0);
    let r = root();
    let a = m.mkdir(&r, Ino::ROOT, b"a", 0o755, 0).unwrap();
    let b = m.mkdir(&r, a.ino, b"b", 0o755, 0).unwrap();
    mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    mkfile(&m, &r, Ino::ROOT, "g", 0o644);
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"a", b.ino, b"x", 0)),
        libc::EINVAL
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"a", a.ino, b"x", 0)),
        libc::EINVAL
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"g", RENAME_NOREPLACE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"h", RENAME_EXCHANGE)),
        libc::ENOENT
    );
    assert_eq!(
        errno(m.rename(
            &r,
            Ino::ROOT,
            b"f",
            Ino::ROOT,
            b"g",
            RENAME_EXCHANGE | RENAME_NOREPLACE
        )),
        libc::EINVAL
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"g", RENAME_WHITEOUT)),
        libc::EINVAL
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"g", 64)),
        libc::EINVAL
    );
    assert_eq!(
        errno(m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"a", 0)),
        libc::EISDIR
    );
    assert_eq!(
        errno(m.rename(&r, a.ino, b"b", Ino::ROOT, b"f", 0)),
        libc::ENOTDIR
    );
    let f = m.lookup(&r, Ino::ROOT, b"f").unwrap();
    let g = m.lookup(&r, Ino::ROOT, b"g").unwrap();
    m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"g", RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(m.lookup(&r, Ino::ROOT, b"f").unwrap().ino, g.ino);
    assert_eq!(m.lookup(&r, Ino::ROOT, b"g").unwrap().ino, f.ino);
    // Moving a directory moves a link from the old parent to the new one.
    m.rename(&r, a.ino, b"b", Ino::ROOT, b"b", 0).unwrap();
    assert_eq!(m.getattr(a.ino).unwrap().nlink, 2);
    assert_eq!(m.getattr(Ino::ROOT).unwrap().nlink, 4);
    assert_eq!(m.lookup(&r, b.ino, b"..").unwrap().ino, Ino::ROOT);
    // Atomic replace of a file releases the old inode.
    m.rename(&r, Ino::ROOT, b"f", Ino::ROOT, b"g", 0).unwrap();
    assert_eq!(errno(m.getattr(f.ino)), libc::ENOENT);
    assert_eq!(m.lookup(&r, Ino::ROOT, b"g").unwrap().ino, g.ino);
    assert_clean(&m);
}

#[test]
fn hard_links_count_and_refuse_directories() {
    let m = volume();
    let r = root();
    let f = mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    let e = m.link(&r, f.ino, Ino::ROOT, b"g").unwrap();
    assert_eq!(e.attr.nlink, 2);
    assert_eq!(errno(m.link(&r, f.ino, Ino::ROOT, b"g")), libc::EEXIST);
    let d = m.mkdir(&r, Ino::ROOT, b"d", 0o755, 0).unwrap();
    assert_eq!(errno(m.link(&r, d.ino, Ino::ROOT, b"e")), libc::EPERM);
    m.unlink(&r, Ino::ROOT, b"f").unwrap();
    assert_eq!(m.getattr(f.ino).unwrap().nlink, 1);
    assert_clean(&m);
}

#[test]
fn open_unlinked_file_lives_until_last_close() {
    let m = volume_with_trash(0);
    let r = root();
    let f = mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    m.setattr(
        &r,
        f.ino,
        &SetAttr {
            size: Some(5000),
            ..Default::default()
        },
    )
    .unwrap();
    m.open_file(&r, f.ino, libc::O_RDONLY).unwrap();
    m.open_file(&r, f.ino, libc::O_RDONLY).unwrap();
    m.unlink(&r, Ino::ROOT, b"f").unwrap();
    assert_eq!(errno(m.lookup(&r, Ino::ROOT, b"f")), libc::ENOENT);
    let a = m.getattr(f.ino).unwrap();
    assert_eq!((a.nlink, a.length), (0, 5000));
    assert_eq!(errno(m.link(&r, f.ino, Ino::ROOT, b"back")), libc::ENOENT);
    assert_clean(&m);
    m.close_file(f.ino).unwrap();
    m.getattr(f.ino).unwrap();
    m.close_file(f.ino).unwrap();
    assert_eq!(errno(m.getattr(f.ino)), libc::ENOENT);
    let report = m.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        report.pending_deletions, 1,
        "the file's data is queued for deletion"
    );
    assert_eq!(report.inodes, 1);
}

#[test]
fn dead_sessions_release_their_open_unlinked_inodes() {
    let kv = crate::meta::kv::memory::MemoryKv::new();
    let mut o = FormatOptions::new("tt");
    o.storage = "memory".into();
    o.trash_days = 0;
    crate::meta::format::format(&*kv, &o).unwrap();
    let short = MetaConfig {
        session_ttl: std::time::Duration::from_secs(0),
        ..Default::default()
    };
    let a = Meta::with_engine(kv.clone(), short).unwrap();
    let r = root();
    let f = mkfile(&a, &r, Ino::ROOT, "f", 0o644);
    a.open_file(&r, f.ino, libc::O_RDONLY).unwrap();
    a.unlink(&r, Ino::ROOT, b"f").unwrap();
    // Client A "dies": no more heartbeats, no cleanup, its session record stays.
    a.simulate_crash();
    drop(a);
    // B's clock is two seconds ahead: A's session has expired for it, no sleep needed.
    let later = crate::meta::Clock::default();
    later.advance(2);
    let b = Meta::with_engine(
        kv,
        MetaConfig {
            clock: later,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(errno(b.getattr(f.ino)), libc::ENOENT);
    assert_eq!(b.sessions().unwrap().len(), 1);
    assert_clean(&b);
}

#[test]
fn readdir_cookies_survive_concurrent_changes() {
    let m = volume();
    let r = root();
    for i in 0..20 {
        mkfile(&m, &r, Ino::ROOT, &format!("f{i:02}"), 0o644);
    }
    let first = m.readdir(Ino::ROOT, 0, 7, false).unwrap();
    assert_eq!(first[0].name, b".");
    assert_eq!(first[1].name, b"..");
    let mut seen: Vec<Vec<u8>> = first[2..].iter().map(|e| e.name.clone()).collect();
    // Remove an entry already returned and one not yet returned, add a new one.
    m.unlink(&r, Ino::ROOT, &seen[0]).unwrap();
    m.unlink(&r, Ino::ROOT, b"f15").unwrap();
    mkfile(&m, &r, Ino::ROOT, "new", 0o644);
    let mut offset = first.last().unwrap().offset;
    loop {
        let page = m.readdir(Ino::ROOT, offset, 4, true).unwrap();
        let Some(last) = page.last() else { break };
        offset = last.offset;
        for e in page {
            assert!(e.attr.is_some());
            seen.push(e.name);
        }
    }
    let mut expected: Vec<Vec<u8>> = (0..20)
        .filter(|&i| i != 15)
        .map(|i| format!("f{i:02}").into_bytes())
        .collect();
    expected.push(b"new".to_vec());
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "nothing skipped, nothing repeated");
    let new = m.lookup(&r, Ino::ROOT, b"new").unwrap();
    assert_eq!(errno(m.readdir(new.ino, 0, 10, false)), libc::ENOTDIR);
}

#[test]
fn xattr_flags_limits_and_namespaces() {
    let m = volume();
    let r = root();
    let f = mkfile(&m, &r, Ino::ROOT, "f", 0o644);
    m.setxattr(&r, f.ino, b"user.a", b"1", XATTR_CREATE)
        .unwrap();
    assert_eq!(
        errno(m.setxattr(&r, f.ino, b"user.a", b"2", XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(m.setxattr(&r, f.ino, b"user.b", b"2", XATTR_REPLACE)),
        libc::ENODATA
    );
    assert_eq!(
        errno(m.setxattr(&r, f.ino, b"user.b", b"2", 3)),
        libc::EINVAL
    );
    m.setxattr(&r, f.ino, b"user.a", b"3", XATTR_REPLACE)
        .unwrap();
    assert_eq!(m.getxattr(&r, f.ino, b"user.a").unwrap(), b"3");
    assert_eq!(errno(m.getxattr(&r, f.ino, b"user.zz")), libc::ENODATA);
    assert_eq!(
        errno(m.setxattr(&r, f.ino, b"weird.a", b"", 0)),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(m.setxattr(&r, f.ino, &[b'u'; 256], b"", 0)),
        libc::ERANGE
    );
    assert_eq!(
        errno(m.setxattr(&r, f.ino, b"user.big", &vec![0; 65537], 0)),
        libc::E2BIG
    );
    m.setxattr(&r, f.ino, b"user.max", &vec![7; 65536], 0)
        .unwrap();
    m.setxattr(&r, f.ino, b"trusted.t", b"x", 0).unwrap();
    let alice = user(1000);
    assert_eq!(
        errno(m.getxattr(&alice, f.ino, b"trusted.t")),
        libc::ENODATA
    );
    assert_eq!(
        errno(m.setxattr(&alice, f.ino, b"user.a", b"", 0)),
        libc::EACCES
    );
    assert_eq!(
        m.listxattr(&alice, f.ino).unwrap(),
        vec![b"user.a".to_vec(), b"user.max".to_vec()]
    );
    assert_eq!(m.listxattr(&r, f.ino).unwrap().len(), 3);
    m.removexattr(&r, f.ino, b"user.a").unwrap();
    assert_eq!(errno(m.removexattr(&r, f.ino, b"user.a")), libc::ENODATA);
    let l = m.symlink(&r, Ino::ROOT, b"l", b"f").unwrap();
    assert_eq!(errno(m.setxattr(&r, l.ino, b"user.a", b"", 0)), libc::EPERM);
    m.unlink(&r, Ino::ROOT, b"f").unwrap();
    assert_clean(&m);
}

#[test]
fn counters_stay_exact_and_statfs_reports_them() {
    let m = volume();
    let r = root();
    let s0 = m.statfs().unwrap();
    assert_eq!(s0.used_inodes, 1);
    let d = m.mkdir(&r, Ino::ROOT, b"d", 0o755, 0).unwrap();
    for i in 0..40 {
        mkfile(&m, &r, d.ino, &format!("{i}"), 0o644);
    }
    m.symlink(&r, d.ino, b"l", b"target").unwrap();
    let s1 = m.statfs().unwrap();
    assert_eq!(s1.used_inodes, 43);
    let report = m.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        report.counted_space,
        (s1.total_space - s1.avail_space) as i64
    );
}

#[test]
fn concurrent_creates_in_one_directory_all_land() {
    let m = volume();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    mkfile(&m, &Ctx::root(), Ino::ROOT, &format!("t{t}-{i}"), 0o644);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(m.readdir(Ino::ROOT, 0, 1000, false).unwrap().len(), 202);
    assert_clean(&m);
}

#[test]
fn read_only_clients_refuse_changes() {
    let kv = crate::meta::kv::memory::MemoryKv::new();
    let mut o = FormatOptions::new("tt");
    o.storage = "memory".into();
    crate::meta::format::format(&*kv, &o).unwrap();
    let ro = Meta::with_engine(
        kv,
        MetaConfig {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        errno(ro.mkdir(&root(), Ino::ROOT, b"d", 0o755, 0)),
        libc::EROFS
    );
    assert_eq!(
        errno(ro.open_file(&root(), Ino::ROOT, libc::O_RDWR | libc::O_DIRECTORY)),
        libc::EROFS
    );
    ro.readdir(Ino::ROOT, 0, 10, true).unwrap();
}
