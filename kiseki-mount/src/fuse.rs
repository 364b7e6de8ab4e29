//! The FUSE adapter: translates fuser requests into calls on the kiseki-core inode API
//! ([`kiseki_core::vfs::Fs`]) and the results back into replies. No filesystem logic
//! lives here: permissions, POSIX rules and durability are the core's.
//!
//! Requests are served by several session threads (each with its own cloned
//! `/dev/fuse` descriptor), so a slow read or flush on one file does not stall others.
//! Inode numbers are the core's; they are never reused, so the generation is always 0
//! and `forget` has nothing to release. BSD flock and POSIX record locks are
//! negotiated with the kernel (`FUSE_FLOCK_LOCKS`, `FUSE_POSIX_LOCKS`) and kept in the
//! metadata engine, so they hold across every mount and client of the volume; a
//! blocking lock request waits on its own thread, never on a session thread.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::accesslog::{self, AccessLog, LOG};
use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use kiseki_core::meta::{
    Attr, Ctx, Entry, FileKind, Ino, LockType, LockWait, SetAttr, TimeSet, Timespec,
};
use kiseki_core::metrics::{fuse_op, METRICS};
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::{fit_xattr, join_xattr_names, Fs, StatVfs, XattrFit, BLKSIZE};

/// `ioctl(fd, KISEKI_IOC_COMPACT)` compacts the file (`kiseki compact`): `_IO('k', 1)`.
pub const KISEKI_IOC_COMPACT: u32 = (b'k' as u32) << 8 | 1;
/// `ioctl(fd, KISEKI_IOC_WARMUP, &mut [u64; 4])` (`kiseki warmup`): in, the file range
/// (offset, length) and flags ([`WARMUP_FILL`] fetches it into the caches, else it is
/// only counted); out, the range's data bytes and how many the caches hold.
/// `_IOWR('k', 2, [u64; 4])`: the kernel copies the 32 bytes both ways.
pub const KISEKI_IOC_WARMUP: u32 = 3 << 30 | 32 << 16 | (b'k' as u32) << 8 | 2;
pub const WARMUP_FILL: u64 = 1;
/// `ioctl(fd, KISEKI_IOC_METRICS, &mut [u8; 64])` on any file or directory of a mount
/// (`kiseki stats`): the address of its metrics endpoint, NUL-padded (empty without
/// one). `_IOR('k', 3, [u8; 64])`.
pub const KISEKI_IOC_METRICS: u32 = 2 << 30 | 64 << 16 | (b'k' as u32) << 8 | 3;
/// `ioctl(dirfd, KISEKI_IOC_RMR, name)` (`kiseki rmr`): removes entry `name` (NUL-padded,
/// at most 255 bytes) of the directory and everything under it inside the mount, as
/// the caller; returns the entries removed. `_IOW('k', 4, [u8; 256])`.
pub const KISEKI_IOC_RMR: u32 = 1 << 30 | 256 << 16 | (b'k' as u32) << 8 | 4;
/// `ioctl(fd, KISEKI_IOC_SUMMARY, &mut [u64; 4])` (`kiseki summary`): bytes of regular
/// files, files, directories and other entries of the tree at `fd`.
/// `_IOR('k', 5, [u64; 4])`.
pub const KISEKI_IOC_SUMMARY: u32 = 2 << 30 | 32 << 16 | (b'k' as u32) << 8 | 5;

/// `ioctl(fd, KISEKI_IOC_RESTORE, &mut [u8; 4096])` on an hour directory of the trash or
/// an entry in one (`kiseki restore`): puts it back. Out: entries restored and entries
/// left (u64 each, native endian), then why each was left, one line each, NUL-padded
/// (cut at the buffer's end). `_IOR('k', 6, [u8; 4096])`.
pub const KISEKI_IOC_RESTORE: u32 = 2 << 30 | 4096 << 16 | (b'k' as u32) << 8 | 6;
pub const RESTORE_OUT: usize = 4096;

/// `ioctl(dirfd, KISEKI_IOC_CLONE, &mut [u8; 528])` (`kiseki clone`): clones entry
/// `name` of the directory (and its tree) by metadata only. In: the name (NUL-padded,
/// 256 bytes), the destination directory's inode and flags ([`CLONE_PRESERVE`]) as u64
/// native endian, the new name (256 bytes). Out: entries made and bytes shared (u64
/// each, at the start). `_IOWR('k', 7, [u8; 528])`.
pub const KISEKI_IOC_CLONE: u32 = 3 << 30 | (CLONE_ARG as u32) << 16 | (b'k' as u32) << 8 | 7;
pub const CLONE_ARG: usize = 528;
pub const CLONE_PRESERVE: u64 = 1;

