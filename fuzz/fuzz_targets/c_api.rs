//! The C API's path, flag and pointer arguments (libkiseki, `include/kiseki.h`).
//!
//! One volume (memory metadata engine, memory object storage) is formatted and
//! connected once per process. Each input is a short program of calls with paths
//! derived from it (names of a small dictionary so that calls meet each other's files,
//! arbitrary bytes with embedded NULs, non-UTF-8, names and paths past NAME_MAX and
//! PATH_MAX, NULL), arbitrary flags, modes, offsets and descriptors. Every call must
//! return >= 0 or -errno with errno in 1..4096, a NULL argument the header rejects
//! must be -EFAULT, and nothing may panic (libFuzzer's panic hook aborts even on the
//! panics the library catches and turns into EIO). EIO itself is treated as a
//! failure: a memory volume has no I/O that can fail. After each input every
//! descriptor is closed and the volume is emptied again, so inputs replay alike.
#![no_main]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use kiseki::*;
use libfuzzer_sys::fuzz_target;

fn last_error() -> String {
    // SAFETY: kiseki_last_error returns a valid NUL-terminated string owned by the
    // library, valid until this thread's next failing call.
    unsafe { CStr::from_ptr(kiseki_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn fs() -> *mut kiseki_fs {
    static FS: OnceLock<usize> = OnceLock::new();
    *FS.get_or_init(|| unsafe {
        let url = c"memory://fuzz-c-api";
        let r = kiseki_format(
            url.as_ptr(),
            c"fuzz".as_ptr(),
            c"storage=memory,block-size=64K".as_ptr(),
        );
        assert_eq!(r, 0, "kiseki_format: {}", last_error());
        let fs = kiseki_connect(url.as_ptr(), null());
        assert!(!fs.is_null(), "kiseki_connect: {}", last_error());
        fs as usize
    }) as *mut kiseki_fs
}

/// `KISEKI_FUZZ_TRACE=1` prints every call's result (to see what an input does).
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("KISEKI_FUZZ_TRACE").is_some())
}

/// Checks one call's result: `>= 0` or `-errno` with errno in 1..4096, not EIO.
fn check(what: &str, r: i64) -> i64 {
    if trace() {
        eprintln!(
            "{what} = {r}{}",
            if r < 0 {
                format!(" ({})", last_error())
            } else {
                String::new()
            }
        );
    }
    assert!(
        r >= 0 || (-4095..=-1).contains(&r),
        "{what} returned {r}: {}",
        last_error()
    );
    assert_ne!(r, -i64::from(libc::EIO), "{what}: EIO: {}", last_error());
    r
}

/// A NULL argument (after valid ones) must be EFAULT.
fn check_fault(what: &str, r: i64, fault: bool) {
    if fault {
        assert_eq!(
            r,
            -i64::from(libc::EFAULT),
            "{what} with a NULL argument: {}",
            last_error()
        );
    }
}

/// A C string argument: bytes ending in NUL (maybe with an earlier one), or NULL.
type Arg = Option<Vec<u8>>;

fn ptr(a: &Arg) -> *const c_char {
    a.as_ref().map_or(null(), |v| v.as_ptr().cast())
}

/// Whether a call whose C string arguments are `args` (in the order the library reads
/// them) must fail with EFAULT: one is NULL and every one before it is valid UTF-8.
fn faults(args: &[&Arg]) -> bool {
    for a in args {
        match a {
            None => return true,
            Some(v) => {
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                if std::str::from_utf8(&v[..end]).is_err() {
                    return false;
                }
            }
        }
    }
    false
}

const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"d",
    b"a/b",
    b"d/e",
    b"d/e/f",
    b"/a",
    b"/d/e",
    b"",
    b"/",
    b".",
    b"..",
    b"a/",
    b"d/",
    b"./a",
    b"../a",
    b"d/../a",
    b"//a",
    b"a/.",
    b"d/e/..",
    b"d/a",
    b"\xff",
    b"a\xc3",
    b"d/\xe2\x82",
    b"caf\xc3\xa9",
    b"a b",
    b"d/.hidden",
];

