//! statfs: volume usage from the exact counters.

use super::super::counters;
use super::super::types::StatFs;
use super::super::Meta;
use crate::error::Result;

/// Reported size of a volume without a capacity limit (object storage is unbounded,
/// but tools want a finite number): 1 PiB beyond what is used.
const UNLIMITED_SPACE: u64 = 1 << 50;
/// Reported free inodes of a volume without an inode limit.
const UNLIMITED_INODES: u64 = 1 << 40;

impl Meta {
    pub fn statfs(&self) -> Result<StatFs> {
        let (used, inodes, reserved, inline) = self.read(|tx| {
            Ok((
                counters::sum(tx, counters::USED_SPACE)?.max(0) as u64,
                counters::sum(tx, counters::TOTAL_INODES)?.max(0) as u64,
                counters::sum(tx, counters::RESERVED_SPACE)?.max(0) as u64,
                counters::sum(tx, counters::INLINE_SPACE)?.max(0) as u64,
            ))
        })?;
        let total_space = if self.format.capacity > 0 {
            self.format.capacity.max(used)
        } else {
            used + UNLIMITED_SPACE
        };
        let avail_inodes = if self.format.inodes > 0 {
            self.format.inodes.saturating_sub(inodes)
        } else {
            UNLIMITED_INODES
        };
        Ok(StatFs {
            total_space,
            avail_space: total_space - used,
            reserved_space: reserved,
            inline_space: inline,
            used_inodes: inodes,
            avail_inodes,
        })
    }
}