/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;
/// Directory entries fetched per readdir request (the reply buffer bounds the rest).
const READDIR_BATCH: usize = 512;

/// Kernel cache lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct CacheTimes {
    pub attr: Duration,
    pub entry: Duration,
    /// How long the kernel may remember that a name does not exist (0: not at all).
    pub negative: Duration,
}

type OpenStamp = (Timespec, Timespec, u64);

/// Files whose last open is remembered (see `KisekiFuse::opened`); past this the memory
/// is cleared, which only costs a page cache drop at the next open of each.
const OPENED_MAX: usize = 1 << 16;

pub struct KisekiFuse {
    fs: Arc<Fs>,
    ttl: CacheTimes,
    /// Open files may keep their page cache across opens: true when this mount is the
    /// only writer of the volume (an exclusive metadata engine).
    keep_cache: bool,
    /// On a shared engine: each file's (mtime, ctime, length) at its last open here. An
    /// open that finds them unchanged keeps the page cache (nobody wrote the file
    /// since); any other drops it (close-to-open).
    opened: std::sync::Mutex<std::collections::HashMap<u64, OpenStamp>>,
    /// Set once the session exists; used to drop the kernel's cached attributes of a
    /// file being opened when other clients may have changed it.
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

impl KisekiFuse {
    pub fn new(fs: Arc<Fs>, ttl: CacheTimes) -> Self {
        let keep_cache = fs.exclusive();
        KisekiFuse {
            fs,
            ttl,
            keep_cache,
            opened: Default::default(),
            notifier: Default::default(),
        }
    }

    /// Where the mount puts the session's notifier once it has one. The core is also
    /// given it, to drop attributes it changes without a reply saying so.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        let slot = self.notifier.clone();
        self.fs.set_invalidator(Box::new(move |i: Ino| {
            if let Some(n) = slot.get() {
                if let Err(e) = n.inval_inode(INodeNo(i.0), -1, 0) {
                    tracing::debug!("invalidating attributes of {i}: {e}");
                }
            }
        }));
        self.notifier.clone()
    }

    /// Close-to-open across clients: the kernel would otherwise keep serving the size
    /// and times it cached (for the attribute timeout) after another client's close.
    /// Attributes only (offset -1): no page lock is taken, so this cannot deadlock
    /// with the open in progress; the page cache is dropped by not keeping it.
    fn forget_cached_attributes(&self, i: INodeNo) {
        if !self.keep_cache {
            self.invalidate_attributes(i);
        }
    }

    /// Drops the kernel's cached attributes of `i` (offset -1: attributes only, no page
    /// lock, so safe during an open in progress).
    fn invalidate_attributes(&self, i: INodeNo) {
        if let Some(n) = self.notifier.get() {
            if let Err(e) = n.inval_inode(i, -1, 0) {
                tracing::debug!("invalidating attributes of {}: {e}", i.0);
            }
        }
    }

    /// The flags of an open of `i` whose attributes are now `attr`: keep the page cache
    /// when nobody else can have written the file since it was cached. On a shared
    /// engine that is when the file is unchanged since its last open here; otherwise
    /// its cached attributes go too.
    fn open_flags(&self, i: INodeNo, attr: &Attr) -> FopenFlags {
        if self.keep_cache {
            return FopenFlags::FOPEN_KEEP_CACHE;
        }
        let stamp = (attr.mtime, attr.ctime, attr.length);
        let unchanged = {
            let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
            if opened.len() >= OPENED_MAX {
                opened.clear();
            }
            opened.insert(i.0, stamp) == Some(stamp)
        };
        if unchanged {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            self.forget_cached_attributes(i);
            FopenFlags::empty()
        }
    }

