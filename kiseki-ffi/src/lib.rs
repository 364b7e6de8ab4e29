//! libkiseki: the C ABI over kiseki-core's path-level [`Client`].
//!
//! Every entry point returns `>= 0` on success and `-errno` on failure (a message for
//! `kiseki_last_error`), catches panics, and checks every pointer it is given. The
//! header `include/kiseki.h` is generated from this file by cbindgen; the doc comments
//! here are the C documentation.
//!
//! A `kiseki_fs *` is never dereferenced: it is a unique number (never reused) keying a
//! process-wide registry of live connections, so a handle already passed to
//! `kiseki_disconnect` (or never returned by `kiseki_connect`) is EBADF rather than a
//! use-after-free.

#![allow(non_camel_case_types)]
// The entry points check every raw pointer before use; their safety contract is the
// header's documentation.
#![allow(clippy::missing_safety_doc)]

mod error;
mod table;

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kiseki_core::meta::{Attr, FormatOptions, TimeSet, Timespec};
use kiseki_core::vfs::{
    fit_xattr, join_xattr_names, Client, ClientOptions, Stat, StatVfs, XattrFit, BLKSIZE,
};

use error::{call, Fail, Result};
use table::{DirStream, Open, Table};

/// A connection to one Kiseki volume (opaque). Created by `kiseki_connect`, freed by
/// `kiseki_disconnect`.
pub struct kiseki_fs {
    client: Client,
    table: Table,
    /// `st_dev` of the volume's files (`Client::device`).
    dev: u64,
}

/// One directory entry from `kiseki_readdir`.
#[repr(C)]
pub struct kiseki_dirent {
    /// Inode number.
    pub d_ino: u64,
    /// File type: one of the `DT_*` constants of `<dirent.h>`.
    pub d_type: u8,
    /// The name, NUL-terminated (at most 255 bytes before the NUL).
    pub d_name: [c_char; 256],
}

type Registry = RwLock<HashMap<usize, Arc<kiseki_fs>>>;

fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

/// The connection `fs` names, held for the duration of one call.
fn conn(fs: *const kiseki_fs) -> Result<Arc<kiseki_fs>> {
    if fs.is_null() {
        return Err(Fail::new(libc::EFAULT, "kiseki_fs is NULL"));
    }
    registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(fs as usize))
        .cloned()
        .ok_or_else(|| Fail::new(libc::EBADF, "kiseki_fs is not connected (disconnected?)"))
}

/// A required C string argument as UTF-8.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Fail::new(libc::EFAULT, format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Fail::new(libc::EINVAL, format!("{what} is not valid UTF-8")))
}

/// An optional C string argument (NULL is `None`).
unsafe fn opt_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        text(p, what).map(Some)
    }
}

/// A caller buffer of `len` bytes; NULL is allowed only when `len` is 0.
unsafe fn buf_mut<'a>(p: *mut c_void, len: usize) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Fail::new(libc::EFAULT, "buffer is NULL"));
    }
    check_len(len)?;
    Ok(std::slice::from_raw_parts_mut(p.cast(), len))
}

unsafe fn buf<'a>(p: *const c_void, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Fail::new(libc::EFAULT, "buffer is NULL"));
    }
    check_len(len)?;
    Ok(std::slice::from_raw_parts(p.cast(), len))
}

/// A length no Rust slice (or ssize_t result) can hold is EINVAL, as read(2) says for
/// counts above SSIZE_MAX.
fn check_len(len: usize) -> Result<()> {
    if len > isize::MAX as usize {
        return Err(Fail::new(libc::EINVAL, format!("count {len} is too large")));
    }
    Ok(())
}

fn offset(off: libc::off_t) -> Result<u64> {
    u64::try_from(off).map_err(|_| Fail::new(libc::EINVAL, format!("negative offset {off}")))
}

