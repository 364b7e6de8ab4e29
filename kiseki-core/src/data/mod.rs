//! The data path: object storage, the write buffer, the block cache, and reading and
//! writing file contents as slices (see `meta::ops::chunks` for their records).

pub mod backup;
pub mod buffer;
pub mod cache;
pub mod checksum;
pub mod compact;
pub mod compress;
pub(crate) use local::parse_block_name;
pub mod disk_cache;
mod local;
pub mod staging;
pub mod store;

mod reader;
mod warmup;
mod writer;

pub use warmup::Warmth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) use crate::error::{Error, Result};

use buffer::WriteBuffer;
use cache::BlockCache;
use opendal::Buffer;
use store::ObjectStore;
use writer::FileWriter;

use crate::meta::ops::chunks::SliceData;

use crate::meta::{Ino, Meta};

/// Default bound of concurrent block uploads: enough to fill a fast link to S3 with
/// 4 MiB blocks (as JuiceFS's default), few enough not to flood a small server.
pub const DEFAULT_MAX_UPLOADS: usize = 20;
/// Read-ahead block fetches in flight at most, over all files (`prefetch`).
pub const DEFAULT_PREFETCH: usize = 16;
/// The largest read-ahead window of a sequential reader (`max-readahead`).
pub const DEFAULT_MAX_READAHEAD: u64 = 64 << 20;

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
    /// Disk block cache directories (none: no disk cache); blocks are spread over them.
    /// The first also holds write-back's staged blocks.
    pub cache_dirs: Vec<std::path::PathBuf>,
    /// Bound of the disk cache (bytes, over all its directories).
    pub cache_disk: u64,
    /// Keep in the disk cache only blocks shorter than the block size (small files, the
    /// ends of files), as JuiceFS's `--cache-partial-only` (`cache-partial-only`).
    pub cache_partial_only: bool,
    /// The disk cache takes no new blocks in a directory whose disk has less than this
    /// fraction free (`free-space-ratio`).
    pub free_space_ratio: f64,
    /// Block uploads in flight at most (`max-uploads`).
    pub max_uploads: usize,
    /// Upload bandwidth in bytes per second, 0 for no limit (`upload-limit`).
    pub upload_limit: u64,
    /// Write-back (`writeback`): blocks are staged under the cache directory and
    /// uploaded after their commit.
    pub writeback: bool,
    /// Read-ahead block fetches in flight at most, over all files; 0 turns read-ahead
    /// off (`prefetch`).
    pub prefetch: usize,
    /// The largest read-ahead window of one sequential reader, in bytes; 0 turns
    /// read-ahead off (`max-readahead`).
    pub max_readahead: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            buffer_memory: 256 << 20,
            buffer_spill: 0,
            spill_dir: None,
            cache_memory: 512 << 20,
            cache_dirs: Vec::new(),
            cache_disk: 10 << 30,
            cache_partial_only: false,
            free_space_ratio: 0.1,
            max_uploads: DEFAULT_MAX_UPLOADS,
            upload_limit: 0,
            writeback: false,
            prefetch: DEFAULT_PREFETCH,
            max_readahead: DEFAULT_MAX_READAHEAD,
        }
    }
}

