//! The POSIX file operations over the metadata engine and the data path, in two faces:
//! this inode-level API with file handles (for FUSE), and the path-level [`Client`] /
//! [`File`] API (for C and Python) built on it.
//!
//! Durability: `flush` (close) and `fsync` return only after every byte written through
//! the handle is in object storage and its slice records are committed, so a crash of
//! the client (kill -9) after they return loses nothing; `fsync` also syncs the
//! metadata commit, so a power loss after it returns loses nothing either. Read-your-writes: reads through any handle of this client see
//! writes not yet flushed.

mod client;
mod locks;
mod namespace;
mod tree;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use client::{CallerOptions, Client, ClientOptions, Dir, File, Stat};
pub use namespace::{fit_xattr, join_xattr_names, StatVfs, XattrFit, BLKSIZE, STATVFS_BLOCK};
pub use tree::{Cloned, Summary};

use crate::data::{DataConfig, DataEnv, Warmth};
use crate::error::{Error, Result};
use crate::meta::{Attr, Ctx, Entry, FileKind, Ino, Meta, SetAttr, CHUNK_SIZE};

/// An open file: which inode, how it was opened, and its read-ahead state.
#[derive(Debug)]
pub struct Handle {
    pub ino: Ino,
    /// This handle's number (the owner of its flock).
    pub fh: u64,
    pub flags: i32,
    readahead: Mutex<ReadAhead>,
    /// A directory handle's listing bound: the directory's next entry sequence number
    /// when the listing (re)started at cookie 0 (see `meta::ops::readdir`).
    listing_end: Mutex<Option<u64>>,
    locks: Mutex<locks::HandleLocks>,
    /// The file had setuid/setgid bits when opened: the first write through this handle
    /// by an unprivileged caller clears them and tells the front-end (see
    /// [`Fs::set_invalidator`]).
    privileged: AtomicBool,
}

/// Sequential read detection. While reads continue where the previous one ended, the
/// window doubles (from 1 MiB to `max-readahead`, 64 MiB by default) and the blocks
/// ahead of the reader are fetched into the cache in the background; any other read
/// resets it. Only the part of the window not prefetched yet is requested, and only
/// once less than half the window is left ahead of the reader, so steady sequential
/// reading issues each block fetch once and starts few background tasks.
#[derive(Debug, Default)]
struct ReadAhead {
    next: u64,
    window: u64,
    prefetched_to: u64,
}

const READAHEAD_MIN: u64 = 1 << 20;

impl ReadAhead {
    /// Records a read of `[off, end)`; returns the range to prefetch, if any, with
    /// the window bounded by `max` (0: no read-ahead).
    fn advance(&mut self, off: u64, end: u64, file_len: u64, max: u64) -> Option<(u64, u64)> {
        if off == self.next && off > 0 && max > 0 {
            self.window = (self.window * 2).clamp(READAHEAD_MIN.min(max), max);
        } else {
            self.window = 0;
            self.prefetched_to = 0;
        }
        self.next = end;
        if self.window == 0 {
            return None;
        }
        // Ask again only once the reader has used up half of what is fetched ahead of
        // it: small reads then start one background fetch per half window, not one
        // per read.
        if self.prefetched_to > end && (self.prefetched_to - end) * 2 >= self.window {
            return None;
        }
        let from = self.prefetched_to.max(end);
        let to = (end + self.window).min(file_len);
        if from >= to {
            return None;
        }
        self.prefetched_to = to;
        Some((from, to - from))
    }
}

pub struct Fs {
    env: Arc<DataEnv>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    deleter: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    /// Releases in progress per inode; lock requests wait for them (`locks`).
    releasing: Mutex<HashMap<Ino, usize>>,
    released: std::sync::Condvar,
    /// Told when the core changes an inode's attributes in a way the front-end's reply
    /// does not carry (see [`Fs::set_invalidator`]).
    invalidator: std::sync::OnceLock<Invalidator>,
    /// Metadata backups this client offers to run (see `data::backup`).
    backup: std::sync::OnceLock<crate::data::backup::BackupPlan>,
    backing_up: Arc<AtomicBool>,
}

/// A front-end's hook for attribute changes its caller cannot see in a reply.
pub type Invalidator = Box<dyn Fn(Ino) + Send + Sync>;

