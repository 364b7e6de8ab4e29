//! File contents as metadata: the slice records of each 64 MiB chunk, their commit,
//! truncation, slice reference counts and the durable deletion queues.
//!
//! A slice record says which bytes of an immutable slice (stored as blocks in object
//! storage) a chunk range shows. Writes append records; later records win. A slice is
//! referenced once by the record its write committed plus once per record copied by
//! copy_file_range; the extra references live in `K id` (absent: exactly one). Dropping
//! the last reference queues the slice's blocks for deletion (`Y id size`), in the same
//! transaction, so no object is leaked by a crash and none is deleted while referenced.

use super::super::counters;
use super::super::keys;
use super::super::kv::{decode_counter, prefix_end, KvError, KvTxn};
use super::super::records::{self, SliceRecord};
use super::super::types::{Attr, FileKind, Ino, Timespec, MAX_FILE_SIZE};
use super::super::Meta;
use super::{must_attr, store_attr};
use crate::error::{Error, Result};

/// Size of a chunk: the unit slice records are grouped by.
pub const CHUNK_SIZE: u64 = 64 << 20;

/// What the commit of a new slice records beside its records: the block checksums of
/// a slice in object storage (sector checksums, block after block; see
/// `data::checksum`), the bytes of an inline slice, or the checksums of a slice whose
/// blocks are staged for upload by a write-back client.
#[derive(Debug, Clone)]
pub enum SliceData {
    Sums(Vec<u32>),
    Inline(bytes::Bytes),
    Staged(Vec<u32>, records::StagedSlice),
}

/// A new slice's id and data (see [`SliceData`]).
pub type SliceSums = (u64, SliceData);

/// A new slice is referenced once by its first record; one shared by several records
/// (small writes packed together, a compacted chunk's runs) gets the others as extra
/// references.
fn add_shared_refs(tx: &mut dyn KvTxn, sums: &[SliceSums], recs: &[SliceRecord]) -> Result<()> {
    for (id, _) in sums {
        let n = recs.iter().filter(|r| r.id == *id).count() as i64;
        if n > 1 {
            tx.incr_by(&keys::slice_refs(*id), n - 1)?;
        }
    }
    Ok(())
}

fn put_sums(tx: &mut dyn KvTxn, ino: Ino, sums: &[SliceSums]) -> Result<()> {
    for (id, data) in sums {
        match data {
            SliceData::Sums(s) => {
                tx.put(&keys::slice_sums(*id), &crate::data::checksum::encode(s))?
            }
            SliceData::Inline(bytes) => {
                debug_assert!(records::is_inline(*id));
                tx.put(&keys::inline_slice(*id), bytes)?;
                counters::add(tx, counters::INLINE_SPACE, ino, bytes.len() as i64)?;
            }
            SliceData::Staged(s, staged) => {
                tx.put(&keys::slice_sums(*id), &crate::data::checksum::encode(s))?;
                tx.put(&keys::staged_slice(*id), &records::encode_staged(staged))?;
            }
        }
    }
    Ok(())
}

/// A slice record to commit into chunk `chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSlice {
    pub chunk: u32,
    pub rec: SliceRecord,
}

/// One file's data commit (see [`Meta::write_slices`]).
#[derive(Debug, Clone)]
pub struct SliceCommit {
    pub ino: Ino,
    /// Records to append, in write order.
    pub slices: Vec<NewSlice>,
    /// The new slices' checksums or data.
    pub sums: Vec<SliceSums>,
    /// The length grows to at least this.
    pub end: u64,
    /// Clear setuid and setgid (a write by an unprivileged caller).
    pub kill_suid: bool,
}

fn load_chunk(tx: &mut dyn KvTxn, ino: Ino, index: u32) -> Result<Vec<SliceRecord>> {
    match tx.get(&keys::chunk(ino, index))? {
        Some(v) => records::decode_slices(ino, CHUNK_SIZE, &v),
        None => Ok(Vec::new()),
    }
}

