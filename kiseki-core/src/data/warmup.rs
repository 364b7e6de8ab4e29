//! Cache warm-up (`kiseki warmup`): the blocks under a file range are fetched into this
//! client's caches ahead of the reads that will want them, or only counted (`--check`).
//!
//! What is counted is file data, not objects: bytes of the range that slices cover
//! (holes count for nothing), a byte being cached when the block holding it is in the
//! memory or the disk cache, or when its slice is inline (kept in the metadata).
//! Counting by bytes rather than blocks keeps totals exact when a caller walks a large
//! file in several ranges whose edges cut through blocks.

use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::DataEnv;
use crate::error::Result;
use crate::meta::{split_by_chunk, FileKind, Ino, CHUNK_SIZE};

/// Block fetches in flight per warm-up call.
const WARMUP_CONCURRENCY: usize = 8;

/// Data bytes in a range and how many of them the caches hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Warmth {
    pub data: u64,
    pub cached: u64,
}

impl Warmth {
    pub fn add(&mut self, other: Warmth) {
        self.data += other.data;
        self.cached += other.cached;
    }
}

/// A block of the range: slice, index, length, and how many bytes of the range it holds.
type Part = (u64, u32, u32, u64);

impl DataEnv {
    /// Fetches (with `fill`) the blocks under `[off, off + len)` of regular file `ino`
    /// into the caches, then reports how much of the range's data they hold. The
    /// committed contents are what counts (this client's unflushed writes are in
    /// memory already).
    pub async fn warmup(
        self: &Arc<Self>,
        ino: Ino,
        off: u64,
        len: u64,
        fill: bool,
    ) -> Result<Warmth> {
        let attr = self.meta.attr_for_read(ino)?;
        if attr.kind != FileKind::File || off >= attr.length {
            return Ok(Warmth::default());
        }
        let len = len.min(attr.length - off);
        let mut inline = 0u64;
        let mut parts: Vec<Part> = Vec::new();
        let bs = u64::from(self.store.block_size());
        for (chunk, pos, n) in split_by_chunk(off, len, |c, p, n| (c, p, n)) {
            let view = self.meta.chunk_for_read(ino, chunk)?;
            debug_assert!(u64::from(pos) + u64::from(n) <= CHUNK_SIZE);
            for piece in view.pieces(u64::from(pos), u64::from(n)) {
                // Inline data comes with the metadata; holes hold nothing.
                if crate::meta::records::is_inline(piece.id) {
                    inline += piece.len;
                    continue;
                }
                if !crate::meta::records::has_blocks(piece.id) {
                    continue;
                }
                let mut done = 0u64;
                while done < piece.len {
                    let s = piece.slice_off + done;
                    let index = (s / bs) as u32;
                    let take = (bs - s % bs).min(piece.len - done);
                    parts.push((
                        piece.id,
                        index,
                        self.store.block_len(piece.size, index),
                        take,
                    ));
                    done += take;
                }
            }
        }
        if fill {
            let mut blocks: Vec<(u64, u32, u32)> =
                parts.iter().map(|&(i, x, l, _)| (i, x, l)).collect();
            blocks.sort_unstable();
            blocks.dedup();
            let mut fetched = stream::iter(blocks)
                .map(|(id, index, blen)| async move {
                    if self.cache.holds(id, index) {
                        return Ok::<_, crate::error::Error>(());
                    }
                    let data = self.block(id, index, blen).await?;
                    self.cache
                        .keep_on_disk(id, index, data, self.store.block_size())
                        .await;
                    Ok(())
                })
                .buffer_unordered(WARMUP_CONCURRENCY);
            while let Some(r) = fetched.next().await {
                r?;
            }
        }
        let mut warmth = Warmth {
            data: inline,
            cached: inline,
        };
        for (id, index, _, bytes) in parts {
            warmth.data += bytes;
            if self.cache.holds(id, index) {
                warmth.cached += bytes;
            }
        }
        Ok(warmth)
    }
}
