//! Key codec: every key the metadata schema stores, with one encoder (and, where the
//! key is ever parsed back, one decoder) per kind.
//!
//! Integers in keys are big-endian so that byte order is numeric order for scans.
//!
//! | key                                   | value (see `records`)                        |
//! |---------------------------------------|----------------------------------------------|
//! | `setting`                             | volume format, JSON (`VolumeFormat`)         |
//! | `A` ino:u64 `I`                       | inode attributes (`Attr`)                    |
//! | `A` ino:u64 `D` name                  | dentry: kind, child ino, entry seq           |
//! | `A` ino:u64 `E` seq:u64               | directory index: kind, child ino, name       |
//! | `A` ino:u64 `C` chunk:u32             | slice records of one 64 MiB chunk (data path)|
//! | `A` ino:u64 `S`                       | symlink target bytes                         |
//! | `A` ino:u64 `X` name                  | extended attribute value                     |
//! | `A` ino:u64 `F`                       | flock table (`locks`)                        |
//! | `A` ino:u64 `P`                       | POSIX record-lock table (`locks`)            |
//! | `A` ino:u64 `O`                       | where a trash entry came from (`trash`)      |
//! | `C` name [`/` shard:u8]               | counter, i64 little-endian                   |
//! | `D` ino:u64 length:u64                | empty: file data waiting to be deleted       |
//! | `K` slice:u64                         | extra references to a shared slice, i64 LE   |
//! | `Z` slice:u64                         | the slice's block checksums (`data::checksum`)|
//! | `V` slice:u64                         | the bytes of an inline slice                 |
//! | `W` slice:u64                         | staged, not uploaded yet, JSON (`StagedSlice`)|
//! | `Y` slice:u64 size:u32                | not-before i64 LE: slice blocks to delete    |
//! | `SE` sid:u64                          | session info, JSON (`SessionInfo`)           |
//! | `SS` sid:u64 ino:u64                  | empty: open-unlinked inode held by session   |
//! | `SR` sid:u64 start:u64                | end:u64 LE: slice ids reserved by a session  |
//! | `SL` sid:u64 ino:u64                  | empty: the session holds locks on the inode  |
//! | `G` start:u64 end:u64                 | empty: slice ids to sweep for orphan blocks  |
//! | `trash-cleanup`                       | i64 LE: when a client last emptied the trash |
//! | `backup-meta`                         | i64 LE: when a client last backed up the metadata |
//!
//! All keys of one inode share the prefix `A` ino, so releasing an inode is one range
//! scan. A directory's entries exist twice: `D` (by name, for lookup) and `E` (by a
//! per-directory sequence number, for readdir). Readdir cookies are sequence numbers, so
//! a cookie stays valid while entries are added or removed: nothing is skipped or
//! repeated, and entries added during a listing appear at its end.

use super::types::Ino;

pub const SETTING: &[u8] = b"setting";
/// When a client last claimed the trash's expiry job (see `trash`).
pub const TRASH_CLEANUP: &[u8] = b"trash-cleanup";
/// When a client last claimed the metadata backup (see `data::backup`).
pub const BACKUP_CLAIM: &[u8] = b"backup-meta";

const INODE: u8 = b'A';
const ATTR: u8 = b'I';
const DENTRY: u8 = b'D';
const DIR_INDEX: u8 = b'E';
const CHUNK: u8 = b'C';
const SYMLINK: u8 = b'S';
const XATTR: u8 = b'X';
const FLOCK: u8 = b'F';
const POSIX_LOCK: u8 = b'P';
const ORIGIN: u8 = b'O';

fn inode_prefix_with(ino: Ino, tag: u8, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + extra);
    k.push(INODE);
    k.extend_from_slice(&ino.0.to_be_bytes());
    k.push(tag);
    k
}

/// Every key of an inode starts with this.
pub fn inode_prefix(ino: Ino) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(INODE);
    k.extend_from_slice(&ino.0.to_be_bytes());
    k
}

pub fn attr(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, ATTR, 0)
}

/// Parses an attribute key back to its inode (for whole-volume scans).
pub fn parse_attr(key: &[u8]) -> Option<Ino> {
    if key.len() == 10 && key[0] == INODE && key[9] == ATTR {
        Some(Ino(u64::from_be_bytes(key[1..9].try_into().ok()?)))
    } else {
        None
    }
}

pub fn dentry(parent: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = inode_prefix_with(parent, DENTRY, name.len());
    k.extend_from_slice(name);
    k
}

pub fn dentry_prefix(parent: Ino) -> Vec<u8> {
    inode_prefix_with(parent, DENTRY, 0)
}

