//! Clone by metadata: a tree of every kind of entry copied without a byte of data, the
//! two sides independent afterwards, shared slices counted so that fsck stays clean and
//! removing either side leaves the other whole; the refusals (existing name, a tree
//! into itself, unreadable sources, unwritable destinations).

use kiseki_core::admin::{fsck, ObjectCheck};
use kiseki_core::meta::CHUNK_SIZE;
use kiseki_core::vfs::Client;
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{errno, pattern, read_all, write_all};

fn get(c: &Client, path: &str) -> Vec<u8> {
    read_all(c, path).unwrap()
}

fn assert_clean(url: &str) {
    let r = fsck(url, ObjectCheck::Skip).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

fn pwrite(c: &Client, path: &str, data: &[u8], off: u64) {
    let f = c.open(path, libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap();
    f.pwrite(data, off).unwrap();
    f.close().unwrap();
}

/// Bytes the volume's usage counts.
fn used(c: &Client) -> u64 {
    let s = c.statvfs().unwrap();
    s.total_space - s.avail_space
}

fn run_deletions(c: &Client) {
    kiseki_core::runtime::block_on(c.fs().unwrap().data().run_deletions()).unwrap();
}

#[test]
fn a_cloned_tree_reads_the_same_and_each_side_changes_alone() {
    let vol = Volume::memory_with(|o| o.trash_days = 0);
    let c = vol.connect("");
    c.mkdir("/src", 0o755).unwrap();
    c.mkdir("/src/sub", 0o750).unwrap();
    c.mkdir("/src/sub/empty", 0o700).unwrap();
    let big = pattern(1, 3 << 20);
    write_all(&c, "/src/big", &big);
    write_all(&c, "/src/small", b"inline bytes");
    write_all(&c, "/src/sub/deep", &pattern(2, 100_000));
    // Sparse, over many chunks: more records than one transaction copies.
    for i in 0..200u64 {
        pwrite(&c, "/src/sparse", &[i as u8 + 1], i * CHUNK_SIZE + i);
    }
    c.link("/src/small", "/src/small-link").unwrap();
    c.symlink("sub/deep", "/src/sym").unwrap();
    c.mknod("/src/fifo", libc::S_IFIFO | 0o640, 0).unwrap();
    c.setxattr("/src/big", b"user.tag", b"v1", 0, true).unwrap();
    c.chmod("/src/small", 0o4755).unwrap();
    let before = used(&c);

    let done = c.clone_tree("/src", "/dst", false).unwrap();
    assert_eq!(done.entries, 10, "every entry, hard links cloned as files");
    // Charged as a copy: everything under /src once more, and the hard-linked file
    // twice, now two files (its 4 KiB unit on top of the root's).
    assert_eq!(used(&c) - before, before, "charged as a copy");
    assert_eq!(get(&c, "/dst/big"), big);
    assert_eq!(get(&c, "/dst/small"), b"inline bytes");
    assert_eq!(get(&c, "/dst/small-link"), b"inline bytes");
    assert_eq!(get(&c, "/dst/sub/deep"), pattern(2, 100_000));
    assert_eq!(c.readlink("/dst/sym").unwrap(), b"sub/deep");
    assert_eq!(get(&c, "/dst/sym"), pattern(2, 100_000));
    assert!(c.readdir("/dst/sub/empty").unwrap().len() == 2);
    assert_eq!(c.lstat("/dst/fifo").unwrap().attr.mode, 0o640);
    assert_eq!(c.getxattr("/dst/big", b"user.tag", true).unwrap(), b"v1");
    assert_eq!(c.lstat("/dst/sub").unwrap().attr.mode, 0o750);
    assert_eq!(c.lstat("/dst/small").unwrap().attr.mode, 0o755, "no setuid");
    assert_eq!(c.lstat("/dst/small").unwrap().attr.nlink, 1);
    let sparse = c.lstat("/src/sparse").unwrap().attr;
    let copy = c.lstat("/dst/sparse").unwrap().attr;
    assert_eq!(copy.length, sparse.length);
    assert_eq!(copy.stored, sparse.stored);
    let f = c.open("/dst/sparse", libc::O_RDONLY, 0).unwrap();
    for i in [0u64, 1, 79, 80, 150, 199] {
        let mut b = [0u8; 2];
        f.pread(&mut b, i * CHUNK_SIZE + i).unwrap();
        assert_eq!(b, [i as u8 + 1, 0], "chunk {i}");
    }
    f.close().unwrap();
    assert_clean(&vol.meta_url);

    // Writes show only on the side written.
    pwrite(&c, "/dst/big", b"CLONE", 10);
    pwrite(&c, "/src/sub/deep", b"SOURCE", 0);
    c.truncate("/src/small", 3).unwrap();
    assert_eq!(
        &get(&c, "/dst/big")[..20],
        &{
            let mut b = big[..20].to_vec();
            b[10..15].copy_from_slice(b"CLONE");
            b
        }[..]
    );
    assert_eq!(get(&c, "/src/big"), big);
    assert_eq!(get(&c, "/dst/sub/deep"), pattern(2, 100_000));
    assert_eq!(get(&c, "/dst/small"), b"inline bytes");
    assert_clean(&vol.meta_url);

    // Either side outlives the other: the source removed, the clone reads whole.
    kiseki_testkit::remove_tree(&c, "/src");
    run_deletions(&c);
    assert_eq!(get(&c, "/dst/small"), b"inline bytes");
    assert_eq!(get(&c, "/dst/sub/deep"), pattern(2, 100_000));
    assert_clean(&vol.meta_url);
    kiseki_testkit::remove_tree(&c, "/dst");
    run_deletions(&c);
    assert_eq!(used(&c), 4096, "everything released but the root");
    assert_clean(&vol.meta_url);
    c.close().unwrap();
}

#[test]
fn clone_refuses_what_cp_would_and_keeps_owners_only_when_asked() {
    let vol = Volume::memory();
    let c = vol.connect("");
    c.mkdir("/d", 0o755).unwrap();
    write_all(&c, "/d/f", b"data");
    c.chmod("/d/f", 0o4755).unwrap();
    c.chown("/d/f", Some(7), Some(7), true).unwrap();
    c.mkdir("/d/inner", 0o755).unwrap();
    write_all(&c, "/d/secret", b"no");
    c.chmod("/d/secret", 0o600).unwrap();
    assert_eq!(errno(c.clone_tree("/d", "/d/inner/x", false)), libc::EINVAL);
    assert_eq!(errno(c.clone_tree("/d", "/d/x", false)), libc::EINVAL);
    assert_eq!(
        errno(c.clone_tree("/d/f", "/d/secret", false)),
        libc::EEXIST
    );
    assert_eq!(errno(c.clone_tree("/nope", "/x", false)), libc::ENOENT);
    assert_eq!(errno(c.clone_tree("/d/f", "/.trash", false)), libc::EPERM);

    let preserved = c.clone_tree("/d/f", "/p", true).unwrap();
    assert_eq!(preserved.entries, 1);
    let (src, p) = (c.lstat("/d/f").unwrap().attr, c.lstat("/p").unwrap().attr);
    assert_eq!((p.mode, p.uid, p.gid, p.mtime), (src.mode, 7, 7, src.mtime));

    let user = vol.connect("uid=1000,gid=1000");
    c.mkdir("/mine", 0o755).unwrap();
    c.chmod("/mine", 0o777).unwrap();
    assert_eq!(
        errno(user.clone_tree("/d/secret", "/mine/s", false)),
        libc::EACCES
    );
    assert_eq!(errno(user.clone_tree("/d/f", "/d/g", false)), libc::EACCES);
    // A tree clone stops at the first unreadable file, as cp -r would report it,
    // leaving what it made.
    assert_eq!(errno(user.clone_tree("/d", "/mine/d", false)), libc::EACCES);
    assert!(user.lstat("/mine/d").is_ok());
    c.chmod("/d/secret", 0o644).unwrap();
    kiseki_testkit::remove_tree(&c, "/mine/d");
    let done = user.clone_tree("/d", "/mine/d", true).unwrap();
    assert_eq!(done.entries, 4);
    let f = user.lstat("/mine/d/f").unwrap().attr;
    assert_eq!((f.uid, f.gid), (1000, 1000), "only root keeps owners");
    assert_eq!(f.mode, 0o755, "setuid of another's file dropped");
    // A device only root may make, clone or not; a destination given by inode number
    // (as the mount's ioctl does) behind a directory the caller cannot search.
    c.mknod("/d/dev", libc::S_IFCHR | 0o666, 0x0103).unwrap();
    assert_eq!(
        errno(user.clone_tree("/d/dev", "/mine/dev", false)),
        libc::EPERM
    );
    c.mkdir("/locked", 0o700).unwrap();
    c.mkdir("/locked/open", 0o777).unwrap();
    c.chmod("/locked/open", 0o777).unwrap();
    let fs = user.fs().unwrap();
    let as_user = kiseki_core::meta::Ctx {
        uid: 1000,
        gid: 1000,
        groups: Vec::new(),
        pid: 0,
    };
    let src = c.lstat("/d/f").unwrap().ino;
    let behind = c.lstat("/locked/open").unwrap().ino;
    let r = kiseki_core::runtime::block_on(fs.clone_tree(
        &as_user,
        src,
        behind,
        b"x",
        kiseki_core::meta::CloneOpts::default(),
    ));
    assert_eq!(errno(r), libc::EACCES);
    user.close().unwrap();
    assert_clean(&vol.meta_url);
    c.close().unwrap();
}