/// Data bytes (not holes; reservations count) a chunk's records show.
pub(crate) fn covered(recs: &[SliceRecord]) -> u64 {
    crate::meta::overlay::visible(recs, 0, CHUNK_SIZE)
        .iter()
        .filter(|p| p.id != 0)
        .map(|p| p.len)
        .sum()
}

/// Reserved bytes (fallocate, not written yet) a chunk's records show.
pub(crate) fn reserved(recs: &[SliceRecord]) -> u64 {
    crate::meta::overlay::visible(recs, 0, CHUNK_SIZE)
        .iter()
        .filter(|p| p.id == records::RESERVED_ID)
        .map(|p| p.len)
        .sum()
}

/// Keeps the reserved-space counter in step with a chunk whose records went from
/// `before` to `after`.
pub(super) fn count_reserved(
    tx: &mut dyn KvTxn,
    ino: Ino,
    before: &[SliceRecord],
    after: &[SliceRecord],
) -> Result<()> {
    let any = |l: &[SliceRecord]| l.iter().any(|r| r.id == records::RESERVED_ID);
    if any(before) || any(after) {
        let delta = reserved(after) as i64 - reserved(before) as i64;
        counters::add(tx, counters::RESERVED_SPACE, ino, delta)?;
    }
    Ok(())
}

/// Appends records to chunk `index`; returns how the chunk's data bytes changed.
fn append_records(tx: &mut dyn KvTxn, ino: Ino, index: u32, recs: &[SliceRecord]) -> Result<i64> {
    let key = keys::chunk(ino, index);
    let mut v = tx.get(&key)?.unwrap_or_default();
    let mut list = records::decode_slices(ino, CHUNK_SIZE, &v)?;
    let old = list.clone();
    let before = covered(&list);
    list.extend_from_slice(recs);
    records::encode_slices(&mut v, recs);
    tx.put(&key, &v)?;
    count_reserved(tx, ino, &old, &list)?;
    Ok(covered(&list) as i64 - before as i64)
}

/// How long the blocks of slices replaced by compaction outlive the swap: a reader that
/// resolved the old records just before it may still be fetching them.
pub const REPLACED_SLICE_GRACE_SECS: i64 = 120;

/// Drops one reference to each record's slice; the last reference queues its blocks,
/// to be deleted no earlier than `not_before` (seconds since the epoch; the value of the
/// `Y` record).
pub(crate) fn deref_slices(
    tx: &mut dyn KvTxn,
    recs: &[SliceRecord],
    not_before: i64,
) -> Result<()> {
    for r in recs.iter().filter(|r| r.has_blocks()) {
        let key = keys::slice_refs(r.id);
        match tx.get(&key)?.as_deref().and_then(decode_counter) {
            Some(extra) if extra > 1 => tx.put(&key, &(extra - 1).to_le_bytes())?,
            Some(_) => tx.delete(&key)?,
            None => tx.put(
                &keys::slice_deletion(r.id, r.size),
                &not_before.to_le_bytes(),
            )?,
        }
    }
    Ok(())
}

fn add_refs(tx: &mut dyn KvTxn, recs: &[SliceRecord]) -> Result<()> {
    for r in recs.iter().filter(|r| r.has_blocks()) {
        tx.incr_by(&keys::slice_refs(r.id), 1)?;
    }
    Ok(())
}

