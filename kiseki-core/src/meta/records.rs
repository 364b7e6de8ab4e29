//! Value codecs: one encoder and one decoder per record kind stored under the keys in
//! `keys`. Hot records (attributes, dentries) are fixed little-endian layouts with a
//! leading version byte; rarely read records (format, sessions) are JSON so operators
//! can read them with any tool.

use serde::{Deserialize, Serialize};

use super::types::{Attr, FileKind, Ino, Timespec};
use crate::error::{Error, Result};

/// Layout version of the whole metadata schema, stored in the format record. Bump it
/// when any key or value layout changes. v3 added block checksums (`Z` keys): every
/// slice of a v3 volume has them. A v2 volume keeps its version and keeps working: its
/// old slices are read unchecked, and the slices written since have checksums. v4 added
/// inline slices (`V` keys, [`INLINE_BIT`] ids), written only on volumes formatted with
/// an inline size, so v2 and v3 volumes never hold one. v5 added the trash (the
/// `FLAG_TRASH` attribute flag, `O` origin records, unlinked inodes kept with entries in
/// the trash): a volume becomes v5 when it is formatted or configured with a trash, so
/// an older Kiseki, which would release the inodes the trash keeps, refuses it.
pub const META_VERSION: u32 = 5;
/// The layout a volume with no trash keeps (older Kisekis open it).
pub const META_VERSION_NO_TRASH: u32 = 4;

/// The oldest layout this Kiseki still opens.
pub const OLDEST_META_VERSION: u32 = 2;

const ATTR_V2: u8 = 2;
const ATTR_LEN: usize = 92;

pub fn encode_attr(a: &Attr) -> Vec<u8> {
    let mut b = Vec::with_capacity(ATTR_LEN);
    b.push(ATTR_V2);
    b.push(a.kind.code());
    b.extend_from_slice(&a.mode.to_le_bytes());
    b.extend_from_slice(&a.uid.to_le_bytes());
    b.extend_from_slice(&a.gid.to_le_bytes());
    b.extend_from_slice(&a.rdev.to_le_bytes());
    b.extend_from_slice(&a.nlink.to_le_bytes());
    b.extend_from_slice(&a.length.to_le_bytes());
    b.extend_from_slice(&a.parent.0.to_le_bytes());
    for t in [a.atime, a.mtime, a.ctime] {
        b.extend_from_slice(&t.sec.to_le_bytes());
        b.extend_from_slice(&t.nsec.to_le_bytes());
    }
    b.extend_from_slice(&a.next_entry_seq.to_le_bytes());
    b.extend_from_slice(&a.flags.to_le_bytes());
    b.extend_from_slice(&a.stored.to_le_bytes());
    debug_assert_eq!(b.len(), ATTR_LEN);
    b
}

/// Little-endian field reader over a fixed record; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.buf.get(self.pos..self.pos + N)?;
        self.pos += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take()?))
    }
    fn time(&mut self) -> Option<Timespec> {
        let sec = i64::from_le_bytes(self.take()?);
        let nsec = self.u32()?;
        (nsec < 1_000_000_000).then_some(Timespec { sec, nsec })
    }
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }
}

pub fn decode_attr(ino: Ino, buf: &[u8]) -> Result<Attr> {
    let bad = || Error::corrupt(ino, format!("attribute record of {} bytes", buf.len()));
    if buf.len() != ATTR_LEN || buf[0] != ATTR_V2 {
        return Err(bad());
    }
    let mut r = Reader::new(&buf[1..]);
    let attr = (|| {
        Some(Attr {
            kind: FileKind::from_code(r.u8()?)?,
            mode: r.u16()?,
            uid: r.u32()?,
            gid: r.u32()?,
            rdev: r.u32()?,
            nlink: r.u32()?,
            length: r.u64()?,
            parent: Ino(r.u64()?),
            atime: r.time()?,
            mtime: r.time()?,
            ctime: r.time()?,
            next_entry_seq: r.u64()?,
            flags: r.u32()?,
            stored: r.u64()?,
        })
    })();
    attr.ok_or_else(bad)
}

/// A dentry value: what a name in a directory points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dentry {
    pub kind: FileKind,
    pub ino: Ino,
    /// Sequence number of this entry's `E` index key in the directory.
    pub seq: u64,
}

