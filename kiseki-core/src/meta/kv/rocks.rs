//! RocksDB engine: the embedded default (`rocksdb:///abs/path`).
//!
//! Uses an `OptimisticTransactionDB`: reads inside read-write transactions go through
//! `get_for_update`, so a commit fails with `Busy`/`TryAgain` when a key it read or wrote
//! changed meanwhile; both are mapped to [`KvError::Conflict`] and retried by
//! `run_txn`. RocksDB locks its directory, so one process owns a volume at a time
//! ([`KvEngine::exclusive`]); sharing a volume between hosts needs a distributed engine.
//!
//! Durability: with the default `manual_wal_flush = false` every commit is written to
//! the WAL file (in the OS page cache) before it returns, so it survives a kill -9;
//! durable transactions set `sync` and survive power loss as well.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, DBCompressionType, ErrorKind, OptimisticTransactionDB,
    OptimisticTransactionOptions, Options, ReadOptions, Transaction, WriteOptions,
};

use super::{KvEngine, KvError, KvPair, KvResult, KvTxn, TxnMode};

type Db = OptimisticTransactionDB;

pub struct RocksKv {
    /// Dropped by hand, before the closing marker is removed (see `Drop`).
    db: std::mem::ManuallyDrop<Db>,
    path: std::path::PathBuf,
}

impl Drop for RocksKv {
    fn drop(&mut self) {
        // SAFETY: `db` is dropped exactly once, here, and never used afterwards.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.db) };
        // The store is released; a marker of ours would only make a later opener that
        // meets a live holder wait for nothing.
        let marker = self.path.join(CLOSING_MARKER);
        if std::fs::read_to_string(&marker)
            .is_ok_and(|p| p.trim() == std::process::id().to_string())
        {
            let _ = std::fs::remove_file(marker);
        }
    }
}