/// The levels the metrics report for this client (read when they are rendered).
impl crate::metrics::Source for DataEnv {
    fn levels(&self) -> crate::metrics::Levels {
        let page = buffer::PAGE_SIZE as u64;
        let total = self.pool.total_pages() as u64;
        let block = u64::from(self.store.block_size().max(1));
        let st = self.meta.statfs().ok();
        crate::metrics::Levels {
            engine: self.meta.engine().name().to_string(),
            memory_cache_bytes: self.cache.memory_bytes(),
            disk_cache_bytes: self.cache.disk_bytes(),
            buffer_used_bytes: (total - self.pool.free_pages() as u64) * page,
            buffer_size_bytes: total * page,
            staged_blocks: self.meta.staged_slices().map_or(0, |s| {
                s.iter()
                    .map(|(_, s)| u64::from(s.size).div_ceil(block))
                    .sum()
            }),
            pending_deletions: self
                .meta
                .pending_slice_deletions(1 << 20)
                .map_or(0, |d| d.len() as u64),
            used_bytes: st.as_ref().map_or(0, |s| s.total_space - s.avail_space),
            used_inodes: st.as_ref().map_or(0, |s| s.used_inodes),
            sessions: self.meta.sessions().map_or(0, |s| s.len() as u64),
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
    /// Blocks of staged slices that a write-back client has not uploaded yet.
    pub staged: Vec<String>,
    /// The same leaked blocks as (slice id, index, length), for deleting them.
    pub leaked_blocks: Vec<(u64, u32, u32)>,
}

/// Whether `e` says a block object is absent.
fn is_missing(e: &Error) -> bool {
    match e {
        Error::MissingBlock { .. } => true,
        Error::Shared(inner) => is_missing(inner),
        _ => false,
    }
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
    /// Write-back staging, when the client writes back.
    staging: Option<staging::Staging>,
    /// One permit per upload in flight (`max-uploads`).
    upload_slots: tokio::sync::Semaphore,
    /// When the next upload may start under `upload-limit` (bytes per second).
    upload_limit: Option<(u64, Mutex<tokio::time::Instant>)>,
    /// Fragmented chunks reads have asked to compact, with their record count then:
    /// a read asks again only once the count changed.
    read_compactions: Mutex<HashMap<(Ino, u32), usize>>,
    /// Chunks with a compaction in flight.
    compacting: Mutex<std::collections::HashSet<(Ino, u32)>>,
    /// Held by a chunk rewrite (which holds the chunk's data in memory): one at a time.
    pub(crate) compaction_slot: tokio::sync::Semaphore,
    /// One permit per read-ahead block fetch in flight (`prefetch`).
    pub(crate) prefetch_slots: tokio::sync::Semaphore,
    /// The read-ahead window's bound (`max-readahead`; 0 when read-ahead is off).
    pub readahead_max: u64,
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
        let staging = match (config.writeback, config.cache_dirs.first()) {
            (false, _) => None,
            (true, _) if meta.config().read_only => {
                return Err(Error::Invalid(
                    "writeback: a read-only client writes nothing".into(),
                ))
            }
            (true, None) => {
                return Err(Error::Invalid(
                    "writeback needs a cache-dir: staged blocks are kept there".into(),
                ))
            }
            (true, Some(dir)) => Some(staging::Staging::open(
                &dir.join("staging").join(&meta.volume().uuid),
            )?),
        };
        let disk = if config.cache_dirs.is_empty() {
            None
        } else {
            let dirs: Vec<std::path::PathBuf> = config
                .cache_dirs
                .iter()
                .map(|d| d.join(&meta.volume().uuid))
                .collect();
            Some(disk_cache::DiskCache::open(
                &dirs,
                config.cache_disk,
                config.free_space_ratio,
            )?)
        };
        let disk_policy = cache::DiskPolicy::choose(&store, config);
        let env = Arc::new(DataEnv {
            meta,
            store,
            cache: BlockCache::new(config.cache_memory, disk, disk_policy),
            pool,
            sums: moka::sync::Cache::builder()
                .max_capacity(32 << 20)
                .weigher(|_, v: &Arc<[u32]>| (64 + 4 * v.len()).try_into().unwrap_or(u32::MAX))
                .build(),
            writers: Mutex::new(HashMap::new()),
            compacting: Mutex::new(Default::default()),
            compaction_slot: tokio::sync::Semaphore::new(1),
            read_compactions: Mutex::new(HashMap::new()),
            staging,
            upload_slots: tokio::sync::Semaphore::new(config.max_uploads.max(1)),
            prefetch_slots: tokio::sync::Semaphore::new(config.prefetch),
            readahead_max: if config.prefetch == 0 {
                0
            } else {
                config.max_readahead
            },
            upload_limit: (config.upload_limit > 0)
                .then(|| (config.upload_limit, Mutex::new(tokio::time::Instant::now()))),
            unsynced: Mutex::new(HashMap::new()),
            sync_gate: tokio::sync::Mutex::new(()),
            tasks: tokio_util::task::TaskTracker::new(),
        });
        if env.staging.is_some() {
            let e = env.clone();
            env.spawn(async move { e.recover_staged().await });
        }
        let weak = Arc::downgrade(&env);
        crate::metrics::register(weak);
        Ok(env)
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

    /// Writes a block the writer produced: staged under the cache directory with
    /// write-back (uploaded after its commit, see [`DataEnv::upload_staged`]), else
    /// uploaded now. A staging directory that fails (full disk) falls back to the
    /// upload. Returns the block's checksums.
    pub(crate) async fn write_block(&self, id: u64, index: u32, data: Buffer) -> Result<Vec<u32>> {
        // Reading back what was just written should cost no object request: a partial
        // block (a small file, the end of a file) is kept in the memory cache, and
        // the disk cache keeps what its policy says (see `cache::DiskPolicy`). Copied
        // once uploaded (see `BlockCache::insert_written`), so that the write buffer's
        // pages go back to the pool and no copy waits for an upload.
        match self.keeps_written(data.len()) {
            Some((memory, disk)) => {
                let sums = self.write_block_uncached(id, index, data.clone()).await?;
                self.cache
                    .insert_written(id, index, data, memory, disk)
                    .await;
                Ok(sums)
            }
            None => self.write_block_uncached(id, index, data).await,
        }
    }

    /// Where a block of `len` bytes this client writes is kept for reading back:
    /// (memory, disk), or `None` for nowhere.
    fn keeps_written(&self, len: usize) -> Option<(bool, bool)> {
        let partial = (len as u32) < self.store.block_size();
        let on_disk = self.cache.disk_keeps(len as u32, self.store.block_size());
        (partial || on_disk).then_some((partial, on_disk))
    }

    /// Uploads a block compaction wrote (never staged: its commit records no staged
    /// slices), kept in the caches as a writer's block is.
    pub(crate) async fn put_rewritten(
        &self,
        id: u64,
        index: u32,
        data: bytes::Bytes,
    ) -> Result<Vec<u32>> {
        let sums = self
            .put_block(id, index, Buffer::from(data.clone()))
            .await?;
        if let Some((memory, disk)) = self.keeps_written(data.len()) {
            self.cache
                .insert_written(id, index, Buffer::from(data), memory, disk)
                .await;
        }
        Ok(sums)
    }

    async fn write_block_uncached(&self, id: u64, index: u32, data: Buffer) -> Result<Vec<u32>> {
        if let Some(staging) = &self.staging {
            let sums = checksum::block_sums(data.clone());
            let key = self.store.block_key(id, index, data.len() as u32);
            match staging.put(id, index, data.clone()).await {
                Ok(()) => {
                    self.store.note(|| format!("stage {key}"));
                    return Ok(sums);
                }
                Err(e) => tracing::warn!(
                    "staging block {key} in {}: {e}; uploading it now",
                    staging.dir().display()
                ),
            }
        }
        self.put_block(id, index, data).await
    }

    /// What a commit records for new slice `id` of `size` bytes with checksums `sums`:
    /// staged when any of its blocks waits in the staging directory.
    pub(crate) fn slice_data(&self, id: u64, size: u32, sums: Vec<u32>) -> SliceData {
        match &self.staging {
            Some(st) if st.has_slice(id) => SliceData::Staged(
                sums,
                crate::meta::records::StagedSlice {
                    size,
                    sid: self.meta.sid(),
                    stager: st.stager().to_string(),
                    host: crate::meta::hostname(),
                },
            ),
            _ => SliceData::Sums(sums),
        }
    }

    /// Starts the upload of the staged blocks of slices a commit just published.
    pub(crate) fn upload_staged(self: &Arc<Self>, slices: impl IntoIterator<Item = u64>) {
        let Some(staging) = &self.staging else {
            return;
        };
        for id in slices {
            if staging.has_slice(id) {
                let env = self.clone();
                self.spawn(async move { env.upload_slice(id).await });
            }
        }
    }

    /// Uploads the staged blocks of committed slice `id` (several at once, within
    /// `max-uploads`), then clears its staged record.
    async fn upload_slice(&self, id: u64) {
        use futures::stream::{self, StreamExt};
        let Some(staging) = &self.staging else {
            return;
        };
        let uploaded: Vec<bool> = stream::iter(staging.blocks_of(id))
            .map(|(index, len)| self.upload_with_retries(staging, id, index, len))
            .buffer_unordered(16)
            .collect()
            .await;
        if !uploaded.iter().all(|&ok| ok) {
            return;
        }
        if let Err(e) = self.blocking(move |m| m.unstage(id)).await {
            // The record stays: readers elsewhere wait for nothing until the next
            // start of this client clears it.
            tracing::warn!("slice {id}: clearing its staged record: {e}");
        }
    }

    /// Uploads a staged block, retrying failures with back-off (0.5 s doubling to
    /// 30 s); false when an attempt failed while the client is closing (the block stays
    /// staged, for the next start).
    async fn upload_with_retries(
        &self,
        staging: &staging::Staging,
        id: u64,
        index: u32,
        len: u32,
    ) -> bool {
        let mut pause = std::time::Duration::from_millis(500);
        loop {
            let Err(e) = self.upload_staged_block(staging, id, index, len).await else {
                return true;
            };
            let key = self.store.block_key(id, index, len);
            if self.is_closing() {
                tracing::warn!(
                    "staged block {key} not uploaded before close ({e}); it stays in {} \
                     for the next start",
                    staging.dir().display()
                );
                return false;
            }
            tracing::warn!("uploading staged block {key}: {e}; retrying in {pause:?}");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(30));
        }
    }

    /// Uploads one staged block (checked against the slice's checksums: a staged file
    /// torn by a power loss is never uploaded as data) and removes it from staging.
    async fn upload_staged_block(
        &self,
        staging: &staging::Staging,
        id: u64,
        index: u32,
        len: u32,
    ) -> Result<()> {
        let Some(read) = staging.get(id, index, len).await else {
            return Ok(());
        };
        let data = read?;
        let sums = self.block_sums(id, index, len)?;
        if let Some(sums) = &sums {
            if let Err(why) = checksum::verify(&data, 0, sums) {
                let key = self.store.block_key(id, index, len);
                tracing::error!(
                    "staged block {key} of slice {id} is damaged ({why}); it is lost, \
                     and reads of it fail with EIO"
                );
                staging.remove(id, index, len);
                return Ok(());
            }
        }
        self.put_block(id, index, Buffer::from(data)).await?;
        if self.store.needs_sync() {
            // The staged copy is the durable one until the stored one is synced.
            self.store.sync_blocks(vec![(id, index, len)]).await?;
        }
        staging.remove(id, index, len);
        Ok(())
    }

    /// At start-up: takes over the slices the staging directory holds for committed
    /// slices (a client that stopped or crashed before uploading them) and uploads
    /// them; removes staged blocks no commit references (the crash came first).
    async fn recover_staged(self: Arc<Self>) {
        let Some(staging) = &self.staging else {
            return;
        };
        let found = staging.take_found();
        let stager = staging.stager().to_string();
        let ours = match self.blocking(move |m| m.adopt_staged(&stager)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("taking over staged slices: {e}; they stay staged");
                return;
            }
        };
        let committed: std::collections::HashSet<u64> = ours.iter().map(|(id, _)| *id).collect();
        for (id, index, len) in found {
            if !committed.contains(&id) {
                staging.remove(id, index, len);
            }
        }
        if !ours.is_empty() {
            tracing::info!(
                "uploading {} slices left staged in {}",
                ours.len(),
                staging.dir().display()
            );
        }
        // Slices without blocks left were uploaded before the stop; `upload_slice`
        // clears their records too.
        for (id, _) in ours {
            let env = self.clone();
            self.spawn(async move { env.upload_slice(id).await });
        }
    }

