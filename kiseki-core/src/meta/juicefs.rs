//! Loading a `juicefs dump` (JuiceFS 1.x JSON, see `docs/reference/juicefs-dump.md`)
//! into an empty store: JuiceFS's object layout (`{name}/chunks/{id/1e6}/{id/1e3}/
//! {id}_{index}_{size}`) and slice model are Kiseki's, so the volume's files read from
//! its bucket as they are, without copying a byte.
//!
//! The dump is one nested JSON object, streamed here token by token: the tree is written
//! depth first, each directory's entries inside it, so memory is bounded by the tree's
//! depth, which is at most [`MAX_DEPTH`] (the parser's recursion limit stays on, so no
//! input can exhaust the stack). A hard link is an inode already stored when its next
//! name comes. As JuiceFS's own loader does, link
//! counts, lengths, usage and the id counters are recomputed rather than trusted, and a
//! hard-linked inode (written once per name) is stored at its first name.
//!
//! Supported: storage `file`, `s3` and `minio`; compression `none` and `zstd` (a
//! standard zstd frame per block, as Kiseki writes); any block size Kiseki takes.
//! Refused with the reason: encryption, lz4 (JuiceFS stores raw lz4 blocks with no size
//! prefix), `HashPrefix` and `Shards` key layouts, POSIX ACLs. Not loaded: JuiceFS's
//! trash (its entries become unreferenced objects, which `kiseki gc` lists), files that
//! were open but unlinked, and pending deletions. Immutable/append-only flags are
//! dropped. JuiceFS blocks carry no Kiseki checksums: their slices are read unchecked
//! (`VolumeFormat::unchecked_below`); what is written afterwards is checked.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::counters;
use super::dump::{unescape, Batch, DumpStats};
use super::keys;
use super::kv::{prefix_end, KvEngine, TxnMode};
use super::records::{self, Dentry, SliceRecord, VolumeFormat};
use super::types::{Attr, FileKind, Ino, Timespec};
use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Setting {
    name: String,
    #[serde(rename = "UUID")]
    uuid: String,
    storage: String,
    bucket: String,
    #[serde(default)]
    access_key: String,
    #[serde(default)]
    secret_key: String,
    block_size: u64,
    #[serde(default)]
    compression: String,
    #[serde(default)]
    shards: u32,
    #[serde(default)]
    hash_prefix: bool,
    #[serde(default)]
    capacity: u64,
    #[serde(default)]
    inodes: u64,
    #[serde(default)]
    encrypt_key: String,
    #[serde(default)]
    key_encrypted: bool,
    #[serde(default)]
    trash_days: u32,
    #[serde(default, rename = "EnableACL")]
    enable_acl: bool,
}

/// The id counters JuiceFS had handed out (next free, whatever the engine): ids up to
/// them may name objects of slices JuiceFS never committed, so Kiseki starts above.
#[derive(Deserialize, Default)]
struct JCounters {
    #[serde(default, rename = "nextInodes")]
    next_inode: u64,
    #[serde(default, rename = "nextChunk")]
    next_slice: u64,
}

#[derive(Deserialize)]
struct JAttr {
    inode: u64,
    #[serde(rename = "type")]
    kind: String,
    mode: u16,
    uid: u32,
    gid: u32,
    atime: i64,
    mtime: i64,
    ctime: i64,
    #[serde(default)]
    atimensec: u32,
    #[serde(default)]
    mtimensec: u32,
    #[serde(default)]
    ctimensec: u32,
    #[serde(default)]
    length: u64,
    #[serde(default)]
    rdev: u32,
}

