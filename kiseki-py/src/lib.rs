//! `kiseki._kiseki`: the Rust half of the Python package. It exposes kiseki-core's
//! path-level [`Client`] and [`File`] with POSIX-shaped calls; the pure-Python package
//! (`python/kiseki`) builds `open()`, `os`-like helpers and the fsspec filesystem on it.
//!
//! Every call that can block releases the GIL (`Python::detach`), so Python threads
//! run Kiseki I/O in parallel. Failures are `OSError(errno, strerror, filename)`,
//! which Python turns into `FileNotFoundError`, `IsADirectoryError`, ... by errno.

mod buffer;

use std::sync::Arc;

use kiseki_core::meta::{DirEntry, FileKind, FormatOptions, Ino, TimeSet, Timespec};
use kiseki_core::vfs::{self, ClientOptions, Stat, StatVfs, BLKSIZE};
use kiseki_core::Error;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use buffer::Buffer;

/// The text of `errno` as `os.strerror` gives it.
fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Errnos whose strerror says all a user needs; others carry Kiseki's detail (which
/// object failed, which option is invalid, ...).
fn plain(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOENT
            | libc::EEXIST
            | libc::ENOTDIR
            | libc::EISDIR
            | libc::ENOTEMPTY
            | libc::EACCES
            | libc::EPERM
            | libc::ENAMETOOLONG
            | libc::ENODATA
            | libc::EXDEV
    )
}

fn os_error(e: Error, paths: &[&str]) -> PyErr {
    let errno = e.errno();
    let text = if plain(errno) {
        strerror(errno)
    } else {
        format!("{}: {e}", strerror(errno))
    };
    match paths {
        [] => PyOSError::new_err((errno, text)),
        [p] => PyOSError::new_err((errno, text, p.to_string())),
        [p, q, ..] => PyOSError::new_err((errno, text, p.to_string(), None::<i32>, q.to_string())),
    }
}

trait OrRaise<T> {
    fn raise(self, paths: &[&str]) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, Error> {
    fn raise(self, paths: &[&str]) -> PyResult<T> {
        self.map_err(|e| os_error(e, paths))
    }
}

/// `((mode, ino, dev, nlink, uid, gid, size), (atime_s, atime_ns, mtime_s, mtime_ns,
/// ctime_s, ctime_ns), (blksize, blocks, rdev))`: the Python side builds
/// `os.stat_result` (pyo3 converts tuples of at most 12 items).
type StatTuple = (
    (u32, u64, u64, u32, u32, u32, u64),
    (i64, u32, i64, u32, i64, u32),
    (u32, u64, u32),
);

/// `(name, ino, is_dir, is_symlink, stat)` of one scandir entry.
type ScanEntry = (String, u64, bool, bool, StatTuple);

/// `os.statvfs_result` fields in order.
type StatvfsTuple = (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64);

fn stat_tuple(s: &Stat, dev: u64) -> StatTuple {
    let a = &s.attr;
    (
        (a.st_mode(), s.ino.0, dev, a.nlink, a.uid, a.gid, a.length),
        (
            a.atime.sec,
            a.atime.nsec,
            a.mtime.sec,
            a.mtime.nsec,
            a.ctime.sec,
            a.ctime.nsec,
        ),
        (BLKSIZE, a.blocks(), a.rdev),
    )
}

fn name(e: &DirEntry) -> String {
    String::from_utf8_lossy(&e.name).into_owned()
}

/// Creates a volume; `options` are `key=value` strings (storage, bucket, block-size,
/// compression, capacity, inodes, region, access-key, secret-key). Returns
/// `(name, uuid)`.
#[pyfunction]
fn format(
    py: Python<'_>,
    meta_url: &str,
    name: &str,
    options: Vec<(String, String)>,
) -> PyResult<(String, String)> {
    let mut o = FormatOptions::parse(name, "").map_err(|e| os_error(e, &[]))?;
    for (k, v) in &options {
        o.set(k, v).map_err(|e| os_error(e, &[]))?;
    }
    let f = py
        .detach(|| vfs::Client::format(meta_url, &o))
        .raise(&[meta_url])?;
    Ok((f.name, f.uuid))
}

/// A connection to one volume.
#[pyclass(module = "kiseki._kiseki", frozen)]
struct Client {
    inner: Arc<vfs::Client>,
    /// `st_dev` of this volume's files (`vfs::Client::device`).
    dev: u64,
    meta_url: Option<String>,
}

fn time_set(t: Option<(i64, u32)>) -> Option<TimeSet> {
    Some(match t {
        None => TimeSet::Now,
        Some((sec, nsec)) => TimeSet::At(Timespec { sec, nsec }),
    })
}

#[pymethods]
impl Client {
    /// Connects to `meta_url` (None: the embedded default volume); `options` are
    /// `key=value` or flag strings as `ClientOptions` parses them.
    #[new]
    #[pyo3(signature = (meta_url, options))]
    fn new(py: Python<'_>, meta_url: Option<String>, options: Vec<String>) -> PyResult<Self> {
        let mut opts = ClientOptions::default();
        for item in &options {
            opts.apply(item).map_err(|e| os_error(e, &[]))?;
        }
        if opts.name.is_empty() {
            opts.name = "python".into();
        }
        let url = meta_url.clone();
        let inner = py
            .detach(|| vfs::Client::connect(url.as_deref(), &opts))
            .raise(&meta_url.as_deref().map_or(vec![], |u| vec![u]))?;
        let dev = inner.device().map_err(|e| os_error(e, &[]))?;
        Ok(Client {
            inner: Arc::new(inner),
            dev,
            meta_url,
        })
    }

