//! libkiseki and the FUSE mount on one volume: what a C program writes through the
//! library reads back identically through the kernel once the program disconnected,
//! and what is written through the mount reads back identically through the library
//! once it is unmounted.
//!
//! The C half is `tests/c/fuse_roundtrip.c`, compiled with the system `cc` against the
//! libkiseki of this build (kiseki-ffi is a dev-dependency so cargo builds it first).
//! Its names, sizes and seeds are repeated here; keep them in step. Needs root and
//! /dev/fuse, like the other mount tests (skips otherwise, fails with
//! KISEKI_REQUIRE_FUSE=1).

use std::ffi::CString;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiseki_testkit::c::{compile, pattern, run_ok, Link};
use kiseki_testkit::mount::*;

const MIB: usize = 1 << 20;
const LIMIT: Duration = Duration::from_secs(300);

// Written by C (fuse_roundtrip.c write).
const C_SMALL: &[u8] = b"written through libkiseki\n";
const C_BIG: (u64, usize) = (11, 9 * MIB + 12345);
const C_SPARSE_SEED: u64 = 12;
const C_SPARSE_AT: usize = 6 * MIB + 100;
const C_SPARSE_SIZE: usize = 10 * MIB;
const C_DIR_ENTRIES: usize = 10;
const C_MTIME: i64 = 1234567890;

// Written through the mount (checked by fuse_roundtrip.c verify).
const F_HELLO: &[u8] = b"written through FUSE\n";
const F_APPENDED: &[u8] = b"appended through FUSE\n";
const F_BIG: (u64, usize) = (21, 9 * MIB + 777);
const F_SPARSE_SEED: u64 = 22;
const F_SPARSE_AT: usize = 3 * MIB;
const F_SPARSE_SIZE: usize = 5 * MIB;
const F_DIR_ENTRIES: usize = 20;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn getxattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (p, name) = (cpath(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: valid C strings and a value of the given length.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn removexattr(p: &Path, name: &str) {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: valid C strings.
    let rc = unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) };
    assert_eq!(
        rc,
        0,
        "removexattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Asserts `path` holds `want`, naming the first difference rather than dumping MiBs.
fn assert_holds(path: &Path, want: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && diff.is_none(),
        "{}: {} bytes, expected {}; first difference at {diff:?}",
        path.display(),
        got.len(),
        want.len()
    );
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// What the C program wrote, seen through the kernel.
fn check_c_set(m: &Mounted) {
    assert_holds(&m.path("c/small.txt"), C_SMALL);
    assert_eq!(
        getxattr(&m.path("c/small.txt"), "user.origin").unwrap(),
        b"libkiseki"
    );
    let small = std::fs::metadata(m.path("c/small.txt")).unwrap();
    let hard = std::fs::metadata(m.path("c/hard")).unwrap();
    assert_eq!((small.ino(), small.nlink()), (hard.ino(), 2));

    let big = pattern(C_BIG.0, C_BIG.1);
    assert_holds(&m.path("c/big.bin"), &big);

    let blk = pattern(C_SPARSE_SEED, 4096);
    let mut sparse = vec![0u8; C_SPARSE_SIZE];
    sparse[..4096].copy_from_slice(&blk);
    sparse[C_SPARSE_AT..C_SPARSE_AT + 4096].copy_from_slice(&blk);
    assert_holds(&m.path("c/sparse.bin"), &sparse);

    let link = m.path("c/link");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("big.bin"));
    assert_holds(&link, &big);

    let want: Vec<String> = {
        let mut v: Vec<String> = (0..C_DIR_ENTRIES).map(|i| format!("e{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(sorted_names(&m.path("c/dir")), want);
    for i in 0..C_DIR_ENTRIES {
        assert_holds(
            &m.path(&format!("c/dir/e{i}")),
            format!("entry {i}\n").as_bytes(),
        );
    }

    let md = std::fs::metadata(m.path("c/mode600")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!(md.mtime(), C_MTIME);
    assert_holds(&m.path("c/mode600"), b"private\n");
}

/// Files and changes made through the kernel for the C program to check.
fn write_fuse_set(m: &Mounted) {
    std::fs::create_dir(m.path("f")).unwrap();
    std::fs::write(m.path("f/hello.txt"), F_HELLO).unwrap();
    setxattr(&m.path("f/hello.txt"), "user.origin", b"fuse");
    std::fs::write(m.path("f/big.bin"), pattern(F_BIG.0, F_BIG.1)).unwrap();

    let mut f = std::fs::File::create(m.path("f/sparse.bin")).unwrap();
    f.set_len(F_SPARSE_SIZE as u64).unwrap();
    f.seek(SeekFrom::Start(F_SPARSE_AT as u64)).unwrap();
    f.write_all(&pattern(F_SPARSE_SEED, 4096)).unwrap();
    f.sync_all().unwrap();
    drop(f);

    std::os::unix::fs::symlink("../c/big.bin", m.path("f/link")).unwrap();
    std::fs::create_dir(m.path("f/dir")).unwrap();
    std::fs::set_permissions(m.path("f/dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    for i in 0..F_DIR_ENTRIES {
        std::fs::write(m.path(&format!("f/dir/n{i}")), format!("{i}")).unwrap();
    }

    // Changes to what C wrote.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path("c/small.txt"))
        .unwrap();
    f.write_all(F_APPENDED).unwrap();
    drop(f);
    std::fs::rename(m.path("c/dir/e0"), m.path("f/moved-e0")).unwrap();
    removexattr(&m.path("c/small.txt"), "user.origin");
    setxattr(&m.path("c/small.txt"), "user.by-fuse", b"yes");
}

#[test]
fn c_api_and_fuse_mount_share_a_volume() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(
        "tests/c/fuse_roundtrip.c",
        &dir.path().join("fuse_roundtrip"),
        &["-O2"],
        Link::Shared,
    );
    // The default 4 MiB blocks, so the 9 MiB files span three blocks.
    let meta_url = format!("rocksdb://{}/meta", dir.path().display());
    let bucket = dir.path().join("data");
    let o = kiseki(
        &[
            "format",
            &meta_url,
            "c-fuse",
            "--bucket",
            bucket.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "format: {}", combined(&o));

    // 1. C writes and disconnects (the process exits, releasing the volume).
    let o = run_ok(Command::new(&exe).args(["write", &meta_url]), LIMIT);
    print!("{}", String::from_utf8_lossy(&o.stdout));

    // 2. The kernel sees it all; then writes its own files.
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let m = Mounted { dir, mp, meta_url };
    m.mount(&[]);
    check_c_set(&m);
    write_fuse_set(&m);

    // 3. Unmount: `kiseki umount` returns once the mount process has exited, so the
    // RocksDB lock is free for the C program.
    m.umount();
    assert!(!is_mounted(&m.mp));
    let o = run_ok(Command::new(&exe).args(["verify", &m.meta_url]), LIMIT);
    print!("{}", String::from_utf8_lossy(&o.stdout));

    // 4. Both clients left a consistent volume that mounts again with everything.
    let out = m.fsck();
    assert!(out.contains("volume is consistent"), "{out}");
    m.mount(&[]);
    assert_holds(&m.path("f/big.bin"), &pattern(F_BIG.0, F_BIG.1));
    assert_holds(&m.path("c/big.bin"), &pattern(C_BIG.0, C_BIG.1));
    assert_holds(&m.path("c/hard"), &[C_SMALL, F_APPENDED].concat());
    m.umount();
}
