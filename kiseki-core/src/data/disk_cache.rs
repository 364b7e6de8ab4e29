//! The disk block cache: blocks kept as files in a cache directory, bounded in bytes.
//!
//! Each cached block is a file `{dir}/{id % 256}/{id}_{index}_{len}` holding a CRC32C of
//! the block followed by the block. A read verifies the length and the checksum; a
//! corrupt or truncated entry (a crash while writing it, a bad disk) is deleted and
//! reported as a miss, so the block is fetched again from object storage and never
//! returned wrong. moka tracks the entries and their sizes; evicting an entry deletes its
//! file. Entries found in the directory at start-up are re-registered, so the bound
//! holds across restarts. Files are written to a temporary name and renamed, so a
//! reader never sees a half-written entry under the final name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use moka::notification::RemovalCause;

/// How long the cache stops growing after its disk was found full.
pub const FULL_PAUSE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct DiskCache {
    dir: Arc<PathBuf>,
    index: moka::sync::Cache<(u64, u32), u32>,
    /// The disk was full: no new entries until then.
    full_until: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

fn entry_path(dir: &Path, id: u64, index: u32, len: u32) -> PathBuf {
    dir.join(format!("{:02x}", id % 256))
        .join(format!("{id}_{index}_{len}"))
}

impl DiskCache {
    /// Opens (creating) the cache directory `dir` with a bound of `capacity` bytes.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let listener_dir = dir.to_path_buf();
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, len: &u32| (*len).max(1))
            .eviction_listener(move |key: Arc<(u64, u32)>, len: u32, cause| {
                if cause != RemovalCause::Replaced {
                    let _ = std::fs::remove_file(entry_path(&listener_dir, key.0, key.1, len));
                }
            })
            .build();
        let cache = DiskCache {
            dir: Arc::new(dir.to_path_buf()),
            index,
            full_until: Default::default(),
        };
        cache.load_existing();
        Ok(cache)
    }

    fn load_existing(&self) {
        let Ok(buckets) = std::fs::read_dir(&*self.dir) else {
            return;
        };
        for bucket in buckets.flatten() {
            let Ok(files) = std::fs::read_dir(bucket.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                match name.to_str().and_then(super::local::parse_block_name) {
                    Some((id, index, len)) => self.index.insert((id, index), len),
                    // Leftover temporary files of an interrupted write.
                    None => {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
        }
        self.index.run_pending_tasks();
    }

    /// The cached block, verified; `None` on a miss or a corrupt entry (then removed).
    pub fn get(&self, id: u64, index: u32, len: u32) -> Option<Bytes> {
        self.index.get(&(id, index))?;
        let path = entry_path(&self.dir, id, index, len);
        let verified = std::fs::read(&path).ok().and_then(|raw| {
            let (crc, data) = raw.split_at_checked(4)?;
            let ok = data.len() == len as usize
                && u32::from_le_bytes(crc.try_into().ok()?) == crc32c::crc32c(data);
            ok.then(|| Bytes::copy_from_slice(data))
        });
        if verified.is_none() {
            tracing::warn!(
                "disk cache entry {} is corrupt or missing; refetching",
                path.display()
            );
            self.index.invalidate(&(id, index));
            let _ = std::fs::remove_file(&path);
        }
        verified
    }

    /// Keeps a block. On a full disk the entry is dropped (what was written of it is
    /// removed) and the cache stops growing for [`FULL_PAUSE`]; it keeps serving what
    /// it holds.
    pub fn put(&self, id: u64, index: u32, data: &[u8]) -> std::io::Result<()> {
        let paused = *self.full_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_some_and(|t| t > std::time::Instant::now()) {
            return Ok(());
        }
        let len = data.len() as u32;
        let path = entry_path(&self.dir, id, index, len);
        let parent = path.parent().expect("entry paths have a bucket directory");
        let tmp = parent.join(format!(".tmp-{id}-{index}-{}", std::process::id()));
        let written = (|| {
            std::fs::create_dir_all(parent)?;
            let mut buf = Vec::with_capacity(4 + data.len());
            buf.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
            buf.extend_from_slice(data);
            std::fs::write(&tmp, &buf)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                *self.full_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now() + FULL_PAUSE);
                tracing::warn!(
                    "disk cache {}: the disk is full; not caching for {FULL_PAUSE:?}",
                    self.dir.display()
                );
                return Ok(());
            }
            return Err(e);
        }
        self.index.insert((id, index), len);
        Ok(())
    }

    pub fn remove(&self, id: u64, index: u32) {
        self.index.invalidate(&(id, index));
    }

    /// Bytes the cache holds (after pending evictions ran).
    pub fn used(&self) -> u64 {
        self.index.run_pending_tasks();
        self.index.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_corruption_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 10_000).unwrap();
        c.put(7, 0, &[1, 2, 3]).unwrap();
        assert_eq!(c.get(7, 0, 3).unwrap().as_ref(), &[1, 2, 3]);
        // Flip a byte: detected, removed, a miss.
        let p = entry_path(dir.path(), 7, 0, 3);
        let mut raw = std::fs::read(&p).unwrap();
        raw[5] ^= 0xff;
        std::fs::write(&p, raw).unwrap();
        assert!(c.get(7, 0, 3).is_none());
        assert!(!p.exists());
        assert!(c.get(7, 0, 3).is_none());
        // The byte bound evicts (and deletes) older entries.
        for i in 0..10 {
            c.put(100 + i, 0, &vec![0u8; 3000]).unwrap();
        }
        assert!(c.used() <= 10_000);
        let files: usize = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|b| std::fs::read_dir(b.path()).unwrap().count())
            .sum();
        assert!(files <= 3, "{files} files left for a 10 kB bound");
        // Entries survive a restart.
        drop(c);
        let c = DiskCache::open(dir.path(), 10_000).unwrap();
        assert_eq!(c.used() as usize, files * 3000);
    }
}
