//! The trash: what unlink, rmdir and rename remove, and the old content of files opened
//! with O_TRUNC, kept for the volume's `trash_days` days and restorable until then.
//!
//! **Layout.** The trash is a directory with the fixed inode [`Ino::TRASH`], found by
//! looking up `.trash` in the root (the root's listing does not show it; it has no entry
//! there). It holds a directory per hour, named `YYYY-MM-DD-HH` (UTC), made by the first
//! removal of that hour. An entry is named `{parent}-{ino}-{name}`, cut to 255 bytes; its
//! `O` record ([`Origin`]) keeps the parent and the whole name for `restore`. The old
//! content of a truncated file is a new inode named `{parent}-{new ino}-{file}.truncated`.
//!
//! **What is kept.** An inode whose last link goes keeps its attribute, data and
//! xattrs. Its link count is 0 as POSIX says (fstat of an open handle shows 0);
//! [`FLAG_TRASH`] marks it kept rather than releasable, and `release_tx` leaves it
//! alone. Removing one of several hard links keeps nothing: the trash takes the inode
//! when its last name goes. Directories go too (empty, as rmdir needs), so that a
//! removed tree can be put back.
//!
//! **Read-only.** Everything flagged refuses changes, root included (`perm::check` with
//! `MAY_WRITE`, setattr, xattrs, link); handles opened before the removal keep working.
//! Entries leave by [`Meta::restore`], by expiring, or removed for good by root (unlink
//! and rmdir in the trash, `rm -rf .trash/*`: the way to free the space at once).
//!
//! **No hot spot.** An hour directory's entries use their inode number as readdir
//! sequence and its attribute is never written after it is made, so removals running
//! at once do not conflict on it (a shared `next_entry_seq` would make them).
//!
//! **Expiry.** Every client's heartbeat asks whether the job is due; one client at a
//! time claims it (the `trash-cleanup` key, at most once per [`CLEANUP_INTERVAL`] over
//! the volume) and, in a thread of its own, releases every entry of each hour that ended
//! more than `trash_days` days ago, then the hour directory. With 0 days (the trash
//! turned off by `kiseki config`) everything goes. Two cleaners at once are safe: each
//! entry is released in a transaction that re-reads it.
//!
//! **Accounting.** What the trash keeps stays in `usedSpace` and `totalInodes` (it is
//! usage, as in JuiceFS); `trashSpace` and `trashInodes` say how much of them it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::counters;
use super::keys;
use super::kv::{prefix_end, KvTxn};
use super::ops::{insert_entry, load_attr, load_dentry, must_attr, release_tx, store_attr, Attrs};
use super::perm::{self, MAY_EXEC, MAY_WRITE};
use super::records::{self, Dentry, Origin};
use super::types::{Attr, Ctx, FileKind, Ino, Timespec, FLAG_TRASH, LINK_MAX, NAME_MAX};
use super::Meta;
use crate::error::{Error, Result};

/// The trash's name in the root.
pub const TRASH_NAME: &[u8] = b".trash";
/// How often the expiry job runs over the whole volume, at most.
pub const CLEANUP_INTERVAL: i64 = 3600;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// Entries released per transaction by the expiry job (etcd bounds a transaction).
const PAGE: usize = 64;

/// Where the removals of one hour go, and an inode number to make its directory with.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    hour: i64,
    name: String,
    spare: Ino,
}

/// A client's trash state: the current slot, and whether its expiry job runs.
#[derive(Default)]
pub(crate) struct State {
    slot: Mutex<Option<Slot>>,
    cleaning: AtomicBool,
}

/// What [`Meta::restore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Entries put back where they came from.
    pub restored: u64,
    /// Entries left in the trash, each with why.
    pub failed: Vec<String>,
}

/// The hour directory's name for the hour starting at `secs` (UTC).
pub fn hour_name(secs: i64) -> String {
    let days = secs.div_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}-{:02}", secs.rem_euclid(DAY) / HOUR)
}

