//! The path-level Client/File API: open flags, symlink resolution, positions, seeks,
//! read-your-writes and the errno of each misuse.

use kiseki_core::meta::FormatOptions;
use kiseki_core::vfs::{Client, ClientOptions};
use kiseki_testkit::errno;
use kiseki_testkit::volume::Volume;

fn client() -> Client {
    Volume::memory().connect("")
}

const RW_CREATE: i32 = libc::O_RDWR | libc::O_CREAT;

#[test]
fn open_flags() {
    let c = client();
    let f = c.open("/f", RW_CREATE | libc::O_EXCL, 0o644).unwrap();
    f.write(b"hello world").unwrap();
    f.close().unwrap();
    assert_eq!(
        errno(c.open("/f", RW_CREATE | libc::O_EXCL, 0o644)),
        libc::EEXIST
    );
    assert_eq!(errno(c.open("/nodir/f", RW_CREATE, 0o644)), libc::ENOENT);
    assert_eq!(errno(c.open("/missing", libc::O_RDONLY, 0)), libc::ENOENT);
    assert_eq!(errno(c.open("/f/x", libc::O_RDONLY, 0)), libc::ENOTDIR);
    assert_eq!(errno(c.open("/f/", libc::O_RDONLY, 0)), libc::ENOTDIR);
    assert_eq!(errno(c.open("", libc::O_RDONLY, 0)), libc::ENOENT);
    assert_eq!(
        errno(c.open(&format!("/{}", "x".repeat(256)), RW_CREATE, 0o644)),
        libc::ENAMETOOLONG
    );
    c.mkdir("/d", 0o755).unwrap();
    assert_eq!(errno(c.open("/d", libc::O_WRONLY, 0)), libc::EISDIR);
    assert_eq!(
        errno(c.open("/f", libc::O_RDONLY | libc::O_DIRECTORY, 0)),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(c.open("/f", libc::O_RDONLY | 0x0800_0000, 0)),
        libc::EINVAL
    );
    // O_TRUNC empties, O_APPEND appends whatever the position.
    let t = c.open("/f", libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    assert_eq!(t.fstat().unwrap().attr.length, 0);
    t.write(b"abc").unwrap();
    let a = c.open("/f", libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
    a.write(b"XYZ").unwrap();
    a.pwrite(b"!", 0).unwrap();
    t.close().unwrap();
    a.close().unwrap();
    let r = c.open("/f", libc::O_RDONLY, 0).unwrap();
    let mut buf = [0u8; 32];
    let n = r.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"abcXYZ!");
    assert_eq!(errno(r.write(b"no")), libc::EBADF);
    let w = c.open("/f", libc::O_WRONLY, 0).unwrap();
    assert_eq!(errno(w.read(&mut buf)), libc::EBADF);
    r.close().unwrap();
    assert_eq!(errno(r.close()), libc::EBADF);
    assert_eq!(errno(r.read(&mut buf)), libc::EBADF);
}

#[test]
fn symlinks_are_resolved_like_the_kernel_does() {
    let c = client();
    c.mkdir("/a", 0o755).unwrap();
    c.mkdir("/a/b", 0o755).unwrap();
    let f = c.open("/a/b/file", RW_CREATE, 0o644).unwrap();
    f.write(b"data").unwrap();
    f.close().unwrap();
    c.symlink("b/file", "/a/rel").unwrap();
    c.symlink("/a/b", "/abs").unwrap();
    c.symlink("/a/rel", "/chain").unwrap();
    c.symlink("loop2", "/loop1").unwrap();
    c.symlink("loop1", "/loop2").unwrap();
    c.symlink("/nowhere", "/dangling").unwrap();
    assert_eq!(c.stat("/a/rel").unwrap().attr.length, 4);
    assert_eq!(c.stat("/abs/file").unwrap().attr.length, 4);
    assert_eq!(c.stat("/chain").unwrap().attr.length, 4);
    assert_eq!(c.stat("/a/b/../rel").unwrap().attr.length, 4);
    assert!(c.lstat("/chain").unwrap().attr.kind == kiseki_core::meta::FileKind::Symlink);
    assert_eq!(c.readlink("/chain").unwrap(), b"/a/rel");
    assert_eq!(errno(c.stat("/loop1")), libc::ELOOP);
    assert_eq!(errno(c.stat("/dangling")), libc::ENOENT);
    assert_eq!(
        errno(c.open("/chain", libc::O_RDONLY | libc::O_NOFOLLOW, 0)),
        libc::ELOOP
    );
    // O_CREAT through a dangling link creates nothing there with O_EXCL.
    assert_eq!(
        errno(c.open("/a/rel", RW_CREATE | libc::O_EXCL, 0o644)),
        libc::EEXIST
    );
    let via = c.open("/chain", libc::O_RDONLY, 0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(via.read(&mut buf).unwrap(), 4);
    assert_eq!(errno(c.readlink("/a")), libc::EINVAL);
}

#[test]
fn positions_seeks_and_holes() {
    let c = client();
    let f = c.open("/sparse", RW_CREATE, 0o644).unwrap();
    f.write(&[1u8; 4096]).unwrap();
    let far: u64 = 100 << 20;
    f.pwrite(&[2u8; 10], far).unwrap();
    assert_eq!(f.tell(), 4096);
    let st = f.fstat().unwrap().attr;
    assert_eq!(st.length, far + 10);
    assert_eq!(
        st.blocks(),
        16,
        "a sparse file is charged for its data only"
    );
    assert_eq!(f.seek(0, libc::SEEK_END).unwrap(), far + 10);
    assert_eq!(f.seek(-10, libc::SEEK_CUR).unwrap(), far);
    assert_eq!(errno(f.seek(-1, libc::SEEK_SET)), libc::EINVAL);
    assert_eq!(errno(f.seek(0, 42)), libc::EINVAL);
    assert_eq!(f.seek(0, libc::SEEK_HOLE).unwrap(), 4096);
    assert_eq!(f.seek(4096, libc::SEEK_DATA).unwrap(), far);
    assert_eq!(f.seek(far as i64 + 5, libc::SEEK_HOLE).unwrap(), far + 10);
    assert_eq!(
        errno(f.seek((far + 10) as i64, libc::SEEK_DATA)),
        libc::ENXIO
    );
    let mut buf = vec![9u8; 100];
    assert_eq!(f.pread(&mut buf, 5000).unwrap(), 100);
    assert!(buf.iter().all(|&b| b == 0), "holes read as zeros");
    assert_eq!(
        f.pread(&mut buf, far + 5).unwrap(),
        5,
        "reads beyond EOF are short"
    );
    assert_eq!(f.pread(&mut buf, far + 50).unwrap(), 0);
    assert_eq!(
        errno(f.fallocate(libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096)),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(f.fallocate(libc::FALLOC_FL_PUNCH_HOLE, 0, 4096)),
        libc::EOPNOTSUPP
    );
    f.fallocate(0, far, 1 << 20).unwrap();
    assert_eq!(f.fstat().unwrap().attr.length, far + (1 << 20));
    // 4096 + 10 bytes of data and the 1 MiB - 10 reserved around the 10 at `far`.
    assert_eq!(f.fstat().unwrap().attr.blocks(), (4096 + (1 << 20)) / 512);
    f.fallocate(
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        0,
        4096,
    )
    .unwrap();
    assert_eq!(
        f.fstat().unwrap().attr.blocks(),
        (1 << 20) / 512,
        "punching a hole frees its space"
    );
    let ro = c.open("/sparse", libc::O_RDONLY, 0).unwrap();
    assert_eq!(errno(ro.fallocate(0, 0, 10)), libc::EBADF);
    assert_eq!(errno(ro.ftruncate(0)), libc::EINVAL);
}

#[test]
fn read_your_writes_and_open_unlinked_files() {
    let c = client();
    let w = c.open("/f", RW_CREATE, 0o644).unwrap();
    let r = c.open("/f", libc::O_RDONLY, 0).unwrap();
    w.write(b"not yet flushed").unwrap();
    let mut buf = [0u8; 64];
    let n = r.pread(&mut buf, 0).unwrap();
    assert_eq!(
        &buf[..n],
        b"not yet flushed",
        "another handle sees unflushed data"
    );
    assert_eq!(
        c.stat("/f").unwrap().attr.length,
        15,
        "stat sees the pending length"
    );
    c.unlink("/f").unwrap();
    assert_eq!(errno(c.stat("/f")), libc::ENOENT);
    w.write(b" and more").unwrap();
    w.fsync().unwrap();
    let n = r.pread(&mut buf, 0).unwrap();
    assert_eq!(
        &buf[..n],
        b"not yet flushed and more",
        "open handles outlive the unlink"
    );
    let ino = w.ino();
    w.close().unwrap();
    r.close().unwrap();
    // The last close of an unlinked file releases it, unless (as here, by default)
    // the volume keeps a trash, which holds it with no links.
    let kept = c.fs().unwrap().getattr(ino).unwrap();
    assert!(kept.in_trash() && kept.nlink == 0, "{kept:?}");
}

#[test]
fn options_parse_and_reject_unknown_keys() {
    let o = ClientOptions::parse("buffer-size=64M, cache-size=1G,memory-cache-size=10M,read-only")
        .unwrap();
    assert_eq!(o.data.buffer_memory, 64 << 20);
    assert_eq!(o.data.cache_disk, 1 << 30);
    assert_eq!(o.data.cache_memory, 10 << 20);
    assert!(o.read_only);
    assert!(ClientOptions::parse("bogus=1").is_err());
    assert!(ClientOptions::parse("buffer-size=12Q").is_err());
    assert!(ClientOptions::parse("buffer-size").is_err());
    assert!(ClientOptions::parse("").is_ok());
}

#[test]
fn concurrent_appends_never_overlap() {
    let c = client();
    c.open("/log", RW_CREATE, 0o644).unwrap().close().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let c = &c;
            s.spawn(move || {
                let f = c.open("/log", libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
                for _ in 0..50 {
                    f.write(&[b'a' + t; 100]).unwrap();
                }
                f.close().unwrap();
            });
        }
    });
    let f = c.open("/log", libc::O_RDONLY, 0).unwrap();
    let mut buf = vec![0u8; 30_000];
    let n = f.pread(&mut buf, 0).unwrap();
    assert_eq!(n, 4 * 50 * 100, "every append landed at its own end");
    for rec in buf[..n].chunks(100) {
        assert!(
            rec.iter().all(|&b| b == rec[0]),
            "an append was torn or overwritten"
        );
    }
}

