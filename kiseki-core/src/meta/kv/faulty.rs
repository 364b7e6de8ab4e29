//! A fault-injecting wrapper around any engine, for seeded simulation tests: from a
//! seed it makes commits fail with a conflict (nothing written; the schema retries),
//! makes the engine unavailable (nothing written; the caller sees EIO), and loses the
//! reply of a commit that did apply (the caller sees EIO although the change is there,
//! the ambiguity every remote engine has). Reads may be unavailable too.
//!
//! The same seed and the same sequence of calls give the same faults; with several
//! threads the interleaving decides which call meets which fault.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{KvEngine, KvError, KvPair, KvResult, KvTxn, TxnMode};

/// Probabilities of each fault, per call (0.0 to 1.0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KvFaults {
    /// A commit fails as if another transaction had won.
    pub conflict: f64,
    /// A commit or a transaction's start fails with the engine unavailable.
    pub unavailable: f64,
    /// A commit applies but its caller is told the engine was unavailable.
    pub lost_reply: f64,
}

pub struct FaultyKv {
    inner: Arc<dyn KvEngine>,
    state: Arc<Mutex<(StdRng, KvFaults)>>,
}

impl FaultyKv {
    pub fn new(inner: Arc<dyn KvEngine>, seed: u64, faults: KvFaults) -> Arc<Self> {
        Arc::new(FaultyKv {
            inner,
            state: Arc::new(Mutex::new((StdRng::seed_from_u64(seed), faults))),
        })
    }

    /// Changes the fault rates from now on (a test turns them off to verify).
    pub fn set_faults(&self, faults: KvFaults) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = faults;
    }

    fn roll(state: &Mutex<(StdRng, KvFaults)>, pick: impl Fn(&KvFaults) -> f64) -> bool {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let p = pick(&s.1);
        p > 0.0 && s.0.gen_bool(p.min(1.0))
    }
}

impl KvEngine for FaultyKv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    fn closing(&self) {
        self.inner.closing()
    }

    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>> {
        if Self::roll(&self.state, |f| f.unavailable / 4.0) {
            return Err(KvError::Unavailable("injected: engine unavailable".into()));
        }
        Ok(Box::new(FaultyTxn {
            inner: self.inner.begin(mode)?,
            state: &self.state,
        }))
    }

    fn sync(&self) -> KvResult<()> {
        self.inner.sync()
    }
}

struct FaultyTxn<'a> {
    inner: Box<dyn KvTxn + 'a>,
    state: &'a Mutex<(StdRng, KvFaults)>,
}

impl KvTxn for FaultyTxn<'_> {
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

    fn incr_by(&mut self, key: &[u8], delta: i64) -> KvResult<i64> {
        self.inner.incr_by(key, delta)
    }

    fn commit(self: Box<Self>) -> KvResult<()> {
        let state = self.state;
        if FaultyKv::roll(state, |f| f.conflict) {
            return Err(KvError::Conflict);
        }
        if FaultyKv::roll(state, |f| f.unavailable) {
            return Err(KvError::Unavailable("injected: commit not applied".into()));
        }
        self.inner.commit()?;
        if FaultyKv::roll(state, |f| f.lost_reply) {
            return Err(KvError::Unavailable(
                "injected: the reply of an applied commit was lost".into(),
            ));
        }
        Ok(())
    }
}
