//! Object storage through OpenDAL: where blocks live and how they are named.
//!
//! A slice of `size` bytes is stored as blocks of the volume's block size (the last one
//! shorter) under `{volume}/chunks/{id/1_000_000}/{id/1_000}/{id}_{index}_{length}`.
//! Blocks are immutable: a name is written once and never changes, which makes them
//! safe to cache anywhere. Temporary failures are retried with jittered back-off and
//! every call has a timeout; what still fails surfaces as EIO. A missing or short block
//! is corruption (EIO naming the block), never zeros and never ENOENT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{Buffer, ErrorKind, Operator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::compress::Codec;
use crate::error::{Error, Result};
use crate::meta::VolumeFormat;
use crate::metrics::{METRICS, OBJ_DELETE, OBJ_GET, OBJ_LIST, OBJ_PUT};

/// Retries of a failed request, with jittered exponential back-off from 100 ms to 5 s
/// between them: about 26 s in all, which rides out a store restart.
const RETRIES: usize = 10;
/// Each attempt of a request (and each read or write step of a transfer) may take this
/// long before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// A block request gives up (EIO) after this long plus [`DEADLINE_PER_MIB`] for each
/// MiB it carries, however its attempts went: an outage fails writers and readers in
/// about half a minute, and a hung store cannot hold them for the sum of every
/// attempt's timeout.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
pub const DEADLINE_PER_MIB: Duration = Duration::from_secs(1);

/// Block files of an `fs` store at least this long start their writeback when written.
const KICK_WRITEBACK: u32 = 1 << 20;

/// How long each request of the store probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ObjectStore {
    op: Operator,
    /// The same store without retries and with a short timeout, for the probe: a store
    /// that is down must be reported in seconds, not after a minute of back-off.
    probe_op: Operator,
    /// What the store is, for messages: `s3 http://host/bucket`, `fs /dir`.
    describe: String,
    prefix: String,
    block_size: u32,
    codec: Codec,
    /// The memory service keeps the buffers it is given; blocks written from the write
    /// buffer's pages must be copied or the pages would never return to the pool.
    retains_buffers: bool,
    /// `fs` storage: its directory. Block reads go straight to the file in one blocking
    /// task; through OpenDAL each read took several thread hops (open, stat, read, read
    /// to EOF, close), which dominated the cold read of small files.
    local_root: Option<std::path::PathBuf>,
    /// Injected faults (seeded simulation tests); none unless a test sets them.
    faults: Arc<Mutex<Option<(StdRng, StoreFaults)>>>,
    /// A test's record of block writes and syncs (see [`ObjectStore::set_journal`]).
    journal: Arc<Mutex<Option<Journal>>>,
    /// Until when the store counts as down: a request that failed after all its
    /// retries marks it down for [`DOWN_FOR`], and requests meanwhile fail at once
    /// instead of each waiting out the retry bound again (the kernel retries a failed
    /// readahead with a read of its own, which would double every read's wait).
    down_until: Arc<Mutex<Option<std::time::Instant>>>,
}

/// A shared log of events, for tests that check the order of block writes and syncs
/// against metadata commits: `begin put KEY`, `put KEY` (done), `sync KEY`,
/// `syncdir DIR`.
pub type Journal = Arc<Mutex<Vec<String>>>;

/// How long a store counts as down after a request failed past its retries.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// Probabilities of injected object-store faults per request, and the latency range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreFaults {
    /// A request fails (after OpenDAL's retries, as a store that stays down would).
    pub error: f64,
    /// A read returns fewer bytes than asked (detected: EIO, never wrong data).
    pub short_read: f64,
    /// Each request is delayed up to this long.
    pub max_latency: std::time::Duration,
}

/// `memory` storage is process-wide per volume, so reconnecting clients see their data.
fn memory_operator(uuid: &str) -> Result<Operator> {
    static STORES: OnceLock<Mutex<HashMap<String, Operator>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(op) = stores.get(uuid) {
        return Ok(op.clone());
    }
    let op = Operator::new(opendal::services::Memory::default())
        .map_err(|e| Error::Config(e.to_string()))?;
    stores.insert(uuid.to_string(), op.clone());
    Ok(op)
}