#[test]
fn huge_offsets_are_efbig_not_wraparound() {
    let c = client();
    let f = c.open("/f", RW_CREATE, 0o644).unwrap();
    f.write(&[1u8; 200]).unwrap();
    let g = c.open("/g", RW_CREATE, 0o644).unwrap();
    assert_eq!(
        errno(f.copy_range_to(0, &g, u64::MAX - 100, 200)),
        libc::EFBIG
    );
    assert_eq!(errno(f.pwrite(b"x", u64::MAX - 1)), libc::EFBIG);
    assert_eq!(errno(f.fallocate(0, u64::MAX - 10, 100)), libc::EFBIG);
    assert_eq!(errno(f.fallocate(0, 0, 0)), libc::EINVAL);
    assert_eq!(g.fstat().unwrap().attr.length, 0);
}

#[test]
fn capacity_quota_refuses_writes_beyond_it() {
    let c = Volume::memory_with(|o| {
        o.block_size = 64 << 10;
        o.capacity = 1 << 20;
    })
    .connect("");
    let big = c.open("/big", RW_CREATE, 0o644).unwrap();
    big.write(&vec![7u8; 2 << 20]).unwrap();
    assert_eq!(errno(big.fsync()), libc::ENOSPC);
    assert!(big.close().is_err(), "the handle stays unusable");
    assert_eq!(
        c.stat("/big").unwrap().attr.length,
        0,
        "nothing beyond the quota is published"
    );
    let small = c.open("/small", RW_CREATE, 0o644).unwrap();
    small.write(&vec![1u8; 100_000]).unwrap();
    small.close().unwrap();
    let st = c.statvfs().unwrap();
    assert!(st.total_space - st.avail_space <= 1 << 20);
}