impl Fs {
    pub fn new(meta: Arc<Meta>, config: &DataConfig) -> Result<Arc<Fs>> {
        let _rt = crate::runtime::runtime().enter();
        let env = DataEnv::new(meta, config)?;
        let fs = Arc::new(Fs {
            env,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            deleter: Mutex::new(None),
            closed: AtomicBool::new(false),
            releasing: Mutex::new(HashMap::new()),
            released: std::sync::Condvar::new(),
            invalidator: std::sync::OnceLock::new(),
            backup: std::sync::OnceLock::new(),
            backing_up: Arc::new(AtomicBool::new(false)),
        });
        if !fs.meta().config().read_only {
            let weak = Arc::downgrade(&fs);
            let task = crate::runtime::runtime().spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let Some(fs) = weak.upgrade() else { return };
                    if let Err(e) = fs.env.run_deletions().await {
                        tracing::warn!("background deletion: {e}");
                    }
                    if let Err(e) = fs.env.sync_owed(Some(crate::data::UNSYNCED_AGE)).await {
                        tracing::warn!("background sync of block files: {e}");
                    }
                    fs.backup_if_due();
                }
            });
            *fs.deleter.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(fs)
    }

    /// Opens the volume at `meta_url` (`None`: the embedded default volume, formatted on
    /// first use) as a client with `opts`: what every front-end does to start.
    /// `default_name` names the client in `kiseki status` unless `opts.name` does.
    pub fn connect(
        meta_url: Option<&str>,
        opts: &ClientOptions,
        default_name: &str,
    ) -> Result<Arc<Fs>> {
        let url = match meta_url {
            Some(u) => u.to_string(),
            None => crate::defaults::ensure_default_volume()?.0.meta_url,
        };
        let mut client = if opts.name.is_empty() {
            default_name.to_string()
        } else {
            opts.name.clone()
        };
        if let Some(addr) = &opts.metrics {
            // The default address moves to the next free port, and failing to serve
            // there only costs the metrics; an address asked for is a promise.
            let default = addr == crate::metrics::DEFAULT_ADDR;
            match crate::metrics::serve(addr, default) {
                Ok(bound) => {
                    tracing::info!("metrics at http://{bound}/metrics");
                    client = format!("{client} (metrics {bound})");
                }
                Err(e) if default => tracing::warn!("no metrics endpoint: {e}"),
                Err(e) => return Err(Error::Invalid(format!("metrics at {addr}: {e}"))),
            }
        }
        let config = crate::meta::MetaConfig {
            read_only: opts.read_only,
            sync_all: opts.meta_sync,
            client,
            session_ttl: opts
                .session_ttl
                .unwrap_or(crate::meta::MetaConfig::default().session_ttl),
            ..Default::default()
        };
        let meta = Meta::open(&url, config)?;
        // A store that is down or misconfigured is refused here, with its URL, rather
        // than at the first write.
        let store = crate::data::store::ObjectStore::open(meta.volume())?;
        crate::runtime::block_on(store.probe(!opts.read_only))?;
        let fs = Fs::new(meta, &opts.data)?;
        let interval = opts.backup_meta.unwrap_or_default();
        if !opts.read_only && !interval.is_zero() {
            let _ = fs.backup.set(crate::data::backup::BackupPlan {
                interval,
                keep: opts
                    .backup_keep
                    .unwrap_or(crate::data::backup::DEFAULT_KEEP),
            });
        }
        Ok(fs)
    }

    /// Starts a metadata backup in a thread of its own when this client backs up, one
    /// is due and no other client of the volume took it (see `data::backup`).
    fn backup_if_due(&self) {
        let Some(plan) = self.backup.get().copied() else {
            return;
        };
        if self.backing_up.load(Ordering::SeqCst) {
            return;
        }
        let interval = plan.interval.as_secs().max(1) as i64;
        match self
            .meta()
            .claim_periodic(crate::meta::keys::BACKUP_CLAIM, interval)
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!("metadata backup: {e}");
                return;
            }
        }
        if self.backing_up.swap(true, Ordering::SeqCst) {
            return;
        }
        let (meta, store, busy) = (
            Arc::clone(self.meta()),
            self.env.store.clone(),
            Arc::clone(&self.backing_up),
        );
        let spawned = std::thread::Builder::new()
            .name("kiseki-backup".into())
            .spawn(move || {
                if let Err(e) = crate::data::backup::run(&meta, &store, plan.keep) {
                    tracing::warn!("metadata backup failed: {e}");
                }
                busy.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the metadata backup thread: {e}");
            self.backing_up.store(false, Ordering::SeqCst);
        }
    }

    pub fn meta(&self) -> &Arc<Meta> {
        &self.env.meta
    }

    /// No other process can use the volume while this client has it (RocksDB): caches
    /// of this client are then exact, never stale.
    pub fn exclusive(&self) -> bool {
        self.meta().engine().exclusive()
    }

    /// Installs the front-end's hook for attribute changes its caller cannot see in a
    /// reply: a write, fallocate or copy_file_range that clears setuid/setgid (the FUSE
    /// mount drops the kernel's cached attributes, so the writer's fstat shows the new
    /// mode at once). Called with the inode before the operation returns. Once only.
    pub fn set_invalidator(&self, f: Invalidator) {
        let _ = self.invalidator.set(f);
    }

    fn invalidate(&self, ino: Ino) {
        if let Some(f) = self.invalidator.get() {
            f(ino);
        }
    }

    pub fn data(&self) -> &Arc<DataEnv> {
        &self.env
    }

    /// Fails once [`Fs::shutdown`] has begun: handles and paths of a closed client are
    /// stale, like a file descriptor after close.
    pub fn live(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::BadHandle("the client is closed".into()))
        } else {
            Ok(())
        }
    }

    /// Ends this client: stops the deleter, flushes every open file, waits for the
    /// background tasks, and ends the metadata session. When it returns, nothing of this
    /// client runs any more and the engine is released as soon as the last reference
    /// goes. Idempotent; the first error from flushing is returned after the session
    /// has ended anyway (the data it could not flush was never acknowledged).
    /// Says that this client is about to close: from now on, requests to a metadata
    /// engine that does not answer give up within seconds instead of retrying for the
    /// engine's full deadline, so a stop asked for while the engine is gone is prompt.
    /// [`Fs::shutdown`] does this first; a front-end calls it as soon as it is asked to
    /// stop, before it waits for requests in flight.
    pub fn begin_close(&self) {
        self.meta().engine().closing();
    }

    pub async fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.begin_close();
        if let Some(d) = crate::faults::delay("slow-close") {
            tokio::time::sleep(d).await;
        }
        let deleter = self
            .deleter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = deleter {
            t.abort();
            let _ = t.await;
        }
        let flushed = self.flush_all().await;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.env.quiesce().await;
        // Unmount leaves everything durable, as a local filesystem's does.
        let synced = self.env.sync_owed(None).await;
        let flushed = flushed.and(synced);
        let meta = self.meta().clone();
        let ended = tokio::task::spawn_blocking(move || meta.shutdown())
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        flushed?;
        ended
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.live()?;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::BadHandle(format!("file handle {fh}")))
    }

    fn new_handle(&self, ino: Ino, flags: i32, attr: &Attr) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Handle {
            ino,
            flags,
            fh,
            readahead: Mutex::new(ReadAhead::default()),
            listing_end: Mutex::new(None),
            locks: Mutex::new(Default::default()),
            privileged: AtomicBool::new(crate::meta::strip_suid(attr.mode) != attr.mode),
        };
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(h));
        fh
    }

    /// Attributes as this client sees them (pending writes extend the length).
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.env.attr(ino)
    }

    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Entry> {
        let e = self.meta().lookup(ctx, parent, name)?;
        self.fresh(e)
    }

    /// An inode found by its number alone, for file handles (`open_by_handle_at`, a
    /// mount re-exported over NFS): the inode itself, or with `parent` the directory
    /// holding directory `ino`. An inode that no longer exists is ENOENT (the kernel
    /// reports ESTALE); inode numbers are never reused, so an old handle can never
    /// reach another file. The kernel checks the caller (CAP_DAC_READ_SEARCH).
    pub fn lookup_inode(&self, ino: Ino, parent: bool) -> Result<Entry> {
        self.live()?;
        let mut found = ino;
        if parent {
            let attr = self.meta().getattr(ino)?;
            if attr.kind != FileKind::Dir {
                return Err(Error::NotDir(format!("inode {ino}")));
            }
            found = attr.parent;
        }
        let attr = self.getattr(found)?;
        Ok(Entry { ino: found, attr })
    }

    /// open(2) of an existing inode; O_TRUNC truncates once the handle is open.
    pub async fn open(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<(u64, Attr)> {
        self.live()?;
        let attr = self.meta().open_file(ctx, ino, flags)?;
        let fh = self.new_handle(ino, flags, &attr);
        if attr.kind == FileKind::File {
            self.truncate_on_open(ctx, fh, ino, flags).await?;
        }
        self.attr_or_release(fh, ino).await.map(|a| (fh, a))
    }

    /// Attributes for a reply to open/create; if they cannot be read the new handle is
    /// released again rather than leaked.
    async fn attr_or_release(&self, fh: u64, ino: Ino) -> Result<Attr> {
        match self.getattr(ino) {
            Ok(a) => Ok(a),
            Err(e) => {
                let _ = self.release(fh).await;
                Err(e)
            }
        }
    }

    /// O_TRUNC on a file opened for writing: truncate once the handle exists (the old
    /// content goes to the trash, if the volume keeps one); on failure the handle is
    /// released again.
    async fn truncate_on_open(&self, ctx: &Ctx, fh: u64, ino: Ino, flags: i32) -> Result<()> {
        if flags & libc::O_TRUNC == 0 || flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Ok(());
        }
        let req = SetAttr {
            size: Some(0),
            via_handle: true,
            to_trash: true,
            ..Default::default()
        };
        if let Err(e) = self.setattr(ctx, ino, &req).await {
            let _ = self.release(fh).await;
            return Err(e);
        }
        Ok(())
    }

    /// open(2) with O_CREAT in `parent`.
    pub async fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u16,
        umask: u16,
        flags: i32,
    ) -> Result<(u64, Entry)> {
        self.live()?;
        let (entry, created) = self.meta().create(ctx, parent, name, mode, umask, flags)?;
        let fh = self.new_handle(entry.ino, flags, &entry.attr);
        if !created {
            self.truncate_on_open(ctx, fh, entry.ino, flags).await?;
        }
        let attr = self.attr_or_release(fh, entry.ino).await?;
        Ok((
            fh,
            Entry {
                ino: entry.ino,
                attr,
            },
        ))
    }

    pub async fn read(&self, fh: u64, off: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let n = self.read_into(fh, off, &mut out).await?;
        out.truncate(n);
        Ok(out)
    }

    /// Reads up to `buf.len()` bytes at `off` into the caller's buffer (no copy through
    /// an intermediate one); returns how many were read, 0 at the end of the file.
    pub async fn read_into(&self, fh: u64, off: u64, buf: &mut [u8]) -> Result<usize> {
        let h = self.handle(fh)?;
        if h.flags & libc::O_ACCMODE == libc::O_WRONLY {
            return Err(Error::BadHandle("file is not open for reading".into()));
        }
        let (n, file_len) = self.env.read_into(h.ino, off, buf).await?;
        crate::metrics::METRICS.read_bytes.add(n as u64);
        let ahead = h
            .readahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .advance(off, off + n as u64, file_len, self.env.readahead_max);
        if let Some((from, len)) = ahead {
            self.env.prefetch(h.ino, from, len);
        }
        Ok(n)
    }

    /// Writes at `off`, or at the end of the file when `off` is `None` (O_APPEND, placed
    /// atomically with respect to other writes of this client). Returns the offset
    /// written at.
    pub async fn write(&self, ctx: &Ctx, fh: u64, off: Option<u64>, data: &[u8]) -> Result<u64> {
        let h = self.handle(fh)?;
        if h.flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Err(Error::BadHandle("file is not open for writing".into()));
        }
        if data.is_empty() {
            return match off {
                Some(off) => Ok(off),
                None => Ok(self.length(h.ino)?),
            };
        }
        if let Some(off) = off {
            let end = off.checked_add(data.len() as u64);
            if end.is_none_or(|e| e > crate::meta::MAX_FILE_SIZE) {
                return Err(Error::FileTooBig(format!("write to {off}")));
            }
        }
        let kill = !ctx.is_root();
        let at = self.env.write(h.ino, off, data, kill).await?;
        crate::metrics::METRICS.write_bytes.add(data.len() as u64);
        if kill && h.privileged.swap(false, Ordering::Relaxed) {
            self.invalidate(h.ino);
        }
        if h.flags & (libc::O_SYNC | libc::O_DSYNC) != 0 {
            self.env.flush(h.ino, true).await?;
        }
        Ok(at)
    }

    /// The end of the file as this client sees it (for O_APPEND and SEEK_END).
    pub fn length(&self, ino: Ino) -> Result<u64> {
        Ok(self.getattr(ino)?.length)
    }

    /// close(2) of one descriptor: everything written is in object storage (with
    /// `writeback`, staged in the cache directory) and committed when it returns, so it
    /// survives a crash (kill -9) of this client and is visible to every other client. Power-loss durability of the commit is fsync's
    /// (the metadata WAL is not synced here, which would cost a disk flush per closed
    /// file; `meta-sync` makes every commit synced).
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let h = self.handle(fh)?;
        self.env.flush(h.ino, false).await
    }

    /// fsync(2): like close's flush, with the commit power-loss durable, and also makes
    /// every metadata change of the volume so far (truncates, renames, ...) durable.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        // The commit need not sync on its own: the WAL sync below covers it (and every
        // earlier commit), so fsync costs one metadata flush, not two.
        let h = self.handle(fh)?;
        self.env.flush(h.ino, false).await?;
        self.env.make_durable(h.ino).await
    }

    /// The open handles of `ino`.
    fn handles_of(&self, ino: Ino) -> Vec<Arc<Handle>> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|h| h.ino == ino)
            .cloned()
            .collect()
    }

    /// Drops the handle (after a final flush) and the locks that were its; the last
    /// close of an unlinked file releases it.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let h = {
            let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            let h = handles
                .remove(&fh)
                .ok_or_else(|| Error::BadHandle(format!("file handle {fh}")))?;
            *self
                .releasing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(h.ino)
                .or_insert(0) += 1;
            h
        };
        let r = self.release_handle(&h).await;
        {
            let mut releasing = self.releasing.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = releasing.get_mut(&h.ino) {
                *n -= 1;
                if *n == 0 {
                    releasing.remove(&h.ino);
                }
            }
        }
        self.released.notify_all();
        r
    }

    async fn release_handle(&self, h: &Handle) -> Result<()> {
        let unlocked = self.release_locks_of(h);
        // As close: committed, not synced (fsync's work; a sync per closed file would
        // cost a disk flush each).
        let flushed = self.env.flush(h.ino, false).await;
        let still_open = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|o| o.ino == h.ino);
        if !still_open {
            self.env.forget_writer(h.ino);
        }
        let closed = self.meta().close_file(h.ino);
        flushed?;
        unlocked?;
        closed
    }

    /// setattr; a size change first commits pending writes so none lands beyond it.
    pub async fn setattr(&self, ctx: &Ctx, ino: Ino, req: &SetAttr) -> Result<Attr> {
        if req.size.is_some() {
            self.env.flush(ino, false).await?;
        }
        let attr = self.meta().setattr(ctx, ino, req)?;
        self.env.refresh(ino, attr)
    }

    /// fallocate(2): mode 0 and KEEP_SIZE reserve the range's unallocated bytes (ENOSPC
    /// beyond the free space; extending the length unless KEEP_SIZE), ZERO_RANGE makes
    /// the whole range reserved zeros, PUNCH_HOLE|KEEP_SIZE makes it a hole and frees
    /// it. Like a write, it clears setuid/setgid when the caller is unprivileged.
    pub async fn fallocate(&self, ctx: &Ctx, fh: u64, mode: i32, off: u64, len: u64) -> Result<()> {
        let h = self.handle(fh)?;
        if h.flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Err(Error::BadHandle("file is not open for writing".into()));
        }
        if len == 0 {
            return Err(Error::Invalid("fallocate of zero bytes".into()));
        }
        let end = off
            .checked_add(len)
            .filter(|&e| e <= crate::meta::MAX_FILE_SIZE);
        let Some(end) = end else {
            return Err(Error::FileTooBig(format!("fallocate to {off}+{len}")));
        };
        let known =
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !known != 0 {
            return Err(Error::NotSupported(format!("fallocate mode {mode:#x}")));
        }
        self.env.flush(h.ino, false).await?;
        self.kill_suid(ctx, h.ino)?;
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let grow = |attr_len: u64| (!keep && end > attr_len).then_some(end);
        let meta = self.meta();
        match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 | libc::FALLOC_FL_ZERO_RANGE => {
                // Space is allocated as on a local disk: refused when the volume cannot
                // hold it, counted as used once granted.
                let needed = meta.unallocated(h.ino, off, len)?;
                let avail = self.statfs()?.avail_space;
                if needed > avail {
                    return Err(Error::NoSpace(format!(
                        "fallocate of {needed} new bytes, {avail} available"
                    )));
                }
                let len_now = meta.getattr(h.ino)?.length;
                let zero = mode & libc::FALLOC_FL_ZERO_RANGE != 0;
                meta.reserve(h.ino, off, len, zero, grow(len_now))?;
            }
            libc::FALLOC_FL_PUNCH_HOLE if keep => {
                meta.punch_hole(h.ino, off, len, None)?;
            }
            _ => {
                return Err(Error::NotSupported(format!("fallocate mode {mode:#x}")));
            }
        }
        Ok(())
    }

    /// statfs(2): the volume's usage from the metadata counters; free space is the
    /// smaller of what the capacity quota leaves and what the storage has (the free
    /// space of the disk under an `fs` bucket, less what fallocate reserved there and
    /// nothing has written yet; object stores are unbounded).
    pub fn statfs(&self) -> Result<crate::meta::StatFs> {
        self.live()?;
        let mut s = self.meta().statfs()?;
        if let Some(disk) = self.env.store.free_space() {
            let free = disk.saturating_sub(s.reserved_space);
            if free < s.avail_space {
                s.total_space -= s.avail_space - free;
                s.avail_space = free;
            }
        }
        Ok(s)
    }

    /// Clears setuid (and setgid when group-executable) of a file an unprivileged
    /// caller modifies other than by write (which clears them at its commit).
    fn kill_suid(&self, ctx: &Ctx, ino: Ino) -> Result<()> {
        if ctx.is_root() {
            return Ok(());
        }
        let attr = self.meta().getattr(ino)?;
        if crate::meta::strip_suid(attr.mode) != attr.mode {
            let req = SetAttr {
                kill_suid: true,
                via_handle: true,
                ..Default::default()
            };
            self.meta().setattr(ctx, ino, &req)?;
            self.invalidate(ino);
        }
        Ok(())
    }

    /// copy_file_range(2) by sharing slices: no data is copied.
    pub async fn copy_file_range(
        &self,
        ctx: &Ctx,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        let src = self.handle(fh_in)?;
        let dst = self.handle(fh_out)?;
        if src.flags & libc::O_ACCMODE == libc::O_WRONLY
            || dst.flags & libc::O_ACCMODE == libc::O_RDONLY
        {
            return Err(Error::BadHandle("copy_file_range access mode".into()));
        }
        self.env.flush(src.ino, false).await?;
        self.env.flush(dst.ino, false).await?;
        // The destination now shares the source's slices: its fsync owes their syncs.
        self.env.share_owed(src.ino, dst.ino);
        self.kill_suid(ctx, dst.ino)?;
        self.meta()
            .copy_range(src.ino, off_in, dst.ino, off_out, len)
    }

    /// lseek(2) with SEEK_DATA / SEEK_HOLE, at the granularity of the slice records
    /// (any byte under a record of written data counts as data; holes are the gaps,
    /// hole records and reserved space not written yet, as ext4's unwritten extents).
    pub async fn seek_data(&self, fh: u64, off: u64, whence: i32) -> Result<u64> {
        let h = self.handle(fh)?;
        self.env.flush(h.ino, false).await?;
        let len = self.meta().getattr(h.ino)?.length;
        if off >= len {
            return Err(Error::NoSuchOffset(format!("offset {off} of {len}")));
        }
        let want_data = whence == libc::SEEK_DATA;
        let mut cur = off;
        while cur < len {
            let chunk = (cur / CHUNK_SIZE) as u32;
            let pos = cur % CHUNK_SIZE;
            let span = (CHUNK_SIZE - pos).min(len - cur);
            let recs = self.meta().read_chunk(h.ino, chunk)?;
            for p in crate::meta::overlay::visible(&recs, pos, span) {
                if crate::meta::records::has_blocks(p.id) == want_data {
                    return Ok(u64::from(chunk) * CHUNK_SIZE + p.chunk_pos);
                }
            }
            cur += span;
        }
        if want_data {
            Err(Error::NoSuchOffset(format!("no data after {off}")))
        } else {
            Ok(len)
        }
    }

    /// Up to `limit` entries of the directory open as `fh` after cookie `offset`; with
    /// `plus` each carries attributes as this client sees them (pending writes
    /// included). A listing starts at cookie 0 (opendir or rewinddir) and shows the
    /// entries that existed then and stayed put; whether an entry created or renamed
    /// since shows is unspecified (POSIX), and here it does not, so a listing always ends.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<crate::meta::DirEntry>> {
        let h = self.handle(fh)?;
        let mut bound = h.listing_end.lock().unwrap_or_else(|p| p.into_inner());
        let until = if offset == 0 { None } else { *bound };
        let (mut entries, next_seq) = self
            .meta()
            .readdir_bounded(h.ino, offset, limit, plus, until)?;
        if offset == 0 || bound.is_none() {
            *bound = Some(next_seq);
        }
        drop(bound);
        for e in &mut entries {
            if let Some(attr) = e.attr.take() {
                e.attr = Some(self.env.refresh(e.ino, attr)?);
            }
        }
        Ok(entries)
    }

    /// Rewrites the chunks of file `ino` that hold more than one slice record into one
    /// slice each (`kiseki compact`). Returns how many chunks changed.
    pub async fn compact(&self, ino: Ino) -> Result<usize> {
        self.live()?;
        if self.getattr(ino)?.kind != FileKind::File {
            return Ok(0);
        }
        self.env.flush(ino, false).await?;
        crate::data::compact::compact_file(&self.env, ino).await
    }

    /// Fetches (with `fill`) the blocks under `[off, off + len)` of file `ino` into the
    /// caches and says how much of that range's data they hold (`kiseki warmup`).
    pub async fn warmup(&self, ino: Ino, off: u64, len: u64, fill: bool) -> Result<Warmth> {
        self.live()?;
        self.env.warmup(ino, off, len, fill).await
    }

    /// Flushes every open file (part of [`Fs::shutdown`], which then waits for the
    /// background tasks, compactions included).
    async fn flush_all(&self) -> Result<()> {
        let inos: Vec<Ino> = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|h| h.ino)
            .collect();
        let mut first = None;
        for ino in inos {
            if let Err(e) = self.env.flush(ino, true).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Some(t) = self
            .deleter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadAhead;

    #[test]
    fn readahead_grows_while_sequential_and_resets_otherwise() {
        const MAX: u64 = 64 << 20;
        let mut ra = ReadAhead::default();
        let len = 1 << 30;
        assert_eq!(
            ra.advance(0, 4096, len, MAX),
            None,
            "a first read is not a pattern yet"
        );
        assert_eq!(ra.advance(4096, 8192, len, MAX), Some((8192, 1 << 20)));
        // The next read asks only for what is not prefetched yet.
        assert_eq!(
            ra.advance(8192, 12288, len, MAX),
            Some((8192 + (1 << 20), 12288 + (2 << 20) - (8192 + (1 << 20))))
        );
        for _ in 0..20 {
            let next = ra.next;
            ra.advance(next, next + 4096, len, MAX);
        }
        assert_eq!(ra.window, MAX);
        // Steady small reads start a background fetch once per half window.
        let fetches = (0..4096)
            .filter(|_| {
                let next = ra.next;
                ra.advance(next, next + 4096, len, MAX).is_some()
            })
            .count();
        assert!(fetches <= 1, "{fetches} fetches for 16 MiB of 4 KiB reads");
        let fetches = (0..8 * 4096)
            .filter(|_| {
                let next = ra.next;
                ra.advance(next, next + 4096, len, MAX).is_some()
            })
            .count();
        assert!((3..=5).contains(&fetches), "{fetches} fetches for 128 MiB");
        assert_eq!(
            ra.advance(0, 10, len, MAX),
            None,
            "a jump resets the window"
        );
        assert_eq!(ra.window, 0);
    }

    #[test]
    fn readahead_stays_within_max_readahead_and_zero_turns_it_off() {
        let len = 1 << 30;
        let mut ra = ReadAhead::default();
        for i in 0..30u64 {
            let got = ra.advance(i << 20, (i + 1) << 20, len, 8 << 20);
            if let Some((from, n)) = got {
                assert!(from + n <= ((i + 1) << 20) + (8 << 20), "read {i}: {got:?}");
            }
        }
        assert_eq!(ra.window, 8 << 20);
        let mut off = ReadAhead::default();
        for i in 0..30u64 {
            assert_eq!(off.advance(i << 20, (i + 1) << 20, len, 0), None);
        }
        // A bound under the minimum window is the window.
        let mut small = ReadAhead::default();
        small.advance(0, 4096, len, 256 << 10);
        assert_eq!(
            small.advance(4096, 8192, len, 256 << 10),
            Some((8192, 256 << 10))
        );
    }
}