#[derive(Deserialize)]
struct JXattr {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct JChunk {
    index: u32,
    slices: Vec<JSlice>,
}

#[derive(Deserialize)]
struct JSlice {
    #[serde(default)]
    id: u64,
    /// The name of `id` in JuiceFS 1.0 dumps.
    #[serde(default)]
    chunkid: u64,
    #[serde(default)]
    pos: u32,
    size: u32,
    #[serde(default)]
    off: u32,
    len: u32,
}

fn kind_of(t: &str) -> Option<FileKind> {
    Some(match t {
        "regular" => FileKind::File,
        "directory" => FileKind::Dir,
        "symlink" => FileKind::Symlink,
        "fifo" => FileKind::Fifo,
        "blockdev" => FileKind::BlockDev,
        "chardev" => FileKind::CharDev,
        "socket" => FileKind::Socket,
        _ => return None,
    })
}

/// The Kiseki format of a JuiceFS volume, or why it cannot be read as it is.
fn format_of(s: &Setting, unchecked_below: u64) -> Result<VolumeFormat> {
    let refuse = |why: String| {
        Err(Error::NotSupported(format!(
            "JuiceFS volume {:?}: {why}",
            s.name
        )))
    };
    if !s.encrypt_key.is_empty() {
        return refuse("its blocks are encrypted (EncryptKey); Kiseki cannot read them".into());
    }
    if s.hash_prefix {
        return refuse("it uses the HashPrefix object layout".into());
    }
    if s.shards > 1 {
        return refuse(format!("its objects are spread over {} shards", s.shards));
    }
    if s.enable_acl {
        return refuse("it has POSIX ACLs enabled, which Kiseki does not support".into());
    }
    let compression = match s.compression.to_ascii_lowercase().as_str() {
        "" | "none" => "none",
        "zstd" => "zstd",
        "lz4" => {
            return refuse(
                "lz4 blocks (JuiceFS stores raw lz4 blocks without the size Kiseki's carry); \
                 none and zstd are supported"
                    .into(),
            )
        }
        other => return refuse(format!("unknown compression {other:?}")),
    };
    let block_size = s.block_size.saturating_mul(1024);
    if !block_size.is_power_of_two() || !(64 << 10..=64 << 20).contains(&block_size) {
        return refuse(format!(
            "block size {} KiB (Kiseki takes powers of two from 64 KiB to 64 MiB)",
            s.block_size
        ));
    }
    let (storage, bucket) = match s.storage.to_ascii_lowercase().as_str() {
        "file" => ("fs", s.bucket.trim_end_matches('/').to_string()),
        "s3" | "minio" => ("s3", s.bucket.clone()),
        other => {
            return refuse(format!(
                "storage {other:?} (Kiseki reads file, s3 and minio)"
            ))
        }
    };
    let secret = (!s.secret_key.is_empty() && s.secret_key != "removed" && !s.key_encrypted)
        .then(|| s.secret_key.clone());
    Ok(VolumeFormat {
        name: s.name.clone(),
        uuid: s.uuid.clone(),
        storage: storage.into(),
        bucket,
        region: None,
        access_key: (!s.access_key.is_empty()).then(|| s.access_key.clone()),
        secret_key: secret,
        block_size: block_size as u32,
        compression: compression.into(),
        capacity: s.capacity,
        inodes: s.inodes,
        inline_size: 0,
        trash_days: s.trash_days.min(super::format::MAX_TRASH_DAYS),
        meta_version: if s.trash_days > 0 {
            records::META_VERSION
        } else {
            records::META_VERSION_NO_TRASH
        },
        created: Timespec::now().sec,
        unchecked_below,
        destroying: false,
    })
}

/// The state of a load: the writes, and what is recomputed on the way.
struct Loader<'a, 'p> {
    batch: Batch<'a>,
    format: Option<Setting>,
    counters: JCounters,
    max_ino: u64,
    max_slice: u64,
    used: i64,
    stats: DumpStats,
    progress: &'p mut dyn FnMut(u64),
    /// The first error of the store (kept whole; serde only carries text).
    failed: Option<Error>,
    trash: bool,
    /// Directories open around the entry being read.
    depth: usize,
}

/// Deepest directory nesting loaded: the JSON nests two levels per directory and a
/// file's chunks four more, within serde_json's recursion limit (128), which stays on
/// so that no dump, however nested, can exhaust the stack.
const MAX_DEPTH: usize = 58;

impl Loader<'_, '_> {
    fn fail<E: de::Error>(&mut self, e: Error) -> E {
        let text = e.to_string();
        self.failed.get_or_insert(e);
        E::custom(text)
    }
}

/// An inode being read: its attributes, complete once its object ends.
struct Node {
    ino: Ino,
    attr: Attr,
    /// A later name of a hard-linked inode: only the entry is stored.
    repeat: bool,
}

/// Reads one entry object (`FSTree`, or a value in `entries`) placed at `at` (parent,
/// name, readdir position; none for the root). Returns the entry's kind.
struct NodeSeed<'l, 'a, 'p> {
    l: &'l mut Loader<'a, 'p>,
    at: Option<(Ino, Vec<u8>, u64)>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, '_> {
    type Value = FileKind;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<FileKind, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_, '_> {
    type Value = FileKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JuiceFS dump entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<FileKind, A::Error> {
        let l = self.l;
        let mut node: Option<Node> = None;
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), node.as_mut()) {
                ("attr", None) => {
                    let a: JAttr = map.next_value()?;
                    node = Some(begin(l, a, self.at.as_ref()).map_err(|e| l.fail(e))?);
                }
                ("symlink", Some(n)) => {
                    let t: String = map.next_value()?;
                    let t = unescape(&t).map_err(de::Error::custom)?;
                    n.attr.length = t.len() as u64;
                    if !n.repeat {
                        l.batch
                            .put(&keys::symlink(n.ino), &t)
                            .map_err(|e| l.fail(e))?;
                    }
                }
                ("xattrs", Some(n)) => {
                    let xs: Vec<JXattr> = map.next_value()?;
                    if !n.repeat {
                        for x in xs {
                            let v = unescape(&x.value).map_err(de::Error::custom)?;
                            l.batch
                                .put(&keys::xattr(n.ino, x.name.as_bytes()), &v)
                                .map_err(|e| l.fail(e))?;
                        }
                    }
                }
                ("posix_acl_access" | "posix_acl_default", _) => {
                    if map.next_value::<Option<IgnoredAny>>()?.is_some() {
                        return Err(l.fail(Error::NotSupported(
                            "the JuiceFS dump has POSIX ACLs, which Kiseki does not support".into(),
                        )));
                    }
                }
                ("chunks", Some(n)) if !n.repeat && n.attr.kind == FileKind::File => {
                    map.next_value_seed(ChunksSeed {
                        l: &mut *l,
                        node: n,
                    })?;
                }
                ("entries", Some(n)) if n.attr.kind == FileKind::Dir => {
                    map.next_value_seed(EntriesSeed { l: &mut *l, dir: n })?;
                }
                (_, None) if key != "attr" => {
                    return Err(de::Error::custom(format!("{key:?} before \"attr\"")));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let n = node.ok_or_else(|| de::Error::custom("an entry without \"attr\""))?;
        let kind = n.attr.kind;
        if !n.repeat {
            finish(l, n).map_err(|e| l.fail(e))?;
        }
        Ok(kind)
    }
}