/// Written into the RocksDB directory by a holder that has begun to close (a mount
/// whose kernel side is already gone: umount(8) returns before the daemon has flushed
/// and let go). Holds the closer's pid.
const CLOSING_MARKER: &str = "CLOSING";
/// How long an opener waits for a holder that is closing. Closing flushes whatever
/// files were still open and the engine's memtables; it is bounded by the upload of
/// the write buffer, not by anything a user does.
const CLOSING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl RocksKv {
    pub fn open(path: &Path, create: bool) -> KvResult<Self> {
        exit_forked_children_safely();
        if !create && !path.join("CURRENT").exists() {
            return Err(KvError::Missing(path.display().to_string()));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| KvError::Engine(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.increase_parallelism(2);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // Optimistic validation checks the memtables for writes newer than a read; keep
        // enough history that busy volumes do not fail validation with TryAgain.
        opts.set_max_write_buffer_size_to_maintain(64 << 20);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        let started = std::time::Instant::now();
        let mut told = false;
        let db = loop {
            match Db::open(&opts, path) {
                Ok(db) => break db,
                Err(e) => {
                    let e = open_error(path, e);
                    if !matches!(e, KvError::InUse(_)) || started.elapsed() > CLOSING_WAIT {
                        return Err(e);
                    }
                    let Some(pid) = closing_holder(path) else {
                        return Err(e);
                    };
                    if !told {
                        tracing::info!(
                            "waiting for pid {pid} to finish closing {}",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        };
        // Ours now: a marker left behind belongs to a holder that is gone.
        let _ = std::fs::remove_file(path.join(CLOSING_MARKER));
        Ok(Self {
            db: std::mem::ManuallyDrop::new(db),
            path: path.to_path_buf(),
        })
    }
}

/// The pid in the closing marker, if the marker exists and that process still runs.
fn closing_holder(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path.join(CLOSING_MARKER))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// RocksDB's default environment joins its background threads in a C++ static
/// destructor at `exit()`. A forked child (Python's `os.fork`, a multiprocessing fork
/// worker) has the pool's memory but none of its threads, so a normal exit there would
/// wait forever on them. Once RocksDB is in use, every forked child therefore ends
/// with `_exit` (same status, stdio flushed) after the exit handlers registered in the
/// child itself, skipping the ones it inherited; the parent is unaffected.
fn exit_forked_children_safely() {
    extern "C" {
        // glibc: like atexit, with the exit status.
        fn on_exit(
            f: extern "C" fn(libc::c_int, *mut libc::c_void),
            arg: *mut libc::c_void,
        ) -> libc::c_int;
    }
    extern "C" fn exit_now(status: libc::c_int, _: *mut libc::c_void) {
        // SAFETY: flushing stdio and leaving the process are always allowed here.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::_exit(status)
        }
    }
    extern "C" fn in_child() {
        // SAFETY: registers a plain function; runs in the child right after fork.
        unsafe {
            on_exit(exit_now, std::ptr::null_mut());
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain function to run in children after fork.
    ONCE.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(in_child));
    });
}

fn open_error(path: &Path, e: rocksdb::Error) -> KvError {
    let msg = e.to_string();
    if msg.contains("lock") && (msg.contains("LOCK") || msg.contains("Resource temporarily")) {
        KvError::InUse(format!(
            "{} is already open, by another process or by a client of this one not yet \
             closed (RocksDB metadata has one opener; use a distributed engine to share a volume)",
            path.display()
        ))
    } else {
        KvError::Engine(format!("opening RocksDB at {}: {msg}", path.display()))
    }
}

fn map_err(e: rocksdb::Error) -> KvError {
    match e.kind() {
        ErrorKind::Busy | ErrorKind::TryAgain => KvError::Conflict,
        _ => KvError::Engine(e.to_string()),
    }
}

impl KvEngine for RocksKv {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn closing(&self) {
        let marker = self.path.join(CLOSING_MARKER);
        if let Err(e) = std::fs::write(&marker, std::process::id().to_string()) {
            tracing::debug!("cannot write {}: {e}", marker.display());
        }
    }

    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>> {
        match mode {
            TxnMode::ReadOnly => Ok(Box::new(RocksSnapshot {
                snap: self.db.snapshot(),
            })),
            TxnMode::ReadWrite { durable } => {
                let mut wo = WriteOptions::default();
                wo.set_sync(durable);
                // A snapshot taken at begin makes every read see one consistent state,
                // and commit validates that nothing read changed since then.
                let mut to = OptimisticTransactionOptions::default();
                to.set_snapshot(true);
                Ok(Box::new(RocksTxn {
                    txn: self.db.transaction_opt(&wo, &to),
                }))
            }
        }
    }

    fn sync(&self) -> KvResult<()> {
        self.db.flush_wal(true).map_err(map_err)
    }
}

struct RocksTxn<'a> {
    txn: Transaction<'a, Db>,
}

impl RocksTxn<'_> {
    fn snapshot_read_options(
        &self,
        snap: &rocksdb::SnapshotWithThreadMode<'_, Transaction<'_, Db>>,
    ) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snap);
        ro
    }
}

impl KvTxn for RocksTxn<'_> {
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        let snap = self.txn.snapshot();
        let ro = self.snapshot_read_options(&snap);
        self.txn.get_for_update_opt(key, true, &ro).map_err(map_err)
    }

    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>> {
        let snap = self.txn.snapshot();
        let mut ro = self.snapshot_read_options(&snap);
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        collect(self.txn.raw_iterator_opt(ro), begin, limit)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.txn.put(key, value).map_err(map_err)
    }

    fn delete(&mut self, key: &[u8]) -> KvResult<()> {
        self.txn.delete(key).map_err(map_err)
    }

    fn commit(self: Box<Self>) -> KvResult<()> {
        self.txn.commit().map_err(map_err)
    }
}

/// A read-only view of a volume another process has open (`kiseki status` or `fsck`
/// of a mounted volume): RocksDB's secondary-free read-only mode, which takes no lock
/// and replays the WAL in memory, so it sees every commit made before it opened.
pub struct RocksReadOnly {
    db: rocksdb::DB,
}

impl RocksReadOnly {
    pub fn open(path: &Path) -> KvResult<Self> {
        exit_forked_children_safely();
        if !path.join("CURRENT").exists() {
            return Err(KvError::Missing(path.display().to_string()));
        }
        // The process holding the volume may delete an SST file (compaction, flush)
        // between our reading its MANIFEST and opening the files it lists; the files
        // are then gone for good, and a fresh attempt reads the new MANIFEST.
        let mut attempt = 0;
        loop {
            match rocksdb::DB::open_for_read_only(&Options::default(), path, false) {
                Ok(db) => return Ok(Self { db }),
                Err(e) if attempt < 20 && e.to_string().contains("No such file") => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
                }
                Err(e) => {
                    return Err(KvError::Engine(format!(
                        "opening RocksDB at {} read-only: {e}",
                        path.display()
                    )))
                }
            }
        }
    }
}