/// Splits an S3 bucket URL `http[s]://host[:port]/bucket[/prefix]` into endpoint,
/// bucket and key prefix.
fn parse_s3_bucket(url: &str) -> Result<(String, String, String)> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::Config(format!(
            "s3 bucket {url:?}: expected http(s)://host[:port]/bucket"
        ))
    })?;
    if scheme != "http" && scheme != "https" {
        return Err(Error::Config(format!(
            "s3 bucket {url:?}: scheme must be http or https"
        )));
    }
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| Error::Config(format!("s3 bucket {url:?}: no bucket name in the path")))?;
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let bucket = parts.next().unwrap_or_default();
    if host.is_empty() || bucket.is_empty() {
        return Err(Error::Config(format!(
            "s3 bucket {url:?}: expected http(s)://host[:port]/bucket"
        )));
    }
    let prefix = parts
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    Ok((format!("{scheme}://{host}"), bucket.to_string(), prefix))
}

impl ObjectStore {
    pub fn open(fmt: &VolumeFormat) -> Result<Self> {
        // The HTTP transport S3 uses (reqwest with the system's TLS); idempotent.
        opendal_http_transport_reqwest::install_default();
        let config = |e: opendal::Error| Error::Config(e.to_string());
        let (op, base) = match fmt.storage.as_str() {
            "fs" => {
                std::fs::create_dir_all(&fmt.bucket).map_err(|e| Error::StoreUnusable {
                    store: format!("fs {}", fmt.bucket),
                    why: format!("creating the bucket directory: {e}"),
                })?;
                (
                    Operator::new(opendal::services::Fs::default().root(&fmt.bucket))
                        .map_err(config)?,
                    String::new(),
                )
            }
            "memory" => (memory_operator(&fmt.uuid)?, String::new()),
            "s3" => {
                let (endpoint, bucket, prefix) = parse_s3_bucket(&fmt.bucket)?;
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                let mut b = opendal::services::S3::default()
                    .endpoint(&endpoint)
                    .bucket(&bucket)
                    .region(
                        &fmt.region
                            .clone()
                            .or_else(|| env("AWS_REGION"))
                            .unwrap_or_else(|| "us-east-1".into()),
                    )
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(k) = fmt.access_key.clone().or_else(|| env("AWS_ACCESS_KEY_ID")) {
                    b = b.access_key_id(&k);
                }
                if let Some(k) = fmt
                    .secret_key
                    .clone()
                    .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
                {
                    b = b.secret_access_key(&k);
                }
                (Operator::new(b).map_err(config)?, prefix)
            }
            other => return Err(Error::Config(format!("unknown storage kind {other:?}"))),
        };
        let probe_op = op.clone().layer(
            TimeoutLayer::new()
                .with_timeout(PROBE_TIMEOUT)
                .with_io_timeout(PROBE_TIMEOUT),
        );
        let op = op.layer(
            TimeoutLayer::new()
                .with_timeout(ATTEMPT_TIMEOUT)
                .with_io_timeout(ATTEMPT_TIMEOUT),
        );
        // A local disk does not fail transiently: retrying a full disk or a bad
        // permission only delays the error.
        let op = if fmt.storage == "fs" {
            op
        } else {
            op.layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(RETRIES)
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5)),
            )
        };
        let prefix = if base.is_empty() {
            fmt.name.clone()
        } else {
            format!("{base}/{}", fmt.name)
        };
        Ok(ObjectStore {
            op,
            probe_op,
            describe: format!("{} {}", fmt.storage, fmt.bucket),
            prefix,
            block_size: fmt.block_size,
            codec: Codec::parse(&fmt.compression).ok_or_else(|| {
                Error::Format(format!(
                    "compression {:?} of the volume: this version reads {}",
                    fmt.compression,
                    Codec::NAMES
                ))
            })?,
            retains_buffers: fmt.storage == "memory",
            local_root: (fmt.storage == "fs").then(|| std::path::PathBuf::from(&fmt.bucket)),
            faults: Arc::new(Mutex::new(None)),
            journal: Arc::new(Mutex::new(None)),
            down_until: Arc::new(Mutex::new(None)),
        })
    }

    /// Checks that the store works before a volume is formatted on it or used: writes,
    /// reads back and deletes a small probe object (`write`), or for a read-only client
    /// asks for one that does not exist. Fails within [`PROBE_TIMEOUT`] a request, with
    /// the store's own error and the store's URL.
    pub async fn probe(&self, write: bool) -> Result<()> {
        let key = format!(
            "{}/probe/{}-{:016x}",
            self.prefix,
            std::process::id(),
            rand::random::<u64>()
        );
        let unusable = |what: &str, e: String| Error::StoreUnusable {
            store: self.describe.clone(),
            why: format!("{what} probe object {key}: {e}"),
        };
        if !write {
            return match self.probe_op.stat(&key).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(unusable("stat of", e.to_string())),
            };
        }
        let body: Vec<u8> = format!("kiseki probe {key}\n").into_bytes();
        self.probe_op
            .write(&key, body.clone())
            .await
            .map_err(|e| unusable("writing", e.to_string()))?;
        let back = self
            .probe_op
            .read(&key)
            .await
            .map_err(|e| unusable("reading back", e.to_string()))?;
        if back.to_vec() != body {
            return Err(unusable(
                "reading back",
                format!(
                    "read {} bytes that differ from what was written",
                    back.len()
                ),
            ));
        }
        self.probe_op
            .delete(&key)
            .await
            .map_err(|e| unusable("deleting", e.to_string()))
    }

    /// Injects faults into every later request of this store (and its clones), drawn
    /// from `seed`; `StoreFaults::default()` turns them off.
    pub fn set_faults(&self, seed: u64, faults: StoreFaults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((StdRng::seed_from_u64(seed), faults));
    }

    /// Rolls the faults of one request: fails it, delays it, or says its read is to be
    /// cut short.
    async fn inject(&self, op: &'static str, key: &str) -> Result<bool> {
        let (fail, short, delay) = {
            let mut f = self.faults.lock().unwrap_or_else(|p| p.into_inner());
            let Some((rng, faults)) = f.as_mut() else {
                return Ok(false);
            };
            let roll = |rng: &mut StdRng, p: f64| p > 0.0 && rng.gen_bool(p.min(1.0));
            let fail = roll(rng, faults.error);
            let short = roll(rng, faults.short_read);
            let delay = faults.max_latency.mul_f64(rng.gen::<f64>());
            (fail, short, delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            return Err(Error::Storage {
                op,
                key: key.to_string(),
                source: Box::new(opendal::Error::new(
                    opendal::ErrorKind::Unexpected,
                    "injected fault",
                )),
            });
        }
        Ok(short)
    }

    /// Runs one request of the store, carrying `len` bytes, under [`REQUEST_DEADLINE`],
    /// failing at once while the store counts as down.
    async fn bounded<T>(
        &self,
        len: u32,
        request: impl std::future::Future<Output = opendal::Result<T>>,
    ) -> opendal::Result<T> {
        let down = |until: &mut Option<std::time::Instant>| {
            until.filter(|t| *t > std::time::Instant::now())
        };
        if let Some(t) = down(&mut self.down_until.lock().unwrap_or_else(|p| p.into_inner())) {
            let left = t.saturating_duration_since(std::time::Instant::now());
            return Err(opendal::Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{} is down: a request failed after all its retries; trying again in {left:.1?}",
                    self.describe
                ),
            ));
        }
        let deadline = REQUEST_DEADLINE + DEADLINE_PER_MIB * len.div_ceil(1 << 20);
        let r = tokio::time::timeout(deadline, request)
            .await
            .unwrap_or_else(|_| {
                Err(opendal::Error::new(
                    ErrorKind::Unexpected,
                    format!("no success within {deadline:?} of retries"),
                ))
            });
        let mut until = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        match &r {
            // Unreachable, timed out, failing server: what retries could not mend.
            Err(e) if e.kind() == ErrorKind::Unexpected && !is_disk_full(e) => {
                *until = Some(std::time::Instant::now() + DOWN_FOR);
            }
            _ => *until = None,
        }
        r
    }

    /// Bytes free for unprivileged writers on the disk under an `fs` bucket; `None`
    /// for object stores, which have no such bound.
    pub fn free_space(&self) -> Option<u64> {
        let root = self.local_root.as_ref()?;
        let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: `c` is a valid path; `st` is written by statvfs before it is read.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail * st.f_frsize)
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The store's operator and the volume's key prefix, for measuring the store itself
    /// (`kiseki objbench`) with objects outside the volume's `chunks/`.
    pub fn raw(&self) -> (&Operator, &str) {
        (&self.op, &self.prefix)
    }

    pub fn block_key(&self, id: u64, index: u32, len: u32) -> String {
        format!(
            "{}/chunks/{}/{}/{}_{}_{}",
            self.prefix,
            id / 1_000_000,
            id / 1_000,
            id,
            index,
            len
        )
    }

    /// Lengths of the blocks of a slice of `size` bytes.
    pub fn block_len(&self, size: u32, index: u32) -> u32 {
        let start = u64::from(index) * u64::from(self.block_size);
        (u64::from(size).saturating_sub(start)).min(u64::from(self.block_size)) as u32
    }

    pub fn blocks_of(&self, size: u32) -> u32 {
        size.div_ceil(self.block_size)
    }

    /// Uploads block `index` of slice `id`; returns its sector checksums (of the raw
    /// bytes, before compression), which the slice's commit records.
    pub async fn put_block(&self, id: u64, index: u32, data: Buffer) -> Result<Vec<u32>> {
        let (start, len) = (Instant::now(), data.len() as u64);
        let r = self.put_block_counted(id, index, data).await;
        METRICS.object[OBJ_PUT].record(start, r.is_ok());
        if r.is_ok() {
            METRICS.object_bytes_out.add(len);
        }
        r
    }

    async fn put_block_counted(&self, id: u64, index: u32, data: Buffer) -> Result<Vec<u32>> {
        let len = data.len() as u32;
        let key = self.block_key(id, index, len);
        self.note(|| format!("begin put {key}"));
        let sums = super::checksum::block_sums(data.clone());
        self.inject("write", &key).await?;
        let body = if self.codec != Codec::None {
            let codec = self.codec;
            let raw = data.to_bytes();
            let packed = tokio::task::spawn_blocking(move || codec.encode(&raw))
                .await
                .map_err(|e| std::io::Error::other(format!("compressing {key}: {e}")))??;
            Buffer::from(packed)
        } else if self.retains_buffers {
            Buffer::from(data.to_vec())
        } else {
            data
        };
        if let Some(root) = &self.local_root {
            // Written here rather than through OpenDAL, which syncs every file: an `fs`
            // block is synced only when a durable commit needs it (`sync_blocks`).
            // Blocks of 1 MiB or more start their writeback at once, so that sync
            // finds little left to write; small ones (small files, most of them never
            // fsynced) are left to the kernel.
            let kick = len >= KICK_WRITEBACK.min(self.block_size);
            return match super::local::write_file(root.join(&key), body, kick).await {
                Ok(()) => {
                    self.note(|| format!("put {key}"));
                    Ok(sums)
                }
                Err(e) => Err(local_error("write", key, e)),
            };
        }
        match self.bounded(len, self.op.write(&key, body)).await {
            Ok(_) => {
                self.note(|| format!("put {key}"));
                Ok(sums)
            }
            Err(source) => Err(storage_error("write", key, source)),
        }
    }

    /// Whether block writes need [`ObjectStore::sync_blocks`] before a commit that must
    /// survive power loss: `fs` storage, whose writes sit in the page cache. Objects in
    /// S3 are durable once written.
    pub fn needs_sync(&self) -> bool {
        self.is_local()
    }

    /// Whether blocks live on a local disk (`fs` storage).
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// The bucket directory of an `fs` store.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// Makes blocks (slice id, index, length) durable: syncs each block file and the
    /// directories that name it. Blocks deleted since are skipped. A no-op for stores
    /// whose writes are durable when they return.
    pub async fn sync_blocks(&self, blocks: Vec<(u64, u32, u32)>) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        if blocks.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = blocks
            .iter()
            .map(|&(id, index, len)| self.block_key(id, index, len))
            .collect();
        // Block directories are created on demand, so a new one's entry in its parent
        // (and that one's in the `chunks` directory) must be synced as well.
        let dirs = super::local::sync_files(root, keys.clone(), 3)
            .await
            .map_err(|(key, e)| local_error("sync", key, e))?;
        for key in keys {
            self.note(|| format!("sync {key}"));
        }
        for d in dirs {
            self.note(|| format!("syncdir {}", d.display()));
        }
        Ok(())
    }

    /// Records block writes and syncs in `journal` from now on (tests).
    pub fn set_journal(&self, journal: Option<Journal>) {
        *self.journal.lock().unwrap_or_else(|p| p.into_inner()) = journal;
    }

    pub(crate) fn note(&self, event: impl FnOnce() -> String) {
        let journal = self
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(j) = journal {
            j.lock().unwrap_or_else(|p| p.into_inner()).push(event());
        }
    }

    /// Reads `range` of block `index` (of length `len`) of slice `id`, checked against
    /// the block's sector checksums `sums` when the slice has them (a ranged read then
    /// fetches the whole sectors it touches).
    pub async fn get_block(
        &self,
        id: u64,
        index: u32,
        len: u32,
        range: std::ops::Range<u32>,
        sums: Option<&[u32]>,
    ) -> Result<Bytes> {
        let start = Instant::now();
        let r = self.get_block_counted(id, index, len, range, sums).await;
        METRICS.object[OBJ_GET].record(start, r.is_ok());
        if let Ok(b) = &r {
            METRICS.object_bytes_in.add(b.len() as u64);
        }
        r
    }

    async fn get_block_counted(
        &self,
        id: u64,
        index: u32,
        len: u32,
        range: std::ops::Range<u32>,
        sums: Option<&[u32]>,
    ) -> Result<Bytes> {
        let key = self.block_key(id, index, len);
        let fetch = |range: Option<std::ops::Range<u64>>| {
            let store = self;
            let op = self.op.clone();
            let key = key.clone();
            let local = self.local_root.as_ref().map(|root| root.join(&key));
            async move {
                if let Some(path) = local {
                    return read_local(path, range).await.map_err(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Error::MissingBlock {
                                slice: id,
                                key: key.clone(),
                            }
                        } else {
                            Error::Io(e)
                        }
                    });
                }
                let r = match range {
                    Some(r) => {
                        store
                            .bounded(len, async { op.read_with(&key).range(r).await })
                            .await
                    }
                    None => store.bounded(len, op.read(&key)).await,
                };
                r.map(|b| b.to_bytes()).map_err(|source| {
                    if source.kind() == ErrorKind::NotFound {
                        Error::MissingBlock {
                            slice: id,
                            key: key.clone(),
                        }
                    } else {
                        storage_error("read", key.clone(), source)
                    }
                })
            }
        };
        let corrupt = |why: String| {
            tracing::error!("block object {key} of slice {id} is corrupt: {why}");
            Error::CorruptBlock {
                slice: id,
                key: key.clone(),
                why,
            }
        };
        let short = self.inject("read", &key).await?;
        let cut = |b: Bytes| if short { b.slice(..b.len() / 2) } else { b };
        if self.codec != Codec::None {
            let (codec, raw) = (self.codec, cut(fetch(None).await?));
            let block = tokio::task::spawn_blocking(move || codec.decode(&raw, len))
                .await
                .map_err(|e| std::io::Error::other(format!("decompressing {key}: {e}")))?
                .map_err(corrupt)?;
            if let Some(sums) = sums {
                super::checksum::verify(&block, 0, sums).map_err(corrupt)?;
            }
            return Ok(Bytes::from(block).slice(range.start as usize..range.end as usize));
        }
        let fetched = match sums {
            Some(_) => super::checksum::aligned(range.clone(), len),
            None => range.clone(),
        };
        let want = u64::from(fetched.end - fetched.start);
        let whole = fetched.start == 0 && fetched.end == len;
        let data =
            cut(fetch((!whole).then(|| u64::from(fetched.start)..u64::from(fetched.end))).await?);
        if data.len() as u64 != want {
            return Err(corrupt(format!(
                "read {} bytes at {}, expected {want}",
                data.len(),
                fetched.start
            )));
        }
        if let Some(sums) = sums {
            super::checksum::verify(&data, fetched.start, sums).map_err(corrupt)?;
        }
        Ok(
            data.slice(
                (range.start - fetched.start) as usize..(range.end - fetched.start) as usize,
            ),
        )
    }

    pub async fn delete_block(&self, id: u64, index: u32, len: u32) -> Result<()> {
        let start = Instant::now();
        let key = self.block_key(id, index, len);
        let r = async {
            self.inject("delete", &key).await?;
            self.bounded(0, self.op.delete(&key))
                .await
                .map_err(|source| storage_error("delete", key.clone(), source))
        }
        .await;
        METRICS.object[OBJ_DELETE].record(start, r.is_ok());
        r
    }

    /// Uploads local file `path` as object `{volume}/{rel}`, a few MiB at a time (a
    /// metadata backup; not a block, so no checksum or compression).
    pub async fn put_file(&self, rel: &str, path: &std::path::Path) -> Result<()> {
        use tokio::io::AsyncReadExt;
        const PIECE: usize = 8 << 20;
        let key = format!("{}/{rel}", self.prefix);
        let fail = |source: opendal::Error| storage_error("write", key.clone(), source);
        let mut file = tokio::fs::File::open(path).await?;
        let mut w = self.op.writer_with(&key).chunk(PIECE).await.map_err(fail)?;
        loop {
            let mut buf = Vec::with_capacity(PIECE);
            (&mut file).take(PIECE as u64).read_to_end(&mut buf).await?;
            if buf.is_empty() {
                break;
            }
            if let Err(e) = w.write(buf).await {
                let _ = w.abort().await;
                return Err(fail(e));
            }
        }
        w.close().await.map_err(fail)?;
        Ok(())
    }

    /// Names of the objects directly under `{volume}/{dir}/`, sorted.
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        let root = format!("{}/{dir}/", self.prefix);
        let entries = match self.op.list(&root).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage_error("list", root, e)),
        };
        let mut names: Vec<String> = entries
            .iter()
            .filter(|e| e.metadata().is_file())
            .filter_map(|e| e.path().rsplit('/').next().map(str::to_string))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes object `{volume}/{rel}`.
    pub async fn delete_object(&self, rel: &str) -> Result<()> {
        let key = format!("{}/{rel}", self.prefix);
        self.op
            .delete(&key)
            .await
            .map_err(|e| storage_error("delete", key, e))
    }

    /// Every block object under the volume prefix: (slice id, index, length).
    pub async fn list_blocks(&self) -> Result<Vec<(u64, u32, u32)>> {
        let root = format!("{}/chunks/", self.prefix);
        let start = Instant::now();
        let listed = self.op.list_with(&root).recursive(true).await;
        METRICS.object[OBJ_LIST].record(start, listed.is_ok());
        let entries = listed.map_err(|source| Error::Storage {
            op: "list",
            key: root.clone(),
            source: Box::new(source),
        })?;
        Ok(entries
            .iter()
            .filter_map(|e| super::local::parse_block_name(e.path().rsplit('/').next()?))
            .collect())
    }
}

