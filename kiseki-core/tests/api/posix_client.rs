//! POSIX rules through the path-level client (what C and Python use) that a mount
//! gets partly from the kernel: permission checks as another caller, setuid/setgid
//! clearing by unprivileged writers, and directory listings under renames.

use kiseki_core::vfs::Client;
use kiseki_testkit::errno;
use kiseki_testkit::volume::Volume;

const NOBODY: u32 = 65534;

/// A root client and a client acting as nobody:nogroup on one fresh volume.
fn volume() -> (Client, Client) {
    let v = Volume::memory();
    (
        v.connect("uid=0,gid=0,groups="),
        v.connect("uid=65534,gid=65534,groups=,umask=022"),
    )
}

fn mode(c: &Client, path: &str) -> u16 {
    c.stat(path).unwrap().attr.mode
}

#[test]
fn a_caller_identity_is_checked_like_a_process() {
    let (root, nobody) = volume();
    root.mkdir("/d", 0o755).unwrap();
    root.chown("/d", Some(NOBODY), Some(NOBODY), true).unwrap();
    let f = nobody
        .open("/d/f", libc::O_WRONLY | libc::O_CREAT, 0o666)
        .unwrap();
    f.write(b"hi").unwrap();
    f.close().unwrap();
    let st = root.stat("/d/f").unwrap().attr;
    assert_eq!(
        (st.uid, st.gid, st.mode),
        (NOBODY, NOBODY, 0o644),
        "umask applies"
    );
    // Search permission on the directory, for every operation under it.
    root.chmod("/d", 0o644).unwrap();
    assert_eq!(errno(nobody.open("/d/f", libc::O_RDONLY, 0)), libc::EACCES);
    assert_eq!(errno(nobody.truncate("/d/f", 0)), libc::EACCES);
    assert_eq!(errno(nobody.stat("/d/f")), libc::EACCES);
    assert_eq!(errno(nobody.link("/d/f", "/g")), libc::EACCES);
    root.chmod("/d", 0o755).unwrap();
    // FIFOs: the class that applies, and only it (the owner of 0177, the group of
    // 0717, the others of 0771 may not read or write).
    for (m, uid, gid, read, write) in [
        (0o177, NOBODY, 0, false, false),
        (0o717, 0, NOBODY, false, false),
        (0o771, 0, 0, false, false),
        (0o771, 0, NOBODY, true, true),
        (0o604, 0, 0, true, false),
        (0o602, 0, 0, false, true),
    ] {
        let _ = root.unlink("/d/p");
        root.mknod("/d/p", libc::S_IFIFO | 0o600, 0).unwrap();
        root.chown("/d/p", Some(uid), Some(gid), true).unwrap();
        root.chmod("/d/p", m).unwrap();
        let r = nobody.open("/d/p", libc::O_RDONLY | libc::O_NONBLOCK, 0);
        assert_eq!(r.is_ok(), read, "read fifo {m:o} owner {uid}");
        let w = nobody.open("/d/p", libc::O_WRONLY | libc::O_NONBLOCK, 0);
        assert_eq!(w.is_ok(), write, "write fifo {m:o} owner {uid}");
        if !read {
            assert_eq!(errno(r), libc::EACCES);
        }
    }
    // access(2), on a file of root's.
    root.open("/d/r", libc::O_WRONLY | libc::O_CREAT, 0o604)
        .unwrap()
        .close()
        .unwrap();
    nobody.access("/d/r", libc::R_OK as u32).unwrap();
    assert_eq!(
        errno(nobody.access("/d/r", libc::W_OK as u32)),
        libc::EACCES
    );
    // Only root may give a file away.
    assert_eq!(
        errno(nobody.chown("/d/f", Some(0), None, true)),
        libc::EPERM
    );
}

