//! Shared fixtures of Kiseki's tests, one copy for every crate: temporary volumes on
//! each engine ([`volume`]), an engine wrapper that records commits and counts
//! transactions ([`kv`]), a real etcd cluster ([`etcd`]), real FUSE mounts of the built
//! `kiseki` binary ([`mount`]), a real S3 server that can go down and come back
//! ([`s3`]), the C programs of `tests/c` ([`c`]), and deterministic data ([`pattern`]).
//!
//! A test that needs something this machine lacks (root and `/dev/fuse`, etcd, a tool)
//! skips, unless the test command's `KISEKI_REQUIRE_*` variables make that a failure,
//! so CI can never pass by skipping.

pub mod c;
pub mod etcd;
pub mod kv;
pub mod mount;
pub mod s3;
pub mod volume;

/// stderr of a finished command.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout then stderr of a finished command, for assertion messages.
pub fn combined(o: &std::process::Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    )
}

/// Deterministic pseudo-random bytes (xorshift, the same as `prng_fill` in
/// `tests/c/check.h`), different for every seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads `len` bytes of `f` from `off` through the path-level client, in as many calls
/// as it takes; shorter only at the end of the file.
pub fn pread_full(
    f: &kiseki_core::vfs::File,
    off: u64,
    len: usize,
) -> kiseki_core::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.pread(&mut buf[got..], off + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Makes `path` hold exactly `data` (created or truncated) through a library client.
pub fn write_all(c: &kiseki_core::vfs::Client, path: &str, data: &[u8]) {
    let f = c
        .open(path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 0o644)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    f.write(data)
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
    f.close().unwrap_or_else(|e| panic!("close {path}: {e}"));
}

/// The whole content of `path`, through a library client.
pub fn read_all(c: &kiseki_core::vfs::Client, path: &str) -> kiseki_core::Result<Vec<u8>> {
    let f = c.open(path, libc::O_RDONLY, 0)?;
    let len = f.fstat()?.attr.length as usize;
    let data = pread_full(&f, 0, len);
    f.close()?;
    data
}

/// A temporary cache directory on another device than the system temp directory (in
/// `/dev/shm`), for tests of the disk cache in front of an `fs` bucket: on the bucket's
/// own device the cache keeps nothing (`DiskPolicy::Nothing`).
pub fn cache_dir_off_device() -> tempfile::TempDir {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm (tmpfs)");
    let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    assert_ne!(
        dev(dir.path()),
        dev(&std::env::temp_dir()),
        "/dev/shm is on the temp directory's device"
    );
    dir
}

/// Every file under `dir`, recursively, sorted (block objects in a bucket, cache
/// entries).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The errno of a call that must fail.
#[track_caller]
pub fn errno<T>(r: kiseki_core::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.errno(),
    }
}

/// Removes `path` and everything under it, as root, through a library client (the
/// walk `kiseki rmr` runs in a mount).
pub fn remove_tree(c: &kiseki_core::vfs::Client, path: &str) {
    let (dir, name) = path.rsplit_once('/').expect("an absolute path");
    let parent = c.lstat(if dir.is_empty() { "/" } else { dir }).unwrap().ino;
    c.fs()
        .unwrap()
        .remove_tree(&kiseki_core::meta::Ctx::root(), parent, name.as_bytes())
        .unwrap_or_else(|e| panic!("remove {path}: {e}"));
}

/// The block objects under a bucket directory (under a volume's `chunks/`: not its
/// metadata backups under `meta/`, which a mount writes on its own).
pub fn blocks_under(bucket: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_under(bucket)
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "chunks"))
        .collect()
}
