//! The path-level API the C and Python front-ends wrap: a [`Client`] connected to a
//! volume, path operations shaped like POSIX, and [`File`]s with a position.
//!
//! Paths are relative to the volume root (a leading `/` is the root). Symbolic links
//! are followed in every component but the last, and in the last unless the operation
//! works on the link itself (lstat, readlink, unlink, O_NOFOLLOW); an absolute link
//! target starts again at the volume root. More than 40 links is ELOOP.
//!
//! Every method is synchronous and thread safe: it runs on the process-wide runtime.
//!
//! A client belongs to the process that connected it. In a forked child its clients,
//! files and directories fail with EBADF (the parent's engine and runtime threads are
//! not there) and dropping them does nothing; the child connects its own client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::Fs;
use crate::data::DataConfig;
use crate::error::{Error, Result};
use crate::meta::{
    Attr, CloneOpts, Ctx, DirEntry, Entry, FileKind, FormatOptions, Ino, Meta, SetAttr, StatFs,
    TimeSet, Timespec, VolumeFormat,
};
use crate::runtime::block_on;
use crate::size::parse_size;

const MAX_SYMLINKS: usize = 40;
const PATH_MAX: usize = 4096;

/// Options of a library client, also parsed from `key=value,key=value` strings.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub data: DataConfig,
    pub read_only: bool,
    pub meta_sync: bool,
    /// What to call this client in `kiseki status`.
    pub name: String,
    /// A session without a heartbeat for this long is dead: other clients then free
    /// its locks and open-unlinked files (default 60 s).
    pub session_ttl: Option<std::time::Duration>,
    /// Act as this caller instead of the process's own identity (`uid=`, `gid=`,
    /// `groups=1:2:3`, `umask=022`): permission checks and the owner of new files use
    /// it, as a FUSE mount uses the identity of each calling process. Taking another
    /// identity needs root, as setuid(2) does.
    pub caller: CallerOptions,
    /// Serve Prometheus metrics at this address (`metrics=IP:PORT`; `metrics=off`
    /// for none). Mounts serve them at [`crate::metrics::DEFAULT_ADDR`] unless told
    /// otherwise, moving to the next free port when it is taken; library clients only
    /// when asked.
    pub metrics: Option<String>,
    /// Back the metadata up into the bucket this often (`backup-meta=1h`; 0 or unset:
    /// never). Mounts do it hourly unless told otherwise (see `data::backup`).
    pub backup_meta: Option<std::time::Duration>,
    /// Backups kept (`backup-keep=N`; default 24).
    pub backup_keep: Option<usize>,
}

/// See [`ClientOptions::caller`]; `None` keeps the process's own value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerOptions {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Option<Vec<u32>>,
    pub umask: Option<u16>,
}

impl CallerOptions {
    /// Whether any field is set (library clients only; a mount takes each caller's).
    pub fn is_set(&self) -> bool {
        *self != CallerOptions::default()
    }

    /// The process's identity with these overrides; EPERM when a process that is not
    /// root asks for an identity it does not have.
    fn apply(&self, mut ctx: Ctx, mut umask: u16) -> Result<(Ctx, u16)> {
        let own = ctx.clone();
        if let Some(u) = self.uid {
            ctx.uid = u;
        }
        if let Some(g) = self.gid {
            ctx.gid = g;
        }
        if let Some(gs) = &self.groups {
            ctx.groups = gs.clone();
        }
        if let Some(m) = self.umask {
            umask = m & 0o777;
        }
        let widened = ctx.uid != own.uid
            || !own.in_group(ctx.gid)
            || ctx.groups.iter().any(|g| !own.in_group(*g));
        if !own.is_root() && widened {
            return Err(Error::NotPermitted(format!(
                "acting as uid {} gid {} groups {:?} needs root",
                ctx.uid, ctx.gid, ctx.groups
            )));
        }
        Ok((ctx, umask))
    }
}