fn name(u: &mut Unstructured) -> Result<Vec<u8>> {
    Ok(u.choose(NAMES)?.to_vec())
}

fn path(u: &mut Unstructured) -> Result<Arg> {
    let mut p = match u.int_in_range(0..=11)? {
        0..=4 => name(u)?,
        5 => {
            let n = u.int_in_range(0..=48)?;
            u.bytes(n)?.to_vec()
        }
        6 => {
            // One long component around NAME_MAX (255), or far past it.
            let c = *u.choose(b"ax\xff/.")?;
            let n = *u.choose(&[254usize, 255, 256, 300, 4095, 4096, 70_000])?;
            let mut v = b"d/".to_vec();
            v.resize(2 + n, c);
            v
        }
        7 => {
            // Deep: around PATH_MAX (4096) in short components.
            let n = *u.choose(&[2usize, 10, 2047, 2048, 2049, 5000])?;
            let mut v = b"d/".repeat(n);
            v.extend_from_slice(&name(u)?);
            v
        }
        8..=9 => {
            let mut v = name(u)?;
            v.push(b'/');
            v.extend_from_slice(&name(u)?);
            v
        }
        10 => {
            let mut v = name(u)?;
            v.extend_from_slice(&name(u)?);
            v
        }
        _ => return Ok(None),
    };
    if u.ratio(1, 10)? {
        // An embedded NUL: C sees the path end there.
        p.push(0);
        p.extend_from_slice(b"/zz");
    }
    p.push(0);
    Ok(Some(p))
}

fn open_flags(u: &mut Unstructured) -> Result<c_int> {
    if u.ratio(1, 8)? {
        return u.arbitrary();
    }
    const BITS: &[c_int] = &[
        libc::O_CREAT,
        libc::O_EXCL,
        libc::O_TRUNC,
        libc::O_APPEND,
        libc::O_NOFOLLOW,
        libc::O_DIRECTORY,
        libc::O_NONBLOCK,
        libc::O_SYNC,
        libc::O_DSYNC,
        libc::O_DIRECT,
        libc::O_NOATIME,
        libc::O_CLOEXEC,
        libc::O_PATH,
        libc::O_TMPFILE,
        libc::O_NOCTTY,
    ];
    let mut f = *u.choose(&[libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR, 3])?;
    for &b in BITS {
        if u.ratio(1, 5)? {
            f |= b;
        }
    }
    Ok(f)
}

fn mode(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0..=5)? {
        0 => 0o644,
        1 => 0o755,
        2 => 0o7777,
        3 => 0,
        4 => libc::S_IFDIR | 0o700,
        _ => u.arbitrary()?,
    })
}

fn offset(u: &mut Unstructured) -> Result<i64> {
    const CHUNK: i64 = 64 << 20;
    Ok(match u.int_in_range(0..=5)? {
        0 => 0,
        1 => u.int_in_range(0..=300_000)?,
        2 => CHUNK + u.int_in_range(-70_000..=70_000)?,
        3 => *u.choose(&[
            -1,
            i64::MIN,
            i64::MAX,
            i64::MAX - 10,
            1 << 40,
            (1 << 62) + 3,
        ])?,
        4 => u.int_in_range(-5..=5)? + (u32::MAX as i64) * CHUNK,
        _ => u.arbitrary()?,
    })
}

/// A descriptor: one this input opened, or any number (closed, foreign, negative).
fn pick_fd(u: &mut Unstructured, open: &[c_int]) -> Result<c_int> {
    if !open.is_empty() && u.ratio(7, 8)? {
        return Ok(*u.choose(open)?);
    }
    u.arbitrary()
}

struct State {
    files: Vec<c_int>,
    dirs: Vec<c_int>,
}

unsafe fn stat_call(u: &mut Unstructured, fs: *mut kiseki_fs, lstat: bool) -> Result<()> {
    let p = path(u)?;
    let mut st: libc::stat = std::mem::zeroed();
    let null_buf = u.ratio(1, 8)?;
    let out: *mut libc::stat = if null_buf { null_mut() } else { &mut st };
    let r = if lstat {
        kiseki_lstat(fs, ptr(&p), out)
    } else {
        kiseki_stat(fs, ptr(&p), out)
    };
    let r = check("kiseki_stat", r.into());
    check_fault("kiseki_stat", r, faults(&[&p]));
    if r >= 0 {
        assert!(!null_buf, "stat into NULL succeeded");
        assert!(st.st_ino != 0 && st.st_nlink > 0, "stat gave {st:?}");
    }
    Ok(())
}