fn fill_stat(st: *mut libc::stat, s: &Stat, dev: u64) -> Result<()> {
    if st.is_null() {
        return Err(Fail::new(libc::EFAULT, "struct stat pointer is NULL"));
    }
    let a: &Attr = &s.attr;
    // SAFETY: a zeroed `struct stat` is valid; `st` was checked non-NULL and the caller
    // promises it points to a `struct stat`.
    unsafe {
        let mut out: libc::stat = std::mem::zeroed();
        out.st_dev = dev;
        out.st_ino = s.ino.0;
        out.st_mode = a.st_mode();
        out.st_nlink = a.nlink.into();
        out.st_uid = a.uid;
        out.st_gid = a.gid;
        out.st_rdev = a.rdev.into();
        out.st_size = a.length as i64;
        out.st_blksize = BLKSIZE.into();
        out.st_blocks = a.blocks() as i64;
        out.st_atime = a.atime.sec;
        out.st_atime_nsec = a.atime.nsec.into();
        out.st_mtime = a.mtime.sec;
        out.st_mtime_nsec = a.mtime.nsec.into();
        out.st_ctime = a.ctime.sec;
        out.st_ctime_nsec = a.ctime.nsec.into();
        st.write(out);
    }
    Ok(())
}

fn ok(v: ()) -> Result<c_int> {
    let () = v;
    Ok(0)
}

fn len_result(n: usize) -> Result<libc::ssize_t> {
    Ok(n as libc::ssize_t)
}

/// Copies `src` into the caller's `dst` of `size` bytes with getxattr(2) rules
/// ([`fit_xattr`]).
unsafe fn copy_out(src: &[u8], dst: *mut c_void, size: usize) -> Result<libc::ssize_t> {
    match fit_xattr(src, size)? {
        XattrFit::Size(n) => len_result(n),
        XattrFit::Data(d) => {
            let out = buf_mut(dst, size)?;
            out[..d.len()].copy_from_slice(d);
            len_result(d.len())
        }
    }
}

// ---------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------

/// Connects to the volume at `meta_url` (for example `rocksdb:///var/lib/kiseki/meta`),
/// or to the embedded default volume that `kiseki mount MOUNTPOINT` uses when
/// `meta_url` is NULL (formatting it on first use).
///
/// `options` is NULL or `key=value,key=value`: `buffer-size`, `spill-size`,
/// `spill-dir`, `cache-dir` (`/a:/b` for several), `cache-size`, `cache-partial-only`,
/// `free-space-ratio`, `memory-cache-size` (sizes take K, M, G, T),
/// `max-readahead` (MiB), `prefetch`,
/// `max-uploads`, `upload-limit`, `writeback` (needs `cache-dir`), `read-only`,
/// `meta-sync`, `name`, `session-ttl`; and `uid`, `gid`, `groups` (`1:2:3`)
/// and `umask` (octal) to act as another user (permission checks, owner of new
/// files), which needs root.
///
/// Returns a connection to pass to every other call and to free with
/// `kiseki_disconnect`, or NULL with errno set and `kiseki_last_error` explaining.
#[no_mangle]
pub unsafe extern "C" fn kiseki_connect(
    meta_url: *const c_char,
    options: *const c_char,
) -> *mut kiseki_fs {
    let mut errno = libc::EIO;
    let ptr: isize = call("kiseki_connect", || {
        let r = connect(meta_url, options);
        if let Err(f) = &r {
            errno = f.errno;
        }
        r
    });
    if ptr < 0 {
        *libc::__errno_location() = errno;
        return std::ptr::null_mut();
    }
    ptr as *mut kiseki_fs
}

unsafe fn connect(meta_url: *const c_char, options: *const c_char) -> Result<isize> {
    let url = opt_text(meta_url, "meta_url")?;
    let opts = ClientOptions::parse(opt_text(options, "options")?.unwrap_or(""))?;
    let client = Client::connect(url, &opts)?;
    let fs = Arc::new(kiseki_fs {
        dev: client.device()?,
        client,
        table: Table::default(),
    });
    // The handle is a fresh number, never an address, so no later connection can
    // ever be named by a disconnected handle (aligned, and never NULL).
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let key = NEXT.fetch_add(1, Ordering::Relaxed) << 4;
    registry()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, fs);
    Ok(key as isize)
}

/// Flushes every file still open on `fs`, ends its session and frees it. Returns 0, or
/// -errno when data written through a file still open could not be stored (the
/// connection is freed either way). NULL is a no-op returning 0. `fs` must not be used
/// afterwards (calls that do get -EBADF).
#[no_mangle]
pub unsafe extern "C" fn kiseki_disconnect(fs: *mut kiseki_fs) -> c_int {
    if fs.is_null() {
        return 0;
    }
    call("kiseki_disconnect", || {
        let conn = registry()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(fs as usize))
            .ok_or_else(|| Fail::new(libc::EBADF, "kiseki_fs is not connected"))?;
        let mut first: Option<Fail> = None;
        for open in conn.table.drain() {
            let r = match open {
                Open::File(f) => f.close(),
                Open::Dir(d) => d.dir.close(),
            };
            if let Err(e) = r {
                first.get_or_insert(e.into());
            }
        }
        if let Err(e) = conn.client.close() {
            first.get_or_insert(e.into());
        }
        first.map_or(Ok(0), Err)
    })
}

