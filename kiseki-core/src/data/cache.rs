//! The in-memory block cache (moka), bounded in bytes.
//!
//! Blocks are immutable, so a cached block never goes stale; the key is (slice, index).
//! Concurrent misses on one block share one fetch.

use std::sync::Arc;

use bytes::Bytes;

use super::disk_cache::DiskCache;
use super::store::ObjectStore;
use crate::error::{Error, Result};

/// Memory an entry costs beyond its bytes, so many tiny blocks stay bounded too.
const ENTRY_OVERHEAD: usize = 256;

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
                .weigher(|_, v: &Bytes| {
                    // Each entry also costs its key, node and bookkeeping.
                    (v.len() + ENTRY_OVERHEAD).try_into().unwrap_or(u32::MAX)
                })
                .build(),
            disk,
        }
    }

    /// The whole block: from memory, else from the disk cache, else fetched from object
    /// storage (and kept in both caches). What comes from disk or storage is checked
    /// against the block's recorded sector checksums `sums`, when it has them; a disk
    /// entry that fails is dropped and the block fetched again.
    pub async fn block(
        &self,
        store: &ObjectStore,
        id: u64,
        index: u32,
        len: u32,
        sums: Option<&[u32]>,
    ) -> Result<Bytes> {
        let fetch = async {
            if let Some(disk) = &self.disk {
                let d = disk.clone();
                let hit = tokio::task::spawn_blocking(move || d.get(id, index, len))
                    .await
                    .ok()
                    .flatten();
                match (hit, sums) {
                    (Some(b), Some(sums)) => match super::checksum::verify(&b, 0, sums) {
                        Ok(()) => return Ok(own_allocation(b)),
                        Err(why) => {
                            tracing::error!(
                                "disk cache entry of block {index} of slice {id}: {why}; refetching"
                            );
                            disk.remove(id, index);
                        }
                    },
                    (Some(b), None) => return Ok(own_allocation(b)),
                    (None, _) => {}
                }
            }
            let b = own_allocation(store.get_block(id, index, len, 0..len, sums).await?);
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
        self.mem.insert((id, index), own_allocation(data)).await;
    }

    /// Keeps a block this client just wrote: in memory and (in the background) in the
    /// disk cache, as the flags say.
    pub async fn insert_written(&self, id: u64, index: u32, data: Bytes, memory: bool, disk: bool) {
        if let Some(disk) = self.disk.as_ref().filter(|_| disk) {
            let (d, bytes) = (disk.clone(), data.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = d.put(id, index, &bytes) {
                    tracing::warn!("disk cache write failed: {e}");
                }
            });
        }
        if memory {
            self.insert(id, index, data).await;
        }
    }

    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    pub async fn invalidate(&self, id: u64, index: u32) {
        self.mem.invalidate(&(id, index)).await;
        if let Some(d) = &self.disk {
            d.remove(id, index);
        }
    }
}

/// A `Bytes` that owns an allocation of about its own length. Storage back ends hand
/// out views into larger (pooled) buffers; cached as they are, the cache's byte bound
/// would count the view while the whole buffer stayed alive, and memory would grow far
/// beyond it.
fn own_allocation(b: Bytes) -> Bytes {
    match b.try_into_mut() {
        Ok(m) if m.capacity() <= m.len() + m.len() / 8 + 4096 => m.freeze(),
        Ok(m) => Bytes::copy_from_slice(&m),
        Err(b) => Bytes::copy_from_slice(&b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_views_do_not_pin_their_buffer() {
        let mut big = bytes::BytesMut::with_capacity(4 << 20);
        big.resize(4 << 20, 7);
        let view = big.split_to(100).freeze();
        let owned = own_allocation(view);
        assert_eq!(owned.len(), 100);
        let m = owned.try_into_mut().expect("sole owner");
        assert!(m.capacity() < 8192, "capacity {}", m.capacity());
        // A block that already owns its allocation is kept, not copied.
        let whole = Bytes::from(vec![1u8; 1 << 20]);
        let ptr = whole.as_ptr();
        assert_eq!(own_allocation(whole).as_ptr(), ptr);
    }
}