/// Parses a dentry key into (parent, name).
pub fn parse_dentry(key: &[u8]) -> Option<(Ino, &[u8])> {
    if key.len() >= 10 && key[0] == INODE && key[9] == DENTRY {
        Some((
            Ino(u64::from_be_bytes(key[1..9].try_into().ok()?)),
            &key[10..],
        ))
    } else {
        None
    }
}

pub fn dir_index(parent: Ino, seq: u64) -> Vec<u8> {
    let mut k = inode_prefix_with(parent, DIR_INDEX, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn dir_index_prefix(parent: Ino) -> Vec<u8> {
    inode_prefix_with(parent, DIR_INDEX, 0)
}

pub fn parse_dir_index(key: &[u8]) -> Option<u64> {
    if key.len() == 18 && key[0] == INODE && key[9] == DIR_INDEX {
        Some(u64::from_be_bytes(key[10..18].try_into().ok()?))
    } else {
        None
    }
}

pub fn chunk(ino: Ino, index: u32) -> Vec<u8> {
    let mut k = inode_prefix_with(ino, CHUNK, 4);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn chunk_prefix(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, CHUNK, 0)
}

pub fn trash_origin(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, ORIGIN, 0)
}

pub fn symlink(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, SYMLINK, 0)
}

pub fn xattr(ino: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = inode_prefix_with(ino, XATTR, name.len());
    k.extend_from_slice(name);
    k
}

pub fn xattr_prefix(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, XATTR, 0)
}

pub fn flock_table(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, FLOCK, 0)
}

pub fn posix_lock_table(ino: Ino) -> Vec<u8> {
    inode_prefix_with(ino, POSIX_LOCK, 0)
}

pub fn session_lock(sid: u64, ino: Ino) -> Vec<u8> {
    let mut k = session_lock_prefix(sid);
    k.extend_from_slice(&ino.0.to_be_bytes());
    k
}

pub fn session_lock_prefix(sid: u64) -> Vec<u8> {
    let mut k = b"SL".to_vec();
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

pub fn parse_session_lock(key: &[u8]) -> Option<(u64, Ino)> {
    if key.len() == 18 && key.starts_with(b"SL") {
        Some((
            u64::from_be_bytes(key[2..10].try_into().ok()?),
            Ino(u64::from_be_bytes(key[10..18].try_into().ok()?)),
        ))
    } else {
        None
    }
}

pub fn counter(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'C');
    k.extend_from_slice(name.as_bytes());
    k
}

/// One shard of a sharded counter (see `counters`).
pub fn counter_shard(name: &str, shard: u8) -> Vec<u8> {
    let mut k = counter(name);
    k.push(b'/');
    k.push(shard);
    k
}

pub const DELETION_PREFIX: &[u8] = b"D";

pub fn deletion(ino: Ino, length: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'D');
    k.extend_from_slice(&ino.0.to_be_bytes());
    k.extend_from_slice(&length.to_be_bytes());
    k
}

pub fn parse_deletion(key: &[u8]) -> Option<(Ino, u64)> {
    if key.len() == 17 && key[0] == b'D' {
        Some((
            Ino(u64::from_be_bytes(key[1..9].try_into().ok()?)),
            u64::from_be_bytes(key[9..17].try_into().ok()?),
        ))
    } else {
        None
    }
}

pub fn slice_refs(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'K');
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The slice id of a `tag` slice:u64 key (`K`, `Z`, `V`).
fn parse_slice_key(tag: u8, key: &[u8]) -> Option<u64> {
    match key {
        [t, id @ ..] if *t == tag => Some(u64::from_be_bytes(id.try_into().ok()?)),
        _ => None,
    }
}

pub const SLICE_REFS_PREFIX: &[u8] = b"K";

pub fn parse_slice_refs(key: &[u8]) -> Option<u64> {
    parse_slice_key(b'K', key)
}

pub const SLICE_SUMS_PREFIX: &[u8] = b"Z";

/// Written with the commit of the slice, deleted with its blocks.
pub fn slice_sums(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'Z');
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn parse_slice_sums(key: &[u8]) -> Option<u64> {
    parse_slice_key(b'Z', key)
}

pub const INLINE_SLICE_PREFIX: &[u8] = b"V";

/// The bytes of inline slice `id`: written with the commit of the slice, deleted with it.
pub fn inline_slice(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'V');
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn parse_inline_slice(key: &[u8]) -> Option<u64> {
    parse_slice_key(b'V', key)
}

