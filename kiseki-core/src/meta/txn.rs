//! Running schema code in engine transactions: the retry policy for optimistic
//! conflicts. It lives with the schema, not with the engines, because what may be
//! retried is the schema's decision ([`Error::is_conflict`]).

use std::time::Duration;

use rand::Rng;

use super::kv::{KvEngine, KvTxn, TxnMode};
use crate::error::{Error, Result};
use crate::metrics::METRICS;

/// Retry policy for optimistic conflicts: bounded attempts, exponential back-off with
/// full jitter so that colliding writers spread out instead of colliding again.
const MAX_ATTEMPTS: u32 = 60;
const BACKOFF_BASE: Duration = Duration::from_micros(100);
const BACKOFF_CAP: Duration = Duration::from_millis(50);

/// Runs `f` in a transaction, retrying the whole closure on conflict. `f` must be
/// idempotent apart from its writes to the transaction (it may run several times).
pub(crate) fn run_txn<T>(
    kv: &dyn KvEngine,
    mode: TxnMode,
    mut f: impl FnMut(&mut dyn KvTxn) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    let calls = match mode {
        TxnMode::ReadWrite { .. } => &METRICS.meta_write,
        _ => &METRICS.meta_read,
    };
    loop {
        let start = std::time::Instant::now();
        let result = (|| {
            let mut txn = kv.begin(mode)?;
            let value = f(&mut *txn)?;
            if matches!(mode, TxnMode::ReadWrite { .. }) {
                txn.commit()?;
            }
            Ok(value)
        })();
        calls.record(start, result.is_ok());
        match result {
            Err(e) if is_retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                METRICS.meta_conflicts.inc();
                attempt += 1;
                std::thread::sleep(backoff(attempt));
            }
            other => return other,
        }
    }
}

fn is_retryable(e: &Error) -> bool {
    e.is_conflict()
}

fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let nanos = rand::thread_rng().gen_range(0..=ceiling.as_nanos() as u64);
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..100 {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
    }
}