/// Starts inode `a` at `at`: its entry in the parent is stored now.
fn begin(l: &mut Loader<'_, '_>, a: JAttr, at: Option<&(Ino, Vec<u8>, u64)>) -> Result<Node> {
    let kind = kind_of(&a.kind).ok_or_else(|| {
        Error::Format(format!(
            "JuiceFS dump: inode {} of type {:?}",
            a.inode, a.kind
        ))
    })?;
    // A dump of a subdirectory has its top at its own inode: it becomes the root.
    let ino = if at.is_none() {
        Ino::ROOT
    } else {
        Ino(a.inode)
    };
    if ino.0 == 0 || ino.0 >= Ino::TRASH.0 {
        return Err(Error::Format(format!(
            "JuiceFS dump: inode number {}",
            ino.0
        )));
    }
    let parent = match at {
        Some((parent, name, seq)) => {
            let d = Dentry {
                kind,
                ino,
                seq: *seq,
            };
            l.batch
                .put(&keys::dentry(*parent, name), &records::encode_dentry(&d))?;
            l.batch.put(
                &keys::dir_index(*parent, *seq),
                &records::encode_dir_index(kind, ino, name),
            )?;
            l.stats.entries += 1;
            *parent
        }
        None => Ino::ROOT,
    };
    // An inode stored already is a hard link seen again (whatever `nlink` the dump
    // says: a dump of a live volume may disagree with itself): one more link.
    let key = keys::attr(ino);
    let tx = l.batch.tx()?;
    let repeat = match tx.get(&key)? {
        Some(_) if kind == FileKind::Dir => {
            return Err(Error::Format(format!(
                "JuiceFS dump: directory inode {} appears twice",
                ino.0
            )))
        }
        Some(v) => {
            let mut first = records::decode_attr(ino, &v)?;
            first.nlink += 1;
            tx.put(&key, &records::encode_attr(&first))?;
            true
        }
        None => false,
    };
    l.max_ino = l.max_ino.max(ino.0);
    let t = |sec, nsec: u32| Timespec {
        sec,
        nsec: nsec.min(999_999_999),
    };
    let attr = Attr {
        kind,
        mode: a.mode & 0o7777,
        uid: a.uid,
        gid: a.gid,
        rdev: if matches!(kind, FileKind::BlockDev | FileKind::CharDev) {
            a.rdev
        } else {
            0
        },
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        length: match kind {
            FileKind::File => a.length,
            FileKind::Dir => 4096,
            _ => 0,
        },
        parent,
        atime: t(a.atime, a.atimensec),
        mtime: t(a.mtime, a.mtimensec),
        ctime: t(a.ctime, a.ctimensec),
        next_entry_seq: 0,
        flags: 0,
        stored: 0,
    };
    Ok(Node { ino, attr, repeat })
}

