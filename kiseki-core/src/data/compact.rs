//! Compaction: rewriting a fragmented chunk into fresh slices.
//!
//! Many small or overlapping writes leave a chunk with a long record list, which makes
//! every read resolve (and fetch) many slices. Compaction reads the chunk as its current
//! records show it, writes each maximal run of data as one new slice (holes stay holes,
//! so sparse files stay sparse), and swaps the records with a compare-and-swap: the swap
//! succeeds only if the old records are still a prefix of the chunk's list, and records
//! appended meanwhile are kept after the new ones. The replaced slices are dereferenced
//! in the same transaction and their blocks queued for deletion, so a reader that
//! resolved the old records a moment ago may still find them until the deletion worker
//! runs (every few seconds); blocks are deleted only once no record references them.
//! If the swap loses a race, the new slices are queued for deletion instead.
//!
//! Compaction also moves data between object storage and the metadata engine: in a
//! file of at most the volume's inline size, the new slices are inline; a file that
//! grew past it has its inline slices rewritten as blocks.

use std::sync::Arc;

use super::DataEnv;
use crate::error::Result;
use crate::meta::ops::chunks::{SliceData, SliceSums};
use crate::meta::overlay::Resolved;
use crate::meta::records::{has_blocks, is_inline, SliceRecord, INLINE_BIT, RESERVED_ID};
use crate::meta::{Ino, CHUNK_SIZE};

/// A chunk with more records than this is compacted after a commit.
pub const COMPACT_THRESHOLD: usize = 64;

/// Drops the records of chunk `index` that later records overwrite entirely: their
/// slices are dereferenced (and deleted after the grace period) without copying any
/// data. This is what frees the space of overwritten data.
pub async fn prune_chunk(env: &Arc<DataEnv>, ino: Ino, index: u32) -> Result<bool> {
    let recs = env.meta.read_chunk(ino, index)?;
    let keep = crate::meta::overlay::visible_records(&recs);
    if keep.len() == recs.len() {
        return Ok(false);
    }
    let kept: Vec<SliceRecord> = recs
        .iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, r)| *r)
        .collect();
    let meta = env.meta.clone();
    tokio::task::spawn_blocking(move || meta.compact_chunk(ino, index, &recs, &kept, &[]))
        .await
        .map_err(|e| super::Error::Io(std::io::Error::other(e.to_string())))?
}

/// True when chunk `index`'s records `recs` are worth compacting: too many, some fully
/// overwritten, or inline slices in a file that outgrew the inline size.
/// `length` is the file's, when the caller has it (else it is read if needed).
pub fn needs_compaction(
    env: &DataEnv,
    ino: Ino,
    index: u32,
    recs: &[SliceRecord],
    length: Option<u64>,
) -> bool {
    recs.len() > COMPACT_THRESHOLD
        || (recs.len() > 1 && crate::meta::overlay::visible_records(recs).len() < recs.len())
        || inline_outgrown(env, ino, index, recs, length)
}

/// Whether chunk `index` holds inline slices of a file now longer than the inline
/// size: they move to object storage, so that inline data stays bounded per file.
/// The file's length is read only when the chunk has inline slices and the caller
/// did not pass it.
fn inline_outgrown(
    env: &DataEnv,
    ino: Ino,
    index: u32,
    recs: &[SliceRecord],
    length: Option<u64>,
) -> bool {
    index == 0
        && recs.iter().any(|r| is_inline(r.id))
        && length
            .or_else(|| env.meta.getattr(ino).ok().map(|a| a.length))
            .is_some_and(|l| l > u64::from(env.inline_limit()))
}