impl KvEngine for RocksReadOnly {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>> {
        match mode {
            TxnMode::ReadOnly => Ok(Box::new(RocksSnapshot {
                snap: self.db.snapshot(),
            })),
            TxnMode::ReadWrite { .. } => Err(KvError::Engine(
                "the volume is open read-only (another process holds it)".into(),
            )),
        }
    }

    fn sync(&self) -> KvResult<()> {
        Ok(())
    }
}

/// A read-only transaction: reads from one RocksDB snapshot, never commits.
struct RocksSnapshot<'a, D: rocksdb::DBAccess> {
    snap: rocksdb::SnapshotWithThreadMode<'a, D>,
}

impl<D: rocksdb::DBAccess> KvTxn for RocksSnapshot<'_, D> {
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.snap.get(key).map_err(map_err)
    }

    fn batch_get(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Vec<u8>>>> {
        self.snap
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map_err(map_err))
            .collect()
    }

    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>> {
        let mut ro = ReadOptions::default();
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        collect(self.snap.raw_iterator_opt(ro), begin, limit)
    }

    fn put(&mut self, _key: &[u8], _value: &[u8]) -> KvResult<()> {
        Err(KvError::Engine("write in a read-only transaction".into()))
    }

    fn delete(&mut self, _key: &[u8]) -> KvResult<()> {
        Err(KvError::Engine("write in a read-only transaction".into()))
    }

    fn commit(self: Box<Self>) -> KvResult<()> {
        Ok(())
    }
}

fn collect<D: rocksdb::DBAccess>(
    mut it: rocksdb::DBRawIteratorWithThreadMode<'_, D>,
    begin: &[u8],
    limit: usize,
) -> KvResult<Vec<KvPair>> {
    it.seek(begin);
    let mut out = Vec::new();
    while out.len() < limit && it.valid() {
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.push((k.to_vec(), v.to_vec()));
        }
        it.next();
    }
    it.status().map_err(map_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimistic_conflict_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let kv = RocksKv::open(&dir.path().join("db"), true).unwrap();
        let mode = TxnMode::ReadWrite { durable: true };
        let mut a = kv.begin(mode).unwrap();
        let mut b = kv.begin(mode).unwrap();
        assert_eq!(a.get(b"k").unwrap(), None);
        b.put(b"k", b"1").unwrap();
        b.commit().unwrap();
        a.put(b"z", b"2").unwrap();
        assert!(matches!(a.commit(), Err(KvError::Conflict)));
        let mut r = kv.begin(TxnMode::ReadOnly).unwrap();
        assert_eq!(r.scan(b"", b"", 10).unwrap().len(), 1);
        assert!(r.put(b"x", b"y").is_err());
        let mut w = kv.begin(mode).unwrap();
        assert_eq!(w.incr_by(b"c", 3).unwrap(), 3);
        assert_eq!(w.scan(b"c", b"d", 10).unwrap().len(), 1);
        w.commit().unwrap();
    }

    #[test]
    fn a_held_store_can_be_read_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let kv = RocksKv::open(&dir.path().join("db"), true).unwrap();
        let mut w = kv.begin(TxnMode::ReadWrite { durable: false }).unwrap();
        w.put(b"k", b"v").unwrap();
        w.commit().unwrap();
        let ro = RocksReadOnly::open(&dir.path().join("db")).unwrap();
        let mut r = ro.begin(TxnMode::ReadOnly).unwrap();
        assert_eq!(r.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert!(ro.begin(TxnMode::ReadWrite { durable: false }).is_err());
        assert!(matches!(
            RocksReadOnly::open(&dir.path().join("none")),
            Err(KvError::Missing(_))
        ));
    }

    #[test]
    fn second_open_reports_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RocksKv::open(&dir.path().join("db"), true).unwrap();
        match RocksKv::open(&dir.path().join("db"), true) {
            Err(KvError::InUse(_)) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened twice"),
        }
    }
}