/// Stores a complete inode and counts it.
fn finish(l: &mut Loader<'_, '_>, n: Node) -> Result<()> {
    l.batch
        .put(&keys::attr(n.ino), &records::encode_attr(&n.attr))?;
    l.used += n.attr.space() as i64;
    l.stats.inodes += 1;
    l.stats.records += 1;
    if l.stats.inodes % 1024 == 0 {
        (l.progress)(l.stats.inodes);
    }
    Ok(())
}

struct EntriesSeed<'l, 'a, 'p, 'n> {
    l: &'l mut Loader<'a, 'p>,
    dir: &'n mut Node,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a directory's entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        self.l.depth += 1;
        if self.l.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "directories nested deeper than {MAX_DEPTH} levels (not supported)"
            )));
        }
        while let Some(name) = map.next_key::<String>()? {
            let name = unescape(&name).map_err(de::Error::custom)?;
            super::ops::check_entry_name(self.dir.ino, &name).map_err(|e| self.l.fail(e))?;
            let seq = self.dir.attr.next_entry_seq;
            self.dir.attr.next_entry_seq += 1;
            let at = Some((self.dir.ino, name, seq));
            let kind = map.next_value_seed(NodeSeed {
                l: &mut *self.l,
                at,
            })?;
            if kind == FileKind::Dir {
                self.dir.attr.nlink += 1;
            }
        }
        self.l.depth -= 1;
        Ok(())
    }
}

struct ChunksSeed<'l, 'a, 'p, 'n> {
    l: &'l mut Loader<'a, 'p>,
    node: &'n mut Node,
}

impl<'de> DeserializeSeed<'de> for ChunksSeed<'_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ChunksSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a file's chunks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let (l, n) = (self.l, self.node);
        while let Some(c) = seq.next_element::<JChunk>()? {
            store_chunk(l, n, c).map_err(|e| l.fail(e))?;
        }
        Ok(())
    }
}

/// Stores a chunk's slice records, counting one reference per record with data (the
/// `K` values are made "extra references" once the whole tree is in).
fn store_chunk(l: &mut Loader<'_, '_>, n: &mut Node, c: JChunk) -> Result<()> {
    let recs: Vec<SliceRecord> = c
        .slices
        .iter()
        .map(|s| SliceRecord {
            pos: s.pos,
            id: if s.id == 0 { s.chunkid } else { s.id },
            size: s.size,
            off: s.off,
            len: s.len,
        })
        .collect();
    let mut v = Vec::new();
    records::encode_slices(&mut v, &recs);
    let chunk = super::ops::chunks::CHUNK_SIZE;
    records::decode_slices(n.ino, chunk, &v)?;
    for r in &recs {
        if records::is_inline(r.id) || r.id == records::RESERVED_ID {
            return Err(Error::Format(format!(
                "JuiceFS dump: slice id {} of inode {}",
                r.id, n.ino
            )));
        }
    }
    l.batch.put(&keys::chunk(n.ino, c.index), &v)?;
    n.attr.stored += super::ops::chunks::covered(&recs);
    for r in recs.iter().filter(|r| r.has_blocks()) {
        l.max_slice = l.max_slice.max(r.id);
        l.batch.tx()?.incr_by(&keys::slice_refs(r.id), 1)?;
    }
    Ok(())
}

