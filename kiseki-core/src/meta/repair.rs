//! `kiseki fsck --repair`: mends what `fsck` (`Meta::check`) finds, one class of
//! problem after another, each fix a transaction of its own; the caller checks again.
//!
//! Each fix is the least destructive one that restores the invariant:
//! - dead sessions are cleaned as a live client's heartbeat would;
//! - an entry whose inode is missing, or whose directory is not one, is removed; an
//!   index record without its entry is removed; an entry without a matching index
//!   record is indexed again; an entry whose kind disagrees with its inode takes the
//!   inode's kind;
//! - a directory with several entries keeps the one its recorded parent holds (else
//!   the first), and records that parent;
//! - link counts become the entries found (directories: 2 + subdirectories);
//! - an inode no entry, session or trash holds (an orphan) is moved to `/lost+found` as
//!   `#INODE`, never deleted;
//! - records of a missing inode are removed (its slice records queued for deletion, as
//!   a release does); origin records of inodes not in the trash are removed;
//! - recorded data bytes become what the slice records hold; slice reference counts
//!   become the records found; checksums, inline values and staged records nothing
//!   references or deletes are removed;
//! - the counters are recomputed last.
//!
//! Not mended, only reported: blocks missing from or corrupt in object storage (data
//! loss; those files keep failing reads with EIO in the ranges, never reading zeros),
//! inline values that are gone, slices without checksums, symlinks without a target.

use std::collections::{HashMap, HashSet};

use super::counters;
use super::fsck::{self, Scan};
use super::keys;
use super::kv::prefix_end;
use super::ops::{insert_entry, load_attr, load_dentry, store_attr};
use super::records::{self, Dentry};
use super::types::{Attr, FileKind, Ino, Timespec, FLAG_TRASH};
use super::Meta;
use crate::error::{Error, Result};

/// One directory entry as the scan found it: (directory, name, entry).
type Entry<'a> = (Ino, &'a [u8], &'a Dentry);