/// Where a trash entry came from (`A` ino `O`): the directory and name it was removed
/// from, or for the old content of a file truncated by open(O_TRUNC), that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub parent: Ino,
    pub name: Vec<u8>,
    /// The file whose content this was (a truncation), or `None` (a removal).
    pub truncated: Option<Ino>,
}

const ORIGIN_V1: u8 = 1;

pub fn encode_origin(o: &Origin) -> Vec<u8> {
    let mut b = Vec::with_capacity(18 + o.name.len());
    b.push(ORIGIN_V1);
    b.extend_from_slice(&o.parent.0.to_le_bytes());
    b.extend_from_slice(&o.truncated.map_or(0, |i| i.0).to_le_bytes());
    b.extend_from_slice(&o.name);
    b
}

pub fn decode_origin(ino: Ino, buf: &[u8]) -> Result<Origin> {
    let mut r = Reader::new(buf);
    let parsed = (|| {
        if r.take::<1>()?[0] != ORIGIN_V1 {
            return None;
        }
        let parent = Ino(u64::from_le_bytes(r.take()?));
        let truncated = u64::from_le_bytes(r.take()?);
        Some(Origin {
            parent,
            name: buf[r.pos..].to_vec(),
            truncated: (truncated != 0).then_some(Ino(truncated)),
        })
    })();
    parsed.ok_or_else(|| Error::corrupt(ino, "undecodable trash origin record"))
}

pub fn encode_dentry(d: &Dentry) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.push(d.kind.code());
    b.extend_from_slice(&d.ino.0.to_le_bytes());
    b.extend_from_slice(&d.seq.to_le_bytes());
    b
}

pub fn decode_dentry(parent: Ino, buf: &[u8]) -> Result<Dentry> {
    let mut r = Reader::new(buf);
    let d = (|| {
        let d = Dentry {
            kind: FileKind::from_code(r.u8()?)?,
            ino: Ino(r.u64()?),
            seq: r.u64()?,
        };
        r.rest().is_empty().then_some(d)
    })();
    d.ok_or_else(|| Error::corrupt(parent, format!("dentry record of {} bytes", buf.len())))
}

/// A directory index value: the entry a readdir cookie stands for.
pub fn encode_dir_index(kind: FileKind, ino: Ino, name: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(9 + name.len());
    b.push(kind.code());
    b.extend_from_slice(&ino.0.to_le_bytes());
    b.extend_from_slice(name);
    b
}

pub fn decode_dir_index(parent: Ino, buf: &[u8]) -> Result<(FileKind, Ino, Vec<u8>)> {
    let mut r = Reader::new(buf);
    let v = (|| {
        Some((
            FileKind::from_code(r.u8()?)?,
            Ino(r.u64()?),
            r.rest().to_vec(),
        ))
    })();
    match v {
        Some(v) if !v.2.is_empty() => Ok(v),
        _ => Err(Error::corrupt(parent, "directory index record")),
    }
}

/// One slice record of a chunk: chunk bytes `[pos, pos + len)` come from bytes
/// `[off, off + len)` of slice `id` (whose total size is `size`). `id == 0` is a hole
/// (zeros), written by truncate and punch-hole; `id ==` [`RESERVED_ID`] is space
/// reserved by fallocate. Later records win where they overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SliceRecord {
    pub pos: u32,
    pub id: u64,
    pub size: u32,
    pub off: u32,
    pub len: u32,
}

/// The slice id of a record that reserves space without data (fallocate): it reads as
/// zeros like a hole, but counts as stored bytes (`st_blocks`, `df`, quotas), so that
/// writing into it later does not grow the file's usage. No object exists for it.
pub const RESERVED_ID: u64 = u64::MAX;

/// Whether slice `id` holds data: neither a hole nor a reservation. Its bytes are block
/// objects, or for an [inline](is_inline) slice a metadata value.
pub fn has_blocks(id: u64) -> bool {
    id != 0 && id != RESERVED_ID
}

/// Set in the id of an inline slice: a slice of at most the volume's inline size whose
/// bytes are stored in the metadata engine (`V` key), committed in the same transaction
/// as its record, instead of as a block object. Allocated ids never reach this bit.
pub const INLINE_BIT: u64 = 1 << 62;

/// Whether slice `id` is inline (see [`INLINE_BIT`]).
pub fn is_inline(id: u64) -> bool {
    has_blocks(id) && id & INLINE_BIT != 0
}

impl SliceRecord {
    /// See [`has_blocks`].
    pub fn has_blocks(&self) -> bool {
        has_blocks(self.id)
    }
}

