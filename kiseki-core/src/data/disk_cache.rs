//! The disk block cache: blocks kept as files in one or more cache directories, bounded
//! in bytes, and never filling a disk past its free-space floor.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use moka::notification::RemovalCause;

/// How long the cache stops growing after its disk was found full.
pub const FULL_PAUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a directory's free space is looked at (`free-space-ratio`).
const FREE_SPACE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// One cache directory: its own index and share of the bound.
struct Dir {
    path: PathBuf,
    index: moka::sync::Cache<(u64, u32), u32>,
    /// The disk was full: no new entries until then.
    full_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Free space was below the floor at the last look, and when that was (ms since
    /// `epoch`).
    low_space: AtomicBool,
    checked_ms: AtomicU64,
}

/// The disk cache over one or more directories (`cache-dir=/a:/b`): each block lives in
/// the directory its (slice, index) hashes to, and each directory holds an equal share
/// of the bound. A directory whose file system has less than `free-space-ratio` of its
/// space free stops taking new entries (it keeps serving what it holds).
#[derive(Clone)]
pub struct DiskCache {
    dirs: Arc<Vec<Dir>>,
    free_ratio: f64,
    epoch: std::time::Instant,
}

fn entry_path(dir: &Path, id: u64, index: u32, len: u32) -> PathBuf {
    dir.join(format!("{:02x}", id % 256))
        .join(format!("{id}_{index}_{len}"))
}

/// The fraction of the file system holding `path` that is free for unprivileged use.
fn free_ratio_of(path: &Path) -> Option<f64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    Some(st.f_bavail as f64 / st.f_blocks as f64)
}

