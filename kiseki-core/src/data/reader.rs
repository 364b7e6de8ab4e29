//! Reading file contents: committed slices resolved by the overlay, then this client's
//! pending writes on top.
//!
//! Blocks are fetched concurrently. A read that covers a good part of a block (or finds
//! it cached, in memory or on disk) fetches the whole block into the cache, which
//! serves the sequential reads that follow; a small read of an uncached block fetches
//! only its range from object storage.

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::DataEnv;
use crate::error::{Error, Result};
use crate::meta::overlay::Resolved;
use crate::meta::{split_by_chunk, Ino, CHUNK_SIZE};

/// Concurrent block fetches per read.
const FETCH_CONCURRENCY: usize = 16;

struct Fetch {
    id: u64,
    index: u32,
    block_len: u32,
    /// Range within the block.
    start: u32,
    end: u32,
    /// Offset in the output.
    out: usize,
}

/// Reads up to `out.len()` bytes at `off` straight into `out`; returns how many bytes
/// were read and the file length they were read against. Bytes of `out` past the count
/// are left as they were.
pub(super) async fn read_into(
    env: &Arc<DataEnv>,
    ino: Ino,
    off: u64,
    out: &mut [u8],
) -> Result<(usize, u64)> {
    // Pending writes first, committed metadata second (see `PendingSnapshot`).
    let pending = env
        .existing_writer(ino)
        .map(|w| w.snapshot())
        .unwrap_or_default();
    let attr = env.meta.attr_for_read(ino)?;
    if attr.kind == crate::meta::FileKind::Dir {
        return Err(Error::IsDir(format!("inode {ino}")));
    }
    let file_len = pending.end.map_or(attr.length, |e| e.max(attr.length));
    if off >= file_len || out.is_empty() {
        return Ok((0, file_len));
    }
    let end = (off + out.len() as u64).min(file_len);
    let out = &mut out[..(end - off) as usize];
    // The caller's buffer may hold anything; holes read as zeros.
    out.fill(0);
    for (chunk, pos, n) in split_by_chunk(off, end - off, |c, p, n| (c, p, n)) {
        let view = env.meta.chunk_for_read(ino, chunk)?;
        env.compact_on_read(ino, chunk, view.records.len());
        let at = (u64::from(chunk) * CHUNK_SIZE + u64::from(pos) - off) as usize;
        read_records(env, &view, u64::from(pos), &mut out[at..at + n as usize]).await?;
    }
    pending.overlay(env, off, out).await?;
    Ok((out.len(), file_len))
}

/// Loads the blocks under file range `[off, off + len)` into the block cache in the
/// background (read-ahead), at most `prefetch` fetches at a time over the whole client.
/// Failures are left for the real read to report.
pub(super) fn prefetch(env: &Arc<DataEnv>, ino: Ino, off: u64, len: u64) {
    let task_env = env.clone();
    env.spawn(async move {
        let env = task_env;
        let bs = u64::from(env.store.block_size());
        let mut blocks = Vec::new();
        for (chunk, pos, n) in split_by_chunk(off, len, |c, p, n| (c, p, n)) {
            let Ok(view) = env.meta.chunk_for_read(ino, chunk) else {
                return;
            };
            for piece in view.pieces(u64::from(pos), u64::from(n)) {
                if !crate::meta::records::has_blocks(piece.id) {
                    continue;
                }
                let first = piece.slice_off / bs;
                let last = (piece.slice_off + piece.len - 1) / bs;
                for index in first..=last {
                    let index = index as u32;
                    blocks.push((piece.id, index, env.store.block_len(piece.size, index)));
                }
            }
        }
        blocks.dedup();
        let env = &env;
        stream::iter(blocks)
            .for_each_concurrent(None, |(id, index, blen)| async move {
                // Fair (FIFO) permits: the blocks nearest the reader go first.
                let Ok(_slot) = env.prefetch_slots.acquire().await else {
                    return;
                };
                if let Err(e) = env.block(id, index, blen).await {
                    tracing::debug!("read-ahead of block {index} of slice {id}: {e}");
                }
            })
            .await;
    });
}

/// Fills `out` with chunk bytes `[pos, pos + out.len())` as the resolved records `view`
/// show them (committed data only; holes stay as they are in `out`, which callers
/// zero).
pub(super) async fn read_records(
    env: &Arc<DataEnv>,
    view: &Resolved,
    pos: u64,
    out: &mut [u8],
) -> Result<()> {
    let bs = u64::from(env.store.block_size());
    let mut fetches = Vec::new();
    for piece in view.pieces(pos, out.len() as u64) {
        if !crate::meta::records::has_blocks(piece.id) {
            continue;
        }
        let mut done = 0u64;
        while done < piece.len {
            let s = piece.slice_off + done;
            let index = (s / bs) as u32;
            let start = s % bs;
            let take = (bs - start).min(piece.len - done);
            fetches.push(Fetch {
                id: piece.id,
                index,
                block_len: env.store.block_len(piece.size, index),
                start: start as u32,
                end: (start + take) as u32,
                out: (piece.chunk_pos + done - pos) as usize,
            });
            done += take;
        }
    }
    let fetch = |f: Fetch| async move {
        // A block in the disk cache is read from there whole (its entry is checked as
        // a whole), and then serves the reads that follow from memory.
        let whole = u64::from(f.end - f.start) * 4 >= u64::from(f.block_len)
            || env.cache.on_disk(f.id, f.index);
        let data = match env.cache.lookup(f.id, f.index).await {
            Some(b) => b.slice(f.start as usize..f.end as usize),
            None if whole => env
                .block(f.id, f.index, f.block_len)
                .await?
                .slice(f.start as usize..f.end as usize),
            None => {
                crate::metrics::METRICS.cache_misses[crate::metrics::MEMORY].inc();
                env.block_range(f.id, f.index, f.block_len, f.start..f.end)
                    .await?
            }
        };
        Ok::<_, super::Error>((f.out, data))
    };
    // Most reads lie in one block (and hit the cache): no stream machinery for them.
    if fetches.len() == 1 {
        let (at, data) = fetch(fetches.remove(0)).await?;
        out[at..at + data.len()].copy_from_slice(&data);
        return Ok(());
    }
    let results: Vec<(usize, bytes::Bytes)> = stream::iter(fetches)
        .map(fetch)
        .buffer_unordered(FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    for (at, data) in results {
        out[at..at + data.len()].copy_from_slice(&data);
    }
    Ok(())
}
