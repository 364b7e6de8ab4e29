//! In-memory engine for tests and `memory://` volumes.
//!
//! It implements the same optimistic contract as RocksDB (point reads and writes are
//! validated at commit, scans are not) so that schema bugs that rely on untracked scans
//! show up in tests here too. `memory://NAME` returns the same store for the same name
//! within a process (so a format and a later connect see one volume); `memory://` alone
//! is a fresh private store.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::{KvEngine, KvError, KvPair, KvResult, KvTxn, TxnMode};

#[derive(Default)]
struct State {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Commit sequence of the last write (put or delete) of each key ever written.
    versions: HashMap<Vec<u8>, u64>,
    seq: u64,
}

impl State {
    fn version(&self, key: &[u8]) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub struct MemoryKv {
    state: RwLock<State>,
}

impl MemoryKv {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn named(name: &str) -> Arc<Self> {
        if name.is_empty() {
            return Self::new();
        }
        static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<MemoryKv>>>> = OnceLock::new();
        let mut registry = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        registry.entry(name.to_string()).or_default().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl KvEngine for MemoryKv {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn exclusive(&self) -> bool {
        false
    }

    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>> {
        let snapshot = match mode {
            TxnMode::ReadOnly => Some(self.read()),
            TxnMode::ReadWrite { .. } => None,
        };
        let start_seq = match &snapshot {
            Some(s) => s.seq,
            None => self.read().seq,
        };
        Ok(Box::new(MemTxn {
            kv: self,
            snapshot,
            start_seq,
            seen: HashMap::new(),
            writes: BTreeMap::new(),
        }))
    }

    fn sync(&self) -> KvResult<()> {
        Ok(())
    }
}

struct MemTxn<'a> {
    kv: &'a MemoryKv,
    /// Read-only transactions hold the read lock: one consistent state, like a snapshot.
    snapshot: Option<std::sync::RwLockReadGuard<'a, State>>,
    /// Commit sequence when the transaction began. A read-write transaction that meets a
    /// key written after it began conflicts at once, so every value it reads belongs to
    /// the state at its start (the same guarantee a RocksDB snapshot gives).
    start_seq: u64,
    /// Version of each key when this transaction first read or wrote it.
    seen: HashMap<Vec<u8>, u64>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl MemTxn<'_> {
    fn track(&mut self, key: &[u8], state: &State) -> KvResult<()> {
        let version = state.version(key);
        if version > self.start_seq {
            return Err(KvError::Conflict);
        }
        self.seen.entry(key.to_vec()).or_insert(version);
        Ok(())
    }
}

impl KvTxn for MemTxn<'_> {
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        if let Some(snapshot) = &self.snapshot {
            return Ok(snapshot.data.get(key).cloned());
        }
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        let kv = self.kv;
        let state = kv.read();
        self.track(key, &state)?;
        Ok(state.data.get(key).cloned())
    }

    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>> {
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end.to_vec())
        };
        let range = (Bound::Included(begin.to_vec()), upper);
        if let Some(snapshot) = &self.snapshot {
            return Ok(snapshot
                .data
                .range(range)
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect());
        }
        let state = self.kv.read();
        // Merge committed data with this transaction's own writes, in key order.
        let mut merged: BTreeMap<&[u8], Option<&[u8]>> = state
            .data
            .range(range.clone())
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        for (k, v) in self.writes.range(range) {
            merged.insert(k.as_slice(), v.as_deref());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_vec(), v.to_vec())))
            .take(limit)
            .collect())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> KvResult<()> {
        if self.snapshot.is_some() {
            return Err(KvError::Engine("write in a read-only transaction".into()));
        }
        let kv = self.kv;
        self.track(key, &kv.read())?;
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> KvResult<()> {
        if self.snapshot.is_some() {
            return Err(KvError::Engine("write in a read-only transaction".into()));
        }
        let kv = self.kv;
        self.track(key, &kv.read())?;
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }

    fn commit(self: Box<Self>) -> KvResult<()> {
        if self.snapshot.is_some() {
            return Ok(());
        }
        let mut state = self.kv.state.write().unwrap_or_else(|p| p.into_inner());
        if self.seen.iter().any(|(k, &v)| state.version(k) != v) {
            return Err(KvError::Conflict);
        }
        if self.writes.is_empty() {
            return Ok(());
        }
        state.seq += 1;
        let seq = state.seq;
        for (k, v) in self.writes {
            match v {
                Some(v) => state.data.insert(k.clone(), v),
                None => state.data.remove(&k),
            };
            state.versions.insert(k, seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicting_commits_fail_and_scans_see_own_writes() {
        let kv = MemoryKv::new();
        let mode = TxnMode::ReadWrite { durable: false };
        let mut a = kv.begin(mode).unwrap();
        let mut b = kv.begin(mode).unwrap();
        assert_eq!(a.get(b"k").unwrap(), None);
        b.put(b"k", b"1").unwrap();
        b.commit().unwrap();
        a.put(b"other", b"x").unwrap();
        assert!(matches!(a.commit(), Err(KvError::Conflict)));

        let mut c = kv.begin(mode).unwrap();
        c.put(b"k2", b"2").unwrap();
        c.delete(b"k").unwrap();
        let pairs = c.scan(b"k", b"l", 10).unwrap();
        assert_eq!(pairs, vec![(b"k2".to_vec(), b"2".to_vec())]);
        c.commit().unwrap();
        let mut d = kv.begin(TxnMode::ReadOnly).unwrap();
        assert_eq!(d.scan(b"", b"", 10).unwrap().len(), 1);
        assert!(d.put(b"n", b"1").is_err());
        drop(d);
        let mut e = kv.begin(mode).unwrap();
        assert_eq!(e.incr_by(b"n", 5).unwrap(), 5);
        e.commit().unwrap();
    }

    #[test]
    fn named_stores_are_shared() {
        let a = MemoryKv::named("kv-shared-test");
        let mut t = a.begin(TxnMode::ReadWrite { durable: false }).unwrap();
        t.put(b"x", b"y").unwrap();
        t.commit().unwrap();
        let b = MemoryKv::named("kv-shared-test");
        assert_eq!(
            b.begin(TxnMode::ReadOnly).unwrap().get(b"x").unwrap(),
            Some(b"y".to_vec())
        );
    }
}