/// The start of the hour an hour directory's name gives.
pub fn parse_hour(name: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(name).ok()?;
    let mut parts = s.split('-');
    let mut next = |n: usize| {
        let p = parts.next()?;
        (p.len() == n && p.bytes().all(|c| c.is_ascii_digit()))
            .then(|| p.parse::<i64>().ok())
            .flatten()
    };
    let (y, m, d, h) = (next(4)?, next(2)?, next(2)?, next(2)?);
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY + h * HOUR)
}

// Howard Hinnant's algorithms (proleptic Gregorian calendar, days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The name of a trash entry (see the module comment).
fn entry_name(origin: &Origin, ino: Ino) -> Vec<u8> {
    let mut n = match origin.truncated {
        Some(file) => format!("{}-{ino}-{file}.truncated", origin.parent).into_bytes(),
        None => {
            let mut n = format!("{}-{ino}-", origin.parent).into_bytes();
            n.extend_from_slice(&origin.name);
            n
        }
    };
    n.truncate(NAME_MAX);
    n
}

fn new_dir(parent: Ino, now: Timespec, next_entry_seq: u64) -> Attr {
    Attr {
        next_entry_seq,
        flags: FLAG_TRASH,
        ..Attr::new_dir(0o555, 0, 0, parent, now)
    }
}

/// Counts an inode in or out of the trash's share of the usage (`sign` 1 or -1).
fn count(tx: &mut dyn KvTxn, ino: Ino, attr: &Attr, sign: i64) -> Result<()> {
    counters::add(tx, counters::TRASH_SPACE, ino, sign * attr.space() as i64)?;
    counters::add(tx, counters::TRASH_INODES, ino, sign)
}

/// Adds a new trash directory `ino` (the trash itself, or an hour directory in it):
/// counted in the usage and in the trash's share.
fn make_dir(tx: &mut dyn KvTxn, ino: Ino, attr: &Attr) -> Result<()> {
    store_attr(tx, ino, attr)?;
    counters::add(tx, counters::USED_SPACE, ino, attr.space() as i64)?;
    counters::add(tx, counters::TOTAL_INODES, ino, 1)?;
    count(tx, ino, attr, 1)
}

/// The hour directory of `slot`, made (with the trash, the first time) when missing.
/// Returns it and whether the slot's spare inode was used.
fn hour_dir(tx: &mut dyn KvTxn, slot: &Slot) -> Result<(Ino, bool)> {
    if let Some(d) = load_dentry(tx, Ino::TRASH, slot.name.as_bytes())? {
        return Ok((d.ino, false));
    }
    let now = Timespec::now();
    let mut trash = match load_attr(tx, Ino::TRASH)? {
        Some(a) => a,
        None => {
            let a = new_dir(Ino::ROOT, now, 0);
            make_dir(tx, Ino::TRASH, &a)?;
            a
        }
    };
    // Entries take their inode number as sequence: the directory's own counter is
    // never used, and fsck's "sequence below the directory's next" holds.
    let hour = new_dir(Ino::TRASH, now, u64::MAX);
    make_dir(tx, slot.spare, &hour)?;
    insert_entry(
        tx,
        Ino::TRASH,
        &mut trash,
        slot.name.as_bytes(),
        FileKind::Dir,
        slot.spare,
    )?;
    trash.nlink += 1;
    trash.mtime = now;
    trash.ctime = now;
    store_attr(tx, Ino::TRASH, &trash)?;
    Ok((slot.spare, true))
}

