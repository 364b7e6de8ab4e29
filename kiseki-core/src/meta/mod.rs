//! The metadata engine: one POSIX namespace schema over a transactional key-value store.
//!
//! [`Meta`] is one client's view of a volume. Every operation is one optimistic
//! transaction (retried on conflict) that checks permissions, validates POSIX rules and
//! writes all affected records and counters together, so a crash at any point leaves
//! either the whole operation or none of it. The API is synchronous: RocksDB calls are
//! short and the async layers above call it from blocking threads.

pub mod dump;
pub mod format;
pub mod fsck;
pub mod juicefs;
pub mod keys;
pub mod kv;
pub mod overlay;
pub mod records;
pub mod types;

mod alloc;
mod clock;
mod counters;
mod group;
pub mod locks;
mod open_files;
pub(crate) mod ops;
mod perm;
pub mod repair;
mod session;
pub mod trash;
mod txn;
mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) use crate::error::{Error, Result};
pub use clock::Clock;
pub use format::FormatOptions;
pub use locks::{LockRecord, LockType, LockWait};
pub use ops::chunks::{split_by_chunk, NewSlice, CHUNK_SIZE};
pub use ops::CloneOpts;
pub use perm::{strip_suid, MAY_EXEC, MAY_READ, MAY_WRITE};
pub use records::{SessionInfo, StagedSlice, VolumeFormat};
pub(crate) use session::hostname;
pub use types::*;

use alloc::IdAllocator;
use kv::{KvEngine, KvTxn, TxnMode};
use open_files::OpenFiles;
use txn::run_txn;

/// How this client uses the volume.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// Refuse every modification with EROFS.
    pub read_only: bool,
    /// Make every namespace operation power-loss durable (not only close and fsync).
    pub sync_all: bool,
    /// What this client is, for `kiseki status` (a mount point, `python`, ...).
    pub client: String,
    /// A session without a heartbeat for this long is considered dead.
    pub session_ttl: Duration,
    /// What session expiry is measured by (tests move it instead of sleeping).
    pub clock: Clock,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            read_only: false,
            sync_all: false,
            client: String::new(),
            session_ttl: Duration::from_secs(60),
            clock: Clock::default(),
        }
    }
}

pub struct Meta {
    kv: Arc<dyn KvEngine>,
    format: VolumeFormat,
    config: MetaConfig,
    sid: u64,
    inodes: IdAllocator,
    slices: IdAllocator,
    open: OpenFiles,
    held: locks::Held,
    lock_waiters: locks::Waiters,
    lock_graph: locks::WaitGraph,
    closed: AtomicBool,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// Attributes and slice records read of open files (see `views`).
    views: views::Views,
    /// Data commits waiting to be grouped (see `group`).
    commits: group::Group<(ops::chunks::SliceCommit, bool), Attr>,
    /// WAL syncs waiting to be grouped.
    syncs: group::Group<(), ()>,
    /// Where removals go, and whether this client's trash expiry runs.
    trash: trash::State,
}

impl Meta {
    /// Creates a volume in the store `url` names.
    pub fn format(url: &str, opts: &FormatOptions) -> Result<VolumeFormat> {
        let kv = kv::open_engine(url, true)?;
        format::format(&*kv, opts)
    }

    /// Opens the volume at `url` as a new client session. A read-only client of a
    /// RocksDB volume another process holds opens it lock-free and sees it as it was
    /// when it connected (see [`kv::open_engine_read_only`]).
    pub fn open(url: &str, config: MetaConfig) -> Result<Arc<Meta>> {
        let kv = if config.read_only {
            kv::open_engine_read_only(url)?.0
        } else {
            kv::open_engine(url, false)?
        };
        Self::with_engine(kv, config)
    }

    /// Opens the volume in an already opened engine.
    pub fn with_engine(kv: Arc<dyn KvEngine>, config: MetaConfig) -> Result<Arc<Meta>> {
        let format = format::load(&*kv)?;
        let sid = if config.read_only {
            0
        } else {
            session::register(&*kv, &config)?
        };
        let kv_exclusive = kv.exclusive();
        let meta = Arc::new(Meta {
            kv,
            format,
            config,
            sid,
            inodes: IdAllocator::new(counters::NEXT_INODE, 1024),
            slices: IdAllocator::new(counters::NEXT_SLICE, 1024),
            open: OpenFiles::default(),
            held: Default::default(),
            lock_waiters: Default::default(),
            lock_graph: Default::default(),
            closed: AtomicBool::new(false),
            heartbeat: Mutex::new(None),
            views: views::Views::new(kv_exclusive),
            commits: Default::default(),
            syncs: group::Group::with_max(usize::MAX),
            trash: Default::default(),
        });
        if !meta.config.read_only {
            meta.clean_stale_sessions()?;
            session::spawn_heartbeat(&meta);
        }
        Ok(meta)
    }

    /// This client's session id (0 for a read-only client, which has none).
    pub fn sid(&self) -> u64 {
        self.sid
    }

    pub fn volume(&self) -> &VolumeFormat {
        &self.format
    }

    pub fn config(&self) -> &MetaConfig {
        &self.config
    }

    pub fn engine(&self) -> &Arc<dyn KvEngine> {
        &self.kv
    }

    /// Allocates a new slice id, unique across all clients of the volume. Each batch of
    /// ids is recorded against this session (`SR`), so if the client dies the blocks of
    /// slices it uploaded but never committed can be found and deleted.
    pub fn next_slice_id(&self) -> Result<u64> {
        self.writable()?;
        let sid = self.sid;
        self.slices.next(&*self.kv, |tx, start, end| {
            Ok(tx.put(&keys::slice_reservation(sid, start), &end.to_le_bytes())?)
        })
    }

