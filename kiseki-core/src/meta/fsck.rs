//! Consistency check of the whole namespace (`kiseki fsck`, crash tests).
//!
//! Reads every key in one snapshot and verifies the invariants the operations keep:
//! both dentry forms agree, link counts equal the references, directories have one
//! parent, every record belongs to a live inode, what the trash keeps is where it says
//! and has an origin, and the counters equal recomputed sums.

use std::collections::{HashMap, HashSet};

use super::counters;
use super::keys;
use super::kv::{prefix_end, KvTxn};
use super::records::{self, Dentry};
use super::types::{Attr, FileKind, Ino};
use super::Meta;
use crate::error::Result;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Inodes found (including root and open-unlinked ones).
    pub inodes: u64,
    /// Space the inodes are charged for, recomputed.
    pub used_space: u64,
    /// What the counters say.
    pub counted_inodes: i64,
    pub counted_space: i64,
    /// Reserved (fallocated, unwritten) bytes the slice records show, and the counter.
    pub reserved_space: u64,
    pub counted_reserved: i64,
    /// Bytes of inline slices (values in the metadata engine), and the counter.
    pub inline_space: u64,
    pub counted_inline: i64,
    /// Open-unlinked inodes still held by a session.
    pub sustained: u64,
    /// Files whose data waits for deletion.
    pub pending_deletions: u64,
    /// What the trash holds (its directories included), recomputed, and the counters.
    pub trash_space: u64,
    pub trash_inodes: u64,
    pub counted_trash_space: i64,
    pub counted_trash_inodes: i64,
    /// Every violated invariant, in words.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Default)]