impl Dir {
    fn open(path: &Path, capacity: u64) -> std::io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        let listener_dir = path.to_path_buf();
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, len: &u32| (*len).max(1))
            .eviction_listener(move |key: Arc<(u64, u32)>, len: u32, cause| {
                if cause != RemovalCause::Replaced {
                    let _ = std::fs::remove_file(entry_path(&listener_dir, key.0, key.1, len));
                }
                if cause.was_evicted() {
                    crate::metrics::METRICS.cache_evictions[crate::metrics::DISK].inc();
                }
            })
            .build();
        let dir = Dir {
            path: path.to_path_buf(),
            index,
            full_until: Default::default(),
            low_space: AtomicBool::new(false),
            checked_ms: AtomicU64::new(u64::MAX),
        };
        dir.load_existing();
        Ok(dir)
    }

    fn load_existing(&self) {
        let Ok(buckets) = std::fs::read_dir(&self.path) else {
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
}

impl DiskCache {
    /// Opens (creating) the cache directories `dirs` with a bound of `capacity` bytes
    /// in all, taking no new entries in a directory whose file system has less than
    /// `free_ratio` of its space free.
    pub fn open(dirs: &[PathBuf], capacity: u64, free_ratio: f64) -> std::io::Result<Self> {
        let share = capacity / dirs.len().max(1) as u64;
        let dirs = dirs
            .iter()
            .map(|d| Dir::open(d, share))
            .collect::<std::io::Result<Vec<Dir>>>()?;
        if dirs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a disk cache needs a directory",
            ));
        }
        Ok(DiskCache {
            dirs: Arc::new(dirs),
            free_ratio,
            epoch: std::time::Instant::now(),
        })
    }

    fn dir(&self, id: u64, index: u32) -> &Dir {
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(index);
        &self.dirs[(h % self.dirs.len() as u64) as usize]
    }

    /// The cached block, verified; `None` on a miss or a corrupt entry (then removed).
    pub fn get(&self, id: u64, index: u32, len: u32) -> Option<Bytes> {
        let dir = self.dir(id, index);
        dir.index.get(&(id, index))?;
        let path = entry_path(&dir.path, id, index, len);
        let verified = std::fs::read(&path).ok().and_then(|raw| {
            let (crc, data) = raw.split_at_checked(4)?;
            let ok = data.len() == len as usize
                && u32::from_le_bytes(crc.try_into().ok()?) == crc32c::crc32c(data);
            // A view past the checksum: the block is not copied again.
            ok.then(|| Bytes::from(raw).slice(4..))
        });
        if verified.is_none() {
            tracing::warn!(
                "disk cache entry {} is corrupt or missing; refetching",
                path.display()
            );
            dir.index.invalidate(&(id, index));
            let _ = std::fs::remove_file(&path);
        }
        verified
    }

    /// Whether `dir`'s file system is under the free-space floor (looked at once a
    /// second at most).
    fn short_of_space(&self, dir: &Dir) -> bool {
        if self.free_ratio <= 0.0 {
            return false;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = dir.checked_ms.load(Ordering::Relaxed);
        if last == u64::MAX || now.saturating_sub(last) >= FREE_SPACE_CHECK.as_millis() as u64 {
            dir.checked_ms.store(now, Ordering::Relaxed);
            let low = free_ratio_of(&dir.path).is_some_and(|r| r < self.free_ratio);
            if low && !dir.low_space.load(Ordering::Relaxed) {
                tracing::warn!(
                    "disk cache {}: less than {:.0}% of the disk is free; not caching more",
                    dir.path.display(),
                    self.free_ratio * 100.0
                );
            }
            dir.low_space.store(low, Ordering::Relaxed);
        }
        dir.low_space.load(Ordering::Relaxed)
    }

    /// Keeps a block. On a full disk the entry is dropped (what was written of it is
    /// removed) and the directory stops growing for [`FULL_PAUSE`]; below the free-space
    /// floor it takes nothing new. Either way it keeps serving what it holds.
    ///
    /// The block comes as consecutive pieces (the write buffer's pages, or one fetched
    /// block), written without joining them.
    pub fn put(&self, id: u64, index: u32, parts: &[Bytes]) -> std::io::Result<()> {
        use std::io::Write;
        let dir = self.dir(id, index);
        let paused = *dir.full_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_some_and(|t| t > std::time::Instant::now()) || self.short_of_space(dir) {
            return Ok(());
        }
        let len = parts.iter().map(|p| p.len() as u32).sum();
        let path = entry_path(&dir.path, id, index, len);
        let parent = path.parent().expect("entry paths have a bucket directory");
        // Unique per put: two puts of one block (a read's fetch and a warm-up) must not
        // write into the same file.
        static PUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".tmp-{id}-{index}-{}-{}",
            std::process::id(),
            PUTS.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            std::fs::create_dir_all(parent)?;
            let crc = parts.iter().fold(0, |c, p| crc32c::crc32c_append(c, p));
            let mut f = std::io::BufWriter::with_capacity(64 << 10, std::fs::File::create(&tmp)?);
            f.write_all(&crc.to_le_bytes())?;
            for p in parts {
                f.write_all(p)?;
            }
            f.into_inner().map_err(|e| e.into_error())?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                *dir.full_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now() + FULL_PAUSE);
                tracing::warn!(
                    "disk cache {}: the disk is full; not caching for {FULL_PAUSE:?}",
                    dir.path.display()
                );
                return Ok(());
            }
            return Err(e);
        }
        dir.index.insert((id, index), len);
        Ok(())
    }

    pub fn remove(&self, id: u64, index: u32) {
        self.dir(id, index).index.invalidate(&(id, index));
    }

    /// Bytes the cache holds (after pending evictions ran).
    pub fn used(&self) -> u64 {
        self.dirs
            .iter()
            .map(|d| {
                d.index.run_pending_tasks();
                d.index.weighted_size()
            })
            .sum()
    }

    /// Whether block `index` of slice `id` is cached (without reading it).
    pub fn contains(&self, id: u64, index: u32) -> bool {
        self.dir(id, index).index.contains_key(&(id, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry files under a cache directory.
    fn entries(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|b| std::fs::read_dir(b.path()).unwrap().count())
            .sum()
    }

    #[test]
    fn round_trip_corruption_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(&[dir.path().to_path_buf()], 10_000, 0.0).unwrap();
        c.put(7, 0, &[Bytes::from_static(&[1, 2, 3])]).unwrap();
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
            c.put(100 + i, 0, &[Bytes::from(vec![0u8; 3000])]).unwrap();
        }
        assert!(c.used() <= 10_000);
        let files = entries(dir.path());
        assert!(files <= 3, "{files} files left for a 10 kB bound");
        // Entries survive a restart.
        drop(c);
        let c = DiskCache::open(&[dir.path().to_path_buf()], 10_000, 0.0).unwrap();
        assert_eq!(c.used() as usize, files * 3000);
    }

    #[test]
    fn blocks_spread_over_several_directories() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        let c = DiskCache::open(&dirs, 1 << 20, 0.0).unwrap();
        for id in 0..64 {
            c.put(id, 1, &[Bytes::from(vec![id as u8; 100])]).unwrap();
        }
        for id in 0..64 {
            assert!(c.contains(id, 1));
            assert_eq!(c.get(id, 1, 100).unwrap().as_ref(), &[id as u8; 100]);
        }
        for d in [&a, &b] {
            let n = entries(d.path());
            assert!((10..=54).contains(&n), "{n} of 64 entries in one directory");
        }
        // Each directory has half the bound, and finds its entries again at start-up.
        drop(c);
        let c = DiskCache::open(&dirs, 1 << 20, 0.0).unwrap();
        assert_eq!(c.used(), 64 * 100);
    }

    #[test]
    fn a_disk_under_the_free_space_floor_takes_no_new_entries() {
        let dir = tempfile::tempdir().unwrap();
        // No file system is ever more than 100% free.
        let c = DiskCache::open(&[dir.path().to_path_buf()], 1 << 20, 1.0).unwrap();
        c.put(1, 0, &[Bytes::from_static(&[1; 10])]).unwrap();
        assert!(!c.contains(1, 0) && c.get(1, 0, 10).is_none());
        let c = DiskCache::open(&[dir.path().to_path_buf()], 1 << 20, 0.0).unwrap();
        c.put(1, 0, &[Bytes::from_static(&[1; 10])]).unwrap();
        assert!(c.contains(1, 0));
    }
}