/// The top-level object: `Setting` first, then the tree; the rest is recomputed or
/// not loaded.
struct TopSeed<'l, 'a, 'p> {
    l: &'l mut Loader<'a, 'p>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JuiceFS dump")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let l = self.l;
        let mut tree = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "Setting" => {
                    let s: Setting = map.next_value()?;
                    // Refused settings are refused before anything is written.
                    format_of(&s, 0).map_err(|e| l.fail(e))?;
                    l.format = Some(s);
                }
                "FSTree" => {
                    if l.format.is_none() {
                        return Err(de::Error::custom("\"FSTree\" before \"Setting\""));
                    }
                    map.next_value_seed(NodeSeed {
                        l: &mut *l,
                        at: None,
                    })?;
                    tree = true;
                }
                "Counters" => l.counters = map.next_value()?,
                "Trash" => {
                    l.trash = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !tree {
            return Err(de::Error::custom(
                "no \"FSTree\": not a JuiceFS dump of a volume",
            ));
        }
        Ok(())
    }
}

/// What loading a JuiceFS dump made, beside the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JuiceFsLoad {
    pub stats: DumpStats,
    /// The dump had a trash, which was not loaded.
    pub trash_skipped: bool,
}

/// Fills the empty store `kv` from the JuiceFS dump `input` (the caller checked that it
/// is empty). The format record goes in last.
pub fn load(
    kv: &dyn KvEngine,
    input: &mut dyn std::io::Read,
    progress: &mut dyn FnMut(u64),
) -> Result<(VolumeFormat, JuiceFsLoad)> {
    let mut l = Loader {
        batch: Batch::new(kv)?,
        format: None,
        counters: JCounters::default(),
        max_ino: 1,
        max_slice: 0,
        used: 0,
        stats: DumpStats::default(),
        progress,
        failed: None,
        trash: false,
        depth: 0,
    };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(input));
    let parsed = TopSeed { l: &mut l }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(e) = l.failed.take() {
        return Err(e);
    }
    parsed.map_err(|e| Error::Format(format!("JuiceFS dump: {e}")))?;
    l.batch.finish()?;
    // References counted one per record: `K` holds the extra ones.
    let mut start = keys::SLICE_REFS_PREFIX.to_vec();
    let end = prefix_end(keys::SLICE_REFS_PREFIX);
    loop {
        let page = {
            let mut tx = kv.begin(TxnMode::ReadOnly)?;
            tx.scan(&start, &end, 1000)?
        };
        for (k, v) in &page {
            let n = super::kv::decode_counter(v).unwrap_or(1);
            let tx = l.batch.tx()?;
            if n > 1 {
                tx.put(k, &(n - 1).to_le_bytes())?;
            } else {
                tx.delete(k)?;
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == 1000 => {
                start = k.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    let next_inode = (l.max_ino + 1).max(l.counters.next_inode);
    let next_slice = (l.max_slice + 1).max(l.counters.next_slice);
    let setting = l.format.take().expect("checked before the tree");
    let format = format_of(&setting, next_slice)?;
    {
        let tx = l.batch.tx()?;
        counters::set(tx, counters::USED_SPACE, l.used)?;
        counters::set(tx, counters::TOTAL_INODES, l.stats.inodes as i64)?;
    }
    l.batch.finish()?;
    let tx = l.batch.tx()?;
    tx.put(
        &keys::counter(counters::NEXT_INODE),
        &(next_inode as i64).to_le_bytes(),
    )?;
    tx.put(
        &keys::counter(counters::NEXT_SLICE),
        &(next_slice as i64).to_le_bytes(),
    )?;
    l.batch.finish()?;
    let mut tx = kv.begin(TxnMode::ReadWrite { durable: false })?;
    tx.put(keys::SETTING, &records::encode_format(&format))?;
    tx.commit()?;
    kv.sync()?;
    (l.progress)(l.stats.inodes);
    Ok((
        format,
        JuiceFsLoad {
            stats: l.stats,
            trash_skipped: l.trash,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::kv::memory::MemoryKv;
    use crate::meta::{Meta, MetaConfig};

    /// Shaped as JuiceFS 1.0's own fixture (`pkg/meta/metadata.sample`): legacy
    /// `chunkid`, a GBK name escaped, a hard link written twice (its first name saying
    /// one link, as a dump of a volume linked meanwhile may), a trash.
    const SAMPLE: &str = r#"{
  "Setting": {"Name": "sample", "UUID": "faa27c8f-edab-4791-a4e0-1620b732b343",
    "Storage": "file", "Bucket": "/var/jfs/", "SecretKey": "removed", "BlockSize": 4096,
    "Compression": "none", "Shards": 0, "HashPrefix": false, "TrashDays": 1,
    "Partitions": 0, "EnableACL": false},
  "Counters": {"usedSpace": 1, "usedInodes": 1, "nextInodes": 100, "nextChunk": 50},
  "Sustained": [], "DelFiles": [],
  "FSTree": {
    "attr": {"inode":1,"type":"directory","mode":511,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":3,"length":0},
    "xattrs": [{"name":"user.top","value":"%E6%9E%9C"}],
    "entries": {
      "GBK%B9%FB": {"attr": {"inode":34,"type":"regular","mode":420,"uid":501,"gid":0,"atime":1,"mtime":2,"ctime":3,"atimensec":5,"nlink":1,"length":0}},
      "d1": {
        "attr": {"inode":3,"type":"directory","mode":493,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":2,"length":0},
        "entries": {
          "f11": {"attr": {"inode":4,"type":"regular","mode":420,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":1,"length":12},
                  "chunks": [{"index":0,"slices":[{"chunkid":2,"size":12,"len":12}]}]}
        }
      },
      "f1": {"attr": {"inode":2,"type":"regular","mode":420,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":1,"length":134217788},
             "chunks": [{"index":0,"slices":[{"id":1,"size":6,"len":6},{"id":2,"pos":12,"size":12,"len":12},{"id":0,"pos":6,"size":0,"len":6}]},
                        {"index":2,"slices":[{"id":7,"size":100,"off":10,"len":50}]}]},
      "l1": {"attr": {"inode":4,"type":"regular","mode":420,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":2,"length":12},
             "chunks": [{"index":0,"slices":[{"chunkid":2,"size":12,"len":12}]}]},
      "s1": {"attr": {"inode":5,"type":"symlink","mode":511,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":1,"length":0},
             "symlink": "d1/f%25"}
    }
  },
  "Trash": {"attr": {"inode":9223372032828243968,"type":"directory","mode":365,"uid":0,"gid":0,"atime":1,"mtime":2,"ctime":3,"nlink":2,"length":0}, "entries": {}}
}
"#;

    fn load_str(text: &str) -> (Arc<dyn KvEngine>, Result<(VolumeFormat, JuiceFsLoad)>) {
        let kv: Arc<dyn KvEngine> = MemoryKv::new();
        let r = load(&*kv, &mut text.as_bytes(), &mut |_| {});
        (kv, r)
    }

    use std::sync::Arc;

    #[test]
    fn the_sample_loads_with_links_counts_and_names_recomputed() {
        let (kv, r) = load_str(SAMPLE);
        let (format, j) = r.unwrap();
        assert_eq!(
            (format.storage.as_str(), format.bucket.as_str()),
            ("fs", "/var/jfs")
        );
        assert_eq!(format.block_size, 4 << 20);
        assert_eq!(format.secret_key, None, "\"removed\" is no key");
        assert_eq!(format.unchecked_below, 50, "JuiceFS's nextChunk");
        assert!(j.trash_skipped);
        assert_eq!((j.stats.inodes, j.stats.entries), (6, 6));
        // Slice 2 has two records (f11/l1 is stored once): one extra reference.
        let refs = |id| {
            let mut tx = kv.begin(TxnMode::ReadOnly).unwrap();
            tx.get(&keys::slice_refs(id)).unwrap()
        };
        assert_eq!(refs(2), Some(1i64.to_le_bytes().to_vec()));
        assert_eq!((refs(1), refs(7)), (None, None));
        let meta = Meta::with_engine(kv, MetaConfig::default()).unwrap();
        let ctx = crate::meta::Ctx::root();
        let gbk = meta.lookup(&ctx, Ino::ROOT, b"GBK\xb9\xfb").unwrap();
        assert_eq!(
            (gbk.ino, gbk.attr.uid, gbk.attr.atime.nsec),
            (Ino(34), 501, 5)
        );
        let f11 = meta.lookup(&ctx, Ino(3), b"f11").unwrap();
        let l1 = meta.lookup(&ctx, Ino::ROOT, b"l1").unwrap();
        assert_eq!((f11.ino, l1.ino, l1.attr.nlink), (Ino(4), Ino(4), 2));
        let root = meta.getattr(Ino::ROOT).unwrap();
        assert_eq!((root.nlink, root.mode), (3, 0o777));
        assert_eq!(meta.readlink(Ino(5)).unwrap(), b"d1/f%");
        let f1 = meta.getattr(Ino(2)).unwrap();
        assert_eq!((f1.length, f1.stored), ((2 << 26) + 60, 6 + 12 + 50));
        assert_eq!(
            meta.getxattr(&ctx, Ino::ROOT, b"user.top").unwrap(),
            "果".as_bytes()
        );
        let report = meta.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn settings_kiseki_cannot_read_are_refused_before_anything_is_written() {
        for (from, to, why) in [
            (
                "\"Compression\": \"none\"",
                "\"Compression\": \"lz4\"",
                "lz4",
            ),
            (
                "\"HashPrefix\": false",
                "\"HashPrefix\": true",
                "HashPrefix",
            ),
            ("\"Shards\": 0", "\"Shards\": 4", "shards"),
            ("\"EnableACL\": false", "\"EnableACL\": true", "ACL"),
            (
                "\"SecretKey\": \"removed\"",
                "\"EncryptKey\": \"PEM\"",
                "encrypted",
            ),
            ("\"BlockSize\": 4096", "\"BlockSize\": 3000", "block size"),
            ("\"Storage\": \"file\"", "\"Storage\": \"oss\"", "storage"),
        ] {
            let text = SAMPLE.replace(from, to);
            let (kv, r) = load_str(&text);
            let e = r.unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
            let mut tx = kv.begin(TxnMode::ReadOnly).unwrap();
            assert!(
                tx.scan(b"", &[0xff], 1).unwrap().is_empty(),
                "{why}: wrote keys"
            );
        }
        let (_, r) = load_str(&SAMPLE[..SAMPLE.len() / 2]);
        assert!(r.unwrap_err().to_string().contains("JuiceFS dump"));
        for (from, to, why) in [
            ("\"d1\": {", "\"..\": {", "an entry named"),
            ("\"s1\": {", "\"a%2Fb\": {", "contains '/'"),
            (
                "\"l1\": {\"attr\": {\"inode\":4,\"type\":\"regular\"",
                "\"l1\": {\"attr\": {\"inode\":3,\"type\":\"directory\"",
                "appears twice",
            ),
        ] {
            let (_, r) = load_str(&SAMPLE.replace(from, to));
            let e = r.unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
        // Nested deeper than the loader takes: a clear error, not a blown stack.
        let mut deep = String::from("{\"Setting\": ");
        let s = &SAMPLE[SAMPLE.find("{\"Name\"").unwrap()..SAMPLE.find("\"Counters\"").unwrap()];
        deep.push_str(s.trim_end().trim_end_matches(','));
        deep.push_str(", \"FSTree\": ");
        let dir = "{\"attr\": {\"inode\":1,\"type\":\"directory\",\"mode\":511,\"uid\":0,\"gid\":0,\"atime\":1,\"mtime\":2,\"ctime\":3,\"nlink\":2}, \"entries\": {\"d\": ";
        for _ in 0..200 {
            deep.push_str(dir);
        }
        let (_, r) = load_str(&deep);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("deeper than") || e.contains("recursion limit"),
            "{e}"
        );
    }
}
