//! The transactional key-value interface the metadata schema is written against.
//!
//! The schema (`meta::ops`) is written once over [`KvTxn`]: point reads, batch reads,
//! ordered range scans, puts, deletes and atomic adds inside an optimistic transaction.
//! Back ends only have to provide that, which is how JuiceFS's TKV engine carries TiKV,
//! etcd, Badger and FoundationDB with one schema.
//!
//! ## Isolation contract
//! Back ends give *optimistic* transactions with conflict detection on point reads and
//! writes: a commit fails with [`KvError::Conflict`] if any key the transaction read with
//! [`KvTxn::get`] (or wrote) was written by another transaction after it was read.
//! Range scans are **not** tracked (RocksDB cannot track them). The schema therefore
//! never relies on a scan for a decision without also reading a "witness" key that every
//! conflicting writer also writes: e.g. `rmdir` checks emptiness with a scan but also
//! reads the directory's attribute, which every entry creation in it updates.
//!
//! ## Durability contract
//! Every committed transaction survives a kill -9 of the process (the engine has handed
//! the write to the operating system before `commit` returns). Transactions begun with
//! `durable = true` additionally survive power loss (RocksDB syncs its WAL). `close()`
//! and `fsync()` use durable commits; plain namespace operations do not unless the
//! volume is mounted with `meta-sync`.

pub mod etcd;
pub mod faulty;
pub mod memory;
pub mod rocks;

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// Another transaction wrote a key this one depends on; the whole transaction may be
    /// retried.
    #[error("transaction conflict (retries exhausted)")]
    Conflict,
    /// The store is held by another process (RocksDB is single-process).
    #[error("metadata store in use: {0}")]
    InUse(String),
    /// A temporary failure of the engine (connection loss, leader change).
    #[error("metadata engine unavailable: {0}")]
    Unavailable(String),
    /// Any other engine failure: I/O error, corruption reported by the engine.
    #[error("{0}")]
    Engine(String),
    /// No store exists where the URL points (and it was not to be created).
    #[error("no metadata store at {0}")]
    Missing(String),
    /// The meta URL is malformed or names an unknown engine.
    #[error("bad meta URL: {0}")]
    BadUrl(String),
}

impl KvError {
    pub fn errno(&self) -> i32 {
        match self {
            KvError::Conflict => libc::EIO,
            KvError::InUse(_) => libc::EBUSY,
            KvError::Unavailable(_) => libc::EIO,
            KvError::Engine(_) => libc::EIO,
            KvError::Missing(_) => libc::ENOENT,
            KvError::BadUrl(_) => libc::EINVAL,
        }
    }
}

pub type KvResult<T> = std::result::Result<T, KvError>;

/// One key-value pair returned by a scan.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An optimistic transaction. Dropping it without [`KvTxn::commit`] discards it.
pub trait KvTxn {
    /// Point read; sees this transaction's own writes; tracked for conflicts.
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>>;

