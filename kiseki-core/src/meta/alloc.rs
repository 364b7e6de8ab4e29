//! Batched id allocation (inode numbers, slice ids).
//!
//! Each client reserves a batch of ids with one small transaction on the shared counter
//! and hands them out from memory. Ids are unique across clients and crashes (a crash
//! only skips the rest of a batch); they are never derived from host addresses.

use std::sync::Mutex;

use super::keys;
use super::kv::{KvEngine, KvTxn, TxnMode};
use super::txn::run_txn;
use crate::error::Result;

pub struct IdAllocator {
    counter: &'static str,
    batch: u64,
    /// Next id to hand out and the end (exclusive) of the reserved batch.
    range: Mutex<(u64, u64)>,
}

impl IdAllocator {
    pub fn new(counter: &'static str, batch: u64) -> Self {
        IdAllocator {
            counter,
            batch,
            range: Mutex::new((0, 0)),
        }
    }

    /// The next id. `on_batch` runs inside the transaction that reserves a new batch,
    /// with its range, so callers can record the reservation atomically with it.
    pub fn next(
        &self,
        kv: &dyn KvEngine,
        on_batch: impl Fn(&mut dyn KvTxn, u64, u64) -> Result<()>,
    ) -> Result<u64> {
        let mut range = self.range.lock().unwrap_or_else(|p| p.into_inner());
        if range.0 >= range.1 {
            let key = keys::counter(self.counter);
            let batch = self.batch as i64;
            let end = run_txn(kv, TxnMode::ReadWrite { durable: false }, |tx| {
                let end = tx.incr_by(&key, batch)?;
                on_batch(tx, (end - batch) as u64, end as u64)?;
                Ok(end)
            })?;
            *range = ((end - batch) as u64, end as u64);
        }
        let id = range.0;
        range.0 += 1;
        Ok(id)
    }
}