    #[getter]
    fn meta_url(&self) -> Option<String> {
        self.meta_url.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.fs().is_err()
    }

    /// Flushes every open file and ends the session; idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).raise(&[])
    }

    #[pyo3(signature = (path, follow=true))]
    fn stat(&self, py: Python<'_>, path: &str, follow: bool) -> PyResult<StatTuple> {
        let s = py
            .detach(|| {
                if follow {
                    self.inner.stat(path)
                } else {
                    self.inner.lstat(path)
                }
            })
            .raise(&[path])?;
        Ok(stat_tuple(&s, self.dev))
    }

    fn access(&self, py: Python<'_>, path: &str, mode: u32) -> bool {
        py.detach(|| self.inner.access(path, mode)).is_ok()
    }

    /// Names in a directory, without `.` and `..`.
    fn listdir(&self, py: Python<'_>, path: &str) -> PyResult<Vec<String>> {
        let entries = py.detach(|| self.inner.readdir(path)).raise(&[path])?;
        Ok(entries
            .iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .map(name)
            .collect())
    }

    /// `(name, ino, is_dir, is_symlink, stat)` of every entry but `.` and `..`, with
    /// attributes from the same listing (no stat per entry).
    fn scandir(&self, py: Python<'_>, path: &str) -> PyResult<Vec<ScanEntry>> {
        let entries = py.detach(|| self.inner.scandir(path)).raise(&[path])?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let attr = e.attr.clone()?;
                let st = Stat { ino: e.ino, attr };
                Some((
                    name(&e),
                    e.ino.0,
                    e.kind == FileKind::Dir,
                    e.kind == FileKind::Symlink,
                    stat_tuple(&st, self.dev),
                ))
            })
            .collect())
    }

    fn mkdir(&self, py: Python<'_>, path: &str, mode: u32) -> PyResult<()> {
        py.detach(|| self.inner.mkdir(path, (mode & 0o7777) as u16))
            .raise(&[path])
    }

    fn rmdir(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        py.detach(|| self.inner.rmdir(path)).raise(&[path])
    }

    fn unlink(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        py.detach(|| self.inner.unlink(path)).raise(&[path])
    }

    #[pyo3(signature = (src, dst, flags=0))]
    fn rename(&self, py: Python<'_>, src: &str, dst: &str, flags: u32) -> PyResult<()> {
        py.detach(|| self.inner.rename(src, dst, flags))
            .raise(&[src, dst])
    }

    fn link(&self, py: Python<'_>, src: &str, dst: &str) -> PyResult<()> {
        py.detach(|| self.inner.link(src, dst)).raise(&[src, dst])
    }

    fn symlink(&self, py: Python<'_>, target: &str, link: &str) -> PyResult<()> {
        py.detach(|| self.inner.symlink(target, link))
            .raise(&[target, link])
    }

    fn readlink(&self, py: Python<'_>, path: &str) -> PyResult<String> {
        let t = py.detach(|| self.inner.readlink(path)).raise(&[path])?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    #[pyo3(signature = (path, mode, follow=true))]
    fn chmod(&self, py: Python<'_>, path: &str, mode: u32, follow: bool) -> PyResult<()> {
        if !follow {
            // Linux has no lchmod: symlink modes are meaningless.
            return Err(PyOSError::new_err((
                libc::EOPNOTSUPP,
                strerror(libc::EOPNOTSUPP),
                path.to_string(),
            )));
        }
        // File-type bits are ignored, as chmod(2) ignores them.
        py.detach(|| self.inner.chmod(path, (mode & 0o7777) as u16))
            .raise(&[path])
    }

    /// chown; -1 leaves an id unchanged.
    #[pyo3(signature = (path, uid, gid, follow=true))]
    fn chown(&self, py: Python<'_>, path: &str, uid: i64, gid: i64, follow: bool) -> PyResult<()> {
        let id = |v: i64| -> PyResult<Option<u32>> {
            match v {
                -1 => Ok(None),
                v => u32::try_from(v)
                    .map(Some)
                    .map_err(|_| PyValueError::new_err(format!("invalid id {v}"))),
            }
        };
        let (uid, gid) = (id(uid)?, id(gid)?);
        py.detach(|| self.inner.chown(path, uid, gid, follow))
            .raise(&[path])
    }

    /// utime: times are `(seconds, nanoseconds)`, None meaning now.
    #[pyo3(signature = (path, atime, mtime, follow=true))]
    fn utime(
        &self,
        py: Python<'_>,
        path: &str,
        atime: Option<(i64, u32)>,
        mtime: Option<(i64, u32)>,
        follow: bool,
    ) -> PyResult<()> {
        py.detach(|| {
            self.inner
                .utimens(path, time_set(atime), time_set(mtime), follow)
        })
        .raise(&[path])
    }

    fn truncate(&self, py: Python<'_>, path: &str, size: u64) -> PyResult<()> {
        py.detach(|| self.inner.truncate(path, size)).raise(&[path])
    }

    #[pyo3(signature = (path, name, follow=true))]
    fn getxattr<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        name: &str,
        follow: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = py
            .detach(|| self.inner.getxattr(path, name.as_bytes(), follow))
            .raise(&[path])?;
        Ok(PyBytes::new(py, &v))
    }

    #[pyo3(signature = (path, name, value, flags=0, follow=true))]
    fn setxattr(
        &self,
        py: Python<'_>,
        path: &str,
        name: &str,
        value: Vec<u8>,
        flags: u32,
        follow: bool,
    ) -> PyResult<()> {
        py.detach(|| {
            self.inner
                .setxattr(path, name.as_bytes(), &value, flags, follow)
        })
        .raise(&[path])
    }

    #[pyo3(signature = (path, follow=true))]
    fn listxattr(&self, py: Python<'_>, path: &str, follow: bool) -> PyResult<Vec<String>> {
        let names = py
            .detach(|| self.inner.listxattr(path, follow))
            .raise(&[path])?;
        Ok(names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect())
    }

    #[pyo3(signature = (path, name, follow=true))]
    fn removexattr(&self, py: Python<'_>, path: &str, name: &str, follow: bool) -> PyResult<()> {
        py.detach(|| self.inner.removexattr(path, name.as_bytes(), follow))
            .raise(&[path])
    }

    /// `(bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax)`.
    fn statvfs(&self, py: Python<'_>) -> PyResult<StatvfsTuple> {
        let s = py.detach(|| self.inner.statvfs()).raise(&[])?;
        let v = StatVfs::from(s);
        Ok((
            v.bsize, v.bsize, v.blocks, v.bfree, v.bavail, v.files, v.ffree, v.ffree, 0, v.namemax,
        ))
    }

    /// Puts back a trash hour directory or entry: (entries restored, why each other
    /// entry stayed).
    fn restore(&self, py: Python<'_>, path: &str) -> PyResult<(u64, Vec<String>)> {
        let r = py.detach(|| self.inner.restore(path)).raise(&[path])?;
        Ok((r.restored, r.failed))
    }

    /// Clones `src` (a file, symlink or tree) as `dst` by metadata only; returns the
    /// entries made and the bytes now shared.
    #[pyo3(signature = (src, dst, preserve=false))]
    fn clone_tree(
        &self,
        py: Python<'_>,
        src: &str,
        dst: &str,
        preserve: bool,
    ) -> PyResult<(u64, u64)> {
        let c = py
            .detach(|| self.inner.clone_tree(src, dst, preserve))
            .raise(&[src, dst])?;
        Ok((c.entries, c.bytes))
    }

    /// The process's metrics: `{"name{labels}": value}`.
    fn stats(&self, py: Python<'_>) -> PyResult<std::collections::HashMap<String, f64>> {
        let s = py.detach(|| self.inner.stats()).raise(&[])?;
        Ok(s.into_iter().collect())
    }

    /// open(2): returns the raw file (the Python side wraps it in `io` objects).
    fn open(&self, py: Python<'_>, path: &str, flags: i32, mode: u32) -> PyResult<RawFile> {
        let f = py
            .detach(|| self.inner.open(path, flags, (mode & 0o7777) as u16))
            .raise(&[path])?;
        Ok(RawFile {
            inner: f,
            dev: self.dev,
        })
    }

    /// Copies `src` to `dst` (created or truncated) by sharing its slices: no data is
    /// read or written. Returns the bytes copied.
    fn copy_file(&self, py: Python<'_>, src: &str, dst: &str) -> PyResult<u64> {
        py.detach(|| -> Result<u64, Error> {
            let s = self.inner.open(src, libc::O_RDONLY, 0)?;
            let len = s.fstat()?.attr.length;
            let d = self
                .inner
                .open(dst, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o666)?;
            let mut done = 0;
            while done < len {
                let n = s.copy_range_to(done, &d, done, len - done)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            d.close()?;
            s.close()?;
            Ok(done)
        })
        .raise(&[src, dst])
    }
}