    fn entry(&self, reply: ReplyEntry, r: Result<Entry, kiseki_core::Error>) {
        match r {
            Ok(e) => reply.entry(&self.ttl.entry, &file_attr(e.ino, &e.attr), Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }
}

/// The caller as the core's permission checks need it. Supplementary groups come from
/// `/proc/PID/status` (FUSE does not send them); root needs none.
fn ctx(req: &Request) -> Ctx {
    let (uid, gid, pid) = (req.uid(), req.gid(), req.pid());
    let groups = if uid == 0 {
        Vec::new()
    } else {
        supplementary_groups(pid)
    };
    Ctx {
        uid,
        gid,
        groups,
        pid,
    }
}

fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Times the FUSE request being handled on this thread (its latency histogram counts
/// it), names it to [`err`], which counts the failures of that operation, and writes
/// its line to the access log while someone reads that.
struct OpTimer {
    op: usize,
    start: std::time::Instant,
    /// The caller and the arguments, kept only while the access log is read.
    logged: Option<(u32, u32, u32, String)>,
}

thread_local! {
    static CURRENT_OP: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    /// The errno the current request failed with (0: none yet).
    static FAILED: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

impl OpTimer {
    fn start(op: usize, req: &Request) -> OpTimer {
        CURRENT_OP.set(op);
        FAILED.set(0);
        OpTimer {
            op,
            start: std::time::Instant::now(),
            logged: LOG
                .active()
                .then(|| (req.uid(), req.gid(), req.pid(), String::new())),
        }
    }

    /// The request's arguments for the access log (built only while it is read).
    fn args(&mut self, f: impl FnOnce() -> String) {
        if let Some(l) = &mut self.logged {
            l.3 = f();
        }
    }

    /// Not logged: the access log's own requests.
    fn quiet(&mut self) {
        self.logged = None;
    }
}

impl Drop for OpTimer {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        METRICS.fuse[self.op].latency.observe(took);
        CURRENT_OP.set(usize::MAX);
        if let Some((uid, gid, pid, args)) = self.logged.take() {
            let result = match FAILED.get() {
                0 => "OK".to_string(),
                e => std::io::Error::from_raw_os_error(e).to_string(),
            };
            LOG.push(&format!(
                "{} [uid:{uid},gid:{gid},pid:{pid}] {} ({args}): {result} <{:.6}>\n",
                crate::accesslog::now(),
                kiseki_core::metrics::FUSE_OPS[self.op],
                took.as_secs_f64()
            ));
        }
    }
}

fn err(e: kiseki_core::Error) -> Errno {
    if let Some(calls) = METRICS.fuse.get(CURRENT_OP.get()) {
        calls.errors.inc();
    }
    let code = e.errno();
    FAILED.set(code);
    if code == libc::EIO {
        tracing::warn!("{e}");
    } else {
        tracing::debug!("{e}");
    }
    Errno::from_i32(code)
}

/// Replies to a request whose answer is only success or an errno.
fn reply_empty(reply: ReplyEmpty, r: kiseki_core::Result<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

fn system_time(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec.into())
    }
}

fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut sec, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            Timespec { sec, nsec }
        }
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::Socket => FileType::Socket,
    }
}

fn file_attr(ino: Ino, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino.0),
        size: a.length,
        blocks: a.blocks(),
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.ctime),
        kind: file_type(a.kind),
        perm: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The access log's attributes: a file only root may read, its size unknown (reads go
/// straight to the mount).
fn accesslog_attr() -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(accesslog::INO),
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind: FileType::RegularFile,
        perm: 0o400,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timespec(t)),
    }
}

/// The kernel's `O_LARGEFILE` (libc's is 0 on 64-bit targets; the kernel still sets it).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const KERNEL_O_LARGEFILE: i32 = 0o100000;
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
const KERNEL_O_LARGEFILE: i32 = 0o400000;

/// Open flags as the caller gave them, without the bits the kernel adds itself. The
/// kernel's `__FMODE_EXEC` (an open by execve) is the core's `O_EXEC`, and stays.
fn user_flags(flags: i32) -> i32 {
    flags & !KERNEL_O_LARGEFILE
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

/// A directory entry's name from a NUL-padded ioctl field: none when empty, `.`, `..`
/// or holding a `/`.
fn entry_name(field: &[u8]) -> Option<&[u8]> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let n = &field[..end];
    (!n.is_empty() && n != b"." && n != b".." && !n.contains(&b'/')).then_some(n)
}