#[test]
fn unprivileged_writers_clear_setuid_and_setgid() {
    let (root, nobody) = volume();
    let arm = |m: u16| {
        root.chmod("/s", m).unwrap();
        assert_eq!(mode(&root, "/s"), m);
    };
    root.open("/s", libc::O_WRONLY | libc::O_CREAT, 0o777)
        .unwrap()
        .close()
        .unwrap();
    // A write: the writer's fstat shows the bits gone before anything is flushed.
    arm(0o6777);
    let f = nobody.open("/s", libc::O_WRONLY, 0).unwrap();
    f.write(b"x").unwrap();
    assert_eq!(f.fstat().unwrap().attr.mode, 0o777);
    f.close().unwrap();
    assert_eq!(mode(&root, "/s"), 0o777);
    // setgid without group execute marks locking, not privilege: it stays.
    arm(0o6767);
    let f = nobody.open("/s", libc::O_WRONLY, 0).unwrap();
    f.write(b"y").unwrap();
    f.close().unwrap();
    assert_eq!(mode(&root, "/s"), 0o2767);
    // truncate by path, ftruncate, O_TRUNC, fallocate (each mode), copy_file_range.
    arm(0o4777);
    nobody.truncate("/s", 1).unwrap();
    assert_eq!(mode(&root, "/s"), 0o777);
    arm(0o4777);
    let f = nobody.open("/s", libc::O_RDWR, 0).unwrap();
    f.ftruncate(2).unwrap();
    assert_eq!(mode(&root, "/s"), 0o777);
    for fmode in [
        0,
        libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_ZERO_RANGE,
    ] {
        arm(0o6777);
        f.fallocate(fmode, 0, 4096).unwrap();
        assert_eq!(mode(&root, "/s"), 0o777, "fallocate mode {fmode:#x}");
    }
    let src = root
        .open("/src", libc::O_RDWR | libc::O_CREAT, 0o644)
        .unwrap();
    src.write(b"shared").unwrap();
    src.close().unwrap();
    let src = nobody.open("/src", libc::O_RDONLY, 0).unwrap();
    arm(0o4777);
    src.copy_range_to(0, &f, 0, 6).unwrap();
    assert_eq!(mode(&root, "/s"), 0o777, "copy_file_range");
    f.close().unwrap();
    arm(0o4777);
    nobody
        .open("/s", libc::O_WRONLY | libc::O_TRUNC, 0)
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(mode(&root, "/s"), 0o777, "O_TRUNC");
    // Root keeps them (CAP_FSETID).
    arm(0o6777);
    let f = root.open("/s", libc::O_RDWR, 0).unwrap();
    f.write(b"root").unwrap();
    f.ftruncate(1).unwrap();
    f.close().unwrap();
    assert_eq!(mode(&root, "/s"), 0o6777);
}

#[test]
fn a_listing_ends_while_each_entry_read_is_renamed_away_and_back() {
    let (root, _) = volume();
    root.mkdir("/busy", 0o755).unwrap();
    const N: usize = 3000;
    for i in 0..N {
        root.open(
            &format!("/busy/f{i:05}"),
            libc::O_WRONLY | libc::O_CREAT,
            0o644,
        )
        .unwrap()
        .close()
        .unwrap();
    }
    let dir = root.opendir("/busy").unwrap();
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = dir.next_page(false).unwrap();
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = String::from_utf8(e.name).unwrap();
            assert!(seen.insert(name.clone()), "{name} listed twice");
            assert!(seen.len() <= N, "the listing does not end");
            root.rename(&format!("/busy/{name}"), "/busy/away", 0)
                .unwrap();
            root.rename("/busy/away", &format!("/busy/{name}"), 0)
                .unwrap();
        }
    }
    assert_eq!(
        seen.len(),
        N,
        "every entry stayed put until read: each once"
    );
    // Files created during the listing are not listed by it; a rewind starts afresh.
    root.open("/busy/late", libc::O_WRONLY | libc::O_CREAT, 0o644)
        .unwrap()
        .close()
        .unwrap();
    assert!(dir.next_page(false).unwrap().is_empty());
    dir.rewind().unwrap();
    let mut again = 0;
    loop {
        let page = dir.next_page(false).unwrap();
        if page.is_empty() {
            break;
        }
        again += page.len();
    }
    assert_eq!(
        again,
        N + 1 + 2,
        "after rewinddir: every file, `.` and `..`"
    );
    dir.close().unwrap();
}

