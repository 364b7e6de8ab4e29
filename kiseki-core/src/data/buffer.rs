//! The write buffer: a fixed pool of pages, part in memory and part in an mmap'd spill
//! file, that every not-yet-uploaded byte written through this client lives in.
//!
//! The pool never grows: a writer that needs a page when none is free waits until an
//! upload returns one (back-pressure), so the memory used for buffered writes is bounded
//! by the configured sizes whatever the workload. Pages travel to object storage without
//! copies: a full block becomes a list of `Bytes` that own their pages, and a page goes
//! back to the pool when the last `Bytes` referring to it is dropped.
//!
//! The spill file is created in the spill directory and unlinked at once, so a crash
//! leaves nothing behind; its pages are file-backed, so the kernel can write them out
//! under memory pressure instead of the process growing. Its whole size is allocated on
//! disk when it is created: a sparse file on a disk that fills up later would kill the
//! process with SIGBUS at the first write into a page with no block behind it, so a
//! spill directory without room fails the mount or connect instead (ENOSPC).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::MmapMut;
use tokio::sync::Semaphore;

/// Size of one page of the pool.
pub const PAGE_SIZE: usize = 64 << 10;

struct Region {
    base: *mut u8,
    pages: usize,
}

struct Pool {
    regions: Vec<Region>,
    free: Mutex<Vec<u32>>,
    available: Semaphore,
    total: usize,
    _memory: Vec<u8>,
    _spill: Option<MmapMut>,
}

// SAFETY: the raw region pointers refer to memory owned by `_memory` and `_spill`, which
// live as long as the pool. Every page is handed to exactly one `Page` at a time (the
// free list is the only source of page numbers), so no two threads access one page
// concurrently except through `&[u8]` after the owner stopped writing.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

impl Pool {
    fn page_ptr(&self, n: u32) -> *mut u8 {
        let mut n = n as usize;
        for r in &self.regions {
            if n < r.pages {
                // SAFETY: n < r.pages and the region holds r.pages * PAGE_SIZE bytes.
                return unsafe { r.base.add(n * PAGE_SIZE) };
            }
            n -= r.pages;
        }
        unreachable!("page numbers come from the free list and are in range")
    }

    fn release(&self, n: u32) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).push(n);
        self.available.add_permits(1);
    }
}

#[derive(Clone)]
pub struct WriteBuffer {
    pool: Arc<Pool>,
}