/// Hides bytes `[new_len, old_len)` after a shrink: whole chunks beyond the new end are
/// dropped (their slices dereferenced), the chunk holding the new end gets a hole
/// record, so growing the file again shows zeros, never the old bytes.
pub(crate) fn truncate_chunks(
    tx: &mut dyn KvTxn,
    ino: Ino,
    old_len: u64,
    new_len: u64,
) -> Result<i64> {
    if new_len >= old_len {
        return Ok(0);
    }
    let mut delta = 0i64;
    let first_whole = new_len.div_ceil(CHUNK_SIZE);
    if first_whole <= u64::from(u32::MAX) {
        let begin = keys::chunk(ino, first_whole as u32);
        let end = prefix_end(&keys::chunk_prefix(ino));
        loop {
            let page = tx.scan(&begin, &end, 256)?;
            if page.is_empty() {
                break;
            }
            for (k, v) in &page {
                let recs = records::decode_slices(ino, CHUNK_SIZE, v)?;
                delta -= covered(&recs) as i64;
                count_reserved(tx, ino, &recs, &[])?;
                // A read that resolved these records a moment ago may still fetch them.
                deref_slices(tx, &recs, Timespec::now().sec + REPLACED_SLICE_GRACE_SECS)?;
                tx.delete(k)?;
            }
        }
    }
    let pos = new_len % CHUNK_SIZE;
    if pos != 0 {
        let index = (new_len / CHUNK_SIZE) as u32;
        // To the end of the chunk: space reserved beyond the old length (fallocate with
        // KEEP_SIZE) goes too, as a truncate frees preallocated blocks on ext4.
        let chunk_end = CHUNK_SIZE;
        if tx.get(&keys::chunk(ino, index))?.is_some() && chunk_end > pos {
            let hole = SliceRecord {
                pos: pos as u32,
                id: 0,
                size: 0,
                off: 0,
                len: (chunk_end - pos) as u32,
            };
            delta += append_records(tx, ino, index, &[hole])?;
        }
    }
    Ok(delta)
}

impl Meta {
    /// The slice records of chunk `index` of `ino`, oldest first.
    pub fn read_chunk(&self, ino: Ino, index: u32) -> Result<Vec<SliceRecord>> {
        self.read(|tx| load_chunk(tx, ino, index))
    }

    /// The bytes of inline slice `id`; `None` if it has none (corruption, or deleted).
    pub fn inline_slice(&self, id: u64) -> Result<Option<Vec<u8>>> {
        self.read(|tx| Ok(tx.get(&keys::inline_slice(id))?))
    }

    /// The recorded block checksums of slice `id`; `None` for a slice written before
    /// checksums existed.
    pub fn slice_sums(&self, id: u64) -> Result<Option<Vec<u32>>> {
        self.read(|tx| {
            tx.get(&keys::slice_sums(id))?
                .map(|v| crate::data::checksum::decode(id, &v))
                .transpose()
        })
    }

    /// Publishes written slices: appends their records, records the new slices' block
    /// checksums, extends the length to `end` if it grew, sets mtime/ctime, and charges
    /// the space, in one transaction that is power-loss durable when `durable`.
    /// `kill_suid` clears setuid/setgid (a write by an unprivileged caller). Commits of
    /// other files made at the same moment share the transaction (see `meta::group`).
    pub fn write_slices(&self, commit: SliceCommit, durable: bool) -> Result<Attr> {
        if commit.end > MAX_FILE_SIZE {
            return Err(Error::FileTooBig(format!("{} bytes", commit.end)));
        }
        self.commits
            .submit((commit, durable), |batch| self.write_slice_batch(batch))
    }

    /// Commits a batch of [`Meta::write_slices`] requests in one transaction, durable if
    /// any of them asked to be; if it fails other than by conflict (retried inside),
    /// each request is committed on its own so that only its own errors reach it.
    fn write_slice_batch(&self, batch: Vec<(SliceCommit, bool)>) -> Vec<Result<Attr>> {
        let durable = batch.iter().any(|(_, d)| *d);
        let one = |c: &SliceCommit, durable: bool| {
            self.write_mode(durable || self.config.sync_all, |tx| {
                self.slice_commit(tx, c)
            })
        };
        if let [(c, durable)] = &batch[..] {
            return vec![one(c, *durable)];
        }
        let all = self.write_mode(durable || self.config.sync_all, |tx| {
            batch
                .iter()
                .map(|(c, _)| self.slice_commit(tx, c))
                .collect::<Result<Vec<Attr>>>()
        });
        match all {
            Ok(attrs) => attrs.into_iter().map(Ok).collect(),
            Err(Error::Kv(e @ KvError::Unavailable(_))) => {
                // The engine is unreachable: every request would fail the same way,
                // each after its own deadline.
                batch.iter().map(|_| Err(Error::Kv(e.clone()))).collect()
            }
            // Anything else (an inode gone, the quota, a batch too large for etcd) is
            // one request's: run them alone.
            Err(_) => batch.iter().map(|(c, d)| one(c, *d)).collect(),
        }
    }

