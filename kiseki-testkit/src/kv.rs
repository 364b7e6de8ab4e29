//! A metadata engine wrapper that records what reaches the engine: durable commits and
//! syncs as `meta sync` events in a [`Journal`] shared with the object store (the order
//! of block syncs and commits), and counts of read and write transactions (how many
//! requests an operation costs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kiseki_core::data::store::Journal;
use kiseki_core::meta::kv::{KvEngine, KvPair, KvResult, KvTxn, TxnMode};

pub struct RecordingKv {
    inner: Arc<dyn KvEngine>,
    journal: Journal,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl RecordingKv {
    pub fn new(inner: Arc<dyn KvEngine>, journal: Journal) -> Arc<Self> {
        Arc::new(RecordingKv {
            inner,
            journal,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    /// Read-only and read-write transactions begun so far.
    pub fn transactions(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
        )
    }
}

fn note(journal: &Journal, event: &str) {
    journal.lock().unwrap().push(event.to_string());
}

struct DurableTxn<'a> {
    inner: Box<dyn KvTxn + 'a>,
    journal: Journal,
}

impl KvEngine for RecordingKv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }
    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>> {
        let inner = self.inner.begin(mode)?;
        Ok(match mode {
            TxnMode::ReadOnly => {
                self.reads.fetch_add(1, Ordering::SeqCst);
                inner
            }
            TxnMode::ReadWrite { durable } => {
                self.writes.fetch_add(1, Ordering::SeqCst);
                if !durable {
                    return Ok(inner);
                }
                Box::new(DurableTxn {
                    inner,
                    journal: self.journal.clone(),
                })
            }
        })
    }
    fn sync(&self) -> KvResult<()> {
        self.inner.sync()?;
        note(&self.journal, "meta sync");
        Ok(())
    }
}

impl KvTxn for DurableTxn<'_> {
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn batch_get(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Vec<u8>>>> {
        self.inner.batch_get(keys)
    }
    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>> {
        self.inner.scan(begin, end, limit)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> KvResult<()> {
        self.inner.delete(key)
    }
    fn delete_range(&mut self, begin: &[u8], end: &[u8]) -> KvResult<()> {
        self.inner.delete_range(begin, end)
    }
    fn commit(self: Box<Self>) -> KvResult<()> {
        self.inner.commit()?;
        note(&self.journal, "meta sync");
        Ok(())
    }
}