pub const SLICE_RECORD_LEN: usize = 24;

pub fn encode_slices(out: &mut Vec<u8>, recs: &[SliceRecord]) {
    out.reserve(recs.len() * SLICE_RECORD_LEN);
    for r in recs {
        out.extend_from_slice(&r.pos.to_le_bytes());
        out.extend_from_slice(&r.id.to_le_bytes());
        out.extend_from_slice(&r.size.to_le_bytes());
        out.extend_from_slice(&r.off.to_le_bytes());
        out.extend_from_slice(&r.len.to_le_bytes());
    }
}

/// Decodes a chunk's slice list, rejecting records that point outside their slice or
/// chunk (so readers never index out of range on corrupt metadata).
pub fn decode_slices(ino: Ino, chunk_size: u64, buf: &[u8]) -> Result<Vec<SliceRecord>> {
    if buf.len() % SLICE_RECORD_LEN != 0 {
        return Err(Error::corrupt(
            ino,
            format!("slice list of {} bytes", buf.len()),
        ));
    }
    let mut out = Vec::with_capacity(buf.len() / SLICE_RECORD_LEN);
    let mut r = Reader::new(buf);
    while !r.rest().is_empty() {
        let rec = (|| {
            Some(SliceRecord {
                pos: r.u32()?,
                id: r.u64()?,
                size: r.u32()?,
                off: r.u32()?,
                len: r.u32()?,
            })
        })()
        .ok_or_else(|| Error::corrupt(ino, "truncated slice record"))?;
        let in_chunk = u64::from(rec.pos) + u64::from(rec.len) <= chunk_size;
        let in_slice =
            !rec.has_blocks() || u64::from(rec.off) + u64::from(rec.len) <= u64::from(rec.size);
        if !in_chunk || !in_slice || rec.len == 0 {
            return Err(Error::corrupt(
                ino,
                format!("slice record {rec:?} out of range"),
            ));
        }
        out.push(rec);
    }
    Ok(out)
}

/// The volume format record (`setting`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFormat {
    pub name: String,
    pub uuid: String,
    /// Object storage kind: `fs`, `s3` or `memory`.
    pub storage: String,
    /// Directory (fs) or endpoint/bucket URL (s3).
    pub bucket: String,
    /// S3 region (default: `$AWS_REGION`, else us-east-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Block size in bytes (a power of two, 64 KiB to 64 MiB).
    pub block_size: u32,
    /// Block compression: `none`, `lz4` or `zstd` (`data::compress`).
    pub compression: String,
    /// Capacity limit in bytes; 0 is unlimited.
    pub capacity: u64,
    /// Inode limit; 0 is unlimited.
    pub inodes: u64,
    /// Files (more exactly, slices within the first this many bytes of a file) up to
    /// this size are stored in the metadata engine, not in object storage; 0 turns
    /// inline data off (and is what volumes formatted before it read as).
    #[serde(default)]
    pub inline_size: u32,
    /// Days the trash keeps what is removed; 0 turns it off (and is what volumes
    /// formatted before the trash read as).
    #[serde(default)]
    pub trash_days: u32,
    /// Metadata layout version ([`META_VERSION`] when formatted).
    pub meta_version: u32,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Slices with lower ids were loaded from a JuiceFS dump (`kiseki load`): their
    /// blocks have no recorded checksums and are read unchecked. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unchecked_below: u64,
    /// `kiseki destroy` has begun: no client may start a session any more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroying: bool,
}