#[test]
fn fallocate_allocates_space_as_a_local_disk_does() {
    // No trash: the end checks that deleting the file gives its space back.
    let c = Volume::memory_with(|o| {
        o.block_size = 64 << 10;
        o.capacity = 16 << 20;
        o.trash_days = 0;
    })
    .connect("");
    let f = c.open("/f", libc::O_RDWR | libc::O_CREAT, 0o644).unwrap();
    // Usage beyond what the empty volume uses (its root directory).
    let base = {
        let s = c.statvfs().unwrap();
        s.total_space - s.avail_space
    };
    let used = |c: &Client| {
        let s = c.statvfs().unwrap();
        s.total_space - s.avail_space - base
    };
    let blocks = |f: &kiseki_core::vfs::File| f.fstat().unwrap().attr.blocks();
    // More than the volume can hold: ENOSPC, and nothing changed.
    let avail = c.statvfs().unwrap().avail_space;
    assert_eq!(errno(f.fallocate(0, 0, 2 * avail)), libc::ENOSPC);
    assert_eq!(
        (f.fstat().unwrap().attr.length, blocks(&f), used(&c)),
        (0, 0, 0)
    );
    // 4 MiB reserved: length, st_blocks and the volume's usage show it.
    f.fallocate(0, 0, 4 << 20).unwrap();
    assert_eq!(f.fstat().unwrap().attr.length, 4 << 20);
    assert_eq!(blocks(&f), (4 << 20) / 512);
    assert_eq!(used(&c), 4 << 20);
    let mut buf = vec![1u8; 4096];
    assert_eq!(f.pread(&mut buf, 1 << 20).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == 0), "reserved space reads as zeros");
    // Writing into it uses no more space.
    f.pwrite(&vec![7u8; 1 << 20], 1 << 20).unwrap();
    f.fsync().unwrap();
    assert_eq!(blocks(&f), (4 << 20) / 512);
    assert_eq!(used(&c), 4 << 20);
    f.pread(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 7));
    // Reserving it again is free; SEEK_DATA sees only the written part.
    f.fallocate(0, 0, 4 << 20).unwrap();
    assert_eq!(used(&c), 4 << 20);
    assert_eq!(f.seek(0, libc::SEEK_DATA).unwrap(), 1 << 20);
    assert_eq!(f.seek(1 << 20, libc::SEEK_HOLE).unwrap(), 2 << 20);
    // ZERO_RANGE over data: zeros, still allocated.
    f.fallocate(libc::FALLOC_FL_ZERO_RANGE, 1 << 20, 4096)
        .unwrap();
    f.pread(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(used(&c), 4 << 20);
    // PUNCH_HOLE frees; KEEP_SIZE past the end allocates without changing the length;
    // truncate frees what lies beyond.
    f.fallocate(
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        0,
        1 << 20,
    )
    .unwrap();
    assert_eq!(used(&c), 3 << 20);
    f.fallocate(libc::FALLOC_FL_KEEP_SIZE, 4 << 20, 2 << 20)
        .unwrap();
    assert_eq!(f.fstat().unwrap().attr.length, 4 << 20);
    assert_eq!(used(&c), 5 << 20);
    let reserved = |c: &Client| c.statvfs().unwrap().reserved_space;
    // [1M, 1M + 4K) zeroed, [2M, 4M) and [4M, 6M) not written.
    assert_eq!(reserved(&c), (4 << 20) + 4096);
    f.ftruncate(3 << 20).unwrap();
    assert_eq!(used(&c), 2 << 20);
    assert_eq!(blocks(&f), (2 << 20) / 512);
    assert_eq!(reserved(&c), (1 << 20) + 4096, "beyond the new end goes");
    f.close().unwrap();
    let report = c.fs().unwrap().meta().check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.counted_reserved, (1 << 20) + 4096);
    // Deleting the file gives its reservation back once its records are dropped.
    c.unlink("/f").unwrap();
    c.fs().unwrap().meta().process_file_deletions(1000).unwrap();
    assert_eq!((used(&c), reserved(&c)), (0, 0));
}