/// Creates a volume whose metadata lives at `meta_url`. `options` is NULL or
/// `key=value,...`: `storage` (`fs`, `s3` or `memory`; default `fs`), `bucket` (a
/// directory for fs, an endpoint URL with the bucket for s3), `region`, `access-key`,
/// `secret-key`, `block-size` (default 4M), `compression` (`none` or `lz4`),
/// `capacity` (bytes, 0 = unlimited), `inodes` (0 = unlimited). Returns 0, or -EEXIST
/// when `meta_url` already holds a volume.
#[no_mangle]
pub unsafe extern "C" fn kiseki_format(
    meta_url: *const c_char,
    name: *const c_char,
    options: *const c_char,
) -> c_int {
    call("kiseki_format", || {
        let url = text(meta_url, "meta_url")?;
        let name = text(name, "name")?;
        let opts = FormatOptions::parse(name, opt_text(options, "options")?.unwrap_or(""))?;
        Client::format(url, &opts)?;
        Ok(0)
    })
}

/// `kiseki_fsck`'s `objects`: list the block objects (each referenced one exists, none
/// is leaked).
pub const KISEKI_FSCK_LIST: c_int = 1;
/// `kiseki_fsck`'s `objects`: list the block objects and read each one, checking it
/// against its recorded checksums (reads the whole volume).
pub const KISEKI_FSCK_READ: c_int = 2;

/// Checks the volume at `meta_url` (NULL: the embedded default volume), as `kiseki
/// fsck` does: the metadata's invariants and counters; with `objects` 1
/// (`KISEKI_FSCK_LIST`) also that every block metadata references exists in object
/// storage and none is leaked; with 2 (`KISEKI_FSCK_READ`) also reads every block and
/// checks it against its recorded checksums. Other values are EINVAL.
/// Works while the volume is mounted (a snapshot is checked). The problems found, one
/// per line, go into `report` of `size` bytes, truncated and NUL-terminated (`report`
/// may be NULL when `size` is 0). Returns the number of problems (0: consistent) or
/// -errno.
#[no_mangle]
pub unsafe extern "C" fn kiseki_fsck(
    meta_url: *const c_char,
    objects: c_int,
    report: *mut c_char,
    size: usize,
) -> c_int {
    call("kiseki_fsck", || {
        let url = match opt_text(meta_url, "meta_url")? {
            Some(u) => u.to_string(),
            None => kiseki_core::defaults::default_volume().meta_url,
        };
        use kiseki_core::admin::ObjectCheck;
        let check = match objects {
            0 => ObjectCheck::Skip,
            KISEKI_FSCK_LIST => ObjectCheck::List,
            KISEKI_FSCK_READ => ObjectCheck::Read,
            n => {
                return Err(Fail::new(
                    libc::EINVAL,
                    format!("objects {n}: expected 0, KISEKI_FSCK_LIST or KISEKI_FSCK_READ"),
                ))
            }
        };
        let r = kiseki_core::admin::fsck(&url, check)?;
        if size > 0 {
            let out = buf_mut(report.cast(), size)?;
            let text = r.problems.join("\n");
            let n = text.len().min(size - 1);
            out[..n].copy_from_slice(&text.as_bytes()[..n]);
            out[n] = 0;
        }
        Ok(r.problems.len().min(c_int::MAX as usize) as c_int)
    })
}

/// A description of this thread's most recent failure (owned by the library, valid
/// until this thread's next failing call; an empty string if none).
#[no_mangle]
pub extern "C" fn kiseki_last_error() -> *const c_char {
    error::last_ptr()
}

// ---------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------

/// Opens `path` like open(2): `flags` are the `O_*` flags of `<fcntl.h>` (O_RDONLY,
/// O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_NOFOLLOW, O_DIRECTORY, ...),
/// `mode` the permissions of a created file (the process umask applies). Returns a
/// descriptor of this `fs`, to close with `kiseki_close`.
#[no_mangle]
pub unsafe extern "C" fn kiseki_open(
    fs: *mut kiseki_fs,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    call("kiseki_open", || {
        let c = conn(fs)?;
        let path = text(path, "path")?;
        let file = c.client.open(path, flags, (mode & 0o7777) as u16)?;
        c.table.insert(Open::File(Arc::new(file)))
    })
}