unsafe fn file_op(u: &mut Unstructured, fs: *mut kiseki_fs, s: &mut State) -> Result<()> {
    let fd = pick_fd(u, &s.files)?;
    match u.int_in_range(0..=8)? {
        0 | 1 => {
            let n = u.int_in_range(0..=300)?;
            let data = u.bytes(n.min(u.len()))?.to_vec();
            let (p, count) = if u.ratio(1, 10)? {
                (null(), *u.choose(&[0usize, 1, 100])?)
            } else {
                (data.as_ptr().cast::<c_void>(), data.len())
            };
            let r = if u.arbitrary()? {
                kiseki_write(fs, fd, p, count) as i64
            } else {
                kiseki_pwrite(fs, fd, p, count, offset(u)?) as i64
            };
            check("kiseki_write", r);
            if r >= 0 {
                assert_eq!(r as usize, count, "short write");
            }
        }
        2 | 3 => {
            let n = u.int_in_range(0..=70_000)?;
            let mut buf = vec![0u8; n];
            let p = if n == 0 && u.arbitrary()? {
                null_mut()
            } else {
                buf.as_mut_ptr().cast::<c_void>()
            };
            let r = if u.arbitrary()? {
                kiseki_read(fs, fd, p, n) as i64
            } else {
                kiseki_pread(fs, fd, p, n, offset(u)?) as i64
            };
            check("kiseki_read", r);
            assert!(r <= n as i64, "read {r} bytes into {n}");
        }
        4 => {
            let whence = *u.choose(&[
                libc::SEEK_SET,
                libc::SEEK_CUR,
                libc::SEEK_END,
                libc::SEEK_DATA,
                libc::SEEK_HOLE,
                7,
                -1,
            ])?;
            check("kiseki_lseek", kiseki_lseek(fs, fd, offset(u)?, whence));
        }
        5 => {
            check("kiseki_fsync", kiseki_fsync(fs, fd).into());
        }
        6 => {
            check(
                "kiseki_ftruncate",
                kiseki_ftruncate(fs, fd, offset(u)?).into(),
            );
        }
        7 => {
            let mut st: libc::stat = std::mem::zeroed();
            let null_buf = u.ratio(1, 4)?;
            let out: *mut libc::stat = if null_buf { null_mut() } else { &mut st };
            let r = check("kiseki_fstat", kiseki_fstat(fs, fd, out).into());
            assert!(r < 0 || !null_buf, "fstat into NULL succeeded");
        }
        _ => {
            let r = check("kiseki_close", kiseki_close(fs, fd).into());
            if r == 0 {
                s.files.retain(|&f| f != fd);
                s.dirs.retain(|&f| f != fd);
            }
        }
    }
    Ok(())
}

unsafe fn dir_op(u: &mut Unstructured, fs: *mut kiseki_fs, s: &mut State) -> Result<()> {
    let fd = pick_fd(u, &s.dirs)?;
    match u.int_in_range(0..=2)? {
        0 => {
            for _ in 0..u.int_in_range(1..=6)? {
                let mut e: kiseki_dirent = std::mem::zeroed();
                let null_entry = u.ratio(1, 10)?;
                let out: *mut kiseki_dirent = if null_entry { null_mut() } else { &mut e };
                let r = check("kiseki_readdir", kiseki_readdir(fs, fd, out).into());
                if r == 1 {
                    assert!(!null_entry);
                    assert!(e.d_name.contains(&0), "d_name without NUL");
                    assert!(e.d_name[0] != 0, "readdir gave an empty name");
                } else if r == 0 {
                    break;
                }
            }
        }
        1 => {
            check("kiseki_rewinddir", kiseki_rewinddir(fs, fd).into());
        }
        _ => {
            let r = check("kiseki_closedir", kiseki_closedir(fs, fd).into());
            if r == 0 {
                s.dirs.retain(|&f| f != fd);
                s.files.retain(|&f| f != fd);
            }
        }
    }
    Ok(())
}