impl ClientOptions {
    /// Parses `buffer-size=256M,spill-size=1G,spill-dir=/x,cache-dir=/var/cache/k,
    /// cache-size=10G,memory-cache-size=512M,max-uploads=20,upload-limit=100M,writeback,
    /// read-only,meta-sync` (sizes take K/M/G/T; `upload-limit` is per second).
    pub fn parse(s: &str) -> Result<Self> {
        let mut o = ClientOptions::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            o.apply(item)?;
        }
        Ok(o)
    }

    /// Applies one `key=value` or flag option (also the mount's `-o` options); an
    /// unknown key is EINVAL naming it. `_` and `-` are interchangeable in keys.
    pub fn apply(&mut self, item: &str) -> Result<()> {
        let bad = |m: String| Error::Invalid(m);
        let (k, v) = item
            .split_once('=')
            .map_or((item, None), |(k, v)| (k.trim(), Some(v.trim())));
        let key = k.replace('_', "-");
        let value = || v.ok_or_else(|| bad(format!("option {k} needs a value")));
        let size = || -> Result<u64> { parse_size(value()?).map_err(bad) };
        match key.as_str() {
            "buffer-size" => self.data.buffer_memory = size()? as usize,
            "spill-size" => self.data.buffer_spill = size()? as usize,
            "memory-cache-size" => self.data.cache_memory = size()?,
            "cache-size" => self.data.cache_disk = size()?,
            "cache-dir" => {
                self.data.cache_dirs = value()?
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(Into::into)
                    .collect();
                if self.data.cache_dirs.is_empty() {
                    return Err(bad(format!("cache-dir {v:?}: no directory")));
                }
            }
            "cache-partial-only" => self.data.cache_partial_only = true,
            "free-space-ratio" => {
                self.data.free_space_ratio = value()?
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..1.0).contains(r))
                    .ok_or_else(|| {
                        bad(format!("free-space-ratio {v:?}: a fraction from 0 to 0.99"))
                    })?
            }
            "spill-dir" => self.data.spill_dir = Some(value()?.into()),
            "max-uploads" => {
                self.data.max_uploads = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| bad(format!("max-uploads {v:?}: a number from 1 to 1024")))?
            }
            "upload-limit" => self.data.upload_limit = size()?,
            "prefetch" => {
                self.data.prefetch = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= 256)
                    .ok_or_else(|| bad(format!("prefetch {v:?}: a number from 0 to 256")))?
            }
            // In MiB, as JuiceFS's option (a size with a unit is taken as it says).
            "max-readahead" => {
                let v = value()?;
                self.data.max_readahead = match v.parse::<u64>() {
                    Ok(mib) => mib.checked_mul(1 << 20),
                    Err(_) => parse_size(v).ok(),
                }
                .filter(|n| *n <= 16 << 30)
                .ok_or_else(|| bad(format!("max-readahead {v:?}: MiB, 0 to 16384")))?
            }
            "writeback" => self.data.writeback = true,
            "metrics" => {
                self.metrics = match value()? {
                    "off" | "none" | "" => None,
                    a => {
                        a.parse::<std::net::SocketAddr>().map_err(|_| {
                            bad(format!("metrics {a:?}: an IP:PORT address, or off"))
                        })?;
                        Some(a.to_string())
                    }
                }
            }
            "backup-meta" => {
                self.backup_meta = Some(parse_interval(value()?).ok_or_else(|| {
                    bad(format!("backup-meta {v:?}: 0, or seconds or 30m, 1h, 1d"))
                })?)
            }
            "backup-keep" => {
                let n = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| bad(format!("backup-keep {v:?}: 1 to 10000")))?;
                self.backup_keep = Some(n);
            }
            "read-only" | "ro" => self.read_only = true,
            "meta-sync" => self.meta_sync = true,
            "name" => self.name = v.unwrap_or_default().to_string(),
            "session-ttl" => {
                let secs = value()?
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| bad(format!("session-ttl {v:?}: whole seconds, 1 to 86400")))?;
                self.session_ttl = Some(std::time::Duration::from_secs(secs));
            }
            "uid" | "gid" => {
                let id = value()?
                    .parse::<u32>()
                    .map_err(|_| bad(format!("{k}={v:?}: not a number")))?;
                if key == "uid" {
                    self.caller.uid = Some(id);
                } else {
                    self.caller.gid = Some(id);
                }
            }
            "groups" => {
                let groups = value()?
                    .split(':')
                    .filter(|g| !g.is_empty())
                    .map(|g| g.trim().parse::<u32>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| bad(format!("groups={v:?}: numbers separated by ':'")))?;
                self.caller.groups = Some(groups);
            }
            "umask" => {
                let m = u16::from_str_radix(value()?, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| bad(format!("umask={v:?}: an octal mode")))?;
                self.caller.umask = Some(m);
            }
            _ => return Err(bad(format!("unknown option {k:?}"))),
        }
        Ok(())
    }
}

/// An interval: whole seconds, or a number with `s`, `m`, `h` or `d`; at most a year.
fn parse_interval(v: &str) -> Option<std::time::Duration> {
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    })?;
    (secs <= 366 * 86_400).then(|| std::time::Duration::from_secs(secs))
}

