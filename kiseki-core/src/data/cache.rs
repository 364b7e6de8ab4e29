//! The in-memory block cache (moka), bounded in bytes.
//!
//! Blocks are immutable, so a cached block never goes stale; the key is (slice, index).
//! Concurrent misses on one block share one fetch. Writes into the disk cache run in the
//! background, at most [`DISK_WRITES`] at once, so a slow cache disk never piles up
//! blocks in memory: a fetched block finding them all busy is not cached on disk, a
//! written one waits for its turn.

use std::sync::Arc;

use bytes::Bytes;

use super::disk_cache::DiskCache;
use super::store::ObjectStore;
use crate::error::{Error, Result};
use crate::metrics::{DISK, MEMORY, METRICS};

/// Memory an entry costs beyond its bytes, so many tiny blocks stay bounded too.
const ENTRY_OVERHEAD: usize = 256;

/// Disk cache writes under way at most (each holds its block in memory).
pub const DISK_WRITES: usize = 4;

/// Which blocks the disk cache keeps, of those fetched from object storage or written by
/// this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskPolicy {
    /// Every block.
    All,
    /// Blocks shorter than the block size: small files and the ends of files
    /// (`cache-partial-only`).
    PartialOnly,
    /// None: the store is an `fs` bucket on the cache's own disk, where a cached copy
    /// reads no faster than the block itself and costs a second write of every block.
    Nothing,
}

impl DiskPolicy {
    /// The policy for `store` under `config`: `cache-partial-only` when asked, nothing
    /// for an `fs` bucket on the same device as a cache directory, else everything.
    pub fn choose(store: &ObjectStore, config: &super::DataConfig) -> DiskPolicy {
        let same_device = store.local_root().is_some_and(|root| {
            use std::os::unix::fs::MetadataExt;
            let dev = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.dev());
            let bucket = dev(root);
            bucket.is_some() && config.cache_dirs.iter().any(|d| dev(d) == bucket)
        });
        if same_device {
            DiskPolicy::Nothing
        } else if config.cache_partial_only {
            DiskPolicy::PartialOnly
        } else {
            DiskPolicy::All
        }
    }
}

#[derive(Clone)]
pub struct BlockCache {
    mem: moka::future::Cache<(u64, u32), Bytes>,
    disk: Option<DiskCache>,
    policy: DiskPolicy,
    disk_writes: Arc<tokio::sync::Semaphore>,
}

impl BlockCache {
    pub fn new(capacity: u64, disk: Option<DiskCache>, policy: DiskPolicy) -> Self {
        BlockCache {
            mem: moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(|_, v: &Bytes| {
                    // Each entry also costs its key, node and bookkeeping.
                    (v.len() + ENTRY_OVERHEAD).try_into().unwrap_or(u32::MAX)
                })
                .eviction_listener(|_, _, cause| {
                    if cause.was_evicted() {
                        METRICS.cache_evictions[MEMORY].inc();
                    }
                })
                .build(),
            disk,
            policy,
            disk_writes: Arc::new(tokio::sync::Semaphore::new(DISK_WRITES)),
        }
    }

    /// Whether the disk cache keeps a block of `len` bytes (of a volume whose blocks
    /// are `block_size`).
    pub fn disk_keeps(&self, len: u32, block_size: u32) -> bool {
        self.disk.is_some()
            && match self.policy {
                DiskPolicy::All => true,
                DiskPolicy::PartialOnly => len < block_size,
                DiskPolicy::Nothing => false,
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
        let missed = std::sync::atomic::AtomicBool::new(false);
        let fetch = async {
            missed.store(true, std::sync::atomic::Ordering::Relaxed);
            METRICS.cache_misses[MEMORY].inc();
            if self.disk.is_some() && !self.on_disk(id, index) {
                METRICS.cache_misses[DISK].inc();
            }
            if let Some(disk) = self.disk.as_ref().filter(|d| d.contains(id, index)) {
                let d = disk.clone();
                let hit = tokio::task::spawn_blocking(move || d.get(id, index, len))
                    .await
                    .ok()
                    .flatten();
                METRICS.cache_hits[DISK].inc();
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
            if self.disk_keeps(len, store.block_size()) {
                self.put_on_disk(id, index, b.clone());
            }
            Ok(b)
        };
        let r = self
            .mem
            .try_get_with((id, index), fetch)
            .await
            .map_err(|e: Arc<Error>| match Arc::try_unwrap(e) {
                Ok(e) => e,
                Err(shared) => Error::Shared(shared),
            });
        if !missed.load(std::sync::atomic::Ordering::Relaxed) {
            METRICS.cache_hits[MEMORY].inc();
        }
        r
    }

    /// A cached block, if present.
    pub async fn cached(&self, id: u64, index: u32) -> Option<Bytes> {
        self.mem.get(&(id, index)).await
    }

    /// A read's look into the memory cache: [`BlockCache::cached`], counted as a hit
    /// when found (a miss is counted by what the read does next).
    pub async fn lookup(&self, id: u64, index: u32) -> Option<Bytes> {
        let b = self.mem.get(&(id, index)).await;
        if b.is_some() {
            METRICS.cache_hits[MEMORY].inc();
        }
        b
    }

    /// Bytes in the memory cache (for the metrics).
    pub fn memory_bytes(&self) -> u64 {
        self.mem.weighted_size()
    }

    /// Bytes in the disk cache (for the metrics).
    pub fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.used())
    }

