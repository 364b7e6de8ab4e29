//! Whole-volume operations for operators, the same from the CLI, C and Python: status,
//! fsck (metadata and block objects) and gc. They open the volume by its meta URL;
//! status and fsck read a RocksDB volume that a mount holds through RocksDB's
//! lock-free read-only mode (a snapshot as of the call).

use std::sync::Arc;

use crate::data::DataConfig;
use crate::error::{Error, Result};
use crate::meta::{Meta, MetaConfig, SessionInfo, VolumeFormat};
use crate::runtime::block_on;
use crate::vfs::Fs;

/// What `kiseki fsck` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FsckReport {
    /// Inodes (root and open-unlinked ones included), the bytes they are charged for,
    /// open-unlinked inodes, and files whose data waits for deletion.
    pub inodes: u64,
    pub used_space: u64,
    pub sustained: u64,
    pub pending_deletions: u64,
    /// Block objects in storage, and of them (or of the references) how many are
    /// missing, corrupt (their bytes fail the recorded checksums) and leaked (all 0 when
    /// objects were not checked).
    pub blocks: u64,
    pub missing_blocks: u64,
    pub corrupt_blocks: u64,
    pub leaked_blocks: u64,
    /// Blocks of staged slices a write-back client has not uploaded yet (not a
    /// problem: they are in that client's staging directory).
    pub staged_blocks: u64,
    /// Every violated invariant in words: metadata first, then missing blocks (data
    /// loss) and leaked ones (unreferenced, nothing queued to delete them).
    pub problems: Vec<String>,
    /// The volume was in use (a mount holds it): a snapshot was checked, so blocks
    /// written or deleted meanwhile may show as leaked or missing.
    pub in_use: bool,
    /// Files that reference missing or corrupt blocks, with their paths.
    pub damaged_files: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `kiseki gc` found, and with `delete` removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    pub blocks: u64,
    /// Block objects nothing references and nothing is queued to delete.
    pub leaked: Vec<String>,
    /// Slices queued for deletion (their grace period may still run).
    pub queued_slices: usize,
    /// With `delete`: slices whose blocks were deleted, and leaked blocks deleted.
    pub deleted_slices: usize,
    pub deleted_blocks: usize,
}

/// The settings, engine, sessions and usage of a volume (`kiseki status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The volume's settings, the S3 secret key removed.
    pub setting: VolumeFormat,
    pub engine: &'static str,
    pub sessions: Vec<SessionInfo>,
    pub used_space: u64,
    pub used_inodes: u64,
    pub reserved_space: u64,
    /// Bytes of file data stored inline in the metadata engine (part of `used_space`).
    pub inline_space: u64,
    /// Blocks write-back clients staged and have not uploaded yet, and their bytes
    /// (a slice counts whole until its last block is uploaded).
    pub staged_blocks: u64,
    pub staged_bytes: u64,
    /// The part of the usage the trash holds: bytes and inodes.
    pub trash_space: u64,
    pub trash_inodes: u64,
}

/// A read-only view of the volume at `url`, and whether another process holds it.
pub fn open_read_only(url: &str, client: &str) -> Result<(Arc<Meta>, bool)> {
    let (kv, held) = crate::meta::kv::open_engine_read_only(url)?;
    let config = MetaConfig {
        read_only: true,
        client: client.into(),
        ..Default::default()
    };
    Ok((Meta::with_engine(kv, config)?, held))
}

/// A client for whole-volume scans: almost no buffer or cache.
fn scanner(meta: Arc<Meta>) -> Result<Arc<Fs>> {
    let small = DataConfig {
        buffer_memory: 1 << 20,
        cache_memory: 1 << 20,
        ..Default::default()
    };
    Fs::new(meta, &small)
}

pub fn status(url: &str) -> Result<Status> {
    let (meta, _) = open_read_only(url, "kiseki status")?;
    let mut setting = meta.volume().clone();
    if setting.secret_key.is_some() {
        setting.secret_key = Some("removed".into());
    }
    let st = meta.statfs()?;
    let block = u64::from(meta.volume().block_size.max(1));
    let staged = meta.staged_slices()?;
    let staged_bytes = staged.iter().map(|(_, s)| u64::from(s.size)).sum();
    let staged_blocks = staged
        .iter()
        .map(|(_, s)| u64::from(s.size).div_ceil(block))
        .sum();
    let (trash_space, trash_inodes) = meta.trash_usage()?;
    Ok(Status {
        setting,
        engine: meta.engine().name(),
        sessions: meta.sessions()?,
        used_space: st.total_space - st.avail_space,
        used_inodes: st.used_inodes,
        reserved_space: st.reserved_space,
        inline_space: st.inline_space,
        staged_blocks,
        staged_bytes,
        trash_space,
        trash_inodes,
    })
}