/// Closes a descriptor. Everything written through it is stored in the volume
/// (object storage and metadata) when this returns 0, so it survives a crash of this
/// process and other clients see it; `kiseki_fsync` first for power-loss durability. A
/// failure to store it is reported here (-EIO) and the descriptor is closed anyway.
#[no_mangle]
pub unsafe extern "C" fn kiseki_close(fs: *mut kiseki_fs, fd: c_int) -> c_int {
    call("kiseki_close", || {
        let c = conn(fs)?;
        match c.table.remove(fd)? {
            Open::File(f) => f.close().map_err(Fail::from).and_then(ok),
            Open::Dir(d) => d.dir.close().map_err(Fail::from).and_then(ok),
        }
    })
}

/// Reads up to `count` bytes at the descriptor's position into `buf` and advances it.
/// Returns the number read, 0 at the end of the file.
#[no_mangle]
pub unsafe extern "C" fn kiseki_read(
    fs: *mut kiseki_fs,
    fd: c_int,
    buf: *mut c_void,
    count: usize,
) -> libc::ssize_t {
    call("kiseki_read", || {
        let f = conn(fs)?.table.file(fd)?;
        let out = buf_mut(buf, count)?;
        len_result(f.read(out)?)
    })
}

/// Writes `count` bytes from `buf` at the descriptor's position (at the end with
/// O_APPEND) and advances it. Returns `count`. The data is durable after
/// `kiseki_fsync` or `kiseki_close`.
#[no_mangle]
pub unsafe extern "C" fn kiseki_write(
    fs: *mut kiseki_fs,
    fd: c_int,
    buf: *const c_void,
    count: usize,
) -> libc::ssize_t {
    call("kiseki_write", || {
        let f = conn(fs)?.table.file(fd)?;
        let data = self::buf(buf, count)?;
        len_result(f.write(data)?)
    })
}

/// Reads up to `count` bytes at `offset` without moving the position.
#[no_mangle]
pub unsafe extern "C" fn kiseki_pread(
    fs: *mut kiseki_fs,
    fd: c_int,
    buf: *mut c_void,
    count: usize,
    offset: libc::off_t,
) -> libc::ssize_t {
    call("kiseki_pread", || {
        let f = conn(fs)?.table.file(fd)?;
        let off = self::offset(offset)?;
        let out = buf_mut(buf, count)?;
        len_result(f.pread(out, off)?)
    })
}

/// Writes `count` bytes at `offset` without moving the position (at the end with
/// O_APPEND, as on Linux).
#[no_mangle]
pub unsafe extern "C" fn kiseki_pwrite(
    fs: *mut kiseki_fs,
    fd: c_int,
    buf: *const c_void,
    count: usize,
    offset: libc::off_t,
) -> libc::ssize_t {
    call("kiseki_pwrite", || {
        let f = conn(fs)?.table.file(fd)?;
        let off = self::offset(offset)?;
        let data = self::buf(buf, count)?;
        len_result(f.pwrite(data, off)?)
    })
}

/// Moves the position like lseek(2): `whence` is SEEK_SET, SEEK_CUR, SEEK_END,
/// SEEK_DATA or SEEK_HOLE. Returns the new position.
#[no_mangle]
pub unsafe extern "C" fn kiseki_lseek(
    fs: *mut kiseki_fs,
    fd: c_int,
    offset: libc::off_t,
    whence: c_int,
) -> libc::off_t {
    call("kiseki_lseek", || {
        let f = conn(fs)?.table.file(fd)?;
        Ok(f.seek(offset, whence)? as libc::off_t)
    })
}

/// Makes everything written through the descriptor durable (object storage and a
/// synced metadata commit) before returning 0.
#[no_mangle]
pub unsafe extern "C" fn kiseki_fsync(fs: *mut kiseki_fs, fd: c_int) -> c_int {
    call("kiseki_fsync", || {
        let f = conn(fs)?.table.file(fd)?;
        ok(f.fsync()?)
    })
}