    /// Makes every metadata change committed so far power-loss durable (fsyncdir).
    pub fn sync(&self) -> Result<()> {
        self.syncs.submit((), |batch| {
            let r = self.kv.sync();
            batch
                .iter()
                .map(|_| match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(Error::Kv(e.clone())),
                })
                .collect()
        })
    }

    /// Ends the session: stops the heartbeat, releases inodes still held open by this
    /// client and removes the session record. Called on unmount and disconnect;
    /// idempotent. The heartbeat thread is joined first, so it can neither re-register
    /// the session after it ended nor keep the engine open after the last owner let go.
    pub fn shutdown(&self) -> Result<()> {
        let first = !self.closed.swap(true, Ordering::SeqCst);
        let beat = self
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = beat {
            if t.thread().id() != std::thread::current().id() {
                t.thread().unpark();
                let _ = t.join();
            }
        }
        if !first || self.config.read_only {
            return Ok(());
        }
        session::end(self)
    }

    /// Whether [`Meta::shutdown`] has run.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops this client as a crash would: no more heartbeats and no cleanup on drop.
    /// For tests of the cleanup of dead clients.
    #[doc(hidden)]
    pub fn simulate_crash(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn writable(&self) -> Result<()> {
        if self.config.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// A read-write transaction with this client's durability setting.
    fn write<T>(&self, f: impl FnMut(&mut dyn KvTxn) -> Result<T>) -> Result<T> {
        self.write_mode(self.config.sync_all, f)
    }

    /// Takes a job that one client of the volume runs every `interval` seconds (trash
    /// expiry, metadata backup): true when this client should run it now. `key` holds
    /// when it was last claimed; the claim is a compare-and-set on it, so of clients
    /// racing for it exactly one wins. A claim from the future (a client whose clock
    /// ran ahead) does not block.
    pub fn claim_periodic(&self, key: &[u8], interval: i64) -> Result<bool> {
        self.writable()?;
        let now = self.config.clock.now();
        let decode = |v: Option<Vec<u8>>| {
            v.and_then(|v| Some(i64::from_le_bytes(v.as_slice().try_into().ok()?)))
        };
        let last = self.read(|tx| Ok(decode(tx.get(key)?)))?;
        if last.is_some_and(|t| t <= now && now - t < interval) {
            return Ok(false);
        }
        self.write(|tx| {
            if decode(tx.get(key)?) != last {
                return Ok(false);
            }
            tx.put(key, &now.to_le_bytes())?;
            Ok(true)
        })
    }

    /// Writes the whole metadata to `out` from one snapshot (see [`dump`]).
    pub fn dump(
        &self,
        out: &mut dyn std::io::Write,
        keep_secret: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<dump::DumpStats> {
        dump::dump(&*self.kv, out, keep_secret, progress)
    }

    /// A read-write transaction that is power-loss durable when it returns.
    pub(crate) fn write_durable<T>(&self, f: impl FnMut(&mut dyn KvTxn) -> Result<T>) -> Result<T> {
        self.write_mode(true, f)
    }

    /// Every write of this client: the cached views of the inodes it wrote are dropped
    /// once it ends, whatever its outcome (a lost reply may still have applied).
    fn write_mode<T>(
        &self,
        durable: bool,
        mut f: impl FnMut(&mut dyn KvTxn) -> Result<T>,
    ) -> Result<T> {
        self.writable()?;
        let mut touched = views::Touched::default();
        let r = run_txn(&*self.kv, TxnMode::ReadWrite { durable }, |tx| {
            f(&mut views::Noting {
                inner: tx,
                touched: &mut touched,
            })
        });
        self.views.forget_touched(&touched);
        r
    }

    /// Attributes of `ino` for reading its data: as last read by this client while no
    /// write of its own changed them (and, on a shared engine, for at most
    /// `views::SHARED_TTL`).
    pub fn attr_for_read(&self, ino: Ino) -> Result<Attr> {
        if let Some(a) = self.views.attr(ino) {
            return Ok(a);
        }
        let stamp = self.views.stamp(ino);
        let attr = self.getattr(ino)?;
        self.views.store_attr(ino, stamp, &attr);
        Ok(attr)
    }

    /// The slice records of chunk `index` of `ino` for reading, cached as
    /// [`Meta::attr_for_read`] is.
    pub fn chunk_for_read(&self, ino: Ino, index: u32) -> Result<Arc<overlay::Resolved>> {
        if let Some(r) = self.views.chunk(ino, index) {
            return Ok(r);
        }
        let stamp = self.views.stamp(ino);
        let recs = Arc::new(overlay::Resolved::new(self.read_chunk(ino, index)?));
        self.views.store_chunk(ino, index, stamp, recs.clone());
        Ok(recs)
    }

    /// Forgets what this client cached of `ino` (an open on a shared engine: other
    /// clients' closes must show, close-to-open).
    pub fn forget_view(&self, ino: Ino) {
        self.views.forget(ino);
    }

    /// A read-only transaction over one consistent snapshot.
    fn read<T>(&self, f: impl FnMut(&mut dyn KvTxn) -> Result<T>) -> Result<T> {
        run_txn(&*self.kv, TxnMode::ReadOnly, f)
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("closing metadata session {}: {e}", self.sid);
        }
    }
}