/// `stat(2)` of a path or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    pub attr: Attr,
}

fn caller() -> (Ctx, u16) {
    // SAFETY: these calls cannot fail; getgroups gets a buffer of the size it reports.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut()).max(0) as usize;
        let mut groups = vec![0; n];
        let n = libc::getgroups(n as i32, groups.as_mut_ptr()).max(0) as usize;
        groups.truncate(n);
        let mask = libc::umask(0o022);
        libc::umask(mask);
        (
            Ctx {
                uid: libc::geteuid(),
                gid: libc::getegid(),
                groups,
                pid: std::process::id(),
            },
            mask as u16 & 0o777,
        )
    }
}

pub struct Client {
    /// The one strong owner of the client's [`Fs`] (files hold weak references), so
    /// `close` can release the engine while callers still hold the `Client`.
    slot: Mutex<Option<Arc<Fs>>>,
    ctx: Ctx,
    umask: u16,
    /// The process that connected; see the module docs on fork.
    pid: u32,
}

/// The file system behind a [`File`] or [`Dir`] (`what`), unless that object or its
/// client is closed or it belongs to the parent of a fork.
fn live(fs: &Weak<Fs>, pid: u32, closed: &AtomicBool, what: &str) -> Result<Arc<Fs>> {
    same_process(pid)?;
    if closed.load(Ordering::SeqCst) {
        return Err(Error::BadHandle(format!("{what} is closed")));
    }
    fs.upgrade()
        .ok_or_else(|| Error::BadHandle("the client is closed".into()))
}

/// Releases handle `fh` when a [`File`] or [`Dir`] is closed or dropped: nothing to do
/// in a forked child (the handle is the parent's) or once the client closed (its close
/// released every handle).
fn release(fs: &Weak<Fs>, pid: u32, fh: u64) -> Result<()> {
    same_process(pid)?;
    match fs.upgrade() {
        Some(fs) => block_on(fs.release(fh)),
        None => Ok(()),
    }
}

/// EBADF in a forked child for an object created by process `pid`.
fn same_process(pid: u32) -> Result<()> {
    let me = std::process::id();
    if me == pid {
        Ok(())
    } else {
        Err(Error::BadHandle(format!(
            "this kiseki client was connected by process {pid} and cannot be used in its \
             forked child {me}; connect a new client in the child"
        )))
    }
}

impl Client {
    /// Connects to the volume at `meta_url`, or to the embedded default volume
    /// (formatted on first use) when `None`.
    pub fn connect(meta_url: Option<&str>, opts: &ClientOptions) -> Result<Client> {
        let (ctx, umask) = caller();
        let (ctx, umask) = opts.caller.apply(ctx, umask)?;
        let fs = Fs::connect(meta_url, opts, "library")?;
        Ok(Client {
            slot: Mutex::new(Some(fs)),
            ctx,
            umask,
            pid: std::process::id(),
        })
    }

    /// Formats a volume, after checking that its object store works (see
    /// [`ObjectStore::probe`](crate::data::store::ObjectStore::probe)).
    pub fn format(meta_url: &str, opts: &FormatOptions) -> Result<VolumeFormat> {
        let planned = crate::meta::format::validate(opts)?;
        let store = crate::data::store::ObjectStore::open(&planned)?;
        crate::runtime::block_on(store.probe(true))?;
        Meta::format(meta_url, opts)
    }