    fn slice_commit(&self, tx: &mut dyn KvTxn, c: &SliceCommit) -> Result<Attr> {
        let attr = self.commit_records(tx, c.ino, |_| Ok(c.slices.clone()), c.end, c.kill_suid)?;
        let recs: Vec<SliceRecord> = c.slices.iter().map(|s| s.rec).collect();
        add_shared_refs(tx, &c.sums, &recs)?;
        put_sums(tx, c.ino, &c.sums)?;
        Ok(attr)
    }

    /// The body of every data commit: appends the records `make` returns (given the
    /// transaction, so they may depend on what it reads), extends the length to `end`,
    /// sets mtime/ctime, charges the space against the capacity quota.
    fn commit_records(
        &self,
        tx: &mut dyn KvTxn,
        ino: Ino,
        make: impl FnOnce(&mut dyn KvTxn) -> Result<Vec<NewSlice>>,
        end: u64,
        kill_suid: bool,
    ) -> Result<Attr> {
        let old = must_attr(tx, ino)?;
        if old.kind != FileKind::File {
            return Err(Error::Invalid(format!("inode {ino} is not a regular file")));
        }
        let slices = make(tx)?;
        let delta = append_by_chunk(tx, ino, &slices)?;
        let mut attr = old.clone();
        add_stored(&mut attr, delta);
        attr.length = attr.length.max(end);
        let now = Timespec::now();
        attr.mtime = now;
        attr.ctime = now;
        if kill_suid {
            attr.mode = super::super::perm::strip_suid(attr.mode);
        }
        let grow = attr.space() as i64 - old.space() as i64;
        self.check_capacity(tx, grow)?;
        store_attr(tx, ino, &attr)?;
        counters::charge(tx, ino, &attr, grow)?;
        Ok(attr)
    }

    /// Bytes of `[off, off + len)` of `ino` that hold no data and no reservation: what
    /// reserving the range would newly allocate.
    pub fn unallocated(&self, ino: Ino, off: u64, len: u64) -> Result<u64> {
        self.read(|tx| {
            let mut total = 0;
            for (chunk, pos, l) in split_by_chunk(off, len, |c, p, l| (c, p, l)) {
                let recs = load_chunk(tx, ino, chunk)?;
                total += crate::meta::overlay::visible(&recs, pos.into(), l.into())
                    .iter()
                    .filter(|p| p.id == 0)
                    .map(|p| p.len)
                    .sum::<u64>();
            }
            Ok(total)
        })
    }

    /// fallocate: reserves `[off, off + len)` of `ino` (reads as zeros, counts as
    /// stored) where it holds no data, or with `zero` replaces all of it by reserved
    /// space (ZERO_RANGE), and extends the length to `end_len` when given. Large ranges
    /// commit in steps of 64 chunks (4 GiB); the length moves with the last one.
    pub fn reserve(
        &self,
        ino: Ino,
        off: u64,
        len: u64,
        zero: bool,
        end_len: Option<u64>,
    ) -> Result<Attr> {
        const STEP: u64 = 64 * CHUNK_SIZE;
        let end = off + len;
        let mut cur = off;
        loop {
            let step_end = end.min((cur / CHUNK_SIZE) * CHUNK_SIZE + STEP);
            let last = step_end == end;
            let new_len = if last { end_len.unwrap_or(0) } else { 0 };
            let attr = self.write(|tx| {
                let make = |tx: &mut dyn KvTxn| {
                    let mut out = Vec::new();
                    for (chunk, pos, l) in split_by_chunk(cur, step_end - cur, |c, p, l| (c, p, l))
                    {
                        let reserved = |pos: u64, len: u64| NewSlice {
                            chunk,
                            rec: SliceRecord {
                                pos: pos as u32,
                                id: records::RESERVED_ID,
                                size: 0,
                                off: 0,
                                len: len as u32,
                            },
                        };
                        if zero {
                            out.push(reserved(pos.into(), l.into()));
                            continue;
                        }
                        let recs = load_chunk(tx, ino, chunk)?;
                        for p in crate::meta::overlay::visible(&recs, pos.into(), l.into()) {
                            if p.id == 0 {
                                out.push(reserved(p.chunk_pos, p.len));
                            }
                        }
                    }
                    Ok(out)
                };
                self.commit_records(tx, ino, make, new_len, false)
            })?;
            if last {
                return Ok(attr);
            }
            cur = step_end;
        }
    }