    /// Staged blocks of this client waiting for upload, and their bytes.
    pub fn staged_usage(&self) -> Option<(u64, u64)> {
        self.staging.as_ref().map(|s| s.usage())
    }

    /// Whether blocks need syncing before a durable commit: `fs` storage's, or
    /// staged ones.
    fn needs_sync(&self) -> bool {
        self.store.needs_sync() || self.staging.is_some()
    }

    /// Syncs blocks wherever they are: staged, or in `fs` storage.
    async fn sync_files(&self, blocks: Vec<BlockRef>) -> Result<()> {
        let rest = match &self.staging {
            Some(st) => {
                let rest = st.sync(blocks.clone()).await?;
                for &(id, index, len) in blocks.iter().filter(|b| !rest.contains(b)) {
                    self.store
                        .note(|| format!("sync {}", self.store.block_key(id, index, len)));
                }
                rest
            }
            None => blocks,
        };
        self.store.sync_blocks(rest).await
    }

    /// Remembers blocks committed for `ino` without a sync, for its next fsync.
    pub(crate) fn owe_sync(&self, ino: Ino, blocks: impl IntoIterator<Item = BlockRef>) {
        if !self.needs_sync() {
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
        if !self.needs_sync() {
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
        let r = self.sync_files(blocks.clone()).await;
        if r.is_err() && had_owed {
            // Still owed: a later fsync must try again.
            self.owe_sync(ino, blocks);
        }
        r
    }

    /// Syncs the owed blocks of every inode (`older_than` `None`), or of those whose
    /// oldest owed block is at least that old.
    pub async fn sync_owed(&self, older_than: Option<std::time::Duration>) -> Result<()> {
        if !self.needs_sync() {
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
        let r = self.sync_files(all).await;
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
                None if self.meta.volume().checksums_required(id) => {
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
        self.fetch_block(id, index, len, sums.as_deref()).await
    }

    /// Block `index` (of `len` bytes) of slice `id`, checked against `sums`: from
    /// this client's staging directory while it is staged here, else through the
    /// caches from object storage, waiting for another client's upload while that
    /// client stages it (see [`DataEnv::await_upload`]).
    pub(crate) async fn fetch_block(
        &self,
        id: u64,
        index: u32,
        len: u32,
        sums: Option<&[u32]>,
    ) -> Result<bytes::Bytes> {
        if let Some(b) = self.staged_block(id, index, len, sums).await? {
            return Ok(b);
        }
        match self.cache.block(&self.store, id, index, len, sums).await {
            Err(e) if is_missing(&e) && self.await_upload(id, index).await? => {
                self.cache.block(&self.store, id, index, len, sums).await
            }
            r => r,
        }
    }

    /// The block from this client's staging directory, checked; `None` when it is
    /// not staged here.
    async fn staged_block(
        &self,
        id: u64,
        index: u32,
        len: u32,
        sums: Option<&[u32]>,
    ) -> Result<Option<bytes::Bytes>> {
        let Some(staging) = &self.staging else {
            return Ok(None);
        };
        let Some(read) = staging.get(id, index, len).await else {
            return Ok(None);
        };
        let data = read?;
        if let Some(sums) = sums {
            checksum::verify(&data, 0, sums).map_err(|why| {
                let key = self.store.block_key(id, index, len);
                tracing::error!("staged block {key} of slice {id} is damaged: {why}");
                Error::CorruptBlock {
                    slice: id,
                    key: format!("{key} (staged in {})", staging.dir().display()),
                    why,
                }
            })?;
        }
        Ok(Some(data))
    }

    /// A block of slice `id` is missing from object storage: when a write-back client
    /// staged the slice and has not uploaded it yet, waits (while that client lives,
    /// up to the store's request deadline) for the upload. Ok(true): the upload
    /// finished, fetch again; Ok(false): the slice was never staged, the block is
    /// lost; `NotUploaded` (EIO): its client is gone or still has not uploaded it.
    async fn await_upload(&self, id: u64, index: u32) -> Result<bool> {
        let deadline = std::time::Instant::now() + store::REQUEST_DEADLINE;
        let mut pause = std::time::Duration::from_millis(50);
        let mut waited = false;
        loop {
            let Some(st) = self.blocking(move |m| m.staged_slice(id)).await? else {
                return Ok(waited);
            };
            let sid = st.sid;
            let not_uploaded = |why: String| Error::NotUploaded {
                slice: id,
                index,
                why,
            };
            if self.blocking(move |m| m.live_session(sid)).await?.is_none() {
                return Err(not_uploaded(format!(
                    "the client on {} that staged it (session {sid}) stopped before \
                     uploading it; it is uploaded when that client starts again with its \
                     cache directory",
                    st.host
                )));
            }
            if std::time::Instant::now() >= deadline {
                return Err(not_uploaded(format!(
                    "the client on {} that staged it (session {sid}) is still uploading \
                     it after {:?}",
                    st.host,
                    store::REQUEST_DEADLINE
                )));
            }
            waited = true;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
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
        let (a, b) = (range.start as usize, range.end as usize);
        if let Some(all) = self.staged_block(id, index, len, sums.as_deref()).await? {
            return Ok(all.slice(a..b));
        }
        let get = || {
            self.store
                .get_block(id, index, len, range.clone(), sums.as_deref())
        };
        match get().await {
            Err(e) if is_missing(&e) && self.await_upload(id, index).await? => get().await,
            r => r,
        }
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
        // Staged slices' blocks reach storage when their client uploads them.
        let staged: std::collections::HashSet<u64> = self
            .blocking(|m| m.staged_slices())
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let listed: std::collections::HashSet<(u64, u32, u32)> =
            self.store.list_blocks().await?.into_iter().collect();
        let mut report = ObjectReport {
            blocks: listed.len() as u64,
            ..Default::default()
        };
        for (&id, &size) in &referenced {
            for index in 0..self.store.blocks_of(size) {
                let len = self.store.block_len(size, index);
                if listed.contains(&(id, index, len)) {
                    continue;
                }
                if staged.contains(&id) {
                    report.staged.push(self.store.block_key(id, index, len));
                } else {
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
        report.staged.sort();
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
            // A file with uploads in flight gets pages back without help.
            .filter(|(i, w)| **i != except && w.has_pending() && !w.is_uploading())
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
                    // A failed commit's slice may have staged blocks.
                    if let Some(staging) = &self.staging {
                        staging.remove(id, index, len);
                    }
                }
                self.blocking(move |m| m.finish_slice_deletion(id, size))
                    .await?;
                crate::metrics::METRICS.deleted_slices.inc();
                deleted += 1;
            }
        }
    }
}