/// Where a regular file's bytes are (`kiseki info`).
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub attr: crate::meta::Attr,
    /// Per chunk holding data: its index and the records that show in it (what later
    /// records overwrote is left out), as (file offset, length, slice id, slice size,
    /// offset in the slice, object keys under that range; none for inline data).
    pub chunks: Vec<(u32, Vec<PieceInfo>)>,
}

#[derive(Debug, Clone)]
pub struct PieceInfo {
    pub file_offset: u64,
    pub len: u64,
    pub slice: u64,
    pub slice_size: u32,
    pub slice_offset: u64,
    pub inline: bool,
    pub keys: Vec<String>,
}

/// Where the bytes of file `ino` of the volume at `url` are: its visible pieces, chunk
/// by chunk, and the objects that hold them. Works while the volume is mounted.
pub fn file_info(url: &str, ino: crate::meta::Ino) -> Result<FileInfo> {
    use crate::meta::records::{has_blocks, is_inline};
    let (meta, _) = open_read_only(url, "kiseki info")?;
    let store = crate::data::store::ObjectStore::open(meta.volume())?;
    let attr = meta.getattr(ino)?;
    let mut chunks = Vec::new();
    if attr.kind == crate::meta::FileKind::File {
        let bs = u64::from(store.block_size());
        let n = attr.length.div_ceil(crate::meta::CHUNK_SIZE) as u32;
        for index in 0..n {
            let view = meta.chunk_for_read(ino, index)?;
            let mut pieces = Vec::new();
            for p in view.pieces(0, crate::meta::CHUNK_SIZE) {
                if !has_blocks(p.id) {
                    continue;
                }
                let inline = is_inline(p.id);
                let keys = if inline || p.len == 0 {
                    Vec::new()
                } else {
                    (p.slice_off / bs..=(p.slice_off + p.len - 1) / bs)
                        .map(|b| {
                            let b = b as u32;
                            store.block_key(p.id, b, store.block_len(p.size, b))
                        })
                        .collect()
                };
                pieces.push(PieceInfo {
                    file_offset: u64::from(index) * crate::meta::CHUNK_SIZE + p.chunk_pos,
                    len: p.len,
                    slice: p.id,
                    slice_size: p.size,
                    slice_offset: p.slice_off,
                    inline,
                    keys,
                });
            }
            if !pieces.is_empty() {
                chunks.push((index, pieces));
            }
        }
    }
    Ok(FileInfo { attr, chunks })
}

/// Changes the settings of the volume at `url` that may change after format (see
/// [`crate::meta::format::reconfigure`]); needs the metadata engine writable (a RocksDB
/// volume unmounted).
pub fn config(url: &str, changes: &crate::meta::format::Changes) -> Result<VolumeFormat> {
    let kv = crate::meta::kv::open_engine(url, false)?;
    crate::meta::format::reconfigure(&*kv, changes)
}