/// Closing a client (with a file still open and uploads in flight) releases the
/// RocksDB volume before `close` returns, so it can be connected again at once; the
/// stale file then fails with EBADF instead of writing through a closed session.
#[test]
fn close_releases_the_volume_at_once() {
    let v = Volume::rocksdb_with(|o| o.block_size = 64 << 10);
    let url = v.meta_url.clone();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for round in 0..5 {
        let c = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
        let f = c.open("/f", RW_CREATE, 0o644).unwrap();
        f.pwrite(&data, round * 1000).unwrap();
        c.close().unwrap();
        assert_eq!(errno(f.pwrite(b"late", 0)), libc::EBADF);
        assert_eq!(errno(c.stat("/f")), libc::EBADF);
        drop(f);
        // `c` is still alive here: close alone must have let go of the engine.
        let again = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
        assert_eq!(
            again.stat("/f").unwrap().attr.length,
            round * 1000 + 1_000_000
        );
        drop(again);
    }
}

/// The root has no parent entry; creating or removing it answers as Linux does for `/`.
#[test]
fn the_root_cannot_be_created_or_removed() {
    let c = client();
    for root in ["/", ".", "//./"] {
        assert_eq!(errno(c.open(root, RW_CREATE, 0o644)), libc::EISDIR);
        assert_eq!(
            errno(c.open(root, RW_CREATE | libc::O_EXCL, 0o644)),
            libc::EEXIST
        );
        assert_eq!(errno(c.mkdir(root, 0o755)), libc::EEXIST);
        assert_eq!(errno(c.unlink(root)), libc::EISDIR);
    }
    assert_eq!(errno(c.rmdir("/")), libc::EBUSY);
    assert_eq!(
        errno(c.rmdir(".")),
        libc::EINVAL,
        "as rmdir(2) says for a final ."
    );
    assert!(c.open("/", libc::O_RDONLY, 0).is_ok());
}

