//! The data path: object storage, the write buffer, the block cache, and reading and
//! writing file contents as slices (see `meta::ops::chunks` for their records).

pub mod buffer;
pub mod cache;
pub mod checksum;
pub mod compact;
pub mod disk_cache;
pub mod store;

mod reader;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) use crate::error::{Error, Result};

use buffer::WriteBuffer;
use cache::BlockCache;
use store::ObjectStore;
use writer::FileWriter;

use crate::meta::{Ino, Meta};

/// Default bound of concurrent block uploads: enough to fill a fast link to S3 with
/// 4 MiB blocks (as JuiceFS's default), few enough not to flood a small server.
pub const DEFAULT_MAX_UPLOADS: usize = 20;

/// Sizes of the data path's memory, and its upload limits.
#[derive(Debug, Clone)]
pub struct DataConfig {
    /// Write buffer in RAM (bytes).
    pub buffer_memory: usize,
    /// Write buffer in the mmap'd spill file (bytes; 0 for none).
    pub buffer_spill: usize,
    /// Directory of the spill file (default: the system temp directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// In-memory block cache (bytes).
    pub cache_memory: u64,
    /// Disk block cache directory (none: no disk cache).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Bound of the disk cache (bytes).
    pub cache_disk: u64,
    /// Block uploads in flight at most (`max-uploads`).
    pub max_uploads: usize,
    /// Upload bandwidth in bytes per second, 0 for no limit (`upload-limit`).
    pub upload_limit: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            buffer_memory: 256 << 20,
            buffer_spill: 0,
            spill_dir: None,
            cache_memory: 512 << 20,
            cache_dir: None,
            cache_disk: 10 << 30,
            max_uploads: DEFAULT_MAX_UPLOADS,
            upload_limit: 0,
        }
    }
}

/// What `check_objects` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectReport {
    /// Block objects in storage.
    pub blocks: u64,
    /// Blocks metadata references that storage does not have (data loss).
    pub missing: Vec<String>,
    /// Blocks whose bytes do not match their recorded checksums (or cannot be decoded),
    /// with the reason; only when the objects were read (`verify`).
    pub corrupt: Vec<String>,
    /// Blocks nothing references and nothing is queued to delete.
    pub leaked: Vec<String>,
    /// The same leaked blocks as (slice id, index, length), for deleting them.
    pub leaked_blocks: Vec<(u64, u32, u32)>,
}

/// A block object: (slice id, index, length).
pub(crate) type BlockRef = (u64, u32, u32);

/// Unsynced blocks older than this are synced in the background: by then the kernel
/// has written most of them back (its dirty data expires after 30 s), so the sync is
/// cheap, and the list of what fsync owes stays short.
pub const UNSYNCED_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything the data path of one client shares.
pub struct DataEnv {
    pub meta: Arc<Meta>,
    pub store: ObjectStore,
    pub cache: BlockCache,
    pub pool: WriteBuffer,
    /// Recorded checksums of committed slices by id. Slices are immutable, so an entry
    /// never goes stale.
    sums: moka::sync::Cache<u64, Arc<[u32]>>,
    writers: Mutex<HashMap<Ino, Arc<FileWriter>>>,
    /// Blocks of `fs` storage committed without a sync (close, buffer pressure), by the
    /// inode whose writes made them, with when the first was added: fsync syncs the
    /// inode's, a background pass those older than [`UNSYNCED_AGE`].
    unsynced: Mutex<HashMap<Ino, (std::time::Instant, Vec<BlockRef>)>>,
    /// Held while blocks are being synced, so that a sync that finds a list empty
    /// knows no other is still syncing what it took.
    sync_gate: tokio::sync::Mutex<()>,
    /// One permit per upload in flight (`max-uploads`).
    upload_slots: tokio::sync::Semaphore,
    /// When the next upload may start under `upload-limit` (bytes per second).
    upload_limit: Option<(u64, Mutex<tokio::time::Instant>)>,
    /// Fragmented chunks reads have asked to compact, with their record count then:
    /// a read asks again only once the count changed.
    read_compactions: Mutex<HashMap<(Ino, u32), usize>>,
    /// Chunks with a compaction in flight.
    compacting: Mutex<std::collections::HashSet<(Ino, u32)>>,
    /// Every background task (uploads, read-ahead, compaction, pressure flushes). Each
    /// holds this environment, and with it the metadata engine, so disconnecting waits
    /// for them: a volume closed by one client can be reopened at once.
    tasks: tokio_util::task::TaskTracker,
}

