//! Metadata record and key decoders: a corrupt value or key must be an error (or
//! `None`), never a panic, and whatever decodes must encode back to the same bytes.
//!
//! Input: a selector byte (which decoder), then the record or key.
#![no_main]

use kiseki_core::data::checksum;
use kiseki_core::meta::kv::decode_counter;
use kiseki_core::meta::records::{self, has_blocks, SliceRecord};
use kiseki_core::meta::{keys, overlay, FileKind, Ino, CHUNK_SIZE};
use libfuzzer_sys::fuzz_target;

const INO: Ino = Ino(42);

fn corrupt_ok(what: &str, buf: &[u8], e: kiseki_core::Error) {
    let n = e.errno();
    assert!((1..4096).contains(&n), "{what} {buf:?}: errno {n} of {e:?}");
}

fn attr(buf: &[u8]) {
    match records::decode_attr(INO, buf) {
        Ok(a) => assert_eq!(records::encode_attr(&a), buf, "attr {a:?}"),
        Err(e) => corrupt_ok("attr", buf, e),
    }
}

fn dentry(buf: &[u8]) {
    match records::decode_dentry(INO, buf) {
        Ok(d) => assert_eq!(records::encode_dentry(&d), buf, "dentry {d:?}"),
        Err(e) => corrupt_ok("dentry", buf, e),
    }
}

fn dir_index(buf: &[u8]) {
    match records::decode_dir_index(INO, buf) {
        Ok((kind, ino, name)) => {
            assert!(!name.is_empty());
            assert_eq!(records::encode_dir_index(kind, ino, &name), buf);
        }
        Err(e) => corrupt_ok("dir index", buf, e),
    }
}

/// Decoded slices re-encode to the same bytes, decode again to themselves, and resolve
/// into pieces that tile the chunk and stay inside their slices.
fn slices(chunk_size: u64, buf: &[u8]) {
    let recs = match records::decode_slices(INO, chunk_size, buf) {
        Ok(r) => r,
        Err(e) => return corrupt_ok("slices", buf, e),
    };
    let mut enc = Vec::new();
    records::encode_slices(&mut enc, &recs);
    assert_eq!(enc, buf);
    let again = records::decode_slices(INO, chunk_size, &enc).expect("re-encoded slices decode");
    assert_eq!(again, recs);
    for r in &recs {
        assert!(
            r.len > 0 && u64::from(r.pos) + u64::from(r.len) <= chunk_size,
            "{r:?}"
        );
        assert!(
            !r.has_blocks() || r.off as u64 + r.len as u64 <= r.size as u64,
            "{r:?}"
        );
    }
    let end = recs
        .iter()
        .map(|r| u64::from(r.pos) + u64::from(r.len))
        .max()
        .unwrap_or(0)
        .max(chunk_size.min(CHUNK_SIZE));
    let pieces = overlay::visible(&recs, 0, end);
    let mut cur = 0;
    for p in &pieces {
        assert_eq!(p.chunk_pos, cur, "pieces {pieces:?} of {recs:?}");
        assert!(p.len > 0, "empty piece in {pieces:?}");
        if has_blocks(p.id) {
            assert!(
                p.slice_off + p.len <= u64::from(p.size),
                "piece {p:?} leaves its slice ({recs:?})"
            );
            // The piece comes from a record of that slice that covers it.
            assert!(
                recs.iter().any(|r: &SliceRecord| r.id == p.id
                    && u64::from(r.pos) <= p.chunk_pos
                    && p.chunk_pos + p.len <= u64::from(r.pos) + u64::from(r.len)
                    && i64::from(r.off) - i64::from(r.pos)
                        == p.slice_off as i64 - p.chunk_pos as i64)
                    || recs.iter().filter(|r| r.id == p.id).count() > 1,
                "piece {p:?} matches no record of {recs:?}"
            );
        }
        cur += p.len;
    }
    assert_eq!(cur, end, "pieces {pieces:?} of {recs:?}");
    let visible = overlay::visible_records(&recs);
    assert!(visible.iter().all(|&i| i < recs.len()));
    if let Some(last) = recs.len().checked_sub(1) {
        assert!(
            visible.contains(&last),
            "the newest record is always visible"
        );
    }
}

