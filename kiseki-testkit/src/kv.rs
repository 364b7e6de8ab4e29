//! A metadata engine wrapper that records what reaches the engine: durable commits and
//! syncs as `meta sync` events in a [`Journal`] shared with the object store (the order
//! of block syncs and commits), and counts of read and write transactions (how many
//! requests an operation costs). Commits and syncs can be slowed down, as a remote
//! engine's round trip or a slow disk would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiseki_core::data::store::Journal;
use kiseki_core::meta::kv::{KvEngine, KvPair, KvResult, KvTxn, TxnMode};

pub struct RecordingKv {
    inner: Arc<dyn KvEngine>,
    journal: Journal,
    reads: AtomicU64,
    writes: AtomicU64,
    /// Every commit and sync takes at least this many microseconds longer.
    delay_us: Arc<AtomicU64>,
}

impl RecordingKv {
    pub fn new(inner: Arc<dyn KvEngine>, journal: Journal) -> Arc<Self> {
        Arc::new(RecordingKv {
            inner,
            journal,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            delay_us: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Makes every commit and sync from now on take `delay` longer.
    pub fn slow_commits(&self, delay: Duration) {
        self.delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    fn wait(delay_us: &AtomicU64) {
        let us = delay_us.load(Ordering::SeqCst);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
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

struct WriteTxn<'a> {
    inner: Box<dyn KvTxn + 'a>,
    journal: Journal,
    durable: bool,
    delay_us: Arc<AtomicU64>,
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
                Box::new(WriteTxn {
                    inner,
                    journal: self.journal.clone(),
                    durable,
                    delay_us: self.delay_us.clone(),
                })
            }
        })
    }
    fn sync(&self) -> KvResult<()> {
        Self::wait(&self.delay_us);
        self.inner.sync()?;
        note(&self.journal, "meta sync");
        Ok(())
    }
}

impl KvTxn for WriteTxn<'_> {
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
        RecordingKv::wait(&self.delay_us);
        self.inner.commit()?;
        if self.durable {
            note(&self.journal, "meta sync");
        }
        Ok(())
    }
}