pub(super) struct Scan {
    pub(super) attrs: HashMap<Ino, Attr>,
    pub(super) dentries: Vec<(Ino, Vec<u8>, Dentry)>,
    pub(super) index: HashMap<(Ino, u64), (FileKind, Ino, Vec<u8>)>,
    pub(super) symlinks: HashSet<Ino>,
    pub(super) origins: HashSet<Ino>,
    pub(super) other: Vec<(Ino, &'static str)>,
    pub(super) chunks: HashSet<Ino>,
    /// Data bytes the slice records of each inode show.
    pub(super) covered: HashMap<Ino, u64>,
    /// Reserved bytes all slice records show.
    pub(super) reserved: u64,
    pub(super) sustained: Vec<(u64, Ino)>,
    pub(super) sessions: HashSet<u64>,
    pub(super) deletions: HashSet<Ino>,
    /// Slices with blocks that chunk records reference; slices queued for block
    /// deletion; slices with recorded checksums.
    pub(super) slices: HashSet<u64>,
    pub(super) doomed_slices: HashSet<u64>,
    pub(super) summed_slices: HashSet<u64>,
    /// Inline slices records reference, with their sizes; inline values stored, with
    /// their lengths.
    pub(super) inline_refs: HashMap<u64, u32>,
    pub(super) inline_values: HashMap<u64, usize>,
    /// Slices a write-back client staged and has not uploaded yet.
    pub(super) staged: Vec<u64>,
    /// Records per slice, and the extra references `K` keys record.
    pub(super) records_of: HashMap<u64, i64>,
    pub(super) extra_refs: HashMap<u64, i64>,
}

fn scan_all(
    tx: &mut dyn KvTxn,
    prefix: &[u8],
    mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let end = prefix_end(prefix);
    let mut start = prefix.to_vec();
    loop {
        let page = tx.scan(&start, &end, 10_000)?;
        for (k, v) in &page {
            each(k, v)?;
        }
        match page.last() {
            Some((k, _)) if page.len() == 10_000 => {
                start = k.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// Reads every record the invariants concern, in one snapshot: the scan and what could
/// not be decoded.
pub(super) fn scan(tx: &mut dyn KvTxn) -> Result<(Scan, Vec<String>)> {
    let mut s = Scan::default();
    let mut problems = Vec::new();
    scan_all(tx, b"A", |k, v| {
        let Some(ino) = k
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            problems.push(format!(
                "short inode key {:?}",
                k.escape_ascii().to_string()
            ));
            return Ok(());
        };
        let ino = Ino(ino);
        match k.get(9) {
            Some(b'I') => match records::decode_attr(ino, v) {
                Ok(a) => {
                    s.attrs.insert(ino, a);
                }
                Err(e) => problems.push(e.to_string()),
            },
            Some(b'D') => match records::decode_dentry(ino, v) {
                Ok(d) => s.dentries.push((ino, k[10..].to_vec(), d)),
                Err(e) => problems.push(e.to_string()),
            },
            Some(b'E') => match (keys::parse_dir_index(k), records::decode_dir_index(ino, v)) {
                (Some(seq), Ok(e)) => {
                    s.index.insert((ino, seq), e);
                }
                _ => problems.push(format!("malformed directory index record in {ino}")),
            },
            Some(b'S') => {
                s.symlinks.insert(ino);
            }
            Some(b'X') => s.other.push((ino, "xattr")),
            Some(b'O') => match records::decode_origin(ino, v) {
                Ok(_) => {
                    s.origins.insert(ino);
                }
                Err(e) => problems.push(e.to_string()),
            },
            Some(b'F' | b'P') => s.other.push((ino, "lock table")),
            Some(b'C') => {
                s.chunks.insert(ino);
                match records::decode_slices(ino, super::CHUNK_SIZE, v) {
                    Ok(recs) => {
                        *s.covered.entry(ino).or_default() += super::ops::chunks::covered(&recs);
                        s.reserved += super::ops::chunks::reserved(&recs);
                        s.slices
                            .extend(recs.iter().filter(|r| r.has_blocks()).map(|r| r.id));
                        for r in recs.iter().filter(|r| r.has_blocks()) {
                            *s.records_of.entry(r.id).or_default() += 1;
                        }
                        s.inline_refs.extend(
                            recs.iter()
                                .filter(|r| records::is_inline(r.id))
                                .map(|r| (r.id, r.size)),
                        );
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            _ => problems.push(format!("unknown key {:?}", k.escape_ascii().to_string())),
        }
        Ok(())
    })?;
    scan_all(tx, b"SS", |k, _| {
        if let Some(x) = keys::parse_sustained(k) {
            s.sustained.push(x);
        }
        Ok(())
    })?;
    scan_all(tx, keys::SESSION_PREFIX, |k, _| {
        if let Some(sid) = keys::parse_session(k) {
            s.sessions.insert(sid);
        }
        Ok(())
    })?;
    scan_all(tx, keys::DELETION_PREFIX, |k, _| {
        if let Some((ino, _)) = keys::parse_deletion(k) {
            s.deletions.insert(ino);
        }
        Ok(())
    })?;
    scan_all(tx, keys::SLICE_SUMS_PREFIX, |k, v| {
        match keys::parse_slice_sums(k) {
            Some(id) => match crate::data::checksum::decode(id, v) {
                Ok(_) => {
                    s.summed_slices.insert(id);
                }
                Err(e) => problems.push(e.to_string()),
            },
            None => problems.push(format!(
                "malformed checksum key {:?}",
                k.escape_ascii().to_string()
            )),
        }
        Ok(())
    })?;
    scan_all(tx, keys::SLICE_REFS_PREFIX, |k, v| {
        match (keys::parse_slice_refs(k), super::kv::decode_counter(v)) {
            (Some(id), Some(n)) => {
                s.extra_refs.insert(id, n);
            }
            _ => problems.push(format!(
                "malformed reference count {:?}",
                k.escape_ascii().to_string()
            )),
        }
        Ok(())
    })?;
    scan_all(tx, keys::INLINE_SLICE_PREFIX, |k, v| {
        match keys::parse_inline_slice(k) {
            Some(id) => {
                s.inline_values.insert(id, v.len());
            }
            None => problems.push(format!(
                "malformed inline slice key {:?}",
                k.escape_ascii().to_string()
            )),
        }
        Ok(())
    })?;
    scan_all(tx, keys::STAGED_SLICE_PREFIX, |k, v| {
        match (keys::parse_staged_slice(k), records::decode_staged(v)) {
            (Some(id), Ok(_)) => s.staged.push(id),
            _ => problems.push(format!(
                "malformed staged slice record {:?}",
                k.escape_ascii().to_string()
            )),
        }
        Ok(())
    })?;
    scan_all(tx, keys::SLICE_DELETION_PREFIX, |k, _| {
        if let Some((id, _)) = keys::parse_slice_deletion(k) {
            s.doomed_slices.insert(id);
        }
        Ok(())
    })?;
    Ok((s, problems))
}

impl Meta {
    pub fn check(&self) -> Result<CheckReport> {
        let (scan, counted_inodes, counted_space) = self.read(|tx| {
            let (s, problems) = scan(tx)?;
            let ci = counters::sum(tx, counters::TOTAL_INODES)?;
            let cs = counters::sum(tx, counters::USED_SPACE)?;
            let cr = counters::sum(tx, counters::RESERVED_SPACE)?;
            let cl = counters::sum(tx, counters::INLINE_SPACE)?;
            let trash = (
                counters::sum(tx, counters::TRASH_SPACE)?,
                counters::sum(tx, counters::TRASH_INODES)?,
            );
            Ok(((s, problems), ci, (cs, cr, cl, trash)))
        })?;
        let (counted_space, counted_reserved, counted_inline, counted_trash) = counted_space;
        let (scan, decode_problems) = scan;
        let mut report = verify(&scan);
        (report.counted_trash_space, report.counted_trash_inodes) = counted_trash;
        if report.counted_trash_space != report.trash_space as i64
            || report.counted_trash_inodes != report.trash_inodes as i64
        {
            report.problems.push(format!(
                "trash counters say {} bytes in {} inodes but the trash holds {} in {}",
                report.counted_trash_space,
                report.counted_trash_inodes,
                report.trash_space,
                report.trash_inodes
            ));
        }
        report.problems.splice(0..0, decode_problems);
        let mut unsummed: Vec<u64> = scan
            .slices
            .difference(&scan.summed_slices)
            .filter(|id| !records::is_inline(**id) && self.volume().checksums_required(**id))
            .copied()
            .collect();
        let mut bad_inline: Vec<String> = scan
            .inline_refs
            .iter()
            .filter_map(|(&id, &size)| match scan.inline_values.get(&id) {
                Some(&len) if len == size as usize => None,
                Some(&len) => Some(format!("{id:#x} holds {len} bytes, records say {size}")),
                None => Some(format!("{id:#x} has no value")),
            })
            .collect();
        if !bad_inline.is_empty() {
            bad_inline.sort();
            report.problems.push(format!(
                "{} referenced inline slices are damaged (first: {:?})",
                bad_inline.len(),
                &bad_inline[..bad_inline.len().min(10)]
            ));
        }
        let mut stray_inline: Vec<u64> = scan
            .inline_values
            .keys()
            .filter(|id| !scan.inline_refs.contains_key(id) && !scan.doomed_slices.contains(id))
            .copied()
            .collect();
        if !stray_inline.is_empty() {
            stray_inline.sort();
            report.problems.push(format!(
                "values of {} inline slices nothing references or deletes (first: {:?})",
                stray_inline.len(),
                &stray_inline[..stray_inline.len().min(10)]
            ));
        }
        // Each slice is referenced once per record: the first implicitly, the others
        // by its `K` count. A count too high leaks the slice; too low deletes it while
        // records still point at it.
        let mut miscounted: Vec<String> = scan
            .records_of
            .iter()
            .filter_map(|(&id, &n)| {
                let extra = scan.extra_refs.get(&id).copied().unwrap_or(0);
                (extra != n - 1).then(|| format!("{id}: {n} records, {extra} extra references"))
            })
            .chain(
                scan.extra_refs
                    .keys()
                    .filter(|id| !scan.records_of.contains_key(id))
                    .map(|id| format!("{id}: references recorded, no record")),
            )
            .collect();
        if !miscounted.is_empty() {
            miscounted.sort();
            report.problems.push(format!(
                "{} slices have wrong reference counts (first: {:?})",
                miscounted.len(),
                &miscounted[..miscounted.len().min(10)]
            ));
        }
        report.inline_space = scan.inline_values.values().map(|&l| l as u64).sum();
        report.counted_inline = counted_inline;
        if report.counted_inline != report.inline_space as i64 {
            report.problems.push(format!(
                "inline-space counter says {} but inline values hold {}",
                report.counted_inline, report.inline_space
            ));
        }
        if !unsummed.is_empty() {
            unsummed.sort();
            report.problems.push(format!(
                "{} referenced slices have no checksums (first: {:?})",
                unsummed.len(),
                &unsummed[..unsummed.len().min(10)]
            ));
        }
        // A staged slice is committed (referenced) or deleted after its upload.
        let mut stray_staged: Vec<u64> = scan
            .staged
            .iter()
            .filter(|id| !scan.slices.contains(id) && !scan.doomed_slices.contains(id))
            .copied()
            .collect();
        if !stray_staged.is_empty() {
            stray_staged.sort();
            report.problems.push(format!(
                "staged records of {} slices nothing references or deletes (first: {:?})",
                stray_staged.len(),
                &stray_staged[..stray_staged.len().min(10)]
            ));
        }
        let mut stray: Vec<u64> = scan
            .summed_slices
            .iter()
            .filter(|id| !scan.slices.contains(id) && !scan.doomed_slices.contains(id))
            .copied()
            .collect();
        if !stray.is_empty() {
            stray.sort();
            report.problems.push(format!(
                "checksums of {} slices nothing references or deletes (first: {:?})",
                stray.len(),
                &stray[..stray.len().min(10)]
            ));
        }
        report.counted_inodes = counted_inodes;
        report.counted_space = counted_space;
        report.counted_reserved = counted_reserved;
        if report.counted_reserved != report.reserved_space as i64 {
            report.problems.push(format!(
                "reserved-space counter says {} but slice records reserve {}",
                report.counted_reserved, report.reserved_space
            ));
        }
        if report.counted_inodes != report.inodes as i64 {
            report.problems.push(format!(
                "inode counter says {} but {} inodes exist",
                report.counted_inodes, report.inodes
            ));
        }
        if report.counted_space != report.used_space as i64 {
            report.problems.push(format!(
                "space counter says {} but inodes use {}",
                report.counted_space, report.used_space
            ));
        }
        Ok(report)
    }
}

fn verify(s: &Scan) -> CheckReport {
    let mut r = CheckReport {
        inodes: s.attrs.len() as u64,
        used_space: s.attrs.values().map(Attr::space).sum(),
        reserved_space: s.reserved,
        sustained: s.sustained.len() as u64,
        pending_deletions: s.deletions.len() as u64,
        ..Default::default()
    };
    let p = &mut r.problems;
    match s.attrs.get(&Ino::ROOT) {
        Some(a) if a.kind == FileKind::Dir => {}
        _ => p.push("root directory is missing or not a directory".into()),
    }
    let kept = s.attrs.values().filter(|a| a.in_trash());
    r.trash_inodes = kept.clone().count() as u64;
    r.trash_space = kept.map(Attr::space).sum();
    let mut refs: HashMap<Ino, Vec<Ino>> = HashMap::new();
    let mut subdirs: HashMap<Ino, u32> = HashMap::new();
    for (parent, name, d) in &s.dentries {
        let shown = String::from_utf8_lossy(name);
        match s.attrs.get(parent) {
            Some(pa) if pa.kind == FileKind::Dir => {
                if d.seq >= pa.next_entry_seq {
                    p.push(format!("entry {shown:?} in {parent} has sequence {} beyond the directory's next {}", d.seq, pa.next_entry_seq));
                }
            }
            _ => p.push(format!(
                "entry {shown:?} lives in {parent}, which is not a directory"
            )),
        }
        match s.attrs.get(&d.ino) {
            Some(a) if a.kind == d.kind => {}
            Some(a) => p.push(format!(
                "entry {shown:?} in {parent} says {:?} but inode {} is {:?}",
                d.kind, d.ino, a.kind
            )),
            None => p.push(format!(
                "entry {shown:?} in {parent} points to missing inode {}",
                d.ino
            )),
        }
        match s.index.get(&(*parent, d.seq)) {
            Some((k, i, n)) if *k == d.kind && *i == d.ino && n == name => {}
            _ => p.push(format!(
                "entry {shown:?} in {parent} has no matching directory index record"
            )),
        }
        refs.entry(d.ino).or_default().push(*parent);
        // A directory kept in the trash is no link of its hour directory.
        let kept = s.attrs.get(&d.ino).is_some_and(|a| a.nlink == 0);
        if d.kind == FileKind::Dir && !kept {
            *subdirs.entry(*parent).or_default() += 1;
        }
    }
    let dentry_set: HashSet<(Ino, &[u8])> = s
        .dentries
        .iter()
        .map(|(p, n, _)| (*p, n.as_slice()))
        .collect();
    for ((parent, seq), (_, _, name)) in &s.index {
        if !dentry_set.contains(&(*parent, name.as_slice())) {
            p.push(format!(
                "directory index record {seq} in {parent} has no entry"
            ));
        }
    }
    let sustained: HashSet<Ino> = s.sustained.iter().map(|(_, i)| *i).collect();
    for (ino, a) in &s.attrs {
        let parents = refs.get(ino).map(Vec::as_slice).unwrap_or(&[]);
        let is_hour = |dir: &Ino| {
            s.attrs
                .get(dir)
                .is_some_and(|h| h.in_trash() && h.parent == Ino::TRASH && h.is_dir())
        };
        if a.nlink == 0 && a.in_trash() {
            // Kept by the trash: one entry, in an hour directory, with its origin.
            if parents.len() != 1 || !is_hour(&parents[0]) || a.parent != parents[0] {
                p.push(format!(
                    "inode {ino} is kept by the trash but has entries in {parents:?}, not one in its hour directory {}",
                    a.parent
                ));
            }
            if !s.origins.contains(ino) {
                p.push(format!("trash entry {ino} has no origin record"));
            }
            continue;
        }
        if s.origins.contains(ino) {
            p.push(format!(
                "inode {ino} is not in the trash but has an origin record"
            ));
        }
        if a.in_trash() && *ino != Ino::TRASH && !(a.is_dir() && a.parent == Ino::TRASH) {
            p.push(format!(
                "inode {ino} is marked as the trash's but is neither kept nor an hour directory"
            ));
        }
        if a.nlink == 0 {
            if !sustained.contains(ino) {
                p.push(format!(
                    "inode {ino} has no links and no session holds it (leaked)"
                ));
            }
            if !parents.is_empty() {
                p.push(format!(
                    "inode {ino} has nlink 0 but {} entries",
                    parents.len()
                ));
            }
            continue;
        }
        if a.kind == FileKind::Dir {
            let expected = 2 + subdirs.get(ino).copied().unwrap_or(0);
            if a.nlink != expected {
                p.push(format!(
                    "directory {ino} has nlink {} but {expected} links",
                    a.nlink
                ));
            }
            if *ino == Ino::ROOT || *ino == Ino::TRASH {
                if !parents.is_empty() {
                    p.push(format!("directory {ino} has an entry pointing to it"));
                }
            } else if parents.len() != 1 {
                p.push(format!(
                    "directory {ino} has {} entries (must be 1)",
                    parents.len()
                ));
            } else if parents[0] != a.parent {
                p.push(format!(
                    "directory {ino} records parent {} but lives in {}",
                    a.parent, parents[0]
                ));
            }
        } else if a.nlink as usize != parents.len() {
            p.push(format!(
                "inode {ino} has nlink {} but {} entries",
                a.nlink,
                parents.len()
            ));
        }
        let covered = s.covered.get(ino).copied().unwrap_or(0);
        if a.kind == FileKind::File && a.stored != covered {
            p.push(format!(
                "file {ino} records {} data bytes but its slices hold {covered}",
                a.stored
            ));
        }
        if (a.kind == FileKind::Symlink) != s.symlinks.contains(ino) {
            p.push(format!(
                "inode {ino} ({:?}) and its symlink target record disagree",
                a.kind
            ));
        }
    }
    for (ino, what) in &s.other {
        if !s.attrs.contains_key(ino) {
            p.push(format!("{what} record of missing inode {ino}"));
        }
    }
    for ino in &s.symlinks {
        if !s.attrs.contains_key(ino) {
            p.push(format!("symlink target of missing inode {ino}"));
        }
    }
    for ino in &s.chunks {
        if !s.attrs.contains_key(ino) && !s.deletions.contains(ino) {
            p.push(format!(
                "slice records of missing inode {ino} with no pending deletion"
            ));
        }
    }
    for (sid, ino) in &s.sustained {
        if !s.sessions.contains(sid) {
            p.push(format!(
                "inode {ino} held by session {sid}, which does not exist"
            ));
        }
    }
    r
}
