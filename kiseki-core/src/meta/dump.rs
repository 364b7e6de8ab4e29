//! `kiseki dump` and `kiseki load`: the whole volume's metadata as a stream of JSON
//! lines, and back into an empty store of any engine.
//!
//! ## Format (dump version 1)
//! One JSON object per line. The first line is the header, `{"kiseki":{"dump":1,
//! "format":{..}}}` (the volume's format record; the S3 secret key only when asked).
//! Then one record per stored item, in key order:
//!
//! | record | what |
//! |---|---|
//! | `attr` | an inode's attributes (times as `[seconds, nanoseconds]`) |
//! | `entry` | a directory entry: parent, name, kind, inode, readdir position |
//! | `chunk` | a chunk's slice records, `[pos, slice, size, off, len]` each |
//! | `symlink`, `xattr`, `origin` | a symlink's target, an extended attribute, where a trash entry came from |
//! | `counter` | a counter's value (a sharded one summed) |
//! | `refs`, `sums`, `inline`, `staged` | per slice: extra references, block checksums, inline bytes, write-back staging |
//! | `deletion`, `slice_deletion`, `sweep` | queued work: files and slices to delete, id ranges to sweep |
//!
//! and last `{"end":{"records":N}}`, so a cut file is refused. Names and symlink
//! targets are strings, with `%` and bytes that are not UTF-8 written `%XX`; binary values
//! are base64. Session state (sessions, the inodes and slice ids they hold, locks, the
//! trash-expiry and backup claims) and the directory index (rebuilt from the entries) are not
//! written. A dump is one read-only transaction: a consistent snapshot taken while the
//! volume is in use, in memory bounded by a page of keys.
//!
//! Dumping what a load wrote gives the same bytes again (`dump -> load -> dump`), except
//! for files that were open but unlinked at the first dump: their sessions do not exist
//! in the new store, so the load releases them, as a restart of their clients would.

use std::io::{BufRead, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::counters;
use super::keys;
use super::kv::{decode_counter, KvEngine, KvTxn, TxnMode};
use super::records::{self, Origin, SliceRecord, StagedSlice, VolumeFormat};
use super::types::{Attr, FileKind, Ino, Timespec};
use crate::error::{Error, Result};

pub const DUMP_VERSION: u32 = 1;

/// Keys read per scan of the snapshot.
const PAGE: usize = 1024;
/// Writes per load transaction (etcd takes 128 operations)...
const LOAD_BATCH: usize = 100;
/// ... and bytes (etcd takes requests up to 1.5 MiB; inline values and xattrs reach
/// 64 KiB each).
const LOAD_BATCH_BYTES: usize = 1 << 20;

/// A name or symlink target: text, `%` and non-UTF-8 bytes escaped `%XX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub Vec<u8>);

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len());
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '%' {
                    out.push_str("%25");
                } else {
                    out.push(c);
                }
            }
            for b in chunk.invalid() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        unescape(&s).map(Name).map_err(serde::de::Error::custom)
    }
}

/// Undoes `%XX` escapes (`Name`'s, and JuiceFS dumps' own): `%` and two hex digits is
/// that byte; any other `%` is itself, as JuiceFS reads it.
pub fn unescape(s: &str) -> std::result::Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Binary bytes as base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(B64)
            .map_err(serde::de::Error::custom)
    }
}

pub(super) fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::BlockDev => "blockdev",
        FileKind::CharDev => "chardev",
        FileKind::Socket => "socket",
    }
}

