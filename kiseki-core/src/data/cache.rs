//! The in-memory block cache (moka), bounded in bytes.
//!
//! Blocks are immutable, so a cached block never goes stale; the key is (slice, index).
//! Concurrent misses on one block share one fetch.

use std::sync::Arc;

use bytes::Bytes;

use super::disk_cache::DiskCache;
use super::error::{Error, Result};
use super::store::ObjectStore;

#[derive(Clone)]
pub struct BlockCache {
    mem: moka::future::Cache<(u64, u32), Bytes>,
    disk: Option<DiskCache>,
}

impl BlockCache {
    pub fn new(capacity: u64, disk: Option<DiskCache>) -> Self {
        BlockCache {
            mem: moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, v: &Bytes| v.len().try_into().unwrap_or(u32::MAX))
                .build(),
            disk,
        }
    }

    /// The whole block: from memory, else from the disk cache, else fetched from object
    /// storage (and kept in both caches).
    pub async fn block(&self, store: &ObjectStore, id: u64, index: u32, len: u32) -> Result<Bytes> {
        let fetch = async {
            if let Some(disk) = &self.disk {
                let d = disk.clone();
                let hit = tokio::task::spawn_blocking(move || d.get(id, index, len))
                    .await
                    .ok()
                    .flatten();
                if let Some(b) = hit {
                    return Ok(b);
                }
            }
            let b = store.get_block(id, index, len, 0..len).await?;
            if let Some(disk) = &self.disk {
                let (d, data) = (disk.clone(), b.clone());
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = d.put(id, index, &data) {
                        tracing::warn!("disk cache write failed: {e}");
                    }
                });
            }
            Ok(b)
        };
        self.mem
            .try_get_with((id, index), fetch)
            .await
            .map_err(|e: Arc<Error>| match Arc::try_unwrap(e) {
                Ok(e) => e,
                Err(shared) => Error::Shared(shared),
            })
    }

    /// A cached block, if present.
    pub async fn cached(&self, id: u64, index: u32) -> Option<Bytes> {
        self.mem.get(&(id, index)).await
    }

    pub async fn insert(&self, id: u64, index: u32, data: Bytes) {
        self.mem.insert((id, index), data).await;
    }

    pub async fn invalidate(&self, id: u64, index: u32) {
        self.mem.invalidate(&(id, index)).await;
        if let Some(d) = &self.disk {
            d.remove(id, index);
        }
    }
}