/// A request that failed after its retries: EIO, or ENOSPC when the store's disk is full
/// (an `fs` bucket).
pub(crate) fn storage_error(op: &'static str, key: String, source: opendal::Error) -> Error {
    if is_disk_full(&source) {
        return Error::NoSpace(format!("object storage {op} {key}: {source}"));
    }
    Error::Storage {
        op,
        key,
        source: Box::new(source),
    }
}

/// Whether an OpenDAL error comes from a full disk (ENOSPC, EDQUOT).
fn is_disk_full(e: &opendal::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                || io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
        }
        cur = err.source();
    }
    // OpenDAL wraps its source so that the I/O error is not in the chain; its report
    // keeps the message.
    let report = format!("{e:?}");
    [
        "No space left on device",
        "no storage space",
        "Disk quota exceeded",
    ]
    .iter()
    .any(|m| report.contains(m))
}

/// An error of a block file of an `fs` store: ENOSPC when its disk is full, else EIO
/// naming the block.
fn local_error(op: &'static str, key: String, e: std::io::Error) -> Error {
    if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
        return Error::NoSpace(format!("object storage {op} {key}: {e}"));
    }
    Error::Storage {
        op,
        key,
        source: Box::new(opendal::Error::new(ErrorKind::Unexpected, e.to_string()).set_source(e)),
    }
}

