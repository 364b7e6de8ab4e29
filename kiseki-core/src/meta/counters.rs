//! Volume counters kept exact inside the transactions that change them.
//!
//! `usedSpace` and `totalInodes` change in nearly every transaction, so a single key
//! would make all of them conflict with each other. Each counter is split into
//! [`SHARDS`] keys and a transaction touches the shard its inode hashes to; the value is
//! the sum of the shards. Exactness is kept (every change is transactional); only the
//! hot spot is spread.

use super::keys;
use super::kv::{decode_counter, prefix_end, KvTxn};
use super::types::{Attr, Ino};
use crate::error::Result;

pub const USED_SPACE: &str = "usedSpace";
/// Bytes reserved by fallocate and not written yet (part of `usedSpace`, but not in
/// object storage): statfs takes them off the free space of an `fs` bucket's disk.
/// Changed wherever slice records change; a deleted file's go when its records do.
pub const RESERVED_SPACE: &str = "reservedSpace";
/// Bytes of inline slices (part of `usedSpace`, stored in the metadata engine rather
/// than object storage), each slice counted once however many records share it.
pub const INLINE_SPACE: &str = "inlineSpace";
pub const TOTAL_INODES: &str = "totalInodes";
/// The part of `usedSpace` and `totalInodes` the trash holds (see `trash`).
pub const TRASH_SPACE: &str = "trashSpace";
pub const TRASH_INODES: &str = "trashInodes";
pub const NEXT_INODE: &str = "nextInode";
pub const NEXT_SLICE: &str = "nextSlice";
pub const NEXT_SESSION: &str = "nextSession";

pub const SHARDS: u64 = 16;

pub fn add(tx: &mut dyn KvTxn, name: &str, ino: Ino, delta: i64) -> Result<()> {
    if delta != 0 {
        tx.incr_by(&keys::counter_shard(name, (ino.0 % SHARDS) as u8), delta)?;
    }
    Ok(())
}

/// Charges a change of inode `ino`'s space to the volume, and to the trash's share
/// when the inode is kept there (a handle opened before the removal may still write).
pub fn charge(tx: &mut dyn KvTxn, ino: Ino, attr: &Attr, delta: i64) -> Result<()> {
    add(tx, USED_SPACE, ino, delta)?;
    if attr.in_trash() {
        add(tx, TRASH_SPACE, ino, delta)?;
    }
    Ok(())
}

/// The sum of all shards. Uses an untracked scan: callers that need an exact value in
/// a decision get it from a read-only snapshot (statfs, fsck), and quota checks accept
/// the small window in which concurrent transactions are not yet counted.
pub fn sum(tx: &mut dyn KvTxn, name: &str) -> Result<i64> {
    let mut prefix = keys::counter(name);
    prefix.push(b'/');
    let end = prefix_end(&prefix);
    let mut total = 0i64;
    for (_, v) in tx.scan(&prefix, &end, SHARDS as usize * 2)? {
        total = total.wrapping_add(decode_counter(&v).unwrap_or(0));
    }
    Ok(total)
}

/// Overwrites a counter so it sums to `value` (fsck repair, format).
pub fn set(tx: &mut dyn KvTxn, name: &str, value: i64) -> Result<()> {
    for shard in 0..SHARDS {
        let v = if shard == 0 { value } else { 0 };
        tx.put(&keys::counter_shard(name, shard as u8), &v.to_le_bytes())?;
    }
    Ok(())
}