impl WriteBuffer {
    /// A pool of `memory` bytes in RAM plus `spill` bytes in a file under `spill_dir`.
    pub fn new(
        memory: usize,
        spill: usize,
        spill_dir: Option<&std::path::Path>,
    ) -> crate::error::Result<Self> {
        let mem_pages = memory / PAGE_SIZE;
        let mut spill_pages = spill / PAGE_SIZE;
        let mut memory_region = vec![0u8; mem_pages * PAGE_SIZE];
        let mut regions = vec![Region {
            base: memory_region.as_mut_ptr(),
            pages: mem_pages,
        }];
        let spill_map = if spill_pages > 0 {
            let dir = spill_dir
                .map(|d| d.to_path_buf())
                .unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&dir)?;
            let file = tempfile::tempfile_in(&dir)?;
            let len = (spill_pages * PAGE_SIZE) as libc::off_t;
            // SAFETY: a valid open descriptor; posix_fallocate returns an errno.
            let rc =
                unsafe { libc::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), 0, len) };
            if rc != 0 {
                let e = std::io::Error::from_raw_os_error(rc);
                return Err(if rc == libc::ENOSPC || rc == libc::EDQUOT {
                    crate::error::Error::NoSpace(format!(
                        "spill directory {}: no room for the write buffer's {len}-byte spill file ({e})",
                        dir.display()
                    ))
                } else {
                    crate::error::Error::Io(std::io::Error::new(
                        e.kind(),
                        format!("allocating the spill file in {}: {e}", dir.display()),
                    ))
                });
            }
            // SAFETY: the file is private (unlinked) and only this mapping touches it.
            let mut map = unsafe { MmapMut::map_mut(&file)? };
            regions.push(Region {
                base: map.as_mut_ptr(),
                pages: spill_pages,
            });
            Some(map)
        } else {
            spill_pages = 0;
            None
        };
        let total = mem_pages + spill_pages;
        if total == 0 {
            return Err(crate::error::Error::Invalid(format!(
                "write buffer must hold at least one {PAGE_SIZE}-byte page"
            )));
        }
        // Hand out memory pages before spill pages.
        let free: Vec<u32> = (0..total as u32).rev().collect();
        Ok(WriteBuffer {
            pool: Arc::new(Pool {
                regions,
                free: Mutex::new(free),
                available: Semaphore::new(total),
                total,
                _memory: memory_region,
                _spill: spill_map,
            }),
        })
    }

    pub fn total_pages(&self) -> usize {
        self.pool.total
    }

    pub fn free_pages(&self) -> usize {
        self.pool.available.available_permits()
    }

    /// A page, waiting for one to be freed when the pool is exhausted.
    pub async fn page(&self) -> Page {
        if let Some(p) = self.try_page() {
            return p;
        }
        let m = &crate::metrics::METRICS;
        m.buffer_waits.inc();
        m.buffer_waiting.add(1);
        let permit = self
            .pool
            .available
            .acquire()
            .await
            .expect("the pool semaphore is never closed");
        m.buffer_waiting.add(-1);
        permit.forget();
        self.take()
    }

    /// A page if one is free right now.
    pub fn try_page(&self) -> Option<Page> {
        let permit = self.pool.available.try_acquire().ok()?;
        permit.forget();
        Some(self.take())
    }

    fn take(&self) -> Page {
        let n = self
            .pool
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .expect("a permit guarantees a free page");
        Page {
            pool: self.pool.clone(),
            n,
            len: 0,
        }
    }
}

/// One page of the pool, filled from the start. Returns to the pool on drop.
pub struct Page {
    pool: Arc<Pool>,
    n: u32,
    len: usize,
}

impl Page {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn room(&self) -> usize {
        PAGE_SIZE - self.len
    }

    /// Appends as much of `data` as fits; returns how much was taken.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        // SAFETY: this Page exclusively owns its page; len + n <= PAGE_SIZE.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.pool.page_ptr(self.n).add(self.len),
                n,
            );
        }
        self.len += n;
        n
    }

    /// Turns the filled part into `Bytes` that own the page.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(FrozenPage(self))
    }
}

impl AsRef<[u8]> for Page {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first len bytes of this exclusively owned page are initialised.
        unsafe { std::slice::from_raw_parts(self.pool.page_ptr(self.n), self.len) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.pool.release(self.n);
    }
}

struct FrozenPage(Page);

impl AsRef<[u8]> for FrozenPage {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_come_back_when_their_bytes_drop() {
        let dir = tempfile::tempdir().unwrap();
        let buf = WriteBuffer::new(PAGE_SIZE, 2 * PAGE_SIZE, Some(dir.path())).unwrap();
        assert_eq!(buf.total_pages(), 3);
        let mut pages: Vec<Page> = Vec::new();
        for i in 0..3u8 {
            let mut p = buf.page().await;
            assert_eq!(p.fill(&vec![i; PAGE_SIZE + 10]), PAGE_SIZE);
            pages.push(p);
        }
        assert!(buf.try_page().is_none());
        let frozen: Vec<Bytes> = pages.into_iter().map(Page::freeze).collect();
        assert!(frozen
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8)));
        let waiter = tokio::spawn({
            let buf = buf.clone();
            async move { buf.page().await.room() }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a writer waits while the pool is full"
        );
        let keep = frozen[2].slice(10..20);
        drop(frozen);
        assert_eq!(waiter.await.unwrap(), PAGE_SIZE);
        assert_eq!(keep.as_ref(), &[2u8; 10]);
        // The waiter's page is back; only the sliced one is held.
        assert_eq!(buf.free_pages(), 2, "the sliced page is still held");
        drop(keep);
        assert_eq!(buf.free_pages(), 3);
    }
}