/// An open file: unbuffered POSIX reads and writes with a position.
#[pyclass(module = "kiseki._kiseki", frozen)]
struct RawFile {
    inner: vfs::File,
    dev: u64,
}

#[pymethods]
impl RawFile {
    /// Reads into `buffer` (any writable contiguous buffer) with no intermediate copy.
    fn readinto(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let buf = Buffer::writable(buffer)?;
        let raw = buf.raw();
        // SAFETY: `buf` keeps the exporter's memory alive and exported until it drops,
        // after this call.
        py.detach(|| self.inner.read(unsafe { buffer::slice_mut(raw) }))
            .raise(&[])
    }

    /// preadv-style: reads into `buffer` at `offset` without moving the position.
    fn preadinto(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>, offset: u64) -> PyResult<usize> {
        let buf = Buffer::writable(buffer)?;
        let raw = buf.raw();
        // SAFETY: as in readinto.
        py.detach(|| self.inner.pread(unsafe { buffer::slice_mut(raw) }, offset))
            .raise(&[])
    }

    /// Everything from the position to the end of the file.
    fn readall<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let data = py
            .detach(|| -> Result<Vec<u8>, Error> {
                let mut out = Vec::new();
                loop {
                    let len = self.inner.fstat()?.attr.length;
                    let pos = self.inner.tell();
                    // At least one read past the end, so a file growing meanwhile or
                    // read at its end returns what is there.
                    let want = (len.saturating_sub(pos) as usize).max(64 << 10);
                    let start = out.len();
                    out.resize(start + want, 0);
                    let n = self.inner.read(&mut out[start..])?;
                    out.truncate(start + n);
                    if n == 0 {
                        return Ok(out);
                    }
                }
            })
            .raise(&[])?;
        Ok(PyBytes::new(py, &data))
    }

    /// Writes all of `buffer` (any contiguous buffer); returns its length.
    fn write(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let buf = Buffer::readable(buffer)?;
        let raw = buf.raw();
        // SAFETY: as in readinto.
        py.detach(|| self.inner.write(unsafe { buffer::slice(raw) }))
            .raise(&[])
    }

    fn pwrite(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>, offset: u64) -> PyResult<usize> {
        let buf = Buffer::readable(buffer)?;
        let raw = buf.raw();
        // SAFETY: as in readinto.
        py.detach(|| self.inner.pwrite(unsafe { buffer::slice(raw) }, offset))
            .raise(&[])
    }

    fn seek(&self, py: Python<'_>, offset: i64, whence: i32) -> PyResult<u64> {
        py.detach(|| self.inner.seek(offset, whence)).raise(&[])
    }

    fn tell(&self) -> u64 {
        self.inner.tell()
    }

    fn truncate(&self, py: Python<'_>, size: u64) -> PyResult<()> {
        py.detach(|| self.inner.ftruncate(size)).raise(&[])
    }

    fn fstat(&self, py: Python<'_>) -> PyResult<StatTuple> {
        let s = py.detach(|| self.inner.fstat()).raise(&[])?;
        Ok(stat_tuple(&s, self.dev))
    }

    /// Uploads what was written and commits it (visible to other clients); durable
    /// against a crash of this process.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush()).raise(&[])
    }

    /// Like flush, and power-loss durable.
    fn fsync(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.fsync()).raise(&[])
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).raise(&[])
    }

    #[getter]
    fn ino(&self) -> u64 {
        let Ino(i) = self.inner.ino();
        i
    }

    #[getter]
    fn flags(&self) -> i32 {
        self.inner.flags()
    }

    #[getter]
    fn is_dir(&self) -> bool {
        self.inner.is_dir()
    }
}