impl DataEnv {
    pub fn new(meta: Arc<Meta>, config: &DataConfig) -> Result<Arc<Self>> {
        let store = ObjectStore::open(meta.volume())?;
        let pool = WriteBuffer::new(
            config.buffer_memory,
            config.buffer_spill,
            config.spill_dir.as_deref(),
        )?;
        // One cache directory per volume, so volumes never share entries.
        let disk = match &config.cache_dir {
            Some(dir) => Some(disk_cache::DiskCache::open(
                &dir.join(&meta.volume().uuid),
                config.cache_disk,
            )?),
            None => None,
        };
        Ok(Arc::new(DataEnv {
            meta,
            store,
            cache: BlockCache::new(config.cache_memory, disk),
            pool,
            sums: moka::sync::Cache::builder()
                .max_capacity(32 << 20)
                .weigher(|_, v: &Arc<[u32]>| (64 + 4 * v.len()).try_into().unwrap_or(u32::MAX))
                .build(),
            writers: Mutex::new(HashMap::new()),
            compacting: Mutex::new(Default::default()),
            read_compactions: Mutex::new(HashMap::new()),
            upload_slots: tokio::sync::Semaphore::new(config.max_uploads.max(1)),
            upload_limit: (config.upload_limit > 0)
                .then(|| (config.upload_limit, Mutex::new(tokio::time::Instant::now()))),
            unsynced: Mutex::new(HashMap::new()),
            sync_gate: tokio::sync::Mutex::new(()),
            tasks: tokio_util::task::TaskTracker::new(),
        }))
    }