/// Compacts chunk `index` of `ino`. Returns whether the records were replaced.
pub async fn compact_chunk(env: &Arc<DataEnv>, ino: Ino, index: u32) -> Result<bool> {
    let recs = env.meta.read_chunk(ino, index)?;
    let length = env.meta.getattr(ino)?.length;
    let outgrown = inline_outgrown(env, ino, index, &recs, Some(length));
    if recs.len() < 2 && !outgrown {
        return Ok(false);
    }
    let inline = index == 0 && length <= u64::from(env.inline_limit());
    let chunk_start = u64::from(index) * CHUNK_SIZE;
    let chunk_len = length.saturating_sub(chunk_start).min(CHUNK_SIZE);
    // Maximal runs of data (pieces with blocks) within the file's length; reserved
    // space stays reserved, as records of its own.
    let view = Resolved::new(recs.clone());
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut reserved = Vec::new();
    for p in view.pieces(0, chunk_len) {
        if p.id == RESERVED_ID {
            reserved.push(SliceRecord {
                pos: p.chunk_pos as u32,
                id: RESERVED_ID,
                size: 0,
                off: 0,
                len: p.len as u32,
            });
        }
        if !has_blocks(p.id) {
            continue;
        }
        match runs.last_mut() {
            Some((s, l)) if *s + *l == p.chunk_pos => *l += p.len,
            _ => runs.push((p.chunk_pos, p.len)),
        }
    }
    // A rewrite leaves a record per run of data: it pays when that brings the list
    // under the threshold, or (a sparse chunk, with more runs than that) when it at
    // least halves the list. Otherwise a chunk of many runs would be rewritten after
    // every commit, or forever.
    let after = runs.len() + reserved.len();
    let pays = after < recs.len() && (after <= COMPACT_THRESHOLD || 2 * after <= recs.len());
    if !pays && !outgrown {
        return Ok(false);
    }
    let (mut new, mut sums) = (Vec::new(), Vec::new());
    let result = write_runs(env, ino, &view, &runs, inline, &mut new, &mut sums).await;
    // The chunk's data may have been fsynced: its new home must be durable before the
    // records that point there can be.
    let result = match result {
        Ok(()) => {
            let blocks = new
                .first()
                .map(|r| env.blocks_of_slice(r.id, r.size).collect())
                .unwrap_or_default();
            env.store.sync_blocks(blocks).await
        }
        Err(e) => Err(e),
    };
    let swapped = match result {
        Ok(()) => {
            let mut fresh = new.clone();
            fresh.extend_from_slice(&reserved);
            let (meta, old) = (env.meta.clone(), recs.clone());
            tokio::task::spawn_blocking(move || meta.compact_chunk(ino, index, &old, &fresh, &sums))
                .await
                .map_err(|e| super::Error::Io(std::io::Error::other(e.to_string())))
                .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    if !matches!(swapped, Ok(true)) {
        // Lost the race or failed: nothing references the new slices.
        let doomed: Vec<(u64, u32)> = new
            .first()
            .map(|r| vec![(r.id, r.size)])
            .unwrap_or_default();
        env.meta.queue_slice_deletions(&doomed)?;
    } else {
        crate::metrics::METRICS.compactions.inc();
    }
    swapped
}

/// Writes the runs, one after the other, as one new slice (`inline`: an inline one),
/// with a record per run pointing into it: a chunk of many separate runs (random
/// writes into a sparse file) costs as many objects as its data fills blocks, not one
/// per run. Pushes the records to `new` as soon as the slice id exists (so the caller
/// can queue whatever was written if a later step fails), and the slice's block
/// checksums or inline bytes to `sums`.
async fn write_runs(
    env: &Arc<DataEnv>,
    ino: Ino,
    view: &Resolved,
    runs: &[(u64, u64)],
    inline: bool,
    new: &mut Vec<SliceRecord>,
    sums: &mut Vec<SliceSums>,
) -> Result<()> {
    let total: u64 = runs.iter().map(|r| r.1).sum();
    if total == 0 {
        return Ok(());
    }
    let mut id = env.meta.next_slice_id()?;
    if inline {
        id |= INLINE_BIT;
    }
    let mut off = 0u64;
    for &(start, len) in runs {
        new.push(SliceRecord {
            pos: start as u32,
            id,
            size: total as u32,
            off: off as u32,
            len: len as u32,
        });
        off += len;
    }
    // One rewrite at a time per client: each holds its chunk's data in memory.
    let _slot = env
        .compaction_slot
        .acquire()
        .await
        .map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))?;
    let abandoned = || -> Option<crate::error::Error> {
        // A rewrite of a large chunk over a slow store can take minutes: an unmount
        // abandons it (the caller queues what was written for deletion).
        if env.is_closing() {
            return Some(crate::error::Error::Io(std::io::Error::other(
                "compaction abandoned: the client is closing",
            )));
        }
        // Nor is a deleted file worth finishing (its blocks are being deleted).
        match env.meta.getattr(ino) {
            Err(crate::error::Error::NotFound(_)) => Some(crate::error::Error::NotFound(format!(
                "compaction abandoned: inode {ino} was deleted"
            ))),
            _ => None,
        }
    };
    let data = gather_runs(env, view, runs, total as usize).await?;
    if inline {
        sums.push((id, SliceData::Inline(data.into())));
        return Ok(());
    }
    let data = bytes::Bytes::from(data);
    let bs = env.store.block_size() as usize;
    let mut slice_sums = Vec::new();
    for (index, start) in (0..data.len()).step_by(bs).enumerate() {
        if let Some(e) = abandoned() {
            return Err(e);
        }
        let block = data.slice(start..(start + bs).min(data.len()));
        slice_sums.extend(env.put_rewritten(id, index as u32, block).await?);
    }
    sums.push((id, SliceData::Sums(slice_sums)));
    Ok(())
}