/// Sets the length of an open file (which must be open for writing).
#[no_mangle]
pub unsafe extern "C" fn kiseki_ftruncate(
    fs: *mut kiseki_fs,
    fd: c_int,
    length: libc::off_t,
) -> c_int {
    call("kiseki_ftruncate", || {
        let f = conn(fs)?.table.file(fd)?;
        ok(f.ftruncate(offset(length)?)?)
    })
}

/// Fills `st` with the attributes of an open file (its length includes data written
/// but not yet flushed).
#[no_mangle]
pub unsafe extern "C" fn kiseki_fstat(fs: *mut kiseki_fs, fd: c_int, st: *mut libc::stat) -> c_int {
    call("kiseki_fstat", || {
        let c = conn(fs)?;
        let s = c.table.file(fd)?.fstat()?;
        fill_stat(st, &s, c.dev).and_then(ok)
    })
}

// ---------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------

/// stat(2): follows a final symbolic link.
#[no_mangle]
pub unsafe extern "C" fn kiseki_stat(
    fs: *mut kiseki_fs,
    path: *const c_char,
    st: *mut libc::stat,
) -> c_int {
    call("kiseki_stat", || {
        let c = conn(fs)?;
        let s = c.client.stat(text(path, "path")?)?;
        fill_stat(st, &s, c.dev).and_then(ok)
    })
}

/// lstat(2): a final symbolic link is described itself.
#[no_mangle]
pub unsafe extern "C" fn kiseki_lstat(
    fs: *mut kiseki_fs,
    path: *const c_char,
    st: *mut libc::stat,
) -> c_int {
    call("kiseki_lstat", || {
        let c = conn(fs)?;
        let s = c.client.lstat(text(path, "path")?)?;
        fill_stat(st, &s, c.dev).and_then(ok)
    })
}