    /// Several point reads at once (one round trip on remote engines).
    fn batch_get(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Ordered scan of `[begin, end)`, at most `limit` pairs; sees this transaction's
    /// own writes; not tracked for conflicts (see the module docs).
    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>>;

    fn put(&mut self, key: &[u8], value: &[u8]) -> KvResult<()>;

    fn delete(&mut self, key: &[u8]) -> KvResult<()>;

    /// Deletes every key in `[begin, end)` (empty end: unbounded), untracked like a
    /// scan. Remote engines make it one operation however many keys it covers, which
    /// keeps bulk deletions within their per-transaction limits.
    fn delete_range(&mut self, begin: &[u8], end: &[u8]) -> KvResult<()> {
        let mut start = begin.to_vec();
        loop {
            let page = self.scan(&start, end, 1000)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            start = last.clone();
            start.push(0);
            for (k, _) in &page {
                self.delete(k)?;
            }
            if page.len() < 1000 {
                return Ok(());
            }
        }
    }

    /// Adds `delta` to the little-endian i64 stored at `key` (absent = 0) and returns the
    /// new value.
    fn incr_by(&mut self, key: &[u8], delta: i64) -> KvResult<i64> {
        let old = match self.get(key)? {
            Some(v) => decode_counter(&v).ok_or_else(|| {
                KvError::Engine(format!("counter {:?} is not 8 bytes", key.escape_ascii()))
            })?,
            None => 0,
        };
        let new = old.wrapping_add(delta);
        self.put(key, &new.to_le_bytes())?;
        Ok(new)
    }

    /// Commits; [`KvError::Conflict`] means nothing was written and the caller may retry.
    fn commit(self: Box<Self>) -> KvResult<()>;
}

pub fn decode_counter(v: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(v.try_into().ok()?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnMode {
    /// Reads only; never committed, so reads need not be tracked.
    ReadOnly,
    /// Reads and writes; `durable` asks for power-loss durability at commit.
    ReadWrite { durable: bool },
}

pub trait KvEngine: Send + Sync + 'static {
    /// Engine name for status output ("rocksdb", "memory", ...).
    fn name(&self) -> &'static str;

    /// True when no other process can share the store (RocksDB): every session found in
    /// it at start-up belongs to a dead client and can be cleaned at once.
    fn exclusive(&self) -> bool;

    /// This client has begun to close: an exclusive engine lets a process that wants
    /// to open the store wait for it instead of failing as "in use" (a remount right
    /// after umount(8), which returns before the mount process has let go).
    fn closing(&self) {}

    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>>;

    /// Makes every transaction committed so far power-loss durable.
    fn sync(&self) -> KvResult<()>;
}

/// Opens the engine a meta URL names for reading only: like [`open_engine`], except
/// that a RocksDB volume held by another process (a mount) is opened in RocksDB's
/// lock-free read-only mode instead of failing. The flag says whether that happened
/// (the view is then a snapshot of a volume another process is changing).
pub fn open_engine_read_only(url: &str) -> KvResult<(Arc<dyn KvEngine>, bool)> {
    match open_engine(url, false) {
        Err(KvError::InUse(_)) => {
            let path = url.strip_prefix("rocksdb://").unwrap_or(url);
            let kv = rocks::RocksReadOnly::open(std::path::Path::new(path))?;
            Ok((Arc::new(kv), true))
        }
        other => other.map(|kv| (kv, false)),
    }
}

/// Opens the engine a meta URL names: `rocksdb:///abs/path`, `memory://[name]`,
/// `etcd://host:port[,host:port...]/prefix`. With `create`, a missing RocksDB store is
/// created (formatting); otherwise it is an error. (An etcd prefix needs no creating;
/// an unformatted one is reported when the volume is loaded.)
pub fn open_engine(url: &str, create: bool) -> KvResult<Arc<dyn KvEngine>> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        KvError::BadUrl(format!(
            "{url:?} has no scheme (expected rocksdb:///path or memory://)"
        ))
    })?;
    match scheme {
        "rocksdb" => {
            if !rest.starts_with('/') {
                return Err(KvError::BadUrl(format!(
                    "{url:?}: the RocksDB path must be absolute (rocksdb:///var/lib/kiseki/meta)"
                )));
            }
            if rest.contains(['?', '#']) {
                return Err(KvError::BadUrl(format!(
                    "{url:?}: query strings and fragments are not supported"
                )));
            }
            Ok(Arc::new(rocks::RocksKv::open(
                std::path::Path::new(rest),
                create,
            )?))
        }
        "memory" => Ok(memory::MemoryKv::named(rest)),
        "etcd" => Ok(Arc::new(etcd::EtcdKv::open(url)?)),
        other => Err(KvError::BadUrl(format!(
            "{url:?}: unknown metadata engine {other:?} (supported: rocksdb, etcd, memory)"
        ))),
    }
}

/// The smallest key greater than every key starting with `prefix` (for scan ends).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: no finite end; an empty end means "unbounded" to every engine.
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_non_ff_byte() {
        assert_eq!(prefix_end(b"A\x00\x01"), b"A\x00\x02");
        assert_eq!(prefix_end(b"A\xff\xff"), b"B");
        assert_eq!(prefix_end(b"\xff"), b"");
    }

    #[test]
    fn bad_urls_are_rejected_with_reasons() {
        for url in [
            "",
            "rocksdb",
            "rocksdb://relative/path",
            "redis://localhost",
            "rocksdb:///tmp/x?y=1",
            "etcd://localhost",
            "etcd://localhost:2379/",
        ] {
            match open_engine(url, false) {
                Err(KvError::BadUrl(_)) => {}
                Err(e) => panic!("{url:?}: wrong error {e}"),
                Ok(_) => panic!("{url:?} accepted"),
            }
        }
    }
}