fn kind_of(s: &str) -> Result<FileKind> {
    [
        FileKind::File,
        FileKind::Dir,
        FileKind::Symlink,
        FileKind::Fifo,
        FileKind::BlockDev,
        FileKind::CharDev,
        FileKind::Socket,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == s)
    .ok_or_else(|| Error::Format(format!("dump: unknown file kind {s:?}")))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttrLine {
    pub ino: u64,
    pub kind: String,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub nlink: u32,
    pub length: u64,
    pub parent: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub next_entry_seq: u64,
    pub flags: u32,
    pub stored: u64,
}

impl AttrLine {
    fn of(ino: Ino, a: &Attr) -> Self {
        let t = |t: Timespec| (t.sec, t.nsec);
        AttrLine {
            ino: ino.0,
            kind: kind_name(a.kind).into(),
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev,
            nlink: a.nlink,
            length: a.length,
            parent: a.parent.0,
            atime: t(a.atime),
            mtime: t(a.mtime),
            ctime: t(a.ctime),
            next_entry_seq: a.next_entry_seq,
            flags: a.flags,
            stored: a.stored,
        }
    }

    fn attr(&self) -> Result<Attr> {
        let t = |(sec, nsec): (i64, u32)| Timespec { sec, nsec };
        Ok(Attr {
            kind: kind_of(&self.kind)?,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            nlink: self.nlink,
            length: self.length,
            parent: Ino(self.parent),
            atime: t(self.atime),
            mtime: t(self.mtime),
            ctime: t(self.ctime),
            next_entry_seq: self.next_entry_seq,
            flags: self.flags,
            stored: self.stored,
        })
    }
}

/// One line of a dump.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Kiseki {
        dump: u32,
        format: Box<VolumeFormat>,
    },
    Attr(AttrLine),
    Entry {
        parent: u64,
        name: Name,
        kind: String,
        ino: u64,
        seq: u64,
    },
    Chunk {
        ino: u64,
        index: u32,
        slices: Vec<(u32, u64, u32, u32, u32)>,
    },
    Symlink {
        ino: u64,
        target: Name,
    },
    Xattr {
        ino: u64,
        name: Name,
        value: B64,
    },
    Origin {
        ino: u64,
        parent: u64,
        name: Name,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        truncated: Option<u64>,
    },
    Counter {
        name: String,
        value: i64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sharded: bool,
    },
    Deletion {
        ino: u64,
        length: u64,
    },
    Sweep {
        start: u64,
        end: u64,
    },
    Refs {
        slice: u64,
        extra: i64,
    },
    Staged {
        slice: u64,
        record: StagedSlice,
    },
    Inline {
        slice: u64,
        data: B64,
    },
    SliceDeletion {
        slice: u64,
        size: u32,
        not_before: i64,
    },
    Sums {
        slice: u64,
        data: B64,
    },
    End {
        records: u64,
    },
}

/// What a dump or a load went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DumpStats {
    /// Records (lines between the header and the end).
    pub records: u64,
    pub inodes: u64,
    pub entries: u64,
}

fn bad_key(key: &[u8]) -> Error {
    Error::Format(format!(
        "dump: a key this Kiseki does not know: {:?} (a newer layout?)",
        key.escape_ascii().to_string()
    ))
}

fn u64_at(key: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?))
}

/// The record of one stored key (`None`: not dumped).
fn line_of(key: &[u8], v: &[u8]) -> Result<Option<Line>> {
    let counter = || decode_counter(v).ok_or_else(|| bad_key(key));
    let line = match key.first() {
        Some(b'A') => {
            let ino = Ino(u64_at(key, 1).ok_or_else(|| bad_key(key))?);
            let rest = &key[10.min(key.len())..];
            match key.get(9) {
                Some(b'I') => Line::Attr(AttrLine::of(ino, &records::decode_attr(ino, v)?)),
                Some(b'D') => {
                    let d = records::decode_dentry(ino, v)?;
                    Line::Entry {
                        parent: ino.0,
                        name: Name(rest.to_vec()),
                        kind: kind_name(d.kind).into(),
                        ino: d.ino.0,
                        seq: d.seq,
                    }
                }
                Some(b'C') => {
                    let index = keys::parse_chunk(key).ok_or_else(|| bad_key(key))?.1;
                    let recs = records::decode_slices(ino, super::ops::chunks::CHUNK_SIZE, v)?;
                    Line::Chunk {
                        ino: ino.0,
                        index,
                        slices: recs
                            .iter()
                            .map(|r| (r.pos, r.id, r.size, r.off, r.len))
                            .collect(),
                    }
                }
                Some(b'S') => Line::Symlink {
                    ino: ino.0,
                    target: Name(v.to_vec()),
                },
                Some(b'X') => Line::Xattr {
                    ino: ino.0,
                    name: Name(rest.to_vec()),
                    value: B64(v.to_vec()),
                },
                Some(b'O') => {
                    let o = records::decode_origin(ino, v)?;
                    Line::Origin {
                        ino: ino.0,
                        parent: o.parent.0,
                        name: Name(o.name),
                        truncated: o.truncated.map(|i| i.0),
                    }
                }
                // The directory index (rebuilt from the entries) and lock tables.
                Some(b'E' | b'F' | b'P') => return Ok(None),
                _ => return Err(bad_key(key)),
            }
        }
        Some(b'D') => {
            let (ino, length) = keys::parse_deletion(key).ok_or_else(|| bad_key(key))?;
            Line::Deletion { ino: ino.0, length }
        }
        Some(b'G') => {
            let (start, end) = keys::parse_orphan_sweep(key).ok_or_else(|| bad_key(key))?;
            Line::Sweep { start, end }
        }
        Some(b'K') => Line::Refs {
            slice: keys::parse_slice_refs(key).ok_or_else(|| bad_key(key))?,
            extra: counter()?,
        },
        Some(b'W') => Line::Staged {
            slice: keys::parse_staged_slice(key).ok_or_else(|| bad_key(key))?,
            record: records::decode_staged(v)?,
        },
        Some(b'V') => Line::Inline {
            slice: keys::parse_inline_slice(key).ok_or_else(|| bad_key(key))?,
            data: B64(v.to_vec()),
        },
        Some(b'Y') => {
            let (slice, size) = keys::parse_slice_deletion(key).ok_or_else(|| bad_key(key))?;
            Line::SliceDeletion {
                slice,
                size,
                not_before: counter()?,
            }
        }
        Some(b'Z') => Line::Sums {
            slice: keys::parse_slice_sums(key).ok_or_else(|| bad_key(key))?,
            data: B64(v.to_vec()),
        },
        // Sessions and what they hold.
        Some(b'S') => return Ok(None),
        _ if key == keys::SETTING || key == keys::TRASH_CLEANUP || key == keys::BACKUP_CLAIM => {
            return Ok(None)
        }
        _ => return Err(bad_key(key)),
    };
    Ok(Some(line))
}