/// A directory stream returns every entry exactly once across pages, starts over
/// after rewind, and is EBADF once closed.
#[test]
fn directory_streams_page_through_large_directories() {
    let c = client();
    c.mkdir("/big", 0o755).unwrap();
    for i in 0..700 {
        c.open(&format!("/big/f{i:04}"), RW_CREATE, 0o644)
            .unwrap()
            .close()
            .unwrap();
    }
    let d = c.opendir("/big").unwrap();
    let mut names = Vec::new();
    loop {
        let page = d.next_page(true).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(
            page.iter().all(|e| e.attr.is_some()),
            "plus pages carry attrs"
        );
        names.extend(page.into_iter().map(|e| e.name));
    }
    assert_eq!(names.len(), 702, "700 files plus . and ..");
    assert_eq!(&names[..2], &[b".".to_vec(), b"..".to_vec()]);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 702, "no entry twice");
    d.rewind().unwrap();
    assert_eq!(d.next_page(false).unwrap()[0].name, b".");
    d.close().unwrap();
    assert_eq!(errno(d.close()), libc::EBADF);
    assert_eq!(errno(d.next_page(false)), libc::EBADF);
    assert_eq!(errno(c.opendir("/big/f0001")), libc::ENOTDIR);
    assert_eq!(errno(c.opendir("/nope")), libc::ENOENT);
}

/// pread fills the caller's buffer in place: holes read as zeros whatever the buffer
/// held, and bytes past the end of the file are left alone.
#[test]
fn pread_fills_the_callers_buffer_in_place() {
    let c = client();
    let f = c.open("/sparse", RW_CREATE, 0o644).unwrap();
    f.pwrite(b"head", 0).unwrap();
    f.pwrite(b"tail", 200_000).unwrap();
    let mut buf = vec![0xAAu8; 300_000];
    let n = f.pread(&mut buf, 0).unwrap();
    assert_eq!(n, 200_004);
    assert_eq!(&buf[..4], b"head");
    assert!(
        buf[4..200_000].iter().all(|&b| b == 0),
        "hole reads as zeros"
    );
    assert_eq!(&buf[200_000..200_004], b"tail");
    assert!(
        buf[200_004..].iter().all(|&b| b == 0xAA),
        "past EOF untouched"
    );
    f.close().unwrap();
}