/// Reads `range` (or all) of a local block file in one blocking task. A short file
/// reads short; the caller reports that as corruption.
async fn read_local(
    path: std::path::PathBuf,
    range: Option<std::ops::Range<u64>>,
) -> std::io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&path)?;
        match range {
            Some(r) => {
                let mut buf = vec![0u8; (r.end - r.start) as usize];
                let mut done = 0;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], r.start + done as u64)? {
                        0 => break,
                        n => done += n,
                    }
                }
                buf.truncate(done);
                Ok(Bytes::from(buf))
            }
            None => {
                let mut buf = Vec::with_capacity(f.metadata()?.len() as usize);
                (&f).read_to_end(&mut buf)?;
                Ok(Bytes::from(buf))
            }
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_bucket_urls() {
        assert_eq!(
            parse_s3_bucket("http://127.0.0.1:8333/vol/pre/fix/").unwrap(),
            (
                "http://127.0.0.1:8333".into(),
                "vol".into(),
                "pre/fix".into()
            )
        );
        assert_eq!(parse_s3_bucket("https://s3.example.com/b").unwrap().1, "b");
        for bad in [
            "s3.example.com/b",
            "ftp://h/b",
            "http://h",
            "http://h/",
            "http:///b",
        ] {
            assert!(parse_s3_bucket(bad).is_err(), "{bad}");
        }
    }
}
