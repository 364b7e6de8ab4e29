//! The clock sessions expire by: the system clock, which a test can move forward for
//! one client (to see another client's session as expired) instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::types::Timespec;

/// Seconds since the epoch, plus an offset only tests set.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        Timespec::now().sec + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) `secs` seconds forward.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}