    pub async fn insert(&self, id: u64, index: u32, data: Bytes) {
        self.mem.insert((id, index), own_allocation(data)).await;
    }

    /// Keeps a block this client just wrote and uploaded: in memory (a copy) and, in the
    /// background, in the disk cache, as the flags say. `data` may be the write
    /// buffer's pages: the disk cache writes them as they are, without a copy, once one
    /// of its [`DISK_WRITES`] turns is free (a written block waits for its turn rather
    /// than be dropped: the cache is to hold what this client wrote), so at most that
    /// many blocks' pages are held past their upload.
    pub async fn insert_written(
        &self,
        id: u64,
        index: u32,
        data: opendal::Buffer,
        memory: bool,
        disk: bool,
    ) {
        let slot = match disk {
            true => self.disk_writes.clone().acquire_owned().await.ok(),
            false => None,
        };
        if memory {
            self.insert(id, index, Bytes::from(data.to_vec())).await;
        }
        if let Some(slot) = slot {
            self.spawn_disk_put(slot, id, index, data.collect());
        }
    }

    /// Writes a fetched block into the disk cache in the background, unless
    /// [`DISK_WRITES`] writes are already under way: a disk slower than the store then
    /// misses entries instead of piling up copies of blocks in memory.
    fn put_on_disk(&self, id: u64, index: u32, data: Bytes) {
        let Ok(slot) = self.disk_writes.clone().try_acquire_owned() else {
            tracing::debug!("disk cache busy: block {index} of slice {id} not cached");
            return;
        };
        self.spawn_disk_put(slot, id, index, vec![data]);
    }

    fn spawn_disk_put(
        &self,
        slot: tokio::sync::OwnedSemaphorePermit,
        id: u64,
        index: u32,
        parts: Vec<Bytes>,
    ) {
        let Some(disk) = &self.disk else {
            return;
        };
        let d = disk.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            if let Err(e) = d.put(id, index, &parts) {
                tracing::warn!("disk cache write failed: {e}");
            }
        });
    }

    /// Whether the block is in the disk cache.
    pub fn on_disk(&self, id: u64, index: u32) -> bool {
        self.disk.as_ref().is_some_and(|d| d.contains(id, index))
    }

    /// Whether the block is in memory or in the disk cache.
    pub fn holds(&self, id: u64, index: u32) -> bool {
        self.mem.contains_key(&(id, index)) || self.on_disk(id, index)
    }

    /// Writes `data` (a whole block) into the disk cache, if the policy keeps it and it
    /// is not there yet, waiting for a turn and for the write itself: warm-up wants the
    /// block on disk when it returns, where a read's fetch would rather skip it.
    pub async fn keep_on_disk(&self, id: u64, index: u32, data: Bytes, block_size: u32) {
        let Some(disk) = &self.disk else {
            return;
        };
        if !self.disk_keeps(data.len() as u32, block_size) || disk.contains(id, index) {
            return;
        }
        let Ok(_slot) = self.disk_writes.acquire().await else {
            return;
        };
        let d = disk.clone();
        match tokio::task::spawn_blocking(move || d.put(id, index, &[data])).await {
            Ok(Err(e)) => tracing::warn!("disk cache write failed: {e}"),
            Err(e) => tracing::warn!("disk cache write failed: {e}"),
            Ok(Ok(())) => {}
        }
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