impl VolumeFormat {
    /// Slice `id` has recorded checksums (formatted at v3 or later, and not loaded from
    /// JuiceFS), so missing ones are corruption, not an old or imported slice.
    pub fn checksums_required(&self, id: u64) -> bool {
        self.meta_version >= 3 && id >= self.unchecked_below
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

pub fn encode_format(f: &VolumeFormat) -> Vec<u8> {
    serde_json::to_vec_pretty(f).expect("a struct of strings and integers always serializes")
}

pub fn decode_format(buf: &[u8]) -> Result<VolumeFormat> {
    serde_json::from_slice(buf).map_err(|e| Error::Format(format!("unreadable format record: {e}")))
}

/// A client session (`SE` key), refreshed by heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub sid: u64,
    pub host: String,
    pub pid: u32,
    /// What the client is: a mount point, or `libkiseki`/`python` for library clients.
    pub client: String,
    pub version: String,
    /// Seconds since the epoch.
    pub started: i64,
    /// The session is considered dead after this time (seconds since the epoch) unless
    /// a heartbeat extends it.
    pub expires: i64,
}

pub fn encode_session(s: &SessionInfo) -> Vec<u8> {
    serde_json::to_vec(s).expect("a struct of strings and integers always serializes")
}

pub fn decode_session(buf: &[u8]) -> Result<SessionInfo> {
    serde_json::from_slice(buf)
        .map_err(|e| Error::Format(format!("unreadable session record: {e}")))
}

/// A slice whose blocks a write-back client staged and has not uploaded yet (`W`
/// key): written with the slice's commit, removed once its last block is uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedSlice {
    /// The slice's size.
    pub size: u32,
    /// The session of the client uploading it (readers elsewhere wait while it lives).
    pub sid: u64,
    /// The staging directory holding the blocks (its `id` file), so that the client
    /// restarted on it takes the upload over.
    pub stager: String,
    pub host: String,
}

pub fn encode_staged(s: &StagedSlice) -> Vec<u8> {
    serde_json::to_vec(s).expect("a struct of strings and integers always serializes")
}

pub fn decode_staged(buf: &[u8]) -> Result<StagedSlice> {
    serde_json::from_slice(buf)
        .map_err(|e| Error::Format(format!("unreadable staged-slice record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Attr {
        Attr {
            kind: FileKind::Dir,
            mode: 0o2755,
            uid: 1000,
            gid: 100,
            rdev: 0,
            nlink: 3,
            length: 4096,
            parent: Ino(1),
            atime: Timespec { sec: -5, nsec: 7 },
            mtime: Timespec {
                sec: 1,
                nsec: 999_999_999,
            },
            ctime: Timespec { sec: 2, nsec: 0 },
            next_entry_seq: 42,
            flags: 0,
            stored: 0,
        }
    }

    #[test]
    fn attr_round_trips_and_rejects_garbage() {
        let a = sample();
        let enc = encode_attr(&a);
        assert_eq!(decode_attr(Ino(2), &enc).unwrap(), a);
        assert!(decode_attr(Ino(2), &enc[..20]).is_err());
        let mut bad_kind = enc.clone();
        bad_kind[1] = 99;
        assert!(decode_attr(Ino(2), &bad_kind).is_err());
        let mut bad_nsec = enc;
        bad_nsec[44..48].copy_from_slice(&2_000_000_000u32.to_le_bytes());
        assert!(decode_attr(Ino(2), &bad_nsec).is_err());
    }

    #[test]
    fn slice_records_round_trip_and_are_range_checked() {
        let recs = [
            SliceRecord {
                pos: 0,
                id: 7,
                size: 100,
                off: 10,
                len: 90,
            },
            SliceRecord {
                pos: 5,
                id: 0,
                size: 0,
                off: 0,
                len: 3,
            },
        ];
        let mut buf = Vec::new();
        encode_slices(&mut buf, &recs);
        assert_eq!(decode_slices(Ino(1), 1 << 26, &buf).unwrap(), recs);
        assert!(decode_slices(Ino(1), 1 << 26, &buf[..30]).is_err());
        let mut bad = Vec::new();
        encode_slices(
            &mut bad,
            &[SliceRecord {
                pos: 0,
                id: 7,
                size: 10,
                off: 5,
                len: 6,
            }],
        );
        assert!(decode_slices(Ino(1), 1 << 26, &bad).is_err());
        let mut beyond = Vec::new();
        encode_slices(
            &mut beyond,
            &[SliceRecord {
                pos: 60,
                id: 7,
                size: 10,
                off: 0,
                len: 10,
            }],
        );
        assert!(decode_slices(Ino(1), 64, &beyond).is_err());
    }

    #[test]
    fn dentry_and_index_round_trip() {
        let d = Dentry {
            kind: FileKind::Symlink,
            ino: Ino(9),
            seq: 3,
        };
        assert_eq!(decode_dentry(Ino(1), &encode_dentry(&d)).unwrap(), d);
        assert!(decode_dentry(Ino(1), b"\x01\x02").is_err());
        let v = encode_dir_index(FileKind::File, Ino(4), b"abc");
        assert_eq!(
            decode_dir_index(Ino(1), &v).unwrap(),
            (FileKind::File, Ino(4), b"abc".to_vec())
        );
    }
}