fn format(buf: &[u8]) {
    match records::decode_format(buf) {
        Ok(f) => {
            let enc = records::encode_format(&f);
            assert_eq!(records::decode_format(&enc).ok().as_ref(), Some(&f));
            let _ = f.checksums_required(0);
        }
        Err(e) => corrupt_ok("format", buf, e),
    }
}

fn session(buf: &[u8]) {
    match records::decode_session(buf) {
        Ok(s) => {
            let enc = records::encode_session(&s);
            assert_eq!(records::decode_session(&enc).ok().as_ref(), Some(&s));
        }
        Err(e) => corrupt_ok("session", buf, e),
    }
}

fn sums(buf: &[u8]) {
    match checksum::decode(7, buf) {
        Ok(s) => assert_eq!(checksum::encode(&s), buf),
        Err(e) => corrupt_ok("checksums", buf, e),
    }
}

fn counter(buf: &[u8]) {
    if let Some(n) = decode_counter(buf) {
        assert_eq!(n.to_le_bytes(), buf);
    } else {
        assert_ne!(buf.len(), 8);
    }
}

fn file_kind(buf: &[u8]) {
    for &b in buf {
        if let Some(k) = FileKind::from_code(b) {
            assert_eq!(k.code(), b);
            assert_eq!(FileKind::from_code(k.code()), Some(k));
        }
    }
}

/// Every key parser: what parses encodes back to the key.
fn key(k: &[u8]) {
    if let Some(ino) = keys::parse_attr(k) {
        assert_eq!(keys::attr(ino), k);
    }
    if let Some((parent, name)) = keys::parse_dentry(k) {
        assert_eq!(keys::dentry(parent, name), k);
        assert!(k.starts_with(&keys::dentry_prefix(parent)));
    }
    if let Some(seq) = keys::parse_dir_index(k) {
        let parent = Ino(u64::from_be_bytes(k[1..9].try_into().unwrap()));
        assert_eq!(keys::dir_index(parent, seq), k);
    }
    if let Some((ino, index)) = keys::parse_chunk(k) {
        assert_eq!(keys::chunk(ino, index), k);
        assert!(k.starts_with(&keys::chunk_prefix(ino)));
    }
    if let Some((sid, ino)) = keys::parse_session_lock(k) {
        assert_eq!(keys::session_lock(sid, ino), k);
    }
    if let Some((ino, len)) = keys::parse_deletion(k) {
        assert_eq!(keys::deletion(ino, len), k);
    }
    if let Some(id) = keys::parse_slice_sums(k) {
        assert_eq!(keys::slice_sums(id), k);
    }
    if let Some((id, size)) = keys::parse_slice_deletion(k) {
        assert_eq!(keys::slice_deletion(id, size), k);
    }
    if let Some(sid) = keys::parse_session(k) {
        assert_eq!(keys::session(sid), k);
    }
    if let Some((start, end)) = keys::parse_orphan_sweep(k) {
        assert_eq!(keys::orphan_sweep(start, end), k);
    }
    if let Some((sid, ino)) = keys::parse_sustained(k) {
        assert_eq!(keys::sustained(sid, ino), k);
    }
    let _ = kiseki_core::meta::kv::prefix_end(k);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 12 {
        0 => attr(rest),
        1 => dentry(rest),
        2 => dir_index(rest),
        3 => slices(CHUNK_SIZE, rest),
        4 => {
            // A chunk size of the input's choosing (the first 8 bytes).
            if rest.len() >= 8 {
                let (size, body) = rest.split_at(8);
                let size = u64::from_le_bytes(size.try_into().unwrap()) % (CHUNK_SIZE * 4 + 1);
                slices(size, body);
            }
        }
        5 => format(rest),
        6 => session(rest),
        7 => sums(rest),
        8 => counter(rest),
        9 => file_kind(rest),
        10 => key(rest),
        _ => {
            // Everything at once: each decoder must cope with any other's input.
            attr(rest);
            dentry(rest);
            dir_index(rest);
            slices(CHUNK_SIZE, rest);
            format(rest);
            session(rest);
            sums(rest);
            counter(rest);
            key(rest);
        }
    }
});