/// Removes the volume at `url` for good (`kiseki destroy`): every object under the
/// volume's prefix, then every metadata key. `confirm` must be the volume's name or
/// uuid. Refused while another client has a live session (a RocksDB volume cannot even
/// be opened while mounted). Returns (objects, metadata keys) removed.
pub fn destroy(url: &str, confirm: &str) -> Result<(u64, u64)> {
    let kv = crate::meta::kv::open_engine(url, false)?;
    let fmt = crate::meta::format::load(&*kv)?;
    if confirm != fmt.name && confirm != fmt.uuid {
        return Err(Error::Invalid(format!(
            "{confirm:?} is not this volume's name or uuid ({} / {}): nothing removed",
            fmt.name, fmt.uuid
        )));
    }
    let meta = Meta::with_engine(
        kv.clone(),
        MetaConfig {
            read_only: true,
            client: "kiseki destroy".into(),
            ..Default::default()
        },
    )?;
    let live = || -> Result<Vec<String>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(meta
            .sessions()?
            .into_iter()
            .filter(|s| !kv.exclusive() && s.expires > now)
            .map(|s| format!("{} on {} (pid {})", s.client, s.host, s.pid))
            .collect())
    };
    let busy = |live: Vec<String>| {
        Error::Busy(format!(
            "volume {} is in use by {}: unmount or disconnect first",
            fmt.name,
            live.join(", ")
        ))
    };
    let first = live()?;
    if !first.is_empty() {
        return Err(busy(first));
    }
    // Mark, then look again: a client that registered before the mark is seen now, and
    // none can register after it (see `format::mark_destroying`).
    crate::meta::format::mark_destroying(&*kv, true)?;
    let again = live()?;
    if !again.is_empty() {
        crate::meta::format::mark_destroying(&*kv, false)?;
        return Err(busy(again));
    }
    drop(meta);
    let store = crate::data::store::ObjectStore::open(&fmt)?;
    let (op, prefix) = store.raw();
    let objects = block_on(async {
        let root = format!("{prefix}/");
        let listed = op
            .list_with(&root)
            .recursive(true)
            .await
            .map_err(|source| crate::data::store::storage_error("list", root.clone(), source))?;
        let mut n = 0u64;
        for e in listed.iter().filter(|e| !e.path().ends_with('/')) {
            op.delete(e.path()).await.map_err(|source| {
                crate::data::store::storage_error("delete", e.path().to_string(), source)
            })?;
            n += 1;
        }
        // Directories left by an `fs` bucket (objects are gone already).
        let _ = op.delete_with(&root).recursive(true).await;
        Ok::<_, Error>(n)
    })?;
    let keys = crate::meta::format::erase(&*kv)?;
    Ok((objects, keys))
}

/// One kind of request measured by [`objbench`]: how many, how long in all, bytes moved.
#[derive(Debug, Clone)]
pub struct ObjBench {
    pub op: &'static str,
    pub count: u64,
    pub secs: f64,
    pub bytes: u64,
}

/// Measures the object store of the volume at `url` (`kiseki objbench`): `count`
/// objects of `size` bytes put, got whole, got by 4 KiB ranges, listed and deleted,
/// `threads` requests at a time, under `{volume}/objbench/` (removed at the end).
pub fn objbench(url: &str, size: usize, count: usize, threads: usize) -> Result<Vec<ObjBench>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    if size == 0 || count == 0 || threads == 0 {
        return Err(Error::Invalid(
            "objbench: size, count and threads must be positive".into(),
        ));
    }
    let (meta, _) = open_read_only(url, "kiseki objbench")?;
    let store = crate::data::store::ObjectStore::open(meta.volume())?;
    let (op, prefix) = store.raw();
    let dir = format!("{prefix}/objbench/{}/", std::process::id());
    let key = |i: usize| format!("{dir}{i}");
    let body = bytes::Bytes::from(vec![0x5au8; size]);
    let storage = |what: &'static str, k: String| {
        move |source: opendal::Error| crate::data::store::storage_error(what, k, source)
    };
    block_on(async {
        let mut out = Vec::new();
        let timed = |op: &'static str, n: usize, bytes: u64, secs: f64| ObjBench {
            op,
            count: n as u64,
            secs,
            bytes,
        };
        let t = std::time::Instant::now();
        stream::iter(0..count)
            .map(|i| {
                let body = body.clone();
                async move {
                    op.write(&key(i), body)
                        .await
                        .map(|_| ())
                        .map_err(storage("put", key(i)))
                }
            })
            .buffer_unordered(threads)
            .try_collect::<Vec<()>>()
            .await?;
        out.push(timed(
            "put",
            count,
            (size * count) as u64,
            t.elapsed().as_secs_f64(),
        ));
        let t = std::time::Instant::now();
        let got: Vec<usize> = stream::iter(0..count)
            .map(|i| async move {
                op.read(&key(i))
                    .await
                    .map(|b| b.len())
                    .map_err(storage("get", key(i)))
            })
            .buffer_unordered(threads)
            .try_collect()
            .await?;
        if got.iter().any(|&n| n != size) {
            return Err(Error::Invalid("objbench: an object read back short".into()));
        }
        out.push(timed(
            "get",
            count,
            (size * count) as u64,
            t.elapsed().as_secs_f64(),
        ));
        let range = 4096.min(size) as u64;
        let t = std::time::Instant::now();
        stream::iter(0..count)
            .map(|i| async move {
                let at = (i as u64 * 7919 * 4096) % (size as u64 - range + 1);
                op.read_with(&key(i))
                    .range(at..at + range)
                    .await
                    .map(|_| ())
                    .map_err(storage("get range", key(i)))
            })
            .buffer_unordered(threads)
            .try_collect::<Vec<()>>()
            .await?;
        out.push(timed(
            "get 4 KiB range",
            count,
            range * count as u64,
            t.elapsed().as_secs_f64(),
        ));
        let t = std::time::Instant::now();
        let listed = op.list(&dir).await.map_err(storage("list", dir.clone()))?;
        out.push(timed("list", 1, 0, t.elapsed().as_secs_f64()));
        if listed.iter().filter(|e| !e.path().ends_with('/')).count() != count {
            return Err(Error::Invalid(format!(
                "objbench: listed {} objects of {count}",
                listed.len()
            )));
        }
        let t = std::time::Instant::now();
        stream::iter(0..count)
            .map(|i| async move { op.delete(&key(i)).await.map_err(storage("delete", key(i))) })
            .buffer_unordered(threads)
            .try_collect::<Vec<()>>()
            .await?;
        out.push(timed("delete", count, 0, t.elapsed().as_secs_f64()));
        let _ = op.delete(&dir).await;
        // Gone too when empty (another objbench may still be using it).
        let _ = op.delete(&format!("{prefix}/objbench/")).await;
        Ok(out)
    })
}