/// A counter key's name and whether it is a shard (`C name / shard`).
fn counter_name(key: &[u8]) -> Option<(String, bool)> {
    let rest = key.strip_prefix(b"C")?;
    let (name, sharded) = match rest.len().checked_sub(2) {
        Some(n) if rest[n] == b'/' => (&rest[..n], true),
        _ => (rest, false),
    };
    Some((String::from_utf8(name.to_vec()).ok()?, sharded))
}

/// The record lines of a dump, counted.
struct Writer<'a> {
    out: &'a mut dyn Write,
    stats: DumpStats,
}

impl Writer<'_> {
    fn line(&mut self, line: &Line) -> Result<()> {
        match line {
            Line::Attr(_) => self.stats.inodes += 1,
            Line::Entry { .. } => self.stats.entries += 1,
            _ => {}
        }
        self.stats.records += 1;
        write_line(self.out, line)
    }
}

fn write_line(out: &mut dyn Write, line: &Line) -> Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    Ok(out.write_all(b"\n")?)
}

/// Writes the volume in `kv` to `out` from one snapshot. `progress` is told the records
/// written so far, every page.
pub fn dump(
    kv: &dyn KvEngine,
    out: &mut dyn Write,
    keep_secret: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<DumpStats> {
    let mut tx = kv.begin(TxnMode::ReadOnly)?;
    let mut format = records::decode_format(
        &tx.get(keys::SETTING)?
            .ok_or_else(|| Error::NotFound("no volume is formatted here".into()))?,
    )?;
    if !keep_secret {
        format.secret_key = None;
    }
    format.destroying = false;
    write_line(
        out,
        &Line::Kiseki {
            dump: DUMP_VERSION,
            format: Box::new(format),
        },
    )?;
    let mut w = Writer {
        out,
        stats: DumpStats::default(),
    };
    // A sharded counter's keys are adjacent: summed until the name changes.
    let mut counter: Option<Line> = None;
    let mut start = Vec::new();
    let end = vec![0xffu8];
    loop {
        let page = tx.scan(&start, &end, PAGE)?;
        for (k, v) in &page {
            let here = counter_name(k);
            if let (Some(Line::Counter { name, value, .. }), Some((n, true))) =
                (&mut counter, &here)
            {
                if name == n {
                    let v = decode_counter(v).ok_or_else(|| bad_key(k))?;
                    *value = value.wrapping_add(v);
                    continue;
                }
            }
            if let Some(done) = counter.take() {
                w.line(&done)?;
            }
            if let Some((name, sharded)) = here {
                let value = decode_counter(v).ok_or_else(|| bad_key(k))?;
                counter = Some(Line::Counter {
                    name,
                    value,
                    sharded,
                });
            } else if let Some(line) = line_of(k, v)? {
                w.line(&line)?;
            }
        }
        progress(w.stats.records);
        match page.last() {
            Some((k, _)) if page.len() == PAGE => {
                start = k.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    if let Some(done) = counter {
        w.line(&done)?;
    }
    let stats = w.stats;
    write_line(
        out,
        &Line::End {
            records: stats.records,
        },
    )?;
    out.flush()?;
    Ok(stats)
}

/// What a load made.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub format: VolumeFormat,
    pub stats: DumpStats,
    /// The dump was JuiceFS's (see `meta::juicefs`), and whether it had a trash, which
    /// is not loaded.
    pub juicefs: Option<bool>,
}

/// Fills the empty store `kv` from a dump read from `input`: a Kiseki dump, or a
/// `juicefs dump` (told apart by the first key). The format record goes in last, so a
/// load that fails leaves no volume (run it again with the same dump).
pub fn load(
    kv: &dyn KvEngine,
    input: &mut dyn BufRead,
    progress: &mut dyn FnMut(u64),
) -> Result<Loaded> {
    {
        let mut tx = kv.begin(TxnMode::ReadOnly)?;
        if tx.get(keys::SETTING)?.is_some() {
            return Err(Error::Exists(
                "a volume is already formatted here: load needs an empty store".into(),
            ));
        }
        // Keys without a format record: what a failed load (or destroy) left. Merged
        // with another dump they would make a volume of both.
        if !tx.scan(b"", &[0xff], 1)?.is_empty() {
            return Err(Error::Exists(
                "the store is not empty (what a failed load left?): load into a new \
                 RocksDB directory or etcd prefix"
                    .into(),
            ));
        }
    }
    let head: Vec<u8> = input
        .fill_buf()?
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .take(10)
        .copied()
        .collect();
    if head.starts_with(b"{") && !head.starts_with(b"{\"kiseki\"") {
        let (format, j) = super::juicefs::load(kv, input, progress)?;
        return Ok(Loaded {
            format,
            stats: j.stats,
            juicefs: Some(j.trash_skipped),
        });
    }
    let (format, stats) = load_kiseki(kv, input, progress)?;
    Ok(Loaded {
        format,
        stats,
        juicefs: None,
    })
}

fn load_kiseki(
    kv: &dyn KvEngine,
    input: &mut dyn BufRead,
    progress: &mut dyn FnMut(u64),
) -> Result<(VolumeFormat, DumpStats)> {
    let mut lines = input.lines();
    let mut next = |n: u64| -> Result<Option<Line>> {
        match lines.next() {
            None => Ok(None),
            Some(l) => {
                let l = l?;
                serde_json::from_str(&l)
                    .map(Some)
                    .map_err(|e| Error::Format(format!("load: line {}: {e}", n + 1)))
            }
        }
    };
    let format = match next(0) {
        Ok(Some(Line::Kiseki { dump, format })) if dump <= DUMP_VERSION => *format,
        Ok(Some(Line::Kiseki { dump, .. })) => {
            return Err(Error::Format(format!(
                "load: dump version {dump} is newer than this Kiseki's ({DUMP_VERSION})"
            )))
        }
        Err(Error::Io(e)) => return Err(Error::Io(e)),
        _ => {
            return Err(Error::Format(
                "load: not a kiseki dump (the first line is not its header)".into(),
            ))
        }
    };
    if format.meta_version > records::META_VERSION {
        return Err(Error::Format(format!(
            "load: the volume's layout v{} is newer than this Kiseki's",
            format.meta_version
        )));
    }
    let mut stats = DumpStats::default();
    // Inodes with no link kept only by a session of the dumped volume.
    let mut unheld: Vec<Ino> = Vec::new();
    let mut batch = Batch::new(kv)?;
    loop {
        let line = next(stats.records + 1)?.ok_or_else(|| {
            Error::Format(format!(
                "load: the dump ends after {} records without its end line (cut short?)",
                stats.records
            ))
        })?;
        if let Line::End { records } = line {
            if records != stats.records {
                return Err(Error::Format(format!(
                    "load: the dump says {records} records, {} were read",
                    stats.records
                )));
            }
            if next(stats.records + 2)?.is_some() {
                return Err(Error::Format("load: lines after the end line".into()));
            }
            break;
        }
        stats.records += 1;
        match &line {
            Line::Attr(a) => {
                stats.inodes += 1;
                let attr = a.attr()?;
                if attr.nlink == 0 && !attr.in_trash() {
                    unheld.push(Ino(a.ino));
                }
            }
            Line::Entry { .. } => stats.entries += 1,
            _ => {}
        }
        batch.apply(line)?;
        if stats.records % PAGE as u64 == 0 {
            progress(stats.records);
        }
    }
    batch.finish()?;
    let mut tx = kv.begin(TxnMode::ReadWrite { durable: false })?;
    tx.put(keys::SETTING, &records::encode_format(&format))?;
    tx.commit()?;
    for ino in unheld {
        let mut tx = kv.begin(TxnMode::ReadWrite { durable: false })?;
        super::ops::release_tx(&mut *tx, 0, ino)?;
        tx.commit()?;
    }
    kv.sync()?;
    progress(stats.records);
    Ok((format, stats))
}

/// Load writes, committed every [`LOAD_BATCH`] (also used by the JuiceFS loader).
pub(super) struct Batch<'a> {
    kv: &'a dyn KvEngine,
    tx: Option<Box<dyn KvTxn + 'a>>,
    n: usize,
    bytes: usize,
}

impl<'a> Batch<'a> {
    pub(super) fn new(kv: &'a dyn KvEngine) -> Result<Self> {
        Ok(Batch {
            kv,
            tx: None,
            n: 0,
            bytes: 0,
        })
    }

    /// The open transaction, begun if needed; each use counts as one write.
    pub(super) fn tx(&mut self) -> Result<&mut (dyn KvTxn + 'a)> {
        if self.n >= LOAD_BATCH || self.bytes >= LOAD_BATCH_BYTES {
            self.finish()?;
        }
        if self.tx.is_none() {
            self.tx = Some(self.kv.begin(TxnMode::ReadWrite { durable: false })?);
        }
        self.n += 1;
        Ok(&mut **self.tx.as_mut().expect("begun above"))
    }

    pub(super) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tx()?.put(key, value)?;
        self.bytes += key.len() + value.len();
        Ok(())
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit()?;
        }
        self.n = 0;
        self.bytes = 0;
        Ok(())
    }

    fn apply(&mut self, line: Line) -> Result<()> {
        match line {
            Line::Kiseki { .. } => {
                return Err(Error::Format("load: a second header line".into()));
            }
            Line::End { .. } => unreachable!("handled by the caller"),
            Line::Attr(a) => {
                let attr = a.attr()?;
                self.put(&keys::attr(Ino(a.ino)), &records::encode_attr(&attr))?;
            }
            Line::Entry {
                parent,
                name,
                kind,
                ino,
                seq,
            } => {
                let kind = kind_of(&kind)?;
                super::ops::check_entry_name(Ino(parent), &name.0)?;
                let d = records::Dentry {
                    kind,
                    ino: Ino(ino),
                    seq,
                };
                self.put(
                    &keys::dentry(Ino(parent), &name.0),
                    &records::encode_dentry(&d),
                )?;
                self.put(
                    &keys::dir_index(Ino(parent), seq),
                    &records::encode_dir_index(kind, Ino(ino), &name.0),
                )?;
            }
            Line::Chunk { ino, index, slices } => {
                let recs: Vec<SliceRecord> = slices
                    .into_iter()
                    .map(|(pos, id, size, off, len)| SliceRecord {
                        pos,
                        id,
                        size,
                        off,
                        len,
                    })
                    .collect();
                let mut v = Vec::new();
                records::encode_slices(&mut v, &recs);
                // Decoding checks what the encoder cannot: records inside the chunk.
                records::decode_slices(Ino(ino), super::ops::chunks::CHUNK_SIZE, &v)?;
                self.put(&keys::chunk(Ino(ino), index), &v)?;
            }
            Line::Symlink { ino, target } => self.put(&keys::symlink(Ino(ino)), &target.0)?,
            Line::Xattr { ino, name, value } => {
                self.put(&keys::xattr(Ino(ino), &name.0), &value.0)?
            }
            Line::Origin {
                ino,
                parent,
                name,
                truncated,
            } => {
                let o = Origin {
                    parent: Ino(parent),
                    name: name.0,
                    truncated: truncated.map(Ino),
                };
                self.put(&keys::trash_origin(Ino(ino)), &records::encode_origin(&o))?;
            }
            Line::Counter {
                name,
                value,
                sharded,
            } => {
                if sharded {
                    for shard in 0..counters::SHARDS as u8 {
                        let v = if shard == 0 { value } else { 0 };
                        self.put(&keys::counter_shard(&name, shard), &v.to_le_bytes())?;
                    }
                } else {
                    self.put(&keys::counter(&name), &value.to_le_bytes())?;
                }
            }
            Line::Deletion { ino, length } => self.put(&keys::deletion(Ino(ino), length), b"")?,
            Line::Sweep { start, end } => self.put(&keys::orphan_sweep(start, end), b"")?,
            Line::Refs { slice, extra } => {
                self.put(&keys::slice_refs(slice), &extra.to_le_bytes())?
            }
            Line::Staged { slice, record } => {
                self.put(&keys::staged_slice(slice), &records::encode_staged(&record))?
            }
            Line::Inline { slice, data } => self.put(&keys::inline_slice(slice), &data.0)?,
            Line::SliceDeletion {
                slice,
                size,
                not_before,
            } => self.put(
                &keys::slice_deletion(slice, size),
                &not_before.to_le_bytes(),
            )?,
            Line::Sums { slice, data } => self.put(&keys::slice_sums(slice), &data.0)?,
        }
        Ok(())
    }
}