/// The bytes of `runs` (chunk ranges of data), back to back. Each source block is
/// fetched once, whole, however many pieces of it the runs show: a chunk rewritten
/// after random writes holds thousands of small pieces of a few shared blocks, and
/// fetching them piece by piece would cost a request each.
async fn gather_runs(
    env: &Arc<DataEnv>,
    view: &Resolved,
    runs: &[(u64, u64)],
    total: usize,
) -> Result<Vec<u8>> {
    use futures::stream::{self, StreamExt};
    let bs = u64::from(env.store.block_size());
    // Source block (slice, index) -> its length and the pieces it gives:
    // (offset in the block, offset in the output, length).
    type Parts = (u32, Vec<(usize, usize, usize)>);
    let mut sources: std::collections::BTreeMap<(u64, u32), Parts> = Default::default();
    let mut at = 0usize;
    for &(start, len) in runs {
        for piece in view.pieces(start, len) {
            if has_blocks(piece.id) {
                let mut done = 0u64;
                while done < piece.len {
                    let s = piece.slice_off + done;
                    let index = (s / bs) as u32;
                    let take = (bs - s % bs).min(piece.len - done);
                    let entry = sources
                        .entry((piece.id, index))
                        .or_insert_with(|| (env.store.block_len(piece.size, index), Vec::new()));
                    entry
                        .1
                        .push(((s % bs) as usize, at + done as usize, take as usize));
                    done += take;
                }
            }
            at += piece.len as usize;
        }
    }
    let mut out = vec![0u8; total];
    let mut fetched = stream::iter(sources)
        .map(|((id, index), (len, parts))| async move {
            let block = env.block(id, index, len).await?;
            Ok::<_, crate::error::Error>((block, parts))
        })
        .buffer_unordered(8);
    while let Some(r) = fetched.next().await {
        let (block, parts) = r?;
        for (from, to, n) in parts {
            let src = block.get(from..from + n).ok_or_else(|| {
                crate::error::Error::Io(std::io::Error::other(format!(
                    "a block of {} bytes has no range {from}..{}",
                    block.len(),
                    from + n
                )))
            })?;
            out[to..to + n].copy_from_slice(src);
        }
    }
    Ok(out)
}

/// Compacts chunk `index` of `ino` in the background until its record list is short,
/// with at most one compaction per chunk in flight. A commit that finds one running
/// leaves the work to it, so it keeps going while passes make progress and re-checks
/// after giving up its claim; it stops when a pass changes nothing or fails (the next
/// commit to the chunk schedules it again).
pub fn spawn_compaction(env: &Arc<DataEnv>, ino: Ino, index: u32) {
    if !env.compacting().insert((ino, index)) {
        return;
    }
    let task_env = env.clone();
    env.spawn(async move {
        let env = task_env;
        loop {
            let progress = loop {
                let pass = async {
                    let pruned = prune_chunk(&env, ino, index).await?;
                    let recs = env.meta.read_chunk(ino, index)?;
                    let compacted = (recs.len() > COMPACT_THRESHOLD
                        || inline_outgrown(&env, ino, index, &recs, None))
                        && compact_chunk(&env, ino, index).await?;
                    Ok::<_, super::Error>(pruned || compacted)
                };
                if env.is_closing() {
                    break false;
                }
                match pass.await {
                    Ok(true) => {}
                    Ok(false) => break false,
                    Err(e) => {
                        tracing::warn!("compacting chunk {index} of inode {ino}: {e}");
                        break false;
                    }
                }
                match env.meta.read_chunk(ino, index) {
                    Ok(r) if needs_compaction(&env, ino, index, &r, None) => continue,
                    _ => break true,
                }
            };
            env.compacting().remove(&(ino, index));
            // A commit between the last check and the removal saw the claim and left.
            let again = progress
                && env
                    .meta
                    .read_chunk(ino, index)
                    .is_ok_and(|r| needs_compaction(&env, ino, index, &r, None))
                && env.compacting().insert((ino, index));
            if !again {
                break;
            }
        }
    });
}

/// Compacts every chunk of `ino` that has more than one record.
pub async fn compact_file(env: &Arc<DataEnv>, ino: Ino) -> Result<usize> {
    let length = env.meta.getattr(ino)?.length;
    let mut compacted = 0;
    for index in 0..length.div_ceil(CHUNK_SIZE) {
        let pruned = prune_chunk(env, ino, index as u32).await?;
        if compact_chunk(env, ino, index as u32).await? || pruned {
            compacted += 1;
        }
    }
    Ok(compacted)
}