/// `kiseki fsck`: `(inodes, used_space, sustained, pending_deletions, blocks,
/// problems, in_use)`.
type FsckTuple = (u64, u64, u64, u64, u64, Vec<String>, bool);

#[pyfunction]
#[pyo3(signature = (meta_url, objects, read))]
fn fsck(py: Python<'_>, meta_url: Option<&str>, objects: bool, read: bool) -> PyResult<FsckTuple> {
    use kiseki_core::admin::ObjectCheck;
    let check = match (objects, read) {
        (_, true) => ObjectCheck::Read,
        (true, false) => ObjectCheck::List,
        (false, false) => ObjectCheck::Skip,
    };
    let url = match meta_url {
        Some(u) => u.to_string(),
        None => kiseki_core::defaults::default_volume().meta_url,
    };
    let r = py
        .detach(|| kiseki_core::admin::fsck(&url, check))
        .raise(&[&url])?;
    Ok((
        r.inodes,
        r.used_space,
        r.sustained,
        r.pending_deletions,
        r.blocks,
        r.problems,
        r.in_use,
    ))
}

#[pymodule]
fn _kiseki(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(format, m)?)?;
    m.add_function(wrap_pyfunction!(fsck, m)?)?;
    m.add_class::<Client>()?;
    m.add_class::<RawFile>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