/// Inside a removal's transaction: keeps `ino`, whose last link just went, in the trash.
/// `attr` is its attribute with `nlink` 0, changed here; the caller stores it. Returns
/// whether the slot's spare inode was used (see [`Meta::trash_slot_used`]).
pub(crate) fn keep(
    tx: &mut dyn KvTxn,
    slot: &Slot,
    origin: &Origin,
    ino: Ino,
    attr: &mut Attr,
) -> Result<bool> {
    let (hour, made) = hour_dir(tx, slot)?;
    let name = entry_name(origin, ino);
    let d = Dentry {
        kind: attr.kind,
        ino,
        seq: ino.0,
    };
    tx.put(&keys::dentry(hour, &name), &records::encode_dentry(&d))?;
    tx.put(
        &keys::dir_index(hour, ino.0),
        &records::encode_dir_index(attr.kind, ino, &name),
    )?;
    tx.put(&keys::trash_origin(ino), &records::encode_origin(origin))?;
    attr.flags |= FLAG_TRASH;
    attr.parent = hour;
    count(tx, ino, attr, 1)?;
    Ok(made)
}

/// Inside a truncation's transaction: moves the content of `file` (its slice records)
/// to a new inode `kept` in the trash, leaving `file` without data. Returns whether the
/// slot's spare inode was used.
pub(crate) fn keep_content(
    tx: &mut dyn KvTxn,
    slot: &Slot,
    file: Ino,
    old: &Attr,
    kept: Ino,
) -> Result<bool> {
    move_chunks(tx, file, kept)?;
    let now = Timespec::now();
    let mut attr = Attr {
        nlink: 0,
        ctime: now,
        flags: 0,
        ..old.clone()
    };
    let origin = Origin {
        parent: old.parent,
        name: Vec::new(),
        truncated: Some(file),
    };
    let made = keep(tx, slot, &origin, kept, &mut attr)?;
    store_attr(tx, kept, &attr)?;
    counters::add(tx, counters::USED_SPACE, kept, attr.space() as i64)?;
    counters::add(tx, counters::TOTAL_INODES, kept, 1)?;
    Ok(made)
}

/// Inside a transaction that removes `ino` from the trash for good (root's unlink or
/// rmdir in it): out of the trash's share, no longer flagged, no origin. The caller
/// releases it as any removed inode.
pub(crate) fn forget(tx: &mut dyn KvTxn, ino: Ino, attr: &mut Attr) -> Result<()> {
    count(tx, ino, attr, -1)?;
    attr.flags &= !FLAG_TRASH;
    Ok(tx.delete(&keys::trash_origin(ino))?)
}

/// Moves every slice record of `from` to `to` (references move with them).
fn move_chunks(tx: &mut dyn KvTxn, from: Ino, to: Ino) -> Result<()> {
    let prefix = keys::chunk_prefix(from);
    let end = prefix_end(&prefix);
    loop {
        let page = tx.scan(&prefix, &end, 256)?;
        if page.is_empty() {
            return Ok(());
        }
        for (k, v) in &page {
            let (_, index) = keys::parse_chunk(k)
                .ok_or_else(|| Error::corrupt(from, "undecodable chunk key"))?;
            tx.put(&keys::chunk(to, index), v)?;
            tx.delete(k)?;
        }
    }
}

fn has_chunks(tx: &mut dyn KvTxn, ino: Ino) -> Result<bool> {
    let prefix = keys::chunk_prefix(ino);
    Ok(!tx.scan(&prefix, &prefix_end(&prefix), 1)?.is_empty())
}

/// The entries of directory `dir`: (name, dentry), at most `limit`.
fn entries(tx: &mut dyn KvTxn, dir: Ino, limit: usize) -> Result<Vec<(Vec<u8>, Dentry)>> {
    let prefix = keys::dentry_prefix(dir);
    tx.scan(&prefix, &prefix_end(&prefix), limit)?
        .into_iter()
        .map(|(k, v)| Ok((k[prefix.len()..].to_vec(), records::decode_dentry(dir, &v)?)))
        .collect()
}