fn name(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

impl KisekiFuse {
    /// Runs a lock request; one that may wait runs on a thread of its own so that a
    /// lock held for minutes ties up no session thread. The kernel cannot take back a
    /// request it has sent (we do not handle FUSE INTERRUPT), so a waiter that got a
    /// signal, or was killed, would stay blocked until the lock came: the wait checks
    /// the calling thread instead and answers EINTR once it has a signal to take.
    fn lock(
        &self,
        req: &Request,
        sleep: bool,
        reply: ReplyEmpty,
        op: impl FnOnce(&Fs, LockWait<'_>) -> kiseki_core::Result<()> + Send + 'static,
    ) {
        let fs = self.fs.clone();
        if !sleep {
            return reply_empty(reply, op(&fs, LockWait::No));
        }
        let tid = req.pid();
        let spawned = std::thread::Builder::new()
            .name("kiseki-lockwait".into())
            .spawn(move || {
                let gave_up = move || caller_gave_up(tid);
                reply_empty(reply, op(&fs, LockWait::Until(&gave_up)))
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a lock wait thread: {e}");
            // The reply moved into the closure that failed to start is dropped, which
            // answers the kernel with an error.
        }
    }
}

/// Whether the thread `tid` that sent a blocking request has exited or has a signal
/// pending that it does not block (the kernel would have interrupted a local wait).
fn caller_gave_up(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let state = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .unwrap_or("");
    if state.contains("zombie") || state.contains("dead") {
        return true;
    }
    let pending = field("SigPnd:") | field("ShdPnd:");
    pending & !field("SigBlk:") != 0
}

impl Filesystem for KisekiFuse {
    /// The kernel is done with the mount (unmounted): requests still in flight stop
    /// waiting on an engine that does not answer, so the process can exit promptly.
    fn destroy(&mut self) {
        self.fs.begin_close();
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Optional capabilities: a kernel without one simply does without.
        for cap in [
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
            // The core clears setuid/setgid on write, truncate and fallocate by
            // unprivileged callers; without this the kernel asks for it with a chmod
            // in the caller's name, which a non-owner may not do.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
            // File handles (open_by_handle_at, NFS re-export): inode numbers are
            // stable across remounts and never reused.
            InitFlags::FUSE_EXPORT_SUPPORT,
            // open(O_TRUNC) arrives as an open with O_TRUNC, not as a setattr before
            // the open: the trash keeps what O_TRUNC drops, and only that.
            InitFlags::FUSE_ATOMIC_O_TRUNC,
        ] {
            let _ = config.add_capabilities(cap);
        }
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let mut _op = OpTimer::start(const { fuse_op("lookup") }, req);
        _op.args(|| format!("{},{}", parent.0, n.to_string_lossy()));
        if parent.0 == 1 && name(n) == accesslog::NAME {
            reply.entry(&self.ttl.entry, &accesslog_attr(), Generation(0));
            return;
        }
        // The kernel resolves `.` and `..` of paths itself; it asks for them only to
        // turn a file handle into an inode (export support).
        let r = match name(n) {
            b"." => self.fs.lookup_inode(ino(parent), false),
            b".." => self.fs.lookup_inode(ino(parent), true),
            n => self.fs.lookup(&ctx(req), ino(parent), n),
        };
        match r {
            // A negative entry (inode 0): the kernel answers ENOENT for the name itself
            // until it expires, or until this mount creates the name.
            Err(e) if e.errno() == libc::ENOENT && !self.ttl.negative.is_zero() => {
                let none = FileAttr {
                    ino: INodeNo(0),
                    size: 0,
                    blocks: 0,
                    atime: UNIX_EPOCH,
                    mtime: UNIX_EPOCH,
                    ctime: UNIX_EPOCH,
                    crtime: UNIX_EPOCH,
                    kind: FileType::RegularFile,
                    perm: 0,
                    nlink: 0,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    blksize: BLKSIZE,
                    flags: 0,
                };
                reply.entry(&self.ttl.negative, &none, Generation(0));
            }
            r => self.entry(reply, r),
        }
    }

    fn getattr(&self, req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut _op = OpTimer::start(const { fuse_op("getattr") }, req);
        _op.args(|| format!("{}", i.0));
        if i.0 == accesslog::INO {
            reply.attr(&self.ttl.attr, &accesslog_attr());
            return;
        }
        match self.fs.getattr(ino(i)) {
            Ok(a) => reply.attr(&self.ttl.attr, &file_attr(ino(i), &a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("setattr") }, req);
        _op.args(|| {
            format!(
                "{},mode={mode:?},uid={uid:?},gid={gid:?},size={size:?}",
                i.0
            )
        });
        if i.0 == accesslog::INO {
            reply.error(Errno::from_i32(libc::EPERM));
            return;
        }
        let set = SetAttr {
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(timespec),
            via_handle: fh.is_some(),
            kill_suid: false,
            // truncate(2) and ftruncate(2): only open(O_TRUNC) keeps the old content.
            to_trash: false,
        };
        match block_on(self.fs.setattr(&ctx(req), ino(i), &set)) {
            Ok(a) => reply.attr(&self.ttl.attr, &file_attr(ino(i), &a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, req: &Request, i: INodeNo, reply: ReplyData) {
        let _op = OpTimer::start(const { fuse_op("readlink") }, req);
        match self.fs.readlink(ino(i)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("mknod") }, req);
        _op.args(|| format!("{},{},{mode:o}", parent.0, n.to_string_lossy()));
        let r = self
            .fs
            .mknod(&ctx(req), ino(parent), name(n), mode, umask as u16, rdev);
        self.entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("mkdir") }, req);
        _op.args(|| format!("{},{},{mode:o}", parent.0, n.to_string_lossy()));
        let r = self.fs.mkdir(
            &ctx(req),
            ino(parent),
            name(n),
            (mode & 0o7777) as u16,
            umask as u16,
        );
        self.entry(reply, r);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let mut _op = OpTimer::start(const { fuse_op("unlink") }, req);
        _op.args(|| format!("{},{}", parent.0, n.to_string_lossy()));
        reply_empty(reply, self.fs.unlink(&ctx(req), ino(parent), name(n)))
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let mut _op = OpTimer::start(const { fuse_op("rmdir") }, req);
        _op.args(|| format!("{},{}", parent.0, n.to_string_lossy()));
        reply_empty(reply, self.fs.rmdir(&ctx(req), ino(parent), name(n)))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("symlink") }, req);
        _op.args(|| {
            format!(
                "{},{},{}",
                parent.0,
                link_name.to_string_lossy(),
                target.display()
            )
        });
        let r = self.fs.symlink(
            &ctx(req),
            ino(parent),
            name(link_name),
            target.as_os_str().as_bytes(),
        );
        self.entry(reply, r);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("rename") }, req);
        _op.args(|| {
            format!(
                "{},{},{},{}",
                parent.0,
                n.to_string_lossy(),
                newparent.0,
                newname.to_string_lossy()
            )
        });
        reply_empty(
            reply,
            self.fs.rename(
                &ctx(req),
                ino(parent),
                name(n),
                ino(newparent),
                name(newname),
                flags.bits(),
            ),
        )
    }

    fn link(
        &self,
        req: &Request,
        i: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("link") }, req);
        _op.args(|| format!("{},{},{}", i.0, newparent.0, newname.to_string_lossy()));
        let r = self
            .fs
            .link(&ctx(req), ino(i), ino(newparent), name(newname));
        self.entry(reply, r);
    }

    fn open(&self, req: &Request, i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut _op = OpTimer::start(const { fuse_op("open") }, req);
        _op.args(|| format!("{},{:#o}", i.0, flags.0));
        if i.0 == accesslog::INO {
            if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                reply.error(Errno::from_i32(libc::EACCES));
                return;
            }
            reply.opened(FileHandle(LOG.open()), FopenFlags::FOPEN_DIRECT_IO);
            return;
        }
        match block_on(self.fs.open(&ctx(req), ino(i), user_flags(flags.0))) {
            Ok((fh, attr)) => {
                // With atomic O_TRUNC the kernel sets the size to 0 itself but keeps the
                // rest of its cached attributes: the mode the truncation changed
                // (setuid/setgid cleared) must be asked for again.
                if flags.0 & libc::O_TRUNC != 0 && flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                    self.invalidate_attributes(i);
                }
                reply.opened(FileHandle(fh), self.open_flags(i, &attr))
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("read") }, req);
        _op.args(|| format!("fh={},{offset},{size}", fh.0));
        if AccessLog::is_handle(fh.0) {
            _op.quiet();
            reply.data(&LOG.read(fh.0, size as usize));
            return;
        }
        // Each FUSE thread reads into its own buffer, kept across requests: a fresh
        // 1 MiB one per read would be zeroed and faulted in page by page every time.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            match block_on(self.fs.read_into(fh.0, offset, &mut buf[..size])) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(err(e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("write") }, req);
        _op.args(|| format!("fh={},{offset},{}", fh.0, data.len()));
        // O_APPEND: the kernel's offset is its cached size; the core appends at the
        // real end, atomically with respect to this client's other writes.
        let at = (flags.0 & libc::O_APPEND == 0).then_some(offset);
        match block_on(self.fs.write(&ctx(req), fh.0, at, data)) {
            Ok(_) => reply.written(data.len() as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("flush") }, req);
        _op.args(|| format!("fh={}", fh.0));
        if AccessLog::is_handle(fh.0) {
            reply.ok();
            return;
        }
        // close(2) of any descriptor drops the process's POSIX locks on the file.
        let unlocked = self.fs.unlock_owner(fh.0, lock_owner.0);
        let flushed = block_on(self.fs.flush(fh.0));
        reply_empty(reply, unlocked.and(flushed))
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("release") }, req);
        _op.args(|| format!("fh={}", fh.0));
        if AccessLog::is_handle(fh.0) {
            LOG.release(fh.0);
            reply.ok();
            return;
        }
        // The last close of an open file description: the core drops its flock and its
        // OFD locks with it (see `kiseki_core::vfs` locks).
        reply_empty(reply, block_on(self.fs.release(fh.0)))
    }

    fn getlk(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let _op = OpTimer::start(const { fuse_op("getlk") }, req);
        let found = LockType::from_fcntl(typ)
            .and_then(|t| self.fs.getlk(fh.0, lock_owner.0, t, start, end));
        match found {
            Ok(Some((t, holder))) => {
                reply.locked(holder.start, holder.end, t.to_fcntl(), holder.pid)
            }
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, pid),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setlk(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let _op = OpTimer::start(const { fuse_op("setlk") }, req);
        let owner = lock_owner.0;
        self.lock(req, sleep, reply, move |fs, wait| {
            fs.setlk(
                fh.0,
                owner,
                pid,
                LockType::from_fcntl(typ)?,
                start,
                end,
                wait,
            )
        });
    }

    fn flock(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        typ: i32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let _op = OpTimer::start(const { fuse_op("flock") }, req);
        // A flock belongs to the open file description. The kernel names it by the
        // address of its `struct file`, which is reused as soon as the file is freed,
        // while the asynchronous RELEASE that unlocks it may still be queued: a new
        // open could then inherit, and later lose, the old lock. Our handle numbers are
        // never reused, so the handle is the owner.
        self.lock(req, sleep, reply, move |fs, wait| {
            fs.flock(fh.0, LockType::from_fcntl(typ)?, wait)
        });
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("fsync") }, req);
        _op.args(|| format!("fh={}", fh.0));
        reply_empty(reply, block_on(self.fs.fsync(fh.0)))
    }

    fn opendir(&self, req: &Request, i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut _op = OpTimer::start(const { fuse_op("opendir") }, req);
        _op.args(|| format!("{}", i.0));
        let flags = (user_flags(flags.0) & !libc::O_ACCMODE) | libc::O_RDONLY | libc::O_DIRECTORY;
        match block_on(self.fs.open(&ctx(req), ino(i), flags)) {
            Ok((fh, _)) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("readdir") }, req);
        _op.args(|| format!("fh={},{offset}", fh.0));
        match self.fs.readdir(fh.0, offset, READDIR_BATCH, false) {
            Ok(entries) => {
                for e in entries {
                    if reply.add(
                        INodeNo(e.ino.0),
                        e.offset,
                        file_type(e.kind),
                        OsStr::from_bytes(&e.name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("readdirplus") }, req);
        _op.args(|| format!("fh={},{offset}", fh.0));
        match self.fs.readdir(fh.0, offset, READDIR_BATCH, true) {
            Ok(entries) => {
                for e in entries {
                    let Some(attr) = &e.attr else { continue };
                    if reply.add(
                        INodeNo(e.ino.0),
                        e.offset,
                        OsStr::from_bytes(&e.name),
                        &self.ttl.entry,
                        &file_attr(e.ino, attr),
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _op = OpTimer::start(const { fuse_op("releasedir") }, req);
        reply_empty(reply, block_on(self.fs.release(fh.0)))
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _op = OpTimer::start(const { fuse_op("fsyncdir") }, req);
        reply_empty(reply, self.fs.sync_metadata())
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _op = OpTimer::start(const { fuse_op("statfs") }, req);
        match self.fs.statfs() {
            Ok(s) => {
                let v = StatVfs::from(s);
                reply.statfs(
                    v.blocks,
                    v.bfree,
                    v.bavail,
                    v.files,
                    v.ffree,
                    v.bsize as u32,
                    v.namemax as u32,
                    v.bsize as u32,
                )
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _op = OpTimer::start(const { fuse_op("setxattr") }, req);
        reply_empty(
            reply,
            self.fs
                .setxattr(&ctx(req), ino(i), name(n), value, flags as u32),
        )
    }

    fn getxattr(&self, req: &Request, i: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let mut _op = OpTimer::start(const { fuse_op("getxattr") }, req);
        _op.args(|| format!("{},{}", i.0, n.to_string_lossy()));
        if i.0 == accesslog::INO {
            reply.error(Errno::from_i32(libc::ENODATA));
            return;
        }
        match self.fs.getxattr(&ctx(req), ino(i), name(n)) {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(err(e)),
        }
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        let mut _op = OpTimer::start(const { fuse_op("listxattr") }, req);
        _op.args(|| format!("{}", i.0));
        if i.0 == accesslog::INO {
            xattr_reply(reply, &[], size);
            return;
        }
        match self.fs.listxattr(&ctx(req), ino(i)) {
            Ok(names) => xattr_reply(reply, &join_xattr_names(&names), size),
            Err(e) => reply.error(err(e)),
        }
    }

    fn removexattr(&self, req: &Request, i: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let _op = OpTimer::start(const { fuse_op("removexattr") }, req);
        reply_empty(reply, self.fs.removexattr(&ctx(req), ino(i), name(n)))
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let mut _op = OpTimer::start(const { fuse_op("access") }, req);
        _op.args(|| format!("{},{:o}", i.0, mask.bits()));
        if i.0 == accesslog::INO {
            reply.ok();
            return;
        }
        reply_empty(reply, self.fs.access(&ctx(req), ino(i), mask.bits() as u32))
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut _op = OpTimer::start(const { fuse_op("create") }, req);
        _op.args(|| format!("{},{},{mode:o},{flags:#o}", parent.0, n.to_string_lossy()));
        let r = block_on(self.fs.create(
            &ctx(req),
            ino(parent),
            name(n),
            (mode & 0o7777) as u16,
            umask as u16,
            user_flags(flags),
        ));
        match r {
            Ok((fh, e)) => reply.created(
                &self.ttl.entry,
                &file_attr(e.ino, &e.attr),
                Generation(0),
                FileHandle(fh),
                self.open_flags(INodeNo(e.ino.0), &e.attr),
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn ioctl(
        &self,
        req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let _op = OpTimer::start(const { fuse_op("ioctl") }, req);
        match cmd {
            KISEKI_IOC_COMPACT => match block_on(self.fs.compact(ino(i))) {
                Ok(n) => reply.ioctl(n.min(i32::MAX as usize) as i32, &[]),
                Err(e) => reply.error(err(e)),
            },
            KISEKI_IOC_WARMUP => {
                let word = |at: usize| {
                    in_data
                        .get(at..at + 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_ne_bytes)
                };
                let (Some(off), Some(len), Some(flags)) = (word(0), word(8), word(16)) else {
                    reply.error(Errno::from_i32(libc::EINVAL));
                    return;
                };
                match block_on(self.fs.warmup(ino(i), off, len, flags & WARMUP_FILL != 0)) {
                    Ok(w) => {
                        let mut out = [0u8; 32];
                        out[..8].copy_from_slice(&w.data.to_ne_bytes());
                        out[8..16].copy_from_slice(&w.cached.to_ne_bytes());
                        reply.ioctl(0, &out)
                    }
                    Err(e) => reply.error(err(e)),
                }
            }
            KISEKI_IOC_RESTORE => match self.fs.restore(&ctx(req), ino(i)) {
                Ok(r) => {
                    let mut out = vec![0u8; RESTORE_OUT];
                    out[..8].copy_from_slice(&r.restored.to_ne_bytes());
                    out[8..16].copy_from_slice(&(r.failed.len() as u64).to_ne_bytes());
                    let why = r.failed.join("\n");
                    let n = why.len().min(RESTORE_OUT - 16);
                    out[16..16 + n].copy_from_slice(&why.as_bytes()[..n]);
                    reply.ioctl(0, &out)
                }
                Err(e) => reply.error(err(e)),
            },
            KISEKI_IOC_CLONE => {
                let word = |at: usize| {
                    in_data
                        .get(at..at + 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_ne_bytes)
                };
                let (Some(src), Some(dst), Some(to), Some(flags)) = (
                    in_data.get(..256).and_then(entry_name),
                    in_data.get(272..CLONE_ARG).and_then(entry_name),
                    word(256),
                    word(264),
                ) else {
                    reply.error(Errno::from_i32(libc::EINVAL));
                    return;
                };
                let c = ctx(req);
                let opts = kiseki_core::meta::CloneOpts {
                    preserve: flags & CLONE_PRESERVE != 0,
                };
                let done = self
                    .fs
                    .lookup(&c, ino(i), src)
                    .and_then(|e| block_on(self.fs.clone_tree(&c, e.ino, Ino(to), dst, opts)));
                match done {
                    Ok(cloned) => {
                        // A negative entry the kernel may hold for the new name, and
                        // the directory's cached size and times.
                        if let Some(notifier) = self.notifier.get().cloned() {
                            let name = OsStr::from_bytes(dst).to_os_string();
                            std::thread::spawn(move || {
                                let _ = notifier.inval_entry(INodeNo(to), &name);
                                let _ = notifier.inval_inode(INodeNo(to), -1, 0);
                            });
                        }
                        let mut out = [0u8; CLONE_ARG];
                        out[..8].copy_from_slice(&cloned.entries.to_ne_bytes());
                        out[8..16].copy_from_slice(&cloned.bytes.to_ne_bytes());
                        reply.ioctl(0, &out)
                    }
                    Err(e) => reply.error(err(e)),
                }
            }
            KISEKI_IOC_RMR => {
                let Some(n) = entry_name(in_data) else {
                    reply.error(Errno::from_i32(libc::EINVAL));
                    return;
                };
                match self.fs.remove_tree(&ctx(req), ino(i), n) {
                    Ok(removed) => {
                        // The kernel's cached entries of the tree go with its top.
                        if let Some(notifier) = self.notifier.get().cloned() {
                            let name = OsStr::from_bytes(n).to_os_string();
                            std::thread::spawn(move || {
                                let _ = notifier.inval_entry(i, &name);
                            });
                        }
                        reply.ioctl(removed.min(i32::MAX as u64) as i32, &[])
                    }
                    Err(e) => reply.error(err(e)),
                }
            }
            KISEKI_IOC_SUMMARY => match self.fs.summary(ino(i)) {
                Ok(s) => {
                    let mut out = [0u8; 32];
                    for (k, v) in [s.bytes, s.files, s.dirs, s.others].iter().enumerate() {
                        out[k * 8..k * 8 + 8].copy_from_slice(&v.to_ne_bytes());
                    }
                    reply.ioctl(0, &out)
                }
                Err(e) => reply.error(err(e)),
            },
            KISEKI_IOC_METRICS => {
                let mut out = [0u8; 64];
                if let Some(a) = kiseki_core::metrics::served() {
                    let a = a.to_string();
                    out[..a.len().min(63)].copy_from_slice(&a.as_bytes()[..a.len().min(63)]);
                }
                reply.ioctl(0, &out)
            }
            _ => reply.error(Errno::from_i32(libc::ENOTTY)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _op = OpTimer::start(const { fuse_op("fallocate") }, req);
        reply_empty(
            reply,
            block_on(self.fs.fallocate(&ctx(req), fh.0, mode, offset, length)),
        )
    }

    fn lseek(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _op = OpTimer::start(const { fuse_op("lseek") }, req);
        // The kernel resolves SEEK_SET/CUR/END itself; only DATA and HOLE come here.
        if whence != libc::SEEK_DATA && whence != libc::SEEK_HOLE {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        let Ok(off) = u64::try_from(offset) else {
            reply.error(Errno::from_i32(libc::ENXIO));
            return;
        };
        match block_on(self.fs.seek_data(fh.0, off, whence)) {
            Ok(p) => reply.offset(p as i64),
            Err(e) => reply.error(err(e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _op = OpTimer::start(const { fuse_op("copy_file_range") }, req);
        if !flags.is_empty() {
            reply.error(Errno::from_i32(libc::EINVAL));
            return;
        }
        // The reply carries a u32; a larger request copies a prefix, as a short copy.
        let len = len.min(u64::from(u32::MAX) & !0xfff);
        match block_on(self.fs.copy_file_range(
            &ctx(req),
            fh_in.0,
            offset_in,
            fh_out.0,
            offset_out,
            len,
        )) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(err(e)),
        }
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    match fit_xattr(value, size as usize) {
        Ok(XattrFit::Size(n)) => reply.size(n as u32),
        Ok(XattrFit::Data(d)) => reply.data(d),
        Err(e) => reply.error(err(e)),
    }
}