pub const STAGED_SLICE_PREFIX: &[u8] = b"W";

/// A slice whose blocks are staged by a write-back client: written with the slice's
/// commit, deleted when its last block is uploaded. Its blocks are not deleted while it
/// exists.
pub fn staged_slice(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'W');
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn parse_staged_slice(key: &[u8]) -> Option<u64> {
    parse_slice_key(b'W', key)
}

pub const SLICE_DELETION_PREFIX: &[u8] = b"Y";

pub fn slice_deletion(id: u64, size: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(b'Y');
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&size.to_be_bytes());
    k
}

pub fn parse_slice_deletion(key: &[u8]) -> Option<(u64, u32)> {
    if key.len() == 13 && key[0] == b'Y' {
        Some((
            u64::from_be_bytes(key[1..9].try_into().ok()?),
            u32::from_be_bytes(key[9..13].try_into().ok()?),
        ))
    } else {
        None
    }
}

pub fn parse_chunk(key: &[u8]) -> Option<(Ino, u32)> {
    if key.len() == 14 && key[0] == INODE && key[9] == CHUNK {
        Some((
            Ino(u64::from_be_bytes(key[1..9].try_into().ok()?)),
            u32::from_be_bytes(key[10..14].try_into().ok()?),
        ))
    } else {
        None
    }
}

pub const SESSION_PREFIX: &[u8] = b"SE";

pub fn session(sid: u64) -> Vec<u8> {
    let mut k = SESSION_PREFIX.to_vec();
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

pub fn parse_session(key: &[u8]) -> Option<u64> {
    if key.len() == 10 && key.starts_with(SESSION_PREFIX) {
        Some(u64::from_be_bytes(key[2..10].try_into().ok()?))
    } else {
        None
    }
}

pub fn slice_reservation_prefix(sid: u64) -> Vec<u8> {
    let mut k = b"SR".to_vec();
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

pub fn slice_reservation(sid: u64, start: u64) -> Vec<u8> {
    let mut k = slice_reservation_prefix(sid);
    k.extend_from_slice(&start.to_be_bytes());
    k
}

pub const ORPHAN_SWEEP_PREFIX: &[u8] = b"G";

pub fn orphan_sweep(start: u64, end: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'G');
    k.extend_from_slice(&start.to_be_bytes());
    k.extend_from_slice(&end.to_be_bytes());
    k
}

pub fn parse_orphan_sweep(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() == 17 && key[0] == b'G' {
        Some((
            u64::from_be_bytes(key[1..9].try_into().ok()?),
            u64::from_be_bytes(key[9..17].try_into().ok()?),
        ))
    } else {
        None
    }
}

pub fn sustained(sid: u64, ino: Ino) -> Vec<u8> {
    let mut k = sustained_prefix(sid);
    k.extend_from_slice(&ino.0.to_be_bytes());
    k
}

pub fn sustained_prefix(sid: u64) -> Vec<u8> {
    let mut k = b"SS".to_vec();
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

pub fn parse_sustained(key: &[u8]) -> Option<(u64, Ino)> {
    if key.len() == 18 && key.starts_with(b"SS") {
        Some((
            u64::from_be_bytes(key[2..10].try_into().ok()?),
            Ino(u64::from_be_bytes(key[10..18].try_into().ok()?)),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let ino = Ino(0x0102_0304_0506_0708);
        assert_eq!(parse_attr(&attr(ino)), Some(ino));
        assert_eq!(
            parse_dentry(&dentry(ino, b"name")),
            Some((ino, &b"name"[..]))
        );
        assert_eq!(parse_dir_index(&dir_index(ino, 77)), Some(77));
        assert_eq!(parse_deletion(&deletion(ino, 99)), Some((ino, 99)));
        assert_eq!(parse_session(&session(5)), Some(5));
        assert_eq!(parse_sustained(&sustained(5, ino)), Some((5, ino)));
        assert_eq!(parse_attr(&dentry(ino, b"")), None);
        assert_eq!(parse_slice_deletion(&slice_deletion(9, 77)), Some((9, 77)));
        assert_eq!(parse_chunk(&chunk(ino, 3)), Some((ino, 3)));
    }

    #[test]
    fn numeric_order_is_byte_order() {
        assert!(attr(Ino(255)) < attr(Ino(256)));
        assert!(dir_index(Ino(1), 255) < dir_index(Ino(1), 256));
        assert!(attr(Ino(7)).starts_with(&inode_prefix(Ino(7))));
        assert!(dentry(Ino(7), b"x").starts_with(&dentry_prefix(Ino(7))));
    }
}