unsafe fn op(u: &mut Unstructured, fs: *mut kiseki_fs, s: &mut State) -> Result<()> {
    match u.int_in_range(0..=25)? {
        0 | 1 => {
            let p = path(u)?;
            let r = kiseki_open(fs, ptr(&p), open_flags(u)?, mode(u)?);
            let r = check("kiseki_open", r.into());
            check_fault("kiseki_open", r, faults(&[&p]));
            if r >= 0 {
                s.files.push(r as c_int);
            }
        }
        2 => {
            let p = path(u)?;
            let r = check("kiseki_mkdir", kiseki_mkdir(fs, ptr(&p), mode(u)?).into());
            check_fault("kiseki_mkdir", r, faults(&[&p]));
        }
        3 => {
            let p = path(u)?;
            let r = check("kiseki_rmdir", kiseki_rmdir(fs, ptr(&p)).into());
            check_fault("kiseki_rmdir", r, faults(&[&p]));
        }
        4 => {
            let p = path(u)?;
            let r = check("kiseki_unlink", kiseki_unlink(fs, ptr(&p)).into());
            check_fault("kiseki_unlink", r, faults(&[&p]));
        }
        5 => {
            let (a, b) = (path(u)?, path(u)?);
            let flags: c_uint = match u.int_in_range(0..=4)? {
                0 => 0,
                1 => libc::RENAME_NOREPLACE,
                2 => libc::RENAME_EXCHANGE,
                3 => libc::RENAME_WHITEOUT,
                _ => u.arbitrary()?,
            };
            let r = check(
                "kiseki_rename",
                kiseki_rename(fs, ptr(&a), ptr(&b), flags).into(),
            );
            check_fault("kiseki_rename", r, faults(&[&a, &b]));
        }
        6 => {
            let (a, b) = (path(u)?, path(u)?);
            let r = check("kiseki_link", kiseki_link(fs, ptr(&a), ptr(&b)).into());
            check_fault("kiseki_link", r, faults(&[&a, &b]));
        }
        7 => {
            let (a, b) = (path(u)?, path(u)?);
            let r = check(
                "kiseki_symlink",
                kiseki_symlink(fs, ptr(&a), ptr(&b)).into(),
            );
            check_fault("kiseki_symlink", r, faults(&[&a, &b]));
        }
        8 => {
            let p = path(u)?;
            let n = *u.choose(&[0usize, 1, 2, 64, 4096, 5000])?;
            let mut buf = vec![0u8; n];
            let out = if n == 0 || u.ratio(1, 10)? {
                null_mut()
            } else {
                buf.as_mut_ptr().cast::<c_char>()
            };
            let r = check(
                "kiseki_readlink",
                kiseki_readlink(fs, ptr(&p), out, n) as i64,
            );
            if r >= 0 && !out.is_null() {
                assert!(r as usize <= n, "readlink wrote {r} into {n}");
            }
        }
        9 => stat_call(u, fs, false)?,
        10 => stat_call(u, fs, true)?,
        11 => {
            let p = path(u)?;
            let mode = u.arbitrary::<c_int>()? & 0xf;
            let r = check("kiseki_access", kiseki_access(fs, ptr(&p), mode).into());
            // An invalid mode is EINVAL whatever the path.
            check_fault("kiseki_access", r, mode < 8 && faults(&[&p]));
        }
        12 => {
            let p = path(u)?;
            let r = check("kiseki_chmod", kiseki_chmod(fs, ptr(&p), mode(u)?).into());
            check_fault("kiseki_chmod", r, faults(&[&p]));
        }
        13 => {
            let p = path(u)?;
            let id = |u: &mut Unstructured| -> Result<u32> {
                Ok(*u.choose(&[0, 1000, u32::MAX, u32::MAX - 1, 65534])?)
            };
            let (uid, gid) = (id(u)?, id(u)?);
            let r = check("kiseki_chown", kiseki_chown(fs, ptr(&p), uid, gid).into());
            check_fault("kiseki_chown", r, faults(&[&p]));
        }
        14 => {
            let p = path(u)?;
            let ts = |u: &mut Unstructured| -> Result<libc::timespec> {
                Ok(libc::timespec {
                    tv_sec: *u.choose(&[0, 1, -1, i64::MAX, i64::MIN, 1_700_000_000])?,
                    tv_nsec: *u.choose(&[
                        0,
                        999_999_999,
                        1_000_000_000,
                        -1,
                        libc::UTIME_NOW,
                        libc::UTIME_OMIT,
                    ])?,
                })
            };
            let times = [ts(u)?, ts(u)?];
            let tp = if u.ratio(1, 4)? {
                null()
            } else {
                times.as_ptr()
            };
            let flags = *u.choose(&[0, libc::AT_SYMLINK_NOFOLLOW, 1, -1])?;
            check(
                "kiseki_utimens",
                kiseki_utimens(fs, ptr(&p), tp, flags).into(),
            );
        }
        15 => {
            let p = path(u)?;
            let r = check(
                "kiseki_truncate",
                kiseki_truncate(fs, ptr(&p), offset(u)?).into(),
            );
            let _ = r;
        }
        16 => {
            let p = path(u)?;
            let mut st: libc::statvfs = std::mem::zeroed();
            let out: *mut libc::statvfs = if u.ratio(1, 6)? { null_mut() } else { &mut st };
            let r = check("kiseki_statvfs", kiseki_statvfs(fs, ptr(&p), out).into());
            check_fault("kiseki_statvfs", r, faults(&[&p]));
        }
        17 | 18 => {
            let p = path(u)?;
            let n = xattr_name(u)?;
            let len = u.int_in_range(0..=300)?;
            let mut value = u.bytes(len.min(u.len()))?.to_vec();
            if u.ratio(1, 20)? {
                value.resize(70_000, b'v');
            }
            let vp = if u.ratio(1, 10)? {
                null()
            } else {
                value.as_ptr().cast::<c_void>()
            };
            let size = if vp.is_null() {
                *u.choose(&[0usize, 1])?
            } else {
                value.len()
            };
            let flags = *u.choose(&[0, libc::XATTR_CREATE, libc::XATTR_REPLACE, 3, -1])?;
            check(
                "kiseki_setxattr",
                kiseki_setxattr(fs, ptr(&p), ptr(&n), vp, size, flags).into(),
            );
        }
        19 => {
            let p = path(u)?;
            let n = xattr_name(u)?;
            let size = *u.choose(&[0usize, 1, 3, 256, 70_000])?;
            let mut buf = vec![0u8; size];
            let out = if size == 0 || u.ratio(1, 10)? {
                null_mut()
            } else {
                buf.as_mut_ptr().cast::<c_void>()
            };
            let r = check(
                "kiseki_getxattr",
                kiseki_getxattr(fs, ptr(&p), ptr(&n), out, size) as i64,
            );
            if r >= 0 && size > 0 && !out.is_null() {
                assert!(r as usize <= size);
            }
        }
        20 => {
            let p = path(u)?;
            let size = *u.choose(&[0usize, 1, 3, 256, 70_000])?;
            let mut buf = vec![0u8; size];
            let out = if size == 0 || u.ratio(1, 10)? {
                null_mut()
            } else {
                buf.as_mut_ptr().cast::<c_char>()
            };
            let r = check(
                "kiseki_listxattr",
                kiseki_listxattr(fs, ptr(&p), out, size) as i64,
            );
            if r >= 0 && size > 0 && !out.is_null() {
                assert!(r as usize <= size);
            }
        }
        21 => {
            let (p, n) = (path(u)?, xattr_name(u)?);
            let r = check(
                "kiseki_removexattr",
                kiseki_removexattr(fs, ptr(&p), ptr(&n)).into(),
            );
            check_fault("kiseki_removexattr", r, faults(&[&p, &n]));
        }
        22 => {
            let p = path(u)?;
            let r = check("kiseki_opendir", kiseki_opendir(fs, ptr(&p)).into());
            check_fault("kiseki_opendir", r, faults(&[&p]));
            if r >= 0 {
                s.dirs.push(r as c_int);
            }
        }
        23 => dir_op(u, fs, s)?,
        24 => file_op(u, fs, s)?,
        _ => {
            // Handles that are not connections: NULL is EFAULT, anything else EBADF.
            let p = Some(b"a\0".to_vec());
            let mut st: libc::stat = std::mem::zeroed();
            let r = kiseki_stat(null_mut(), ptr(&p), &mut st);
            assert_eq!(r, -libc::EFAULT, "stat on a NULL fs: {}", last_error());
            let bogus = (u.arbitrary::<usize>()? | 1) as *mut kiseki_fs;
            let r = kiseki_stat(bogus, ptr(&p), &mut st);
            assert_eq!(r, -libc::EBADF, "stat on fs {bogus:?}: {}", last_error());
            let r = kiseki_open(bogus, ptr(&p), 0, 0);
            assert_eq!(r, -libc::EBADF, "open on fs {bogus:?}: {}", last_error());
            assert_eq!(kiseki_disconnect(null_mut()), 0);
            assert_eq!(kiseki_disconnect(bogus), -libc::EBADF);
        }
    }
    Ok(())
}