/// access(2) for this process's user: `mode` is F_OK or a mask of R_OK, W_OK, X_OK.
#[no_mangle]
pub unsafe extern "C" fn kiseki_access(
    fs: *mut kiseki_fs,
    path: *const c_char,
    mode: c_int,
) -> c_int {
    call("kiseki_access", || {
        if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
            return Err(Fail::new(libc::EINVAL, format!("access mode {mode:#o}")));
        }
        ok(conn(fs)?.client.access(text(path, "path")?, mode as u32)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn kiseki_mkdir(
    fs: *mut kiseki_fs,
    path: *const c_char,
    mode: libc::mode_t,
) -> c_int {
    call("kiseki_mkdir", || {
        ok(conn(fs)?
            .client
            .mkdir(text(path, "path")?, (mode & 0o7777) as u16)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn kiseki_rmdir(fs: *mut kiseki_fs, path: *const c_char) -> c_int {
    call("kiseki_rmdir", || {
        ok(conn(fs)?.client.rmdir(text(path, "path")?)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn kiseki_unlink(fs: *mut kiseki_fs, path: *const c_char) -> c_int {
    call("kiseki_unlink", || {
        ok(conn(fs)?.client.unlink(text(path, "path")?)?)
    })
}

/// Puts back what the trash keeps at `path`: an hour directory of `/.trash` (every
/// entry in it) or one entry, never overwriting. Stores the entries restored in
/// `*restored` and those left in the trash (name taken, directory gone, not permitted)
/// in `*left`; either pointer may be NULL. Returns 0, or -1 with errno when `path` is
/// not in the trash.
#[no_mangle]
pub unsafe extern "C" fn kiseki_restore(
    fs: *mut kiseki_fs,
    path: *const c_char,
    restored: *mut u64,
    left: *mut u64,
) -> c_int {
    call("kiseki_restore", || {
        let r = conn(fs)?.client.restore(text(path, "path")?)?;
        if !restored.is_null() {
            restored.write(r.restored);
        }
        if !left.is_null() {
            left.write(r.failed.len() as u64);
        }
        ok(())
    })
}

/// `kiseki_clone`'s `flags`: keep modes, times and (for root) owners.
pub const KISEKI_CLONE_PRESERVE: u32 = 1;

/// Copy `src` (a file, a symlink or a whole directory tree) to `dst`, which must not
/// exist, by metadata only: the copy shares the source's data and is independent from
/// then on. `flags` 0, or `KISEKI_CLONE_PRESERVE` to keep modes, times and (for root)
/// owners. Stores the entries made in `*entries` and the bytes shared in `*bytes`;
/// either pointer may be NULL. Returns 0, or -1 with errno.
#[no_mangle]
pub unsafe extern "C" fn kiseki_clone(
    fs: *mut kiseki_fs,
    src: *const c_char,
    dst: *const c_char,
    flags: u32,
    entries: *mut u64,
    bytes: *mut u64,
) -> c_int {
    call("kiseki_clone", || {
        if flags & !KISEKI_CLONE_PRESERVE != 0 {
            return Err(Fail::new(
                libc::EINVAL,
                format!("kiseki_clone flags {flags:#x}"),
            ));
        }
        let preserve = flags & KISEKI_CLONE_PRESERVE != 0;
        let c = conn(fs)?
            .client
            .clone_tree(text(src, "src")?, text(dst, "dst")?, preserve)?;
        if !entries.is_null() {
            entries.write(c.entries);
        }
        if !bytes.is_null() {
            bytes.write(c.bytes);
        }
        ok(())
    })
}

/// rename(2), or renameat2(2) with `flags` RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2).
#[no_mangle]
pub unsafe extern "C" fn kiseki_rename(
    fs: *mut kiseki_fs,
    oldpath: *const c_char,
    newpath: *const c_char,
    flags: c_uint,
) -> c_int {
    call("kiseki_rename", || {
        let c = conn(fs)?;
        let (from, to) = (text(oldpath, "oldpath")?, text(newpath, "newpath")?);
        ok(c.client.rename(from, to, flags)?)
    })
}

/// link(2): a new name `newpath` for `oldpath` (a final symlink is not followed).
#[no_mangle]
pub unsafe extern "C" fn kiseki_link(
    fs: *mut kiseki_fs,
    oldpath: *const c_char,
    newpath: *const c_char,
) -> c_int {
    call("kiseki_link", || {
        let c = conn(fs)?;
        let (from, to) = (text(oldpath, "oldpath")?, text(newpath, "newpath")?);
        ok(c.client.link(from, to)?)
    })
}

/// symlink(2): creates `linkpath` pointing to `target` (stored as given).
#[no_mangle]
pub unsafe extern "C" fn kiseki_symlink(
    fs: *mut kiseki_fs,
    target: *const c_char,
    linkpath: *const c_char,
) -> c_int {
    call("kiseki_symlink", || {
        let c = conn(fs)?;
        let (target, link) = (text(target, "target")?, text(linkpath, "linkpath")?);
        ok(c.client.symlink(target, link)?)
    })
}

/// readlink(2): copies the target into `buf` without a terminating NUL, truncated to
/// `size`; returns the number of bytes copied.
#[no_mangle]
pub unsafe extern "C" fn kiseki_readlink(
    fs: *mut kiseki_fs,
    path: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> libc::ssize_t {
    call("kiseki_readlink", || {
        let target = conn(fs)?.client.readlink(text(path, "path")?)?;
        if size == 0 {
            return Err(Fail::new(libc::EINVAL, "readlink buffer size is 0"));
        }
        let out = buf_mut(buf.cast(), size)?;
        let n = target.len().min(size);
        out[..n].copy_from_slice(&target[..n]);
        len_result(n)
    })
}

#[no_mangle]
pub unsafe extern "C" fn kiseki_chmod(
    fs: *mut kiseki_fs,
    path: *const c_char,
    mode: libc::mode_t,
) -> c_int {
    call("kiseki_chmod", || {
        // The file-type bits are ignored, as chmod(2) ignores them.
        ok(conn(fs)?
            .client
            .chmod(text(path, "path")?, (mode & 0o7777) as u16)?)
    })
}

/// chown(2): `(uid_t)-1` or `(gid_t)-1` leaves that id unchanged. Follows a final
/// symlink.
#[no_mangle]
pub unsafe extern "C" fn kiseki_chown(
    fs: *mut kiseki_fs,
    path: *const c_char,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> c_int {
    call("kiseki_chown", || {
        let uid = (uid != u32::MAX).then_some(uid);
        let gid = (gid != u32::MAX).then_some(gid);
        ok(conn(fs)?
            .client
            .chown(text(path, "path")?, uid, gid, true)?)
    })
}

fn time_set(t: &libc::timespec) -> Result<Option<TimeSet>> {
    match t.tv_nsec {
        libc::UTIME_OMIT => Ok(None),
        libc::UTIME_NOW => Ok(Some(TimeSet::Now)),
        n if (0..1_000_000_000).contains(&n) => Ok(Some(TimeSet::At(Timespec {
            sec: t.tv_sec,
            nsec: n as u32,
        }))),
        n => Err(Fail::new(libc::EINVAL, format!("tv_nsec {n}"))),
    }
}

/// utimensat(2): `times[0]` is the access time, `times[1]` the modification time;
/// `tv_nsec` may be UTIME_NOW or UTIME_OMIT; `times` NULL sets both to now. `flags` is
/// 0 or AT_SYMLINK_NOFOLLOW.
#[no_mangle]
pub unsafe extern "C" fn kiseki_utimens(
    fs: *mut kiseki_fs,
    path: *const c_char,
    times: *const libc::timespec,
    flags: c_int,
) -> c_int {
    call("kiseki_utimens", || {
        if flags & !libc::AT_SYMLINK_NOFOLLOW != 0 {
            return Err(Fail::new(libc::EINVAL, format!("utimens flags {flags:#x}")));
        }
        let (atime, mtime) = if times.is_null() {
            (Some(TimeSet::Now), Some(TimeSet::Now))
        } else {
            let t = std::slice::from_raw_parts(times, 2);
            (time_set(&t[0])?, time_set(&t[1])?)
        };
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        ok(conn(fs)?
            .client
            .utimens(text(path, "path")?, atime, mtime, follow)?)
    })
}

/// truncate(2).
#[no_mangle]
pub unsafe extern "C" fn kiseki_truncate(
    fs: *mut kiseki_fs,
    path: *const c_char,
    length: libc::off_t,
) -> c_int {
    call("kiseki_truncate", || {
        let len = offset(length)?;
        ok(conn(fs)?.client.truncate(text(path, "path")?, len)?)
    })
}

/// The process's metrics (every Kiseki client of it counted together) as OpenMetrics
/// text, the series a mount serves to Prometheus. Writes at most `len` bytes, the last
/// a NUL, into `buf` (which may be NULL when `len` is 0) and returns the text's length
/// without the NUL, as snprintf(3) does: a result of `len` or more means it was cut.
#[no_mangle]
pub unsafe extern "C" fn kiseki_stats(
    fs: *mut kiseki_fs,
    buf: *mut c_char,
    len: usize,
) -> libc::ssize_t {
    call("kiseki_stats", || {
        let text = conn(fs)?.client.stats_text()?;
        if len > 0 {
            if buf.is_null() {
                return Err(Fail::new(libc::EFAULT, "buf is NULL"));
            }
            let n = text.len().min(len - 1);
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
        len_result(text.len())
    })
}

/// statvfs(3) of the volume (`path` must exist): capacity and free space in 4 KiB
/// blocks, inode counts, name limit 255.
#[no_mangle]
pub unsafe extern "C" fn kiseki_statvfs(
    fs: *mut kiseki_fs,
    path: *const c_char,
    st: *mut libc::statvfs,
) -> c_int {
    call("kiseki_statvfs", || {
        let c = conn(fs)?;
        c.client.stat(text(path, "path")?)?;
        let s = c.client.statvfs()?;
        if st.is_null() {
            return Err(Fail::new(libc::EFAULT, "struct statvfs pointer is NULL"));
        }
        let v = StatVfs::from(s);
        let mut out: libc::statvfs = std::mem::zeroed();
        out.f_bsize = v.bsize;
        out.f_frsize = v.bsize;
        out.f_blocks = v.blocks;
        out.f_bfree = v.bfree;
        out.f_bavail = v.bavail;
        out.f_files = v.files;
        out.f_ffree = v.ffree;
        out.f_favail = v.ffree;
        out.f_namemax = v.namemax;
        st.write(out);
        Ok(0)
    })
}

/// getxattr(2): copies the value of attribute `name` into `value` of `size` bytes.
/// With `size` 0 returns the value's length; a too small buffer is -ERANGE; a missing
/// attribute -ENODATA.
#[no_mangle]
pub unsafe extern "C" fn kiseki_getxattr(
    fs: *mut kiseki_fs,
    path: *const c_char,
    name: *const c_char,
    value: *mut c_void,
    size: usize,
) -> libc::ssize_t {
    call("kiseki_getxattr", || {
        let c = conn(fs)?;
        let (path, name) = (text(path, "path")?, text(name, "name")?);
        let v = c.client.getxattr(path, name.as_bytes(), true)?;
        copy_out(&v, value, size)
    })
}

/// setxattr(2): `flags` 0, XATTR_CREATE (1) or XATTR_REPLACE (2).
#[no_mangle]
pub unsafe extern "C" fn kiseki_setxattr(
    fs: *mut kiseki_fs,
    path: *const c_char,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    call("kiseki_setxattr", || {
        let c = conn(fs)?;
        let (path, name) = (text(path, "path")?, text(name, "name")?);
        let flags = u32::try_from(flags)
            .map_err(|_| Fail::new(libc::EINVAL, format!("setxattr flags {flags}")))?;
        let v = buf(value, size)?;
        ok(c.client.setxattr(path, name.as_bytes(), v, flags, true)?)
    })
}

/// listxattr(2): the attribute names, each followed by a NUL, into `list` of `size`
/// bytes. With `size` 0 returns the length needed; a too small buffer is -ERANGE.
#[no_mangle]
pub unsafe extern "C" fn kiseki_listxattr(
    fs: *mut kiseki_fs,
    path: *const c_char,
    list: *mut c_char,
    size: usize,
) -> libc::ssize_t {
    call("kiseki_listxattr", || {
        let names = conn(fs)?.client.listxattr(text(path, "path")?, true)?;
        copy_out(&join_xattr_names(&names), list.cast(), size)
    })
}

#[no_mangle]
pub unsafe extern "C" fn kiseki_removexattr(
    fs: *mut kiseki_fs,
    path: *const c_char,
    name: *const c_char,
) -> c_int {
    call("kiseki_removexattr", || {
        let c = conn(fs)?;
        let (path, name) = (text(path, "path")?, text(name, "name")?);
        ok(c.client.removexattr(path, name.as_bytes(), true)?)
    })
}

// ---------------------------------------------------------------------------------
// Directory streams
// ---------------------------------------------------------------------------------

/// Opens a directory for `kiseki_readdir`. Returns a descriptor (of the same table as
/// files) to close with `kiseki_closedir`.
#[no_mangle]
pub unsafe extern "C" fn kiseki_opendir(fs: *mut kiseki_fs, path: *const c_char) -> c_int {
    call("kiseki_opendir", || {
        let c = conn(fs)?;
        let dir = c.client.opendir(text(path, "path")?)?;
        c.table.insert(Open::Dir(Arc::new(DirStream {
            dir,
            pending: Mutex::new(VecDeque::new()),
        })))
    })
}

/// Reads the next entry of a directory stream into `entry` (`.` and `..` come first).
/// Returns 1 when an entry was stored, 0 at the end of the directory.
#[no_mangle]
pub unsafe extern "C" fn kiseki_readdir(
    fs: *mut kiseki_fs,
    dirfd: c_int,
    entry: *mut kiseki_dirent,
) -> c_int {
    call("kiseki_readdir", || {
        let d = conn(fs)?.table.dir(dirfd)?;
        if entry.is_null() {
            return Err(Fail::new(libc::EFAULT, "kiseki_dirent pointer is NULL"));
        }
        let mut pending = d.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            pending.extend(d.dir.next_page(false)?);
        }
        let Some(e) = pending.pop_front() else {
            return Ok(0);
        };
        let mut out = kiseki_dirent {
            d_ino: e.ino.0,
            d_type: e.kind.dirent_type(),
            d_name: [0; 256],
        };
        // Names are at most 255 bytes (NAME_MAX), so the NUL always fits.
        for (dst, &b) in out.d_name.iter_mut().zip(e.name.iter().take(255)) {
            *dst = b as c_char;
        }
        entry.write(out);
        Ok(1)
    })
}

/// Starts a directory stream over from its first entry.
#[no_mangle]
pub unsafe extern "C" fn kiseki_rewinddir(fs: *mut kiseki_fs, dirfd: c_int) -> c_int {
    call("kiseki_rewinddir", || {
        let d = conn(fs)?.table.dir(dirfd)?;
        let mut pending = d.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.clear();
        ok(d.dir.rewind()?)
    })
}

/// Closes a directory stream.
#[no_mangle]
pub unsafe extern "C" fn kiseki_closedir(fs: *mut kiseki_fs, dirfd: c_int) -> c_int {
    call("kiseki_closedir", || {
        let c = conn(fs)?;
        c.table.dir(dirfd)?;
        match c.table.remove(dirfd)? {
            Open::Dir(d) => ok(d.dir.close()?),
            Open::File(f) => ok(f.close()?),
        }
    })
}

#[cfg(test)]
mod tests;