    /// The volume's capacity quota, for a transaction that grows used space by `grow`.
    /// Soft by the transactions in flight (the counter is read with an untracked scan).
    pub(super) fn check_capacity(&self, tx: &mut dyn KvTxn, grow: i64) -> Result<()> {
        let capacity = self.volume().capacity;
        if grow > 0 && capacity > 0 {
            let used = counters::sum(tx, counters::USED_SPACE)?.max(0) as u64;
            if used + grow as u64 > capacity {
                return Err(Error::NoSpace(format!(
                    "capacity of {capacity} bytes reached"
                )));
            }
        }
        Ok(())
    }

    /// Replaces `[off, off + len)` of `ino` with a hole (punch-hole, zero-range),
    /// extending the length to `end_len` when asked (fallocate without KEEP_SIZE).
    pub fn punch_hole(&self, ino: Ino, off: u64, len: u64, end_len: Option<u64>) -> Result<Attr> {
        let holes = hole_records(off, len);
        let commit = SliceCommit {
            ino,
            slices: holes,
            sums: Vec::new(),
            end: end_len.unwrap_or(0),
            kill_suid: false,
        };
        self.write_slices(commit, false)
    }

    /// Makes `[dst_off, dst_off + len)` of `dst` show the bytes `[src_off, src_off + len)`
    /// of `src` by copying slice records (no data is copied), in one transaction.
    /// Returns the number of bytes copied (short at the source's end).
    pub fn copy_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        self.write(|tx| {
            let sattr = must_attr(tx, src)?;
            let dattr = must_attr(tx, dst)?;
            if sattr.kind != FileKind::File || dattr.kind != FileKind::File {
                return Err(Error::Invalid("copy between non-regular files".into()));
            }
            let len = len.min(sattr.length.saturating_sub(src_off));
            if len == 0 {
                return Ok(0);
            }
            if dst_off.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE) {
                return Err(Error::FileTooBig(format!("copy to {dst_off}+{len}")));
            }
            if src == dst && src_off < dst_off + len && dst_off < src_off + len {
                return Err(Error::Invalid("overlapping copy within one file".into()));
            }
            // Source bytes past its EOF inside the copied range read as zeros: a hole
            // record first, then the visible source pieces on top.
            let mut out: Vec<NewSlice> = hole_records(dst_off, len);
            let mut copied = Vec::new();
            let mut done = 0u64;
            while done < len {
                let s = src_off + done;
                let index = (s / CHUNK_SIZE) as u32;
                let in_chunk = s % CHUNK_SIZE;
                let take = (CHUNK_SIZE - in_chunk).min(len - done);
                let recs = load_chunk(tx, src, index)?;
                for piece in crate::meta::overlay::visible(&recs, in_chunk, take) {
                    // Holes and reservations read as zeros: the hole records cover them.
                    if !records::has_blocks(piece.id) {
                        continue;
                    }
                    let d = dst_off + done + (piece.chunk_pos - in_chunk);
                    // The piece may straddle a destination chunk edge: split it there.
                    let mut slice_off = piece.slice_off;
                    for (chunk, pos, l) in split_by_chunk(d, piece.len, |c, p, l| (c, p, l)) {
                        let rec = SliceRecord {
                            pos,
                            id: piece.id,
                            size: piece.size,
                            off: slice_off as u32,
                            len: l,
                        };
                        slice_off += u64::from(l);
                        copied.push(rec);
                        out.push(NewSlice { chunk, rec });
                    }
                }
                done += take;
            }
            add_refs(tx, &copied)?;
            let delta = append_by_chunk(tx, dst, &out)?;
            let mut attr = must_attr(tx, dst)?;
            let old_space = attr.space();
            add_stored(&mut attr, delta);
            attr.length = attr.length.max(dst_off + len);
            let now = Timespec::now();
            attr.mtime = now;
            attr.ctime = now;
            let grow = attr.space() as i64 - old_space as i64;
            self.check_capacity(tx, grow)?;
            store_attr(tx, dst, &attr)?;
            counters::charge(tx, dst, &attr, grow)?;
            Ok(len)
        })
    }

    /// Replaces the records of chunk `index` with `new` if they are still `old` followed
    /// by anything appended meanwhile (which is kept, after `new`), recording the
    /// checksums of new slices. Records of `old` that `new` does not carry over are
    /// dereferenced; records carried over keep their reference. Returns false when `old`
    /// is no longer a prefix.
    pub fn compact_chunk(
        &self,
        ino: Ino,
        index: u32,
        old: &[SliceRecord],
        new: &[SliceRecord],
        sums: &[SliceSums],
    ) -> Result<bool> {
        self.write(|tx| {
            let cur = load_chunk(tx, ino, index)?;
            if cur.len() < old.len() || cur[..old.len()] != *old {
                return Ok(false);
            }
            add_shared_refs(tx, sums, new)?;
            put_sums(tx, ino, sums)?;
            let mut list = new.to_vec();
            list.extend_from_slice(&cur[old.len()..]);
            let mut v = Vec::new();
            records::encode_slices(&mut v, &list);
            tx.put(&keys::chunk(ino, index), &v)?;
            count_reserved(tx, ino, &cur, &list)?;
            let mut dropped: Vec<SliceRecord> = old.to_vec();
            for r in new {
                if let Some(i) = dropped.iter().position(|d| d == r) {
                    dropped.swap_remove(i);
                }
            }
            deref_slices(
                tx,
                &dropped,
                Timespec::now().sec + REPLACED_SLICE_GRACE_SECS,
            )?;
            // Compaction keeps the data bytes; account exactly anyway.
            let delta = covered(&list) as i64 - covered(&cur) as i64;
            if delta != 0 {
                let mut attr = must_attr(tx, ino)?;
                let old_space = attr.space();
                add_stored(&mut attr, delta);
                store_attr(tx, ino, &attr)?;
                counters::charge(tx, ino, &attr, attr.space() as i64 - old_space as i64)?;
            }
            Ok(true)
        })
    }

    /// Drops the slice records of deleted files (queued by the release of their inode),
    /// dereferencing their slices, at most `limit` chunks. Returns the chunks processed.
    pub fn process_file_deletions(&self, limit: usize) -> Result<usize> {
        let pending: Vec<Ino> = self.read(|tx| {
            let end = prefix_end(keys::DELETION_PREFIX);
            Ok(tx
                .scan(keys::DELETION_PREFIX, &end, 64)?
                .iter()
                .filter_map(|(k, _)| keys::parse_deletion(k).map(|(ino, _)| ino))
                .collect())
        })?;
        let mut done = 0;
        for ino in pending {
            while done < limit {
                let n = self.write(|tx| {
                    let prefix = keys::chunk_prefix(ino);
                    let page = tx.scan(&prefix, &prefix_end(&prefix), 64)?;
                    for (k, v) in &page {
                        let recs = records::decode_slices(ino, CHUNK_SIZE, v)?;
                        deref_slices(tx, &recs, 0)?;
                        count_reserved(tx, ino, &recs, &[])?;
                        tx.delete(k)?;
                    }
                    if page.len() < 64 {
                        let dprefix = keys::deletion(ino, 0);
                        for (k, _) in tx.scan(&dprefix[..9], &prefix_end(&dprefix[..9]), 16)? {
                            tx.delete(&k)?;
                        }
                    }
                    Ok(page.len())
                })?;
                done += n;
                if n < 64 {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Slices whose blocks wait for deletion: (slice id, slice size), including those
    /// whose grace period has not ended.
    pub fn pending_slice_deletions(&self, limit: usize) -> Result<Vec<(u64, u32)>> {
        self.slice_deletions(limit, None)
    }

    /// Slices whose blocks may be deleted now: grace period over, and not staged (a
    /// staged slice's blocks wait for its upload, or the upload would put them back,
    /// leaked).
    pub fn due_slice_deletions(&self, limit: usize) -> Result<Vec<(u64, u32)>> {
        self.slice_deletions(limit, Some(Timespec::now().sec))
    }

    fn slice_deletions(&self, limit: usize, due_at: Option<i64>) -> Result<Vec<(u64, u32)>> {
        let now = due_at.unwrap_or(i64::MAX);
        self.read(|tx| {
            let staged: std::collections::HashSet<u64> = match due_at {
                Some(_) => tx
                    .scan(
                        keys::STAGED_SLICE_PREFIX,
                        &prefix_end(keys::STAGED_SLICE_PREFIX),
                        usize::MAX,
                    )?
                    .iter()
                    .filter_map(|(k, _)| keys::parse_staged_slice(k))
                    .collect(),
                None => Default::default(),
            };
            let mut out = Vec::new();
            let mut start = keys::SLICE_DELETION_PREFIX.to_vec();
            let end = prefix_end(keys::SLICE_DELETION_PREFIX);
            while out.len() < limit {
                let page = tx.scan(&start, &end, 1024)?;
                for (k, v) in &page {
                    let not_before = v.as_slice().try_into().map(i64::from_le_bytes).unwrap_or(0);
                    if not_before <= now {
                        if let Some(x) = keys::parse_slice_deletion(k) {
                            if !staged.contains(&x.0) {
                                out.push(x);
                            }
                        }
                    }
                }
                match page.last() {
                    Some((k, _)) if page.len() == 1024 => {
                        start = k.clone();
                        start.push(0);
                    }
                    _ => break,
                }
            }
            out.truncate(limit);
            Ok(out)
        })
    }

    /// Queues slices that were never committed (a failed write) for block deletion.
    pub fn queue_slice_deletions(&self, slices: &[(u64, u32)]) -> Result<()> {
        if slices.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for &(id, size) in slices {
                tx.put(&keys::slice_deletion(id, size), &0i64.to_le_bytes())?;
            }
            Ok(())
        })
    }

    /// Called once every block of the slice is gone from object storage: its checksums
    /// go with it.
    pub fn finish_slice_deletion(&self, id: u64, size: u32) -> Result<()> {
        self.write(|tx| {
            tx.delete(&keys::slice_sums(id))?;
            // A slice queued after a failed commit never had its value.
            if records::is_inline(id) && tx.get(&keys::inline_slice(id))?.is_some() {
                tx.delete(&keys::inline_slice(id))?;
                counters::add(tx, counters::INLINE_SPACE, Ino(id), -i64::from(size))?;
            }
            Ok(tx.delete(&keys::slice_deletion(id, size))?)
        })
    }

    /// The staged record of slice `id`, if its blocks are not all uploaded yet.
    pub fn staged_slice(&self, id: u64) -> Result<Option<records::StagedSlice>> {
        self.read(|tx| {
            tx.get(&keys::staged_slice(id))?
                .map(|v| records::decode_staged(&v))
                .transpose()
        })
    }

    /// Every staged slice of the volume.
    pub fn staged_slices(&self) -> Result<Vec<(u64, records::StagedSlice)>> {
        self.read(|tx| {
            let end = prefix_end(keys::STAGED_SLICE_PREFIX);
            let mut out = Vec::new();
            for (k, v) in tx.scan(keys::STAGED_SLICE_PREFIX, &end, usize::MAX)? {
                if let Some(id) = keys::parse_staged_slice(&k) {
                    out.push((id, records::decode_staged(&v)?));
                }
            }
            Ok(out)
        })
    }

    /// Takes over the staged slices of staging directory `stager` (a client restarted
    /// on it): they now belong to this session. Returns them.
    pub fn adopt_staged(&self, stager: &str) -> Result<Vec<(u64, records::StagedSlice)>> {
        let mut ours: Vec<(u64, records::StagedSlice)> = self
            .staged_slices()?
            .into_iter()
            .filter(|(_, st)| st.stager == stager)
            .collect();
        for (_, st) in ours.iter_mut() {
            st.sid = self.sid;
        }
        // Pages small enough for etcd's bound on operations per transaction.
        for page in ours.chunks(64) {
            self.write(|tx| {
                for (id, st) in page {
                    tx.put(&keys::staged_slice(*id), &records::encode_staged(st))?;
                }
                Ok(())
            })?;
        }
        Ok(ours)
    }

    /// Every block of staged slice `id` is in object storage now.
    pub fn unstage(&self, id: u64) -> Result<()> {
        self.write(|tx| Ok(tx.delete(&keys::staged_slice(id))?))
    }

    /// Slice id ranges of dead sessions whose unreferenced blocks must be deleted.
    pub fn orphan_sweeps(&self) -> Result<Vec<(u64, u64)>> {
        self.read(|tx| {
            let end = prefix_end(keys::ORPHAN_SWEEP_PREFIX);
            Ok(tx
                .scan(keys::ORPHAN_SWEEP_PREFIX, &end, usize::MAX)?
                .iter()
                .filter_map(|(k, _)| keys::parse_orphan_sweep(k))
                .collect())
        })
    }

    pub fn finish_orphan_sweep(&self, start: u64, end: u64) -> Result<()> {
        self.write(|tx| Ok(tx.delete(&keys::orphan_sweep(start, end))?))
    }

    /// Every slice referenced by any chunk, with its size (for gc and fsck of objects).
    pub fn referenced_slices(&self) -> Result<std::collections::HashMap<u64, u32>> {
        self.read(|tx| {
            let mut out = std::collections::HashMap::new();
            let mut start = b"A".to_vec();
            let end = prefix_end(b"A");
            loop {
                let page = tx.scan(&start, &end, 10_000)?;
                for (k, v) in &page {
                    if let Some((ino, _)) = keys::parse_chunk(k) {
                        for r in records::decode_slices(ino, CHUNK_SIZE, v)? {
                            if r.has_blocks() {
                                out.insert(r.id, r.size);
                            }
                        }
                    }
                }
                match page.last() {
                    Some((k, _)) if page.len() == 10_000 => {
                        start = k.clone();
                        start.push(0);
                    }
                    _ => return Ok(out),
                }
            }
        })
    }
}

/// Hole records covering the file range `[off, off + len)`.
fn hole_records(off: u64, len: u64) -> Vec<NewSlice> {
    split_by_chunk(off, len, |chunk, pos, len| NewSlice {
        chunk,
        rec: SliceRecord {
            pos,
            id: 0,
            size: 0,
            off: 0,
            len,
        },
    })
}

/// Appends records to their chunks, one read-modify-write per chunk; returns how the
/// file's data bytes changed.
fn append_by_chunk(tx: &mut dyn KvTxn, ino: Ino, slices: &[NewSlice]) -> Result<i64> {
    let mut by_chunk: std::collections::BTreeMap<u32, Vec<SliceRecord>> = Default::default();
    for s in slices {
        by_chunk.entry(s.chunk).or_default().push(s.rec);
    }
    let mut delta = 0;
    for (index, recs) in &by_chunk {
        delta += append_records(tx, ino, *index, recs)?;
    }
    Ok(delta)
}

fn add_stored(attr: &mut Attr, delta: i64) {
    attr.stored = (attr.stored as i64 + delta).max(0) as u64;
}

/// Splits the file range `[off, off + len)` at chunk boundaries and maps each piece
/// (chunk index, position in chunk, length).
pub fn split_by_chunk<T>(off: u64, len: u64, mut f: impl FnMut(u32, u32, u32) -> T) -> Vec<T> {
    let mut out = Vec::new();
    let mut cur = off;
    let end = off + len;
    while cur < end {
        let index = cur / CHUNK_SIZE;
        let pos = cur % CHUNK_SIZE;
        let take = (CHUNK_SIZE - pos).min(end - cur);
        out.push(f(index as u32, pos as u32, take as u32));
        cur += take;
    }
    out
}