/// How much of object storage `fsck` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectCheck {
    /// Metadata only.
    Skip,
    /// List the objects: every referenced block exists and none is leaked.
    List,
    /// Also read every referenced block and check it against its recorded checksums
    /// (reads the whole volume).
    Read,
}

/// Checks the metadata's invariants and counters and, as `objects` says, the block
/// objects. Works while the volume is mounted.
pub fn fsck(url: &str, objects: ObjectCheck) -> Result<FsckReport> {
    let (meta, in_use) = open_read_only(url, "kiseki fsck")?;
    let r = meta.check()?;
    let mut report = FsckReport {
        inodes: r.inodes,
        used_space: r.used_space,
        sustained: r.sustained,
        pending_deletions: r.pending_deletions,
        problems: r.problems,
        in_use,
        ..Default::default()
    };
    if objects != ObjectCheck::Skip {
        let fs = scanner(meta.clone())?;
        let found = block_on(fs.data().check_objects(objects == ObjectCheck::Read));
        let damaged = match &found {
            Ok(f) => damaged_files(
                &meta,
                &f.missing.iter().chain(&f.corrupt).collect::<Vec<_>>(),
            ),
            Err(_) => Ok(Vec::new()),
        };
        block_on(fs.shutdown())?;
        let found = found?;
        report.damaged_files = damaged?;
        report.blocks = found.blocks;
        report.missing_blocks = found.missing.len() as u64;
        report.corrupt_blocks = found.corrupt.len() as u64;
        report.leaked_blocks = found.leaked.len() as u64;
        report.staged_blocks = found.staged.len() as u64;
        let missing = found.missing.iter().map(|k| format!("missing block {k}"));
        let corrupt = found.corrupt.iter().map(|k| format!("corrupt block {k}"));
        let leaked = found.leaked.iter().map(|k| format!("leaked block {k}"));
        report.problems.extend(missing.chain(corrupt).chain(leaked));
        report
            .problems
            .extend(report.damaged_files.iter().map(|f| format!("damaged {f}")));
    }
    Ok(report)
}

/// The files that reference the blocks `keys` name: "file PATH (inode N): its reads of
/// slice S fail with EIO", one line each.
fn damaged_files(meta: &Meta, keys: &[&String]) -> Result<Vec<String>> {
    let ids: std::collections::HashSet<u64> = keys
        .iter()
        .filter_map(|k| crate::data::parse_block_name(k.rsplit('/').next()?))
        .map(|(id, _, _)| id)
        .collect();
    let mut out = Vec::new();
    for (slice, ino) in meta.inodes_of_slices(&ids)? {
        let path = meta
            .path_of(ino)?
            .unwrap_or_else(|| "(no path: open-unlinked or in the trash)".into());
        out.push(format!(
            "file {path} (inode {ino}): reads of slice {slice} fail with EIO"
        ));
    }
    out.sort();
    Ok(out)
}

/// What [`fsck_repair`] did: the changes, then the check that followed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepairReport {
    pub fixed: Vec<String>,
    pub after: FsckReport,
}