    /// The inode-level file system under this client; EBADF once closed. Holding the
    /// returned `Arc` keeps the volume open: drop it before [`Client::close`].
    pub fn fs(&self) -> Result<Arc<Fs>> {
        same_process(self.pid)?;
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::BadHandle("the client is closed".into()))
    }

    /// `st_dev` for this volume's files: derived from the volume uuid, so stable across
    /// connections and distinct between volumes (the C and Python stat results).
    pub fn device(&self) -> Result<u64> {
        let fs = self.fs()?;
        let hex: String = fs
            .meta()
            .volume()
            .uuid
            .chars()
            .filter(|c| *c != '-')
            .take(16)
            .collect();
        Ok(u64::from_str_radix(&hex, 16).unwrap_or(0) >> 1)
    }

    fn root_entry(&self) -> Result<Entry> {
        self.fs()?.live()?;
        Ok(Entry {
            ino: Ino::ROOT,
            attr: self.fs()?.getattr(Ino::ROOT)?,
        })
    }

    fn check_path(path: &str) -> Result<()> {
        if path.is_empty() {
            return Err(Error::NotFound("empty path".into()));
        }
        // PATH_MAX counts the terminating NUL, as the kernel does.
        if path.len() >= PATH_MAX {
            return Err(Error::NameTooLong {
                len: path.len(),
                max: PATH_MAX,
            });
        }
        if path.contains('\0') {
            return Err(Error::Invalid("path contains NUL".into()));
        }
        Ok(())
    }

    /// Resolves `path`; `follow` decides whether a final symlink is followed.
    fn walk(&self, path: &str, follow: bool) -> Result<Entry> {
        Self::check_path(path)?;
        let mut rest: VecDeque<Vec<u8>> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let mut cur = self.root_entry()?;
        let mut links = 0;
        while let Some(name) = rest.pop_front() {
            if name == b"." {
                // `file/.` names nothing: `.` needs a directory before it.
                if cur.attr.kind != FileKind::Dir {
                    return Err(Error::NotDir(path.to_string()));
                }
                continue;
            }
            let e = self.fs()?.lookup(&self.ctx, cur.ino, &name)?;
            if e.attr.kind == FileKind::Symlink && (follow || !rest.is_empty()) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::Loop(path.to_string()));
                }
                let target = self.fs()?.readlink(e.ino)?;
                if target.first() == Some(&b'/') {
                    cur = self.root_entry()?;
                }
                for c in target.split(|&b| b == b'/').rev().filter(|c| !c.is_empty()) {
                    rest.push_front(c.to_vec());
                }
                continue;
            }
            cur = e;
        }
        if path.ends_with('/') && cur.attr.kind != FileKind::Dir {
            return Err(Error::NotDir(path.to_string()));
        }
        Ok(cur)
    }

    /// The directory holding the last component of `path`, and that component.
    fn parent(&self, path: &str) -> Result<(Ino, Vec<u8>)> {
        Self::check_path(path)?;
        let trimmed = path.trim_end_matches('/');
        let (dir, name) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        if name.is_empty() {
            return Err(Error::Busy("the volume root".into()));
        }
        let parent = if dir.is_empty() {
            self.root_entry()?
        } else {
            self.walk(dir, true)?
        };
        if parent.attr.kind != FileKind::Dir {
            return Err(Error::NotDir(dir.to_string()));
        }
        Ok((parent.ino, name.as_bytes().to_vec()))
    }

    pub fn stat(&self, path: &str) -> Result<Stat> {
        let e = self.walk(path, true)?;
        Ok(Stat {
            ino: e.ino,
            attr: e.attr,
        })
    }

    pub fn lstat(&self, path: &str) -> Result<Stat> {
        let e = self.walk(path, false)?;
        Ok(Stat {
            ino: e.ino,
            attr: e.attr,
        })
    }

    pub fn exists(&self, path: &str) -> bool {
        self.stat(path).is_ok()
    }

    /// True when `path` names the volume root (`/`, `.`, `//./`), which has no parent
    /// entry: calls that would create or remove it answer as Linux does for `/`.
    fn is_root(path: &str) -> bool {
        path.split('/').all(|c| c.is_empty() || c == ".")
    }

    pub fn mkdir(&self, path: &str, mode: u16) -> Result<()> {
        if !path.is_empty() && Self::is_root(path) {
            return Err(Error::Exists(path.into()));
        }
        let (p, name) = self.parent(path)?;
        self.fs()?.mkdir(&self.ctx, p, &name, mode, self.umask)?;
        Ok(())
    }

    pub fn rmdir(&self, path: &str) -> Result<()> {
        let (p, name) = self.parent(path)?;
        self.fs()?.rmdir(&self.ctx, p, &name)
    }

    pub fn unlink(&self, path: &str) -> Result<()> {
        if !path.is_empty() && Self::is_root(path) {
            return Err(Error::IsDir(path.into()));
        }
        if path.ends_with('/') {
            let e = self.walk(path, false)?;
            if e.attr.kind == FileKind::Dir {
                return Err(Error::IsDir(path.into()));
            }
        }
        let (p, name) = self.parent(path)?;
        self.fs()?.unlink(&self.ctx, p, &name)
    }

    /// Puts back what the trash keeps at `path`: an hour directory of `/.trash` (every
    /// entry in it) or one entry (see [`crate::meta::Meta::restore`]).
    pub fn restore(&self, path: &str) -> Result<crate::meta::trash::Restored> {
        let e = self.walk(path, false)?;
        self.fs()?.restore(&self.ctx, e.ino)
    }

    /// Clones `src` (a file, symlink or whole directory tree; a final symlink is cloned,
    /// not followed) as `dst` by metadata only (see [`super::Fs::clone_tree`]).
    pub fn clone_tree(&self, src: &str, dst: &str, preserve: bool) -> Result<super::Cloned> {
        let e = self.walk(src, false)?;
        let (p, name) = self.parent(dst)?;
        let fs = self.fs()?;
        block_on(fs.clone_tree(&self.ctx, e.ino, p, &name, CloneOpts { preserve }))
    }

    pub fn rename(&self, from: &str, to: &str, flags: u32) -> Result<()> {
        let (sp, sn) = self.parent(from)?;
        let (dp, dn) = self.parent(to)?;
        self.fs()?.rename(&self.ctx, sp, &sn, dp, &dn, flags)
    }

    pub fn link(&self, existing: &str, new: &str) -> Result<()> {
        let src = self.walk(existing, false)?;
        let (p, name) = self.parent(new)?;
        self.fs()?.link(&self.ctx, src.ino, p, &name)?;
        Ok(())
    }

    pub fn symlink(&self, target: &str, linkpath: &str) -> Result<()> {
        let (p, name) = self.parent(linkpath)?;
        self.fs()?.symlink(&self.ctx, p, &name, target.as_bytes())?;
        Ok(())
    }

    pub fn readlink(&self, path: &str) -> Result<Vec<u8>> {
        let e = self.walk(path, false)?;
        self.fs()?.readlink(e.ino)
    }

    pub fn mknod(&self, path: &str, mode: u32, rdev: u32) -> Result<()> {
        let (p, name) = self.parent(path)?;
        self.fs()?
            .mknod(&self.ctx, p, &name, mode, self.umask, rdev)?;
        Ok(())
    }

    fn set(&self, path: &str, follow: bool, req: &SetAttr) -> Result<Attr> {
        let e = self.walk(path, follow)?;
        block_on(self.fs()?.setattr(&self.ctx, e.ino, req))
    }

    pub fn chmod(&self, path: &str, mode: u16) -> Result<()> {
        self.set(
            path,
            true,
            &SetAttr {
                mode: Some(mode),
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    /// chown(2); `None` leaves the owner or group unchanged (-1).
    pub fn chown(
        &self,
        path: &str,
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
    ) -> Result<()> {
        self.set(
            path,
            follow,
            &SetAttr {
                uid,
                gid,
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    /// utimensat(2): `None` is UTIME_OMIT.
    pub fn utimens(
        &self,
        path: &str,
        atime: Option<TimeSet>,
        mtime: Option<TimeSet>,
        follow: bool,
    ) -> Result<()> {
        self.set(
            path,
            follow,
            &SetAttr {
                atime,
                mtime,
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    pub fn truncate(&self, path: &str, size: u64) -> Result<()> {
        self.set(
            path,
            true,
            &SetAttr {
                size: Some(size),
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    /// Every entry of a directory, `.` and `..` first.
    pub fn readdir(&self, path: &str) -> Result<Vec<DirEntry>> {
        self.read_dir_to_end(path, false)
    }

    /// Every entry of a directory but `.` and `..`, each with its attributes from the
    /// listing itself (scandir: no stat per entry).
    pub fn scandir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let mut all = self.read_dir_to_end(path, true)?;
        all.retain(|e| e.name != b"." && e.name != b"..");
        Ok(all)
    }

    fn read_dir_to_end(&self, path: &str, plus: bool) -> Result<Vec<DirEntry>> {
        let dir = self.opendir(path)?;
        let mut out = Vec::new();
        loop {
            let page = dir.next_page(plus)?;
            if page.is_empty() {
                break;
            }
            out.extend(page);
        }
        dir.close()?;
        Ok(out)
    }

    /// opendir(3): a directory stream read in pages (`.` and `..` first). Entries
    /// added or removed while it is read may or may not show, as with POSIX.
    pub fn opendir(&self, path: &str) -> Result<Dir> {
        let e = self.walk(path, true)?;
        if e.attr.kind != FileKind::Dir {
            return Err(Error::NotDir(path.into()));
        }
        let fs = self.fs()?;
        let (fh, _) = block_on(fs.open(&self.ctx, e.ino, libc::O_RDONLY | libc::O_DIRECTORY))?;
        Ok(Dir {
            fs: Arc::downgrade(&fs),
            fh,
            ino: e.ino,
            cookie: Mutex::new(0),
            closed: AtomicBool::new(false),
            pid: self.pid,
        })
    }

    /// The process's metrics (every client of it counted together; see
    /// [`crate::metrics`]) as (`name{labels}`, value) samples.
    pub fn stats(&self) -> Result<Vec<(String, f64)>> {
        self.fs()?;
        Ok(crate::metrics::samples())
    }

    /// The same as OpenMetrics text.
    pub fn stats_text(&self) -> Result<String> {
        self.fs()?;
        Ok(crate::metrics::render())
    }

    pub fn statvfs(&self) -> Result<StatFs> {
        self.fs()?.statfs()
    }

    pub fn access(&self, path: &str, mask: u32) -> Result<()> {
        let e = self.walk(path, true)?;
        self.fs()?.access(&self.ctx, e.ino, mask)
    }

    pub fn getxattr(&self, path: &str, name: &[u8], follow: bool) -> Result<Vec<u8>> {
        let e = self.walk(path, follow)?;
        self.fs()?.getxattr(&self.ctx, e.ino, name)
    }

    pub fn setxattr(
        &self,
        path: &str,
        name: &[u8],
        value: &[u8],
        flags: u32,
        follow: bool,
    ) -> Result<()> {
        let e = self.walk(path, follow)?;
        self.fs()?.setxattr(&self.ctx, e.ino, name, value, flags)
    }

    pub fn listxattr(&self, path: &str, follow: bool) -> Result<Vec<Vec<u8>>> {
        let e = self.walk(path, follow)?;
        self.fs()?.listxattr(&self.ctx, e.ino)
    }

    pub fn removexattr(&self, path: &str, name: &[u8], follow: bool) -> Result<()> {
        let e = self.walk(path, follow)?;
        self.fs()?.removexattr(&self.ctx, e.ino, name)
    }

    /// open(2): `flags` are the POSIX O_* flags, `mode` applies when creating.
    pub fn open(&self, path: &str, flags: i32, mode: u16) -> Result<File> {
        self.open_following(path, flags, mode, 0)
    }

    /// open(2) of `path`, which `links` symlinks with O_CREAT led to so far.
    fn open_following(&self, path: &str, flags: i32, mode: u16, links: usize) -> Result<File> {
        if flags & libc::O_CREAT != 0 && flags & libc::O_DIRECTORY != 0 {
            // Linux 6.4+: O_CREAT|O_DIRECTORY is EINVAL and creates nothing.
            return Err(Error::Invalid("O_CREAT with O_DIRECTORY".into()));
        }
        let creat_root = flags & libc::O_CREAT != 0 && !path.is_empty() && Self::is_root(path);
        if creat_root && flags & libc::O_EXCL != 0 {
            return Err(Error::Exists(path.into()));
        }
        if creat_root {
            return Err(Error::IsDir(path.into()));
        }
        // The attributes come back from open/create: no extra metadata read.
        let (fh, ino, attr) = if flags & libc::O_CREAT != 0 {
            let (p, name) = self.parent(path)?;
            if path.ends_with('/') {
                return Err(Error::IsDir(path.into()));
            }
            // An existing symlink as the last component is followed unless O_EXCL or
            // O_NOFOLLOW, as open(2) does, creating its target if that is missing.
            match self.fs()?.lookup(&self.ctx, p, &name) {
                Ok(e)
                    if e.attr.kind == FileKind::Symlink
                        && flags & (libc::O_EXCL | libc::O_NOFOLLOW) == 0 =>
                {
                    if links >= MAX_SYMLINKS {
                        return Err(Error::Loop(path.into()));
                    }
                    let target = self.fs()?.readlink(e.ino)?;
                    let target = String::from_utf8(target).map_err(|_| {
                        Error::Invalid(format!("symlink {path} has a non-UTF-8 target"))
                    })?;
                    let next = if target.starts_with('/') {
                        target
                    } else {
                        match path.trim_end_matches('/').rfind('/') {
                            Some(i) => format!("{}/{target}", &path[..i]),
                            None => target,
                        }
                    };
                    return self.open_following(&next, flags, mode, links + 1);
                }
                Ok(e)
                    if e.attr.kind == FileKind::Symlink
                        && flags & libc::O_NOFOLLOW != 0
                        && flags & libc::O_EXCL == 0 =>
                {
                    return Err(Error::Loop(path.into()))
                }
                _ => {
                    let (fh, e) = block_on(
                        self.fs()?
                            .create(&self.ctx, p, &name, mode, self.umask, flags),
                    )?;
                    (fh, e.ino, e.attr)
                }
            }
        } else {
            let e = self.walk(path, flags & libc::O_NOFOLLOW == 0)?;
            if e.attr.kind == FileKind::Symlink {
                return Err(Error::Loop(path.into()));
            }
            let (fh, attr) = block_on(self.fs()?.open(&self.ctx, e.ino, flags))?;
            (fh, e.ino, attr)
        };
        if attr.kind == FileKind::Dir
            && flags & libc::O_DIRECTORY == 0
            && flags & libc::O_ACCMODE != libc::O_RDONLY
        {
            let _ = block_on(self.fs()?.release(fh));
            return Err(Error::IsDir(path.into()));
        }
        Ok(File {
            fs: Arc::downgrade(&self.fs()?),
            ctx: self.ctx.clone(),
            fh,
            ino,
            kind: attr.kind,
            flags,
            pos: Mutex::new(0),
            closed: AtomicBool::new(false),
            pid: self.pid,
        })
    }

    /// Flushes every open file, waits for background work and ends the session; files
    /// of this client fail with EBADF afterwards. When it returns the volume can be
    /// connected again (RocksDB allows one opener). Idempotent; dropping the client
    /// closes it too, without reporting errors.
    pub fn close(&self) -> Result<()> {
        let Some(fs) = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        if same_process(self.pid).is_err() {
            // A forked child: the engine and its threads are the parent's; touching them
            // could hang or corrupt. Forget this copy.
            std::mem::forget(fs);
            return Ok(());
        }
        let result = block_on(fs.shutdown());
        // Calls other threads began before the close may still hold the file system
        // for a moment (they fail fast now); wait so the engine is released on return.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&fs) > 1 {
            if std::time::Instant::now() > deadline {
                tracing::warn!("the closed client is still referenced; the volume stays open");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(fs);
        result
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!("closing the client: {e}");
        }
    }
}

/// An open file with its own position. Thread safe; `close` (or drop) flushes.
pub struct File {
    fs: Weak<Fs>,
    ctx: Ctx,
    fh: u64,
    ino: Ino,
    kind: FileKind,
    flags: i32,
    pos: Mutex<u64>,
    closed: AtomicBool,
    pid: u32,
}

impl File {
    /// The file system, unless this file or its client is closed.
    fn live(&self) -> Result<Arc<Fs>> {
        live(&self.fs, self.pid, &self.closed, "file")
    }

    fn pos(&self) -> std::sync::MutexGuard<'_, u64> {
        self.pos.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ino(&self) -> Ino {
        self.ino
    }

    pub fn flags(&self) -> i32 {
        self.flags
    }

    /// True for a directory opened with O_RDONLY (io.FileIO refuses those).
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    /// pread(2) straight into `buf`.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let fs = self.live()?;
        block_on(fs.read_into(self.fh, off, buf))
    }

    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut pos = self.pos();
        let n = self.pread(buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    /// pwrite(2); with O_APPEND the data goes to the end, as on Linux.
    pub fn pwrite(&self, data: &[u8], off: u64) -> Result<usize> {
        let fs = self.live()?;
        let off = (self.flags & libc::O_APPEND == 0).then_some(off);
        block_on(fs.write(&self.ctx, self.fh, off, data))?;
        Ok(data.len())
    }

    pub fn write(&self, data: &[u8]) -> Result<usize> {
        let mut pos = self.pos();
        let fs = self.live()?;
        let off = (self.flags & libc::O_APPEND == 0).then_some(*pos);
        let at = block_on(fs.write(&self.ctx, self.fh, off, data))?;
        *pos = at + data.len() as u64;
        Ok(data.len())
    }

    /// lseek(2) with SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA and SEEK_HOLE.
    pub fn seek(&self, off: i64, whence: i32) -> Result<u64> {
        let fs = self.live()?;
        let mut pos = self.pos();
        let base: i128 = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => i128::from(*pos),
            libc::SEEK_END => i128::from(fs.length(self.ino)?),
            libc::SEEK_DATA | libc::SEEK_HOLE => {
                let start =
                    u64::try_from(off).map_err(|_| Error::NoSuchOffset(format!("offset {off}")))?;
                let p = block_on(fs.seek_data(self.fh, start, whence))?;
                *pos = p;
                return Ok(p);
            }
            other => return Err(Error::Invalid(format!("seek whence {other}"))),
        };
        let target = base + i128::from(off);
        if target < 0 || target > i128::from(i64::MAX) {
            return Err(Error::Invalid(format!("seek to {target}")));
        }
        *pos = target as u64;
        Ok(*pos)
    }

    pub fn tell(&self) -> u64 {
        *self.pos()
    }

    /// Uploads and commits what was written through this file, as close does, without
    /// closing: other clients see it afterwards.
    pub fn flush(&self) -> Result<()> {
        let fs = self.live()?;
        block_on(fs.flush(self.fh))
    }

    pub fn fsync(&self) -> Result<()> {
        let fs = self.live()?;
        block_on(fs.fsync(self.fh))
    }

    pub fn ftruncate(&self, size: u64) -> Result<()> {
        let fs = self.live()?;
        if self.flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Err(Error::Invalid(
                "ftruncate of a file not open for writing".into(),
            ));
        }
        let req = SetAttr {
            size: Some(size),
            via_handle: true,
            ..Default::default()
        };
        block_on(fs.setattr(&self.ctx, self.ino, &req)).map(|_| ())
    }

    pub fn fstat(&self) -> Result<Stat> {
        let fs = self.live()?;
        Ok(Stat {
            ino: self.ino,
            attr: fs.getattr(self.ino)?,
        })
    }

    pub fn fallocate(&self, mode: i32, off: u64, len: u64) -> Result<()> {
        let fs = self.live()?;
        block_on(fs.fallocate(&self.ctx, self.fh, mode, off, len))
    }

    /// copy_file_range(2) from this file into `dst` (sharing slices, no data copy).
    pub fn copy_range_to(&self, off_in: u64, dst: &File, off_out: u64, len: u64) -> Result<u64> {
        let fs = self.live()?;
        dst.live()?;
        block_on(fs.copy_file_range(&self.ctx, self.fh, off_in, dst.fh, off_out, len))
    }

    /// Flushes and closes; a second close is EBADF. After the client closed there is
    /// nothing left to do: the client's close flushed and released every file.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(Error::BadHandle("file already closed".into()));
        }
        release(&self.fs, self.pid, self.fh)
    }

    /// Bumps atime/mtime to now, as `touch` does.
    pub fn touch(&self) -> Result<()> {
        let fs = self.live()?;
        let now = Some(TimeSet::At(Timespec::now()));
        let req = SetAttr {
            atime: now,
            mtime: now,
            via_handle: true,
            ..Default::default()
        };
        block_on(fs.setattr(&self.ctx, self.ino, &req)).map(|_| ())
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::SeqCst) || same_process(self.pid).is_err() {
            return;
        }
        if let Err(e) = release(&self.fs, self.pid, self.fh) {
            tracing::warn!("closing inode {} on drop: {e}", self.ino);
        }
    }
}

/// Entries per page a [`Dir`] reads from the metadata engine.
const DIR_PAGE: usize = 256;

/// An open directory stream (opendir/readdir/closedir). Thread safe; `close` (or drop)
/// releases it.
pub struct Dir {
    fs: Weak<Fs>,
    fh: u64,
    ino: Ino,
    /// The readdir cookie after the last entry returned.
    cookie: Mutex<u64>,
    closed: AtomicBool,
    pid: u32,
}

impl Dir {
    fn live(&self) -> Result<Arc<Fs>> {
        live(&self.fs, self.pid, &self.closed, "directory")
    }

    pub fn ino(&self) -> Ino {
        self.ino
    }

    /// The next entries (empty at the end). With `plus` each carries its attributes as
    /// this client sees them (for scandir without a stat per entry).
    pub fn next_page(&self, plus: bool) -> Result<Vec<DirEntry>> {
        let fs = self.live()?;
        let mut cookie = self.cookie.lock().unwrap_or_else(|p| p.into_inner());
        let page = fs.readdir(self.fh, *cookie, DIR_PAGE, plus)?;
        if let Some(last) = page.last() {
            *cookie = last.offset;
        }
        Ok(page)
    }

    /// rewinddir(3).
    pub fn rewind(&self) -> Result<()> {
        self.live()?;
        *self.cookie.lock().unwrap_or_else(|p| p.into_inner()) = 0;
        Ok(())
    }

    /// closedir(3); a second close is EBADF.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(Error::BadHandle("directory already closed".into()));
        }
        release(&self.fs, self.pid, self.fh)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::SeqCst) || same_process(self.pid).is_err() {
            return;
        }
        if let Err(e) = release(&self.fs, self.pid, self.fh) {
            tracing::warn!("closing directory inode {} on drop: {e}", self.ino);
        }
    }
}