/// Where orphans go.
pub const LOST_FOUND: &[u8] = b"lost+found";

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Meta {
    /// Mends the volume's metadata (see the module comment). Needs the volume to itself:
    /// refused while another client has a live session. Returns what was changed, one
    /// line each.
    pub fn repair(&self) -> Result<Vec<String>> {
        self.writable()?;
        let mut fixed = Vec::new();
        let dead = self.clean_stale_sessions()?;
        if dead > 0 {
            fixed.push(format!("cleaned {dead} dead sessions"));
        }
        let now = self.config.clock.now();
        let live: Vec<String> = self
            .sessions()?
            .into_iter()
            .filter(|s| s.sid != self.sid && s.expires >= now)
            .map(|s| format!("{} on {} (pid {})", s.client, s.host, s.pid))
            .collect();
        if !live.is_empty() {
            return Err(Error::Busy(format!(
                "the volume is in use by {}: unmount or disconnect first",
                live.join(", ")
            )));
        }
        let scan = || self.read(|tx| fsck::scan(tx).map(|(s, _)| s));
        self.repair_entries(&scan()?, &mut fixed)?;
        self.repair_links(&scan()?, &mut fixed)?;
        self.repair_records(&scan()?, &mut fixed)?;
        self.repair_counters(&scan()?, &mut fixed)?;
        Ok(fixed)
    }

    /// Entries and their index records.
    fn repair_entries(&self, s: &Scan, fixed: &mut Vec<String>) -> Result<()> {
        for (parent, name, d) in &s.dentries {
            let shown = show(name);
            let dir_ok = s.attrs.get(parent).is_some_and(Attr::is_dir);
            let Some(a) = s.attrs.get(&d.ino).filter(|_| dir_ok) else {
                self.write(|tx| {
                    tx.delete(&keys::dentry(*parent, name))?;
                    Ok(tx.delete(&keys::dir_index(*parent, d.seq))?)
                })?;
                fixed.push(format!(
                    "removed entry {shown:?} of {parent}: inode {} or its directory is missing",
                    d.ino
                ));
                continue;
            };
            let indexed = matches!(s.index.get(&(*parent, d.seq)),
                Some((k, i, n)) if *k == a.kind && *i == d.ino && n == name);
            if a.kind == d.kind && indexed {
                continue;
            }
            let kind = a.kind;
            self.write(|tx| {
                let e = Dentry {
                    kind,
                    ino: d.ino,
                    seq: d.seq,
                };
                tx.put(&keys::dentry(*parent, name), &records::encode_dentry(&e))?;
                tx.put(
                    &keys::dir_index(*parent, d.seq),
                    &records::encode_dir_index(kind, d.ino, name),
                )?;
                // Readdir bounds a listing by the directory's next sequence number.
                if let Some(mut pa) = load_attr(tx, *parent)? {
                    if d.seq >= pa.next_entry_seq {
                        pa.next_entry_seq = d.seq + 1;
                        store_attr(tx, *parent, &pa)?;
                    }
                }
                Ok(())
            })?;
            fixed.push(format!(
                "indexed entry {shown:?} of {parent} again ({kind:?})"
            ));
        }
        let entries: HashSet<(Ino, &[u8], u64)> = s
            .dentries
            .iter()
            .map(|(p, n, d)| (*p, n.as_slice(), d.seq))
            .collect();
        for ((parent, seq), (_, _, name)) in &s.index {
            if !entries.contains(&(*parent, name.as_slice(), *seq)) {
                self.write(|tx| Ok(tx.delete(&keys::dir_index(*parent, *seq))?))?;
                fixed.push(format!(
                    "removed index record {seq} of {parent} ({:?}): no such entry",
                    show(name)
                ));
            }
        }
        Ok(())
    }

    /// Directory parents, link counts and orphans.
    fn repair_links(&self, s: &Scan, fixed: &mut Vec<String>) -> Result<()> {
        // Each inode's entries: (directory, name, entry).
        let mut refs: HashMap<Ino, Vec<Entry>> = HashMap::new();
        let mut subdirs: HashMap<Ino, u32> = HashMap::new();
        let kept = |ino: &Ino| {
            s.attrs
                .get(ino)
                .is_some_and(|a| a.in_trash() && a.nlink == 0)
        };
        for (parent, name, d) in &s.dentries {
            refs.entry(d.ino).or_default().push((*parent, name, d));
        }
        // A directory keeps one entry: the one in its recorded parent, else the first.
        let mut dropped = HashSet::new();
        for (ino, list) in &refs {
            let Some(a) = s.attrs.get(ino).filter(|a| a.is_dir() && list.len() > 1) else {
                continue;
            };
            let keep = list
                .iter()
                .position(|(p, _, _)| *p == a.parent)
                .unwrap_or(0);
            for (i, (parent, name, d)) in list.iter().enumerate() {
                if i == keep {
                    continue;
                }
                self.write(|tx| {
                    tx.delete(&keys::dentry(*parent, name))?;
                    Ok(tx.delete(&keys::dir_index(*parent, d.seq))?)
                })?;
                dropped.insert((*parent, d.seq));
                fixed.push(format!(
                    "removed entry {:?} of {parent}: directory {ino} has another",
                    show(name)
                ));
            }
        }
        for (parent, _, d) in &s.dentries {
            if d.kind == FileKind::Dir && !kept(&d.ino) && !dropped.contains(&(*parent, d.seq)) {
                *subdirs.entry(*parent).or_default() += 1;
            }
        }
        let sustained: HashSet<Ino> = s.sustained.iter().map(|(_, i)| *i).collect();
        let mut orphans = Vec::new();
        for (ino, a) in &s.attrs {
            if kept(ino) {
                continue;
            }
            let parents: Vec<Ino> = refs
                .get(ino)
                .map(|l| {
                    l.iter()
                        .filter(|(p, _, d)| !dropped.contains(&(*p, d.seq)))
                        .map(|(p, _, _)| *p)
                        .collect()
                })
                .unwrap_or_default();
            let root = *ino == Ino::ROOT || *ino == Ino::TRASH;
            if parents.is_empty() && !root {
                if !sustained.contains(ino) {
                    orphans.push(*ino);
                }
                continue;
            }
            let nlink = if a.is_dir() {
                2 + subdirs.get(ino).copied().unwrap_or(0)
            } else {
                parents.len() as u32
            };
            let parent = if a.is_dir() && !root {
                parents[0]
            } else {
                a.parent
            };
            if a.nlink != nlink || a.parent != parent {
                self.write(|tx| {
                    let Some(mut cur) = load_attr(tx, *ino)? else {
                        return Ok(());
                    };
                    cur.nlink = nlink;
                    cur.parent = parent;
                    store_attr(tx, *ino, &cur)
                })?;
                fixed.push(format!(
                    "inode {ino}: {} links (was {}), parent {parent}",
                    nlink, a.nlink
                ));
            }
        }
        orphans.sort();
        for ino in orphans {
            self.adopt(ino)?;
            fixed.push(format!("moved orphan inode {ino} to /lost+found/#{ino}"));
        }
        Ok(())
    }

    /// Links orphan `ino` into `/lost+found` (made when missing) as `#INO`.
    fn adopt(&self, ino: Ino) -> Result<()> {
        let spare = Ino(self.inodes.next(&*self.kv, |_, _, _| Ok(()))?);
        self.write(|tx| {
            let now = Timespec::now();
            let lf = match load_dentry(tx, Ino::ROOT, LOST_FOUND)? {
                Some(d) => d.ino,
                None => {
                    let dir = Attr::new_dir(0o700, 0, 0, Ino::ROOT, now);
                    store_attr(tx, spare, &dir)?;
                    let mut root = super::ops::must_attr(tx, Ino::ROOT)?;
                    insert_entry(tx, Ino::ROOT, &mut root, LOST_FOUND, FileKind::Dir, spare)?;
                    root.nlink += 1;
                    store_attr(tx, Ino::ROOT, &root)?;
                    spare
                }
            };
            let mut a = super::ops::must_attr(tx, ino)?;
            let mut dir = super::ops::must_attr(tx, lf)?;
            let name = format!("#{ino}").into_bytes();
            insert_entry(tx, lf, &mut dir, &name, a.kind, ino)?;
            if a.is_dir() {
                dir.nlink += 1;
                a.nlink = 2;
            } else {
                a.nlink = 1;
            }
            dir.mtime = now;
            dir.ctime = now;
            store_attr(tx, lf, &dir)?;
            a.parent = lf;
            a.flags &= !FLAG_TRASH;
            tx.delete(&keys::trash_origin(ino))?;
            store_attr(tx, ino, &a)
        })
    }

    /// Records of missing inodes, data bytes, references, stray slice records.
    fn repair_records(&self, s: &Scan, fixed: &mut Vec<String>) -> Result<()> {
        let missing: HashSet<Ino> = s
            .other
            .iter()
            .map(|(i, _)| *i)
            .chain(s.symlinks.iter().copied())
            .chain(s.origins.iter().copied())
            .chain(s.chunks.iter().copied())
            .filter(|i| !s.attrs.contains_key(i))
            .collect();
        for ino in missing {
            let queue = s.chunks.contains(&ino) && !s.deletions.contains(&ino);
            self.write(|tx| {
                let prefix = keys::inode_prefix(ino);
                let chunks = keys::chunk_prefix(ino);
                tx.delete_range(&prefix, &chunks)?;
                tx.delete_range(&prefix_end(&chunks), &prefix_end(&prefix))?;
                if queue {
                    tx.put(&keys::deletion(ino, 0), b"")?;
                }
                Ok(())
            })?;
            fixed.push(format!("removed the records of missing inode {ino}"));
        }
        for ino in &s.origins {
            if s.attrs
                .get(ino)
                .is_some_and(|a| !(a.in_trash() && a.nlink == 0))
            {
                self.write(|tx| Ok(tx.delete(&keys::trash_origin(*ino))?))?;
                fixed.push(format!(
                    "removed the trash origin of inode {ino}, not in the trash"
                ));
            }
        }
        for (ino, a) in &s.attrs {
            let covered = s.covered.get(ino).copied().unwrap_or(0);
            if a.kind == FileKind::File && a.stored != covered {
                self.write(|tx| {
                    let Some(mut cur) = load_attr(tx, *ino)? else {
                        return Ok(());
                    };
                    cur.stored = covered;
                    store_attr(tx, *ino, &cur)
                })?;
                fixed.push(format!(
                    "file {ino}: {covered} data bytes (was {})",
                    a.stored
                ));
            }
            if a.kind != FileKind::Symlink && s.symlinks.contains(ino) {
                self.write(|tx| Ok(tx.delete(&keys::symlink(*ino))?))?;
                fixed.push(format!("removed the symlink target of non-symlink {ino}"));
            }
        }
        for (&id, &n) in &s.records_of {
            let want = n - 1;
            if s.extra_refs.get(&id).copied().unwrap_or(0) != want {
                self.write(|tx| {
                    match want {
                        0 => tx.delete(&keys::slice_refs(id))?,
                        w => tx.put(&keys::slice_refs(id), &w.to_le_bytes())?,
                    }
                    Ok(())
                })?;
                fixed.push(format!("slice {id}: {n} references"));
            }
        }
        for id in s
            .extra_refs
            .keys()
            .filter(|id| !s.records_of.contains_key(id))
        {
            self.write(|tx| Ok(tx.delete(&keys::slice_refs(*id))?))?;
            fixed.push(format!(
                "removed the reference count of unreferenced slice {id}"
            ));
        }
        let stray = |id: &u64| !s.slices.contains(id) && !s.doomed_slices.contains(id);
        let unreferenced_inline =
            |id: &&u64| !s.inline_refs.contains_key(id) && !s.doomed_slices.contains(id);
        let strays: Vec<(Vec<u8>, String)> = s
            .summed_slices
            .iter()
            .filter(|id| stray(id))
            .map(|id| (keys::slice_sums(*id), format!("checksums of slice {id}")))
            .chain(
                s.inline_values
                    .keys()
                    .filter(unreferenced_inline)
                    .map(|id| (keys::inline_slice(*id), format!("inline value {id:#x}"))),
            )
            .chain(s.staged.iter().filter(|id| stray(id)).map(|id| {
                (
                    keys::staged_slice(*id),
                    format!("staged record of slice {id}"),
                )
            }))
            .collect();
        for (key, what) in strays {
            self.write(|tx| Ok(tx.delete(&key)?))?;
            fixed.push(format!("removed unreferenced {what}"));
        }
        Ok(())
    }

    /// The counters, from what the volume holds.
    fn repair_counters(&self, s: &Scan, fixed: &mut Vec<String>) -> Result<()> {
        let trash = s.attrs.values().filter(|a| a.in_trash());
        let want = [
            (
                counters::USED_SPACE,
                s.attrs.values().map(Attr::space).sum::<u64>() as i64,
            ),
            (counters::TOTAL_INODES, s.attrs.len() as i64),
            (counters::RESERVED_SPACE, s.reserved as i64),
            (
                counters::INLINE_SPACE,
                s.inline_values.values().map(|&l| l as u64).sum::<u64>() as i64,
            ),
            (
                counters::TRASH_SPACE,
                trash.clone().map(Attr::space).sum::<u64>() as i64,
            ),
            (counters::TRASH_INODES, trash.count() as i64),
        ];
        for (name, value) in want {
            let had = self.write(|tx| {
                let had = counters::sum(tx, name)?;
                if had != value {
                    counters::set(tx, name, value)?;
                }
                Ok(had)
            })?;
            if had != value {
                fixed.push(format!("counter {name}: {value} (was {had})"));
            }
        }
        Ok(())
    }

    /// A path of inode `ino` for messages: through the entry its recorded parent holds
    /// (any of a file's hard links), up to the root; `None` when no entry leads there.
    pub fn path_of(&self, ino: Ino) -> Result<Option<String>> {
        self.read(|tx| {
            let mut parts = Vec::new();
            let mut cur = ino;
            for _ in 0..4096 {
                if cur == Ino::ROOT {
                    parts.reverse();
                    return Ok(Some(format!("/{}", parts.join("/"))));
                }
                let Some(a) = load_attr(tx, cur)? else {
                    return Ok(None);
                };
                let prefix = keys::dentry_prefix(a.parent);
                let mut found = None;
                let mut start = prefix.clone();
                'scan: loop {
                    let page = tx.scan(&start, &prefix_end(&prefix), 1024)?;
                    for (k, v) in &page {
                        if records::decode_dentry(a.parent, v)?.ino == cur {
                            found = Some(show(&k[prefix.len()..]));
                            break 'scan;
                        }
                    }
                    match page.last() {
                        Some((k, _)) if page.len() == 1024 => {
                            start = k.clone();
                            start.push(0);
                        }
                        _ => break,
                    }
                }
                let Some(name) = found else {
                    return Ok(None);
                };
                parts.push(name);
                cur = a.parent;
            }
            Ok(None)
        })
    }

    /// The inodes whose slice records reference slice `ids`: (slice, inode).
    pub fn inodes_of_slices(&self, ids: &HashSet<u64>) -> Result<Vec<(u64, Ino)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|tx| {
            let mut out = Vec::new();
            let (prefix, end) = (b"A".to_vec(), prefix_end(b"A"));
            let mut start = prefix.clone();
            loop {
                let page = tx.scan(&start, &end, 10_000)?;
                for (k, v) in &page {
                    let Some((ino, _)) = keys::parse_chunk(k) else {
                        continue;
                    };
                    for r in records::decode_slices(ino, super::CHUNK_SIZE, v)? {
                        if ids.contains(&r.id) && !out.contains(&(r.id, ino)) {
                            out.push((r.id, ino));
                        }
                    }
                }
                match page.last() {
                    Some((k, _)) if page.len() == 10_000 => {
                        start = k.clone();
                        start.push(0);
                    }
                    _ => return Ok(out),
                }
            }
        })
    }
}