#[test]
fn format_options_parse_and_reject_bad_values() {
    let o = FormatOptions::parse(
        "v1",
        "storage=s3,bucket=http://h/b,block_size=1M,compression=lz4,capacity=10G,inodes=5",
    )
    .unwrap();
    assert_eq!(o.storage, "s3");
    assert_eq!(o.bucket, "http://h/b");
    assert_eq!(o.block_size, 1 << 20);
    assert_eq!(o.capacity, 10 << 30);
    assert_eq!(o.inodes, 5);
    for bad in [
        "colour=red",
        "block-size",
        "block-size=huge",
        "inodes=-1",
        "block-size=64G",
    ] {
        assert!(FormatOptions::parse("v1", bad).is_err(), "{bad}");
    }
}

/// A read-only client opens a RocksDB volume another client holds (lock-free) and
/// sees what was committed when it connected.
#[test]
fn read_only_clients_share_a_held_volume() {
    let v = Volume::rocksdb_with(|_| {});
    let url = v.meta_url.clone();
    let writer = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
    let f = writer.open("/f", RW_CREATE, 0o644).unwrap();
    f.write(b"committed").unwrap();
    f.close().unwrap();
    assert!(Client::connect(Some(&url), &ClientOptions::default()).is_err());
    let ro = ClientOptions::parse("read-only").unwrap();
    let reader = Client::connect(Some(&url), &ro).unwrap();
    let r = reader.open("/f", libc::O_RDONLY, 0).unwrap();
    let mut buf = [0u8; 16];
    let n = r.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"committed");
    assert_eq!(errno(reader.open("/g", RW_CREATE, 0o644)), libc::EROFS);
    drop(r);
    reader.close().unwrap();
    writer.close().unwrap();
}

/// Path corner cases the C tests found, answered as Linux does.
#[test]
fn path_corner_cases_match_linux() {
    let c = client();
    c.mkdir("/d", 0o755).unwrap();
    c.open("/d/f", RW_CREATE, 0o644).unwrap().close().unwrap();
    // `.` after a file is ENOTDIR, after a directory it is the directory.
    assert_eq!(errno(c.stat("/d/f/.")), libc::ENOTDIR);
    assert_eq!(errno(c.stat("/d/f/./x")), libc::ENOTDIR);
    assert!(c.stat("/d/.").unwrap().attr.is_dir());
    // O_CREAT through a dangling symlink creates its target, relative to the link.
    c.symlink("made", "/d/dangling").unwrap();
    let f = c
        .open("/d/dangling", libc::O_WRONLY | libc::O_CREAT, 0o644)
        .unwrap();
    f.write(b"x").unwrap();
    f.close().unwrap();
    assert_eq!(c.stat("/d/made").unwrap().attr.length, 1);
    c.symlink("/d/abs-made", "/d/abs").unwrap();
    c.open("/d/abs", RW_CREATE, 0o644).unwrap().close().unwrap();
    assert!(c.exists("/d/abs-made"));
    c.symlink("loop", "/d/loop").unwrap();
    assert_eq!(errno(c.open("/d/loop", RW_CREATE, 0o644)), libc::ELOOP);
    // O_CREAT|O_DIRECTORY is EINVAL and creates nothing (Linux 6.4+).
    assert_eq!(
        errno(c.open(
            "/d/new",
            libc::O_RDONLY | libc::O_CREAT | libc::O_DIRECTORY,
            0o644
        )),
        libc::EINVAL
    );
    assert!(!c.exists("/d/new"));
    // PATH_MAX counts the NUL: 4096 bytes are too long, 4095 are looked up.
    let long = format!("/{}", "a/".repeat(2047));
    assert_eq!(long.len(), 4095);
    assert_eq!(errno(c.stat(&long)), libc::ENOENT);
    assert_eq!(errno(c.stat(&format!("{long}b"))), libc::ENAMETOOLONG);
}