impl Meta {
    /// Where removals go now, or `None` when the volume keeps no trash (or this client
    /// cannot write).
    pub(crate) fn trash_slot(&self) -> Result<Option<Slot>> {
        if self.format.trash_days == 0 || self.config.read_only {
            return Ok(None);
        }
        let now = self.config.clock.now();
        let hour = now - now.rem_euclid(HOUR);
        let mut slot = self.trash.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref().filter(|s| s.hour == hour) {
            return Ok(Some(s.clone()));
        }
        let spare = Ino(self.inodes.next(&*self.kv, |_, _, _| Ok(()))?);
        let s = Slot {
            hour,
            name: hour_name(hour),
            spare,
        };
        *slot = Some(s.clone());
        Ok(Some(s))
    }

    /// After a transaction made an hour directory with the slot's spare inode: the next
    /// one needs another.
    pub(crate) fn trash_slot_used(&self, used: &Slot) {
        let mut slot = self.trash.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|s| s.spare == used.spare) {
            *slot = None;
        }
    }

    /// The trash's share of the usage: (bytes, inodes).
    pub fn trash_usage(&self) -> Result<(u64, u64)> {
        self.read(|tx| {
            Ok((
                counters::sum(tx, counters::TRASH_SPACE)?.max(0) as u64,
                counters::sum(tx, counters::TRASH_INODES)?.max(0) as u64,
            ))
        })
    }

    /// Puts back what trash inode `target` holds: an hour directory (every entry in it:
    /// directories first, an entry whose directory is itself in the trash once that
    /// directory is back) or one entry. Never overwrites: an entry whose name is taken
    /// stays in the trash, as does one whose directory is gone. Root may restore
    /// anything; others their own entries, into directories they may write.
    pub fn restore(&self, ctx: &Ctx, target: Ino) -> Result<Restored> {
        self.writable()?;
        let attr = self.getattr(target)?;
        if !attr.in_trash() || target == Ino::TRASH {
            return Err(Error::Invalid(format!(
                "inode {target} is not an hour directory of the trash or an entry in one"
            )));
        }
        let mut pending: Vec<(Ino, Vec<u8>, Dentry)> = if attr.parent == Ino::TRASH {
            let mut all: Vec<(Ino, Vec<u8>, Dentry)> = Vec::new();
            loop {
                let after = all.len();
                let page = self.read(|tx| {
                    let prefix = keys::dentry_prefix(target);
                    let start = match all.last() {
                        Some((_, name, _)) => {
                            let mut k = keys::dentry(target, name);
                            k.push(0);
                            k
                        }
                        None => prefix.clone(),
                    };
                    tx.scan(&start, &prefix_end(&prefix), 1024)?
                        .into_iter()
                        .map(|(k, v)| {
                            Ok((
                                k[prefix.len()..].to_vec(),
                                records::decode_dentry(target, &v)?,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()
                })?;
                all.extend(page.into_iter().map(|(n, d)| (target, n, d)));
                if all.len() == after {
                    break all;
                }
            }
        } else {
            // The entry's name follows from its origin record.
            let found = self.read(|tx| {
                let Some(v) = tx.get(&keys::trash_origin(target))? else {
                    return Ok(None);
                };
                let name = entry_name(&records::decode_origin(target, &v)?, target);
                Ok(load_dentry(tx, attr.parent, &name)?
                    .filter(|d| d.ino == target)
                    .map(|d| (name, d)))
            })?;
            match found {
                Some((n, d)) => vec![(attr.parent, n, d)],
                None => {
                    return Err(Error::NotFound(format!(
                        "inode {target} is not an entry of the trash"
                    )))
                }
            }
        };
        // Directories first, older (smaller) inodes first: a tree's directories come
        // back before what they held, mostly in one pass.
        pending.sort_by_key(|(_, _, d)| (d.kind != FileKind::Dir, d.ino));
        let mut out = Restored::default();
        loop {
            let mut left = Vec::new();
            let mut progress = false;
            for (hour, name, d) in pending {
                match self.write(|tx| restore_tx(tx, ctx, hour, &name, d.ino)) {
                    Ok(()) => {
                        out.restored += 1;
                        progress = true;
                    }
                    Err(e) => left.push((hour, name, d, e)),
                }
            }
            if !progress || left.is_empty() {
                out.failed = left
                    .into_iter()
                    .map(|(_, name, _, e)| format!("{}: {e}", String::from_utf8_lossy(&name)))
                    .collect();
                return Ok(out);
            }
            pending = left.into_iter().map(|(h, n, d, _)| (h, n, d)).collect();
        }
    }

    /// Called by the heartbeat: starts the expiry job in a thread of its own when it is
    /// due and no other client has claimed it (see the module comment).
    pub(crate) fn expire_trash_if_due(self: &Arc<Self>) {
        if self.config.read_only || self.trash.cleaning.load(Ordering::SeqCst) {
            return;
        }
        match self.claim_trash_cleanup() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!("trash expiry: {e}");
                return;
            }
        }
        if self.trash.cleaning.swap(true, Ordering::SeqCst) {
            return;
        }
        let meta = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kiseki-trash".into())
            .spawn(move || {
                match meta.expire_trash() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("trash: {n} expired entries released"),
                    Err(e) => tracing::warn!("trash expiry: {e}"),
                }
                meta.trash.cleaning.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the trash expiry thread: {e}");
            self.trash.cleaning.store(false, Ordering::SeqCst);
        }
    }

    /// Takes the expiry job for this interval unless another client took it: true when
    /// this client should run it. A volume without a trash directory has nothing to do.
    pub fn claim_trash_cleanup(&self) -> Result<bool> {
        self.writable()?;
        if self.read(|tx| Ok(tx.get(&keys::attr(Ino::TRASH))?.is_none()))? {
            return Ok(false);
        }
        self.claim_periodic(keys::TRASH_CLEANUP, CLEANUP_INTERVAL)
    }

    /// Releases every entry of each hour directory that ended more than `trash_days`
    /// days ago (every one with no trash), then the directory; the claim is the
    /// caller's. Returns how many entries went.
    pub fn expire_trash(&self) -> Result<u64> {
        self.writable()?;
        let now = self.config.clock.now();
        let cutoff = match self.format.trash_days {
            0 => i64::MAX,
            days => now - i64::from(days) * DAY,
        };
        let hours = self.read(|tx| {
            if load_attr(tx, Ino::TRASH)?.is_none() {
                return Ok(Vec::new());
            }
            entries(tx, Ino::TRASH, usize::MAX)
        })?;
        let mut released = 0;
        for (name, d) in hours {
            match parse_hour(&name) {
                Some(start) if start.saturating_add(HOUR) <= cutoff => {}
                _ => continue,
            }
            loop {
                let n = self.write(|tx| self.expire_page(tx, d.ino))?;
                if n == 0 {
                    break;
                }
                released += n;
            }
            // The emptiness check is an untracked scan: a client still adding to this
            // hour (one that connected before the trash was turned off) could race it.
            // Nobody adds to an hour that ended an hour ago, so only those go.
            let ended = parse_hour(&name).map_or(i64::MAX, |s| s.saturating_add(HOUR));
            if ended.saturating_add(HOUR) <= now {
                self.write(|tx| remove_hour(tx, self.sid, &name, d.ino))?;
            }
        }
        Ok(released)
    }

    /// Releases up to [`PAGE`] entries of hour directory `hour`: each as the last
    /// close of a removed file would, or, if this client has it open, at its close.
    fn expire_page(&self, tx: &mut dyn KvTxn, hour: Ino) -> Result<u64> {
        let page = entries(tx, hour, PAGE)?;
        for (name, d) in &page {
            super::ops::delete_entry(tx, hour, name, d)?;
            let Some(mut attr) = load_attr(tx, d.ino)? else {
                // An entry whose inode is gone (fsck reports it): only the entry goes.
                continue;
            };
            count(tx, d.ino, &attr, -1)?;
            attr.flags &= !FLAG_TRASH;
            attr.nlink = 0;
            store_attr(tx, d.ino, &attr)?;
            if self.open.lock(d.ino).contains_key(&d.ino) {
                tx.put(&keys::sustained(self.sid, d.ino), b"")?;
            } else {
                release_tx(tx, self.sid, d.ino)?;
            }
        }
        Ok(page.len() as u64)
    }
}

/// Removes hour directory `hour` (named `name`) if it is empty.
fn remove_hour(tx: &mut dyn KvTxn, sid: u64, name: &[u8], hour: Ino) -> Result<()> {
    let Some(d) = load_dentry(tx, Ino::TRASH, name)? else {
        return Ok(());
    };
    let mut attr = must_attr(tx, hour)?;
    if d.ino != hour || !entries(tx, hour, 1)?.is_empty() {
        return Ok(());
    }
    super::ops::delete_entry(tx, Ino::TRASH, name, &d)?;
    let mut trash = must_attr(tx, Ino::TRASH)?;
    trash.nlink = trash.nlink.saturating_sub(1);
    trash.mtime = Timespec::now();
    trash.ctime = trash.mtime;
    store_attr(tx, Ino::TRASH, &trash)?;
    count(tx, hour, &attr, -1)?;
    attr.flags &= !FLAG_TRASH;
    attr.nlink = 0;
    store_attr(tx, hour, &attr)?;
    release_tx(tx, sid, hour)
}

/// Puts trash entry `name` of hour directory `hour` (inode `ino`) back (see
/// [`Meta::restore`]).
fn restore_tx(tx: &mut dyn KvTxn, ctx: &Ctx, hour: Ino, name: &[u8], ino: Ino) -> Result<()> {
    let d = match load_dentry(tx, hour, name)? {
        Some(d) if d.ino == ino => d,
        _ => return Err(Error::NotFound("no longer in the trash".into())),
    };
    let mut attr = must_attr(tx, ino)?;
    let origin = match tx.get(&keys::trash_origin(ino))? {
        Some(v) => records::decode_origin(ino, &v)?,
        None => return Err(Error::corrupt(ino, "trash entry without an origin record")),
    };
    if !ctx.is_root() && ctx.uid != attr.uid {
        return Err(Error::NotPermitted(
            "only root or the owner may restore a trash entry".into(),
        ));
    }
    if let Some(file) = origin.truncated {
        return restore_content(tx, ctx, hour, name, &d, ino, attr, file);
    }
    let now = Timespec::now();
    let mut attrs = Attrs::default();
    let pattr = attrs.dir(tx, origin.parent).map_err(|e| match e {
        Error::NotFound(_) | Error::NotDir(_) => {
            Error::NotFound(format!("its directory (inode {}) is gone", origin.parent))
        }
        e => e,
    })?;
    if pattr.in_trash() {
        return Err(Error::NotFound(format!(
            "its directory (inode {}) is in the trash: restore it first",
            origin.parent
        )));
    }
    perm::check(ctx, pattr, MAY_WRITE | MAY_EXEC, "restore into directory")?;
    if attr.kind == FileKind::Dir && pattr.nlink >= LINK_MAX {
        return Err(Error::TooManyLinks(format!(
            "directory {} has too many subdirectories",
            origin.parent
        )));
    }
    if load_dentry(tx, origin.parent, &origin.name)?.is_some() {
        return Err(Error::Exists(format!(
            "{:?} exists in directory {}: not overwritten",
            String::from_utf8_lossy(&origin.name),
            origin.parent
        )));
    }
    super::ops::delete_entry(tx, hour, name, &d)?;
    tx.delete(&keys::trash_origin(ino))?;
    count(tx, ino, &attr, -1)?;
    attr.flags &= !FLAG_TRASH;
    attr.parent = origin.parent;
    attr.nlink = if attr.kind == FileKind::Dir { 2 } else { 1 };
    attr.ctime = now;
    store_attr(tx, ino, &attr)?;
    let pattr = attrs.get_mut(tx, origin.parent)?;
    insert_entry(tx, origin.parent, pattr, &origin.name, attr.kind, ino)?;
    if attr.kind == FileKind::Dir {
        pattr.nlink += 1;
    }
    pattr.mtime = now;
    pattr.ctime = now;
    attrs.store(tx)
}

/// Puts the old content of a truncated file back into it, if nothing was written to the
/// file since; the trash inode that held it goes.
#[allow(clippy::too_many_arguments)]
fn restore_content(
    tx: &mut dyn KvTxn,
    ctx: &Ctx,
    hour: Ino,
    name: &[u8],
    d: &Dentry,
    kept: Ino,
    mut attr: Attr,
    file: Ino,
) -> Result<()> {
    let mut fattr = match load_attr(tx, file)? {
        Some(a) if a.nlink > 0 && !a.in_trash() => a,
        _ => {
            return Err(Error::NotFound(format!(
                "the file it was truncated from (inode {file}) is gone"
            )))
        }
    };
    if !ctx.is_root() && ctx.uid != fattr.uid {
        return Err(Error::NotPermitted(
            "only root or the file's owner may restore its content".into(),
        ));
    }
    if fattr.length != 0 || fattr.stored != 0 || has_chunks(tx, file)? {
        return Err(Error::Exists(format!(
            "inode {file} was written after its truncation: copy the old content out of the trash instead"
        )));
    }
    super::ops::delete_entry(tx, hour, name, d)?;
    move_chunks(tx, kept, file)?;
    let space = attr.space() as i64;
    count(tx, kept, &attr, -1)?;
    fattr.length = attr.length;
    fattr.stored = attr.stored;
    fattr.mtime = attr.mtime;
    fattr.ctime = Timespec::now();
    store_attr(tx, file, &fattr)?;
    counters::add(tx, counters::USED_SPACE, file, fattr.space() as i64)?;
    // The trash inode is empty now: released with nothing to delete.
    attr.flags &= !FLAG_TRASH;
    attr.length = 0;
    attr.stored = 0;
    store_attr(tx, kept, &attr)?;
    counters::add(tx, counters::USED_SPACE, kept, -space)?;
    release_tx(tx, 0, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names_round_trip_in_utc() {
        assert_eq!(hour_name(0), "1970-01-01-00");
        // 2026-12-02 11:37:56 UTC.
        assert_eq!(
            hour_name(1_796_211_476 - 1_796_211_476 % 3600),
            "2026-12-02-11"
        );
        for secs in [
            0i64,
            951_782_400,
            1_796_216_400,
            4_102_444_800,
            253_402_297_200,
        ] {
            let start = secs - secs.rem_euclid(HOUR);
            assert_eq!(
                parse_hour(hour_name(start).as_bytes()),
                Some(start),
                "{secs}"
            );
        }
        for bad in [
            "2026-12-02",
            "2026-13-02-11",
            "2026-12-02-24",
            "x026-12-02-11",
            "2026-12-02-11-1",
        ] {
            assert_eq!(parse_hour(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn entry_names_say_where_they_came_from_and_fit() {
        let o = Origin {
            parent: Ino(7),
            name: b"data.csv".to_vec(),
            truncated: None,
        };
        assert_eq!(entry_name(&o, Ino(42)), b"7-42-data.csv");
        let long = Origin {
            name: vec![b'x'; 255],
            ..o.clone()
        };
        assert_eq!(entry_name(&long, Ino(42)).len(), NAME_MAX);
        let t = Origin {
            name: Vec::new(),
            truncated: Some(Ino(9)),
            ..o
        };
        assert_eq!(entry_name(&t, Ino(43)), b"7-43-9.truncated");
    }
}