/// Mends the volume's metadata (see [`crate::meta::repair`]) and checks it again,
/// with `objects` (listing or reading them): what is left is what cannot be mended (lost data, reported with
/// the files it belongs to). Needs the volume to itself (a RocksDB volume unmounted; no
/// other live session on a shared engine).
pub fn fsck_repair(url: &str, objects: ObjectCheck) -> Result<RepairReport> {
    let meta = Meta::open(
        url,
        MetaConfig {
            client: "kiseki fsck --repair".into(),
            ..Default::default()
        },
    )?;
    let fixed = meta.repair();
    let closed = meta.shutdown();
    let fixed = fixed?;
    closed?;
    drop(meta);
    Ok(RepairReport {
        fixed,
        after: fsck(url, objects)?,
    })
}

/// Reports what storage holds that nothing needs (blocks no slice references, slices
/// queued for deletion) and with `delete` removes it. Deleting needs the volume to
/// itself: another live client could be uploading blocks that look leaked until it
/// commits them (EBUSY).
pub fn gc(url: &str, delete: bool) -> Result<GcReport> {
    let meta = Meta::open(
        url,
        MetaConfig {
            read_only: !delete,
            client: "kiseki gc".into(),
            ..Default::default()
        },
    )?;
    let fs = scanner(meta)?;
    let r = gc_with(&fs, delete);
    let closed = block_on(fs.shutdown());
    let r = r?;
    closed?;
    Ok(r)
}

fn gc_with(fs: &Arc<Fs>, delete: bool) -> Result<GcReport> {
    let queued_slices = fs.meta().pending_slice_deletions(usize::MAX)?.len();
    let found = block_on(fs.data().check_objects(false))?;
    let mut report = GcReport {
        blocks: found.blocks,
        leaked: found.leaked.clone(),
        queued_slices,
        ..Default::default()
    };
    if !delete {
        return Ok(report);
    }
    let me = fs.meta().sid();
    let others = fs.meta().sessions()?.iter().filter(|s| s.sid != me).count();
    if others > 0 {
        return Err(Error::Busy(format!(
            "{others} other client sessions are active; unmount them before gc --delete"
        )));
    }
    report.deleted_slices = block_on(fs.data().run_deletions())?;
    report.deleted_blocks = block_on(fs.data().delete_leaked(&found))?;
    Ok(report)
}

/// Whether `path` names a gzip file (by its extension, as `kiseki dump` decides).
fn gzipped(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// `kiseki dump`: the metadata of the volume at `url` as JSON lines (see
/// [`crate::meta::dump`]) into `path` (`-`: standard output), gzip-compressed when the
/// name ends in `.gz`. The file appears under its name only once complete and synced.
/// Works while the volume is mounted (the second value says so: a RocksDB store is then
/// read as it was when opened). `progress` hears the records written.
pub fn dump(
    url: &str,
    path: &std::path::Path,
    keep_secret: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<(crate::meta::dump::DumpStats, bool)> {
    use std::io::Write;
    let (kv, held) = crate::meta::kv::open_engine_read_only(url)?;
    if path == std::path::Path::new("-") {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let stats = crate::meta::dump::dump(&*kv, &mut out, keep_secret, progress)?;
        out.flush()?;
        return Ok((stats, held));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let file = std::io::BufWriter::new(tmp.as_file().try_clone()?);
    let stats = if gzipped(path) {
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let stats = crate::meta::dump::dump(&*kv, &mut gz, keep_secret, progress)?;
        gz.finish()?.flush()?;
        stats
    } else {
        let mut file = file;
        let stats = crate::meta::dump::dump(&*kv, &mut file, keep_secret, progress)?;
        file.flush()?;
        stats
    };
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok((stats, held))
}

/// `kiseki load`: fills the empty metadata store at `url` (created if missing) from a
/// Kiseki or JuiceFS dump file (`-`: standard input), plain, gzip or zstd (told by its
/// first bytes). The volume's objects are where the dump's format says; nothing is
/// copied.
pub fn load(
    url: &str,
    path: &std::path::Path,
    progress: &mut dyn FnMut(u64),
) -> Result<crate::meta::dump::Loaded> {
    use std::io::{BufRead, BufReader};
    let kv = crate::meta::kv::open_engine(url, true)?;
    let raw: Box<dyn std::io::Read> = if path == std::path::Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    let mut raw = BufReader::new(raw);
    let magic = raw
        .fill_buf()?
        .get(..4)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let mut input: Box<dyn BufRead> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(raw)))
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(BufReader::new(zstd::stream::read::Decoder::with_buffer(
            raw,
        )?))
    } else {
        Box::new(raw)
    };
    crate::meta::dump::load(&*kv, &mut input, progress)
}