    /// Runs `fut` in the background as a task [`DataEnv::quiesce`] waits for.
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(fut)
    }

    /// Whether the client is closing: background work that is only an optimisation
    /// (compaction) gives up rather than hold the unmount.
    pub(crate) fn is_closing(&self) -> bool {
        self.tasks.is_closed()
    }

    /// Waits until every background task has finished. Called once no new work can
    /// arrive (disconnect, unmount).
    pub async fn quiesce(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<Ino, Arc<FileWriter>>> {
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self, ino: Ino) -> Arc<FileWriter> {
        self.writers()
            .entry(ino)
            .or_insert_with(|| Arc::new(FileWriter::new(ino)))
            .clone()
    }

    /// A read found chunk `index` of `ino` with `records` records: compacts it in the
    /// background when that is too many (a chunk left fragmented by a client that
    /// stopped before compacting it, or by another client), once per record count.
    pub(crate) fn compact_on_read(self: &Arc<Self>, ino: Ino, index: u32, records: usize) {
        if records <= compact::COMPACT_THRESHOLD || self.meta.config().read_only {
            return;
        }
        {
            let mut asked = self
                .read_compactions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if asked.get(&(ino, index)) == Some(&records) {
                return;
            }
            if asked.len() >= 4096 {
                asked.clear();
            }
            asked.insert((ino, index), records);
        }
        compact::spawn_compaction(self, ino, index);
    }

    fn compacting(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(Ino, u32)>> {
        self.compacting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn existing_writer(&self, ino: Ino) -> Option<Arc<FileWriter>> {
        self.writers().get(&ino).cloned()
    }

    /// Attributes as this client sees them: pending writes extend the length and add to
    /// the data bytes (an estimate until committed). The pending state is captured before
    /// the committed attributes are read, so a concurrent commit is never missed.
    pub fn attr(&self, ino: Ino) -> crate::error::Result<crate::meta::Attr> {
        let pending = self.existing_writer(ino).map(|w| w.snapshot());
        let mut attr = self.meta.getattr(ino)?;
        if let Some(p) = pending {
            if let Some(end) = p.end {
                attr.length = attr.length.max(end);
                attr.stored = (attr.stored + p.bytes).min(attr.length);
            }
            if p.kill_suid {
                attr.mode = crate::meta::strip_suid(attr.mode);
            }
        }
        Ok(attr)
    }

    /// `attr` just read from metadata, as this client sees it. Without a writer for the
    /// inode there is nothing pending (a writer created later holds only later writes), so
    /// the attributes are returned as they are and no second metadata read is made.
    pub fn refresh(
        &self,
        ino: Ino,
        attr: crate::meta::Attr,
    ) -> crate::error::Result<crate::meta::Attr> {
        if self.existing_writer(ino).is_none() {
            return Ok(attr);
        }
        self.attr(ino)
    }

    pub fn has_pending(&self, ino: Ino) -> bool {
        self.existing_writer(ino).is_some_and(|w| w.has_pending())
    }

    /// Writes at `off`, or appends when `None`; returns the offset written at.
    pub async fn write(
        self: &Arc<Self>,
        ino: Ino,
        off: Option<u64>,
        data: &[u8],
        kill_suid: bool,
    ) -> Result<u64> {
        self.writer(ino).write(self, off, data, kill_suid).await
    }

    /// Uploads and commits what this client has pending for `ino`.
    pub async fn flush(self: &Arc<Self>, ino: Ino, durable: bool) -> Result<()> {
        match self.existing_writer(ino) {
            Some(w) => w.flush(self, durable).await,
            None => Ok(()),
        }
    }

    /// The block objects of a slice of `size` bytes (none for an inline slice).
    pub(crate) fn blocks_of_slice(
        &self,
        id: u64,
        size: u32,
    ) -> impl Iterator<Item = BlockRef> + '_ {
        let n = if crate::meta::records::is_inline(id) {
            0
        } else {
            self.store.blocks_of(size)
        };
        (0..n).map(move |i| (id, i, self.store.block_len(size, i)))
    }

    /// Uploads block `index` of slice `id` within the client's upload bounds: at most
    /// `max-uploads` at once, and no faster than `upload-limit` on average (each upload
    /// reserves its share of the bandwidth before it starts). Returns its checksums.
    pub(crate) async fn put_block(
        &self,
        id: u64,
        index: u32,
        data: opendal::Buffer,
    ) -> Result<Vec<u32>> {
        let _slot = self
            .upload_slots
            .acquire()
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        if let Some((rate, next)) = &self.upload_limit {
            let cost = std::time::Duration::from_secs_f64(data.len() as f64 / *rate as f64);
            let start = {
                let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                let start = (*next).max(tokio::time::Instant::now());
                *next = start + cost;
                start
            };
            tokio::time::sleep_until(start).await;
        }
        self.store.put_block(id, index, data).await
    }

    /// Remembers blocks committed for `ino` without a sync, for its next fsync.
    pub(crate) fn owe_sync(&self, ino: Ino, blocks: impl IntoIterator<Item = BlockRef>) {
        if !self.store.needs_sync() {
            return;
        }
        let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
        let entry = unsynced
            .entry(ino)
            .or_insert_with(|| (std::time::Instant::now(), Vec::new()));
        entry.1.extend(blocks);
        if entry.1.is_empty() {
            unsynced.remove(&ino);
        }
    }

    /// Makes `to` owe the syncs `from` owes (`to` now shares `from`'s slices).
    pub(crate) fn share_owed(&self, from: Ino, to: Ino) {
        let owed = self
            .unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&from)
            .map(|(_, b)| b.clone());
        if let Some(blocks) = owed {
            self.owe_sync(to, blocks);
        }
    }

    /// Syncs `blocks` and every block owed for `ino`: after it returns, a commit that
    /// references them may be made durable.
    pub(crate) async fn sync_blocks(&self, ino: Ino, mut blocks: Vec<BlockRef>) -> Result<()> {
        if !self.store.needs_sync() {
            return Ok(());
        }
        let _gate = self.sync_gate.lock().await;
        let owed = self
            .unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ino);
        let had_owed = owed.is_some();
        if let Some((_, owed)) = owed {
            blocks.extend(owed.iter().copied());
        }
        let r = self.store.sync_blocks(blocks.clone()).await;
        if r.is_err() && had_owed {
            // Still owed: a later fsync must try again.
            self.owe_sync(ino, blocks);
        }
        r
    }

    /// Syncs the owed blocks of every inode (`older_than` `None`), or of those whose
    /// oldest owed block is at least that old.
    pub async fn sync_owed(&self, older_than: Option<std::time::Duration>) -> Result<()> {
        if !self.store.needs_sync() {
            return Ok(());
        }
        let _gate = self.sync_gate.lock().await;
        let taken: Vec<(Ino, Vec<BlockRef>)> = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
            let due: Vec<Ino> = unsynced
                .iter()
                .filter(|(_, (since, _))| older_than.is_none_or(|age| since.elapsed() >= age))
                .map(|(ino, _)| *ino)
                .collect();
            due.into_iter()
                .filter_map(|ino| unsynced.remove(&ino).map(|(_, b)| (ino, b)))
                .collect()
        };
        let all: Vec<BlockRef> = taken.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        let r = self.store.sync_blocks(all).await;
        if r.is_err() {
            for (ino, blocks) in taken {
                self.owe_sync(ino, blocks);
            }
        }
        r
    }

    /// Makes everything this client committed for `ino` power-loss durable: its blocks,
    /// then the metadata (fsync, once pending writes are committed).
    pub async fn make_durable(&self, ino: Ino) -> Result<()> {
        self.sync_blocks(ino, Vec::new()).await?;
        self.blocking(|m| m.sync()).await
    }

    /// Forgets the writer of `ino` once nothing is pending and nobody holds it (after
    /// the last close). Every user clones the writer under the map's lock, so a count of
    /// one seen under that lock means no write is in flight. A poisoned writer is
    /// forgotten too: its handles are gone.
    pub fn forget_writer(&self, ino: Ino) {
        let mut writers = self.writers();
        if writers
            .get(&ino)
            .is_some_and(|w| Arc::strong_count(w) == 1 && !w.has_pending())
        {
            writers.remove(&ino);
        }
    }

    /// The recorded checksums of block `index` (of `len` bytes) of committed slice `id`;
    /// `None` for a slice written before checksums existed.
    fn block_sums(&self, id: u64, index: u32, len: u32) -> Result<Option<Vec<u32>>> {
        let corrupt = |why: String| {
            let key = self.store.block_key(id, index, len);
            tracing::error!("block object {key} of slice {id} cannot be checked: {why}");
            Error::CorruptBlock {
                slice: id,
                key,
                why,
            }
        };
        let all = match self.sums.get(&id) {
            Some(all) => all,
            None => match self.meta.slice_sums(id)? {
                Some(v) => {
                    let all: Arc<[u32]> = v.into();
                    self.sums.insert(id, all.clone());
                    all
                }
                None if self.meta.volume().checksums_required() => {
                    return Err(corrupt("the slice has no recorded checksums".into()))
                }
                None => return Ok(None),
            },
        };
        checksum::of_block(&all, self.store.block_size(), index, len)
            .map(|s| Some(s.to_vec()))
            .map_err(corrupt)
    }

    /// Block `index` (of `len` bytes) of committed slice `id`, whole and checked,
    /// through the caches.
    pub(crate) async fn block(&self, id: u64, index: u32, len: u32) -> Result<bytes::Bytes> {
        if let Some(b) = self.cache.cached(id, index).await {
            return Ok(b);
        }
        if crate::meta::records::is_inline(id) {
            return self.inline_slice(id, len).await;
        }
        let sums = self.block_sums(id, index, len)?;
        self.cache
            .block(&self.store, id, index, len, sums.as_deref())
            .await
    }

    /// The bytes of inline slice `id` (of `size` bytes): one metadata read, then kept
    /// in the memory cache like a block. A value of the wrong length is corruption.
    async fn inline_slice(&self, id: u64, size: u32) -> Result<bytes::Bytes> {
        if let Some(b) = self.cache.cached(id, 0).await {
            return Ok(b);
        }
        let key = || format!("inline slice {id} (metadata key V{id:016x})");
        match self.meta.inline_slice(id)? {
            Some(v) if v.len() == size as usize => {
                let b = bytes::Bytes::from(v);
                self.cache.insert(id, 0, b.clone()).await;
                Ok(b)
            }
            Some(v) => {
                let why = format!("holds {} bytes, expected {size}", v.len());
                tracing::error!("{} is corrupt: {why}", key());
                Err(Error::CorruptBlock {
                    slice: id,
                    key: key(),
                    why,
                })
            }
            None => Err(Error::MissingBlock {
                slice: id,
                key: key(),
            }),
        }
    }

    /// Bytes at the start of a file (chunk 0) that a commit stores inline.
    pub(crate) fn inline_limit(&self) -> u32 {
        self.meta.volume().inline_size
    }

    /// `range` of block `index` (of `len` bytes) of committed slice `id`, fetched and
    /// checked without going through the caches (a small random read).
    pub(crate) async fn block_range(
        &self,
        id: u64,
        index: u32,
        len: u32,
        range: std::ops::Range<u32>,
    ) -> Result<bytes::Bytes> {
        if crate::meta::records::is_inline(id) {
            let all = self.inline_slice(id, len).await?;
            return Ok(all.slice(range.start as usize..range.end as usize));
        }
        let sums = self.block_sums(id, index, len)?;
        self.store
            .get_block(id, index, len, range, sums.as_deref())
            .await
    }

    /// Reads up to `out.len()` bytes at `off` into `out`; returns the count and the file
    /// length (this client's view) they were read against.
    pub async fn read_into(
        self: &Arc<Self>,
        ino: Ino,
        off: u64,
        out: &mut [u8],
    ) -> Result<(usize, u64)> {
        reader::read_into(self, ino, off, out).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> crate::error::Result<T> + Send + 'static,
    ) -> Result<T> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
    }

    /// Deletes blocks a dead client uploaded for slices it never committed: blocks whose
    /// slice id lies in a swept range and that no chunk references.
    async fn sweep_orphans(self: &Arc<Self>) -> Result<()> {
        let sweeps = self.blocking(|m| m.orphan_sweeps()).await?;
        if sweeps.is_empty() {
            return Ok(());
        }
        let referenced = self.blocking(|m| m.referenced_slices()).await?;
        for (id, index, len) in self.store.list_blocks().await? {
            let swept = sweeps.iter().any(|&(s, e)| (s..e).contains(&id));
            if swept && !referenced.contains_key(&id) {
                self.store.delete_block(id, index, len).await?;
            }
        }
        for (s, e) in sweeps {
            self.blocking(move |m| m.finish_orphan_sweep(s, e)).await?;
        }
        Ok(())
    }

    /// Compares object storage with the metadata: blocks referenced but missing, and
    /// blocks nothing references or is about to delete (leaked). With `verify`, also
    /// reads every referenced block and checks it against its recorded checksums.
    pub async fn check_objects(self: &Arc<Self>, verify: bool) -> Result<ObjectReport> {
        // Inline slices have no objects (fsck checks their values).
        let mut referenced = self.blocking(|m| m.referenced_slices()).await?;
        referenced.retain(|&id, _| !crate::meta::records::is_inline(id));
        let pending: std::collections::HashSet<u64> = self
            .blocking(|m| m.pending_slice_deletions(usize::MAX))
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let sweeps = self.blocking(|m| m.orphan_sweeps()).await?;
        let listed: std::collections::HashSet<(u64, u32, u32)> =
            self.store.list_blocks().await?.into_iter().collect();
        let mut report = ObjectReport {
            blocks: listed.len() as u64,
            ..Default::default()
        };
        for (&id, &size) in &referenced {
            for index in 0..self.store.blocks_of(size) {
                let len = self.store.block_len(size, index);
                if !listed.contains(&(id, index, len)) {
                    report.missing.push(self.store.block_key(id, index, len));
                }
            }
        }
        for &(id, index, len) in &listed {
            let expected = referenced.get(&id).is_some_and(|&size| {
                index < self.store.blocks_of(size) && self.store.block_len(size, index) == len
            });
            let doomed = pending.contains(&id) || sweeps.iter().any(|&(s, e)| (s..e).contains(&id));
            if !expected && !doomed {
                report.leaked.push(self.store.block_key(id, index, len));
                report.leaked_blocks.push((id, index, len));
            }
        }
        if verify {
            use futures::stream::{self, StreamExt, TryStreamExt};
            let mut present = Vec::new();
            for (&id, &size) in &referenced {
                for index in 0..self.store.blocks_of(size) {
                    let len = self.store.block_len(size, index);
                    if listed.contains(&(id, index, len)) {
                        present.push((id, index, len));
                    }
                }
            }
            // A block deleted since the listing (a mounted volume) is not corruption.
            let found: Vec<Option<String>> = stream::iter(present)
                .map(|(id, index, len)| async move {
                    let r = match self.block_sums(id, index, len) {
                        Ok(sums) => {
                            self.store
                                .get_block(id, index, len, 0..len, sums.as_deref())
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    match r {
                        Err(Error::CorruptBlock { key, why, .. }) => {
                            Ok(Some(format!("{key}: {why}")))
                        }
                        Ok(_) | Err(Error::MissingBlock { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(8)
                .try_collect()
                .await?;
            report.corrupt = found.into_iter().flatten().collect();
        }
        report.missing.sort();
        report.corrupt.sort();
        report.leaked.sort();
        report.leaked_blocks.sort();
        Ok(report)
    }

    /// Deletes blocks a [`DataEnv::check_objects`] report found leaked. Only safe while
    /// no other client can be uploading (an exclusive engine, or every other session
    /// ended): an upload in flight looks leaked until its commit.
    pub async fn delete_leaked(&self, report: &ObjectReport) -> Result<usize> {
        for &(id, index, len) in &report.leaked_blocks {
            self.store.delete_block(id, index, len).await?;
            self.cache.invalidate(id, index).await;
        }
        Ok(report.leaked_blocks.len())
    }

    /// Starts read-ahead of `[off, off + len)` of `ino` into the block cache.
    pub fn prefetch(self: &Arc<Self>, ino: Ino, off: u64, len: u64) {
        if len > 0 {
            reader::prefetch(self, ino, off, len);
        }
    }

    /// Buffer pressure: commit other files' pending writes in the background so their
    /// pages return to the pool.
    fn relieve_pressure(self: &Arc<Self>, except: Ino) {
        let others: Vec<Arc<FileWriter>> = self
            .writers()
            .iter()
            .filter(|(i, w)| **i != except && w.has_pending())
            .map(|(_, w)| w.clone())
            .collect();
        for w in others {
            let env = self.clone();
            self.spawn(async move {
                if let Err(e) = w.flush(&env, false).await {
                    tracing::warn!("background flush under buffer pressure: {e}");
                }
            });
        }
    }

    /// Runs the deletion queues: drops the records of deleted files, then deletes the
    /// blocks of unreferenced slices. Returns the number of slices whose blocks went.
    pub async fn run_deletions(self: &Arc<Self>) -> Result<usize> {
        self.blocking(|m| m.process_file_deletions(usize::MAX))
            .await?;
        self.sweep_orphans().await?;
        let mut deleted = 0;
        loop {
            let batch = self.blocking(|m| m.due_slice_deletions(256)).await?;
            if batch.is_empty() {
                return Ok(deleted);
            }
            for (id, size) in batch {
                if crate::meta::records::is_inline(id) {
                    self.cache.invalidate(id, 0).await;
                    self.blocking(move |m| m.finish_slice_deletion(id, size))
                        .await?;
                    deleted += 1;
                    continue;
                }
                for index in 0..self.store.blocks_of(size) {
                    let len = self.store.block_len(size, index);
                    self.store.delete_block(id, index, len).await?;
                    self.cache.invalidate(id, index).await;
                }
                self.blocking(move |m| m.finish_slice_deletion(id, size))
                    .await?;
                deleted += 1;
            }
        }
    }
}