fn xattr_name(u: &mut Unstructured) -> Result<Arg> {
    let mut n = match u.int_in_range(0..=6)? {
        0 => b"user.a".to_vec(),
        1 => b"user.b".to_vec(),
        2 => b"trusted.x".to_vec(),
        3 => b"security.capability".to_vec(),
        4 => {
            let k = *u.choose(&[0usize, 255, 256, 5000])?;
            let mut v = b"user.".to_vec();
            v.resize(5 + k, b'n');
            v
        }
        5 => return Ok(None),
        _ => {
            let k = u.int_in_range(0..=24)?;
            u.bytes(k.min(u.len()))?.to_vec()
        }
    };
    n.push(0);
    Ok(Some(n))
}

/// Name bytes of a dirent (up to its NUL).
fn dirent_name(e: &kiseki_dirent) -> Vec<u8> {
    e.d_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect()
}

/// Removes everything under `dir` (a NUL-free path), checking that it all goes.
unsafe fn wipe(fs: *mut kiseki_fs, dir: &[u8]) {
    let mut cdir = dir.to_vec();
    cdir.push(0);
    let d = kiseki_opendir(fs, cdir.as_ptr().cast());
    assert!(
        d >= 0,
        "opendir {:?}: {d}: {}",
        dir.escape_ascii().to_string(),
        last_error()
    );
    let mut entries = Vec::new();
    loop {
        let mut e: kiseki_dirent = std::mem::zeroed();
        let r = kiseki_readdir(fs, d, &mut e);
        assert!(r >= 0, "readdir: {r}: {}", last_error());
        if r == 0 {
            break;
        }
        let n = dirent_name(&e);
        if n != b"." && n != b".." {
            entries.push((n, e.d_type));
        }
    }
    assert_eq!(kiseki_closedir(fs, d), 0, "closedir: {}", last_error());
    for (n, t) in entries {
        let mut p = dir.to_vec();
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(&n);
        let mut cp = p.clone();
        cp.push(0);
        let r = if t == libc::DT_DIR {
            wipe(fs, &p);
            kiseki_rmdir(fs, cp.as_ptr().cast())
        } else {
            kiseki_unlink(fs, cp.as_ptr().cast())
        };
        assert_eq!(
            r,
            0,
            "removing {} (type {t}): {}",
            p.escape_ascii(),
            last_error()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let fs = fs();
    let mut u = Unstructured::new(data);
    let mut s = State {
        files: Vec::new(),
        dirs: Vec::new(),
    };
    for _ in 0..32 {
        if u.is_empty() {
            break;
        }
        // SAFETY: every pointer passed is NULL or valid for the size given with it.
        if unsafe { op(&mut u, fs, &mut s) }.is_err() {
            break;
        }
    }
    unsafe {
        for fd in s.files.drain(..) {
            check("kiseki_close", kiseki_close(fs, fd).into());
        }
        for fd in s.dirs.drain(..) {
            check("kiseki_closedir", kiseki_closedir(fs, fd).into());
        }
        wipe(fs, b"/");
    }
});
