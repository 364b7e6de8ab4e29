//! unlink and rmdir, and the release of an inode whose last link and last handle are
//! gone.
//!
//! On a volume with a trash, removing the last link moves the inode into it (see
//! `trash`), in the same transaction; nothing is released until it expires.
//! Otherwise removing the last link never deletes the inode in the same transaction:
//! it sets `nlink = 0` and records the inode against this client's session (`SS` key).
//! A second step, [`release_tx`], runs once no handle of this client has the inode
//! open. A crash between the two leaves the `SS` record, and the next client to clean
//! the dead session releases the inode, so nothing leaks and nothing open is pulled
//! away.

use super::super::counters;
use super::super::keys;
use super::super::kv::{prefix_end, KvTxn};
use super::super::perm::{self, MAY_EXEC, MAY_WRITE};
use super::super::records::Origin;
use super::super::trash::{self, Slot};
use super::super::types::{Ctx, FileKind, Ino, Timespec};
use super::super::Meta;
use super::{check_name, delete_entry, dir_is_empty, load_attr, load_dentry, show, Attrs};
use crate::error::{Error, Result};

impl Meta {
    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        if super::is_dot_or_dotdot(name) {
            return Err(Error::IsDir(show(name)));
        }
        let sid = self.sid;
        let slot = self.trash_slot()?;
        let (ino, last, made, purged) = self.write(|tx| {
            let mut attrs = Attrs::default();
            let pattr = attrs.dir(tx, parent)?.clone();
            let purge = check_remove(ctx, &pattr)?;
            let d = load_dentry(tx, parent, name)?.ok_or_else(|| Error::NotFound(show(name)))?;
            let attr = attrs.get(tx, d.ino)?;
            if attr.kind == FileKind::Dir {
                return Err(Error::IsDir(show(name)));
            }
            perm::check_sticky(ctx, &pattr, attr, "unlink")?;
            delete_entry(tx, parent, name, &d)?;
            let now = Timespec::now();
            let pattr = attrs.get_mut(tx, parent)?;
            pattr.mtime = now;
            pattr.ctime = now;
            let attr = attrs.get_mut(tx, d.ino)?;
            attr.nlink = attr.nlink.saturating_sub(1);
            attr.ctime = now;
            let last = attr.nlink == 0;
            let made = if last {
                let attr = attrs.get_mut(tx, d.ino)?;
                if purge {
                    trash::forget(tx, d.ino, attr)?;
                }
                let slot = slot.as_ref().filter(|_| !purge);
                last_link_gone(tx, sid, slot, parent, name, d.ino, attr)?
            } else {
                false
            };
            attrs.store(tx)?;
            Ok((d.ino, last, made, purge))
        })?;
        let slot = slot.as_ref().filter(|_| !purged);
        self.after_last_link(slot, made, last.then_some(ino))
    }

    /// After a transaction that removed a last link (of `released`, if any): the
    /// trash's slot used, or the inode released unless open here.
    pub(crate) fn after_last_link(
        &self,
        slot: Option<&Slot>,
        made: bool,
        released: Option<Ino>,
    ) -> Result<()> {
        if let (Some(slot), true) = (slot, made) {
            self.trash_slot_used(slot);
        }
        match (slot, released) {
            (None, Some(ino)) => self.release_if_unused(ino),
            _ => Ok(()),
        }
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        match name {
            b"." => return Err(Error::Invalid("rmdir of \".\"".into())),
            b".." => return Err(Error::NotEmpty("..".into())),
            _ => {}
        }
        let sid = self.sid;
        let slot = self.trash_slot()?;
        let (ino, made, purged) = self.write(|tx| {
            let mut attrs = Attrs::default();
            let pattr = attrs.dir(tx, parent)?.clone();
            let purge = check_remove(ctx, &pattr)?;
            let d = load_dentry(tx, parent, name)?.ok_or_else(|| Error::NotFound(show(name)))?;
            let attr = attrs.get(tx, d.ino)?;
            if attr.kind != FileKind::Dir {
                return Err(Error::NotDir(show(name)));
            }
            perm::check_sticky(ctx, &pattr, attr, "rmdir")?;
            // The directory's attribute was read above: a concurrent create in it
            // writes that attribute, so this emptiness check cannot go stale.
            if !dir_is_empty(tx, d.ino)? {
                return Err(Error::NotEmpty(show(name)));
            }
            // A directory the trash keeps is no link of its hour directory.
            let kept = attr.in_trash() && attr.nlink == 0;
            delete_entry(tx, parent, name, &d)?;
            let now = Timespec::now();
            let pattr = attrs.get_mut(tx, parent)?;
            if !kept {
                pattr.nlink = pattr.nlink.saturating_sub(1);
            }
            pattr.mtime = now;
            pattr.ctime = now;
            let attr = attrs.get_mut(tx, d.ino)?;
            if purge {
                trash::forget(tx, d.ino, attr)?;
            }
            attr.nlink = 0;
            attr.ctime = now;
            let slot = slot.as_ref().filter(|_| !purge);
            let made = last_link_gone(tx, sid, slot, parent, name, d.ino, attr)?;
            attrs.store(tx)?;
            Ok((d.ino, made, purge))
        })?;
        let slot = slot.as_ref().filter(|_| !purged);
        self.after_last_link(slot, made, Some(ino))
    }
}

/// May `ctx` remove entries of directory `pattr`? Returns whether the removal is from
/// the trash: root only, and for good (to free the space at once).
fn check_remove(ctx: &Ctx, pattr: &super::super::types::Attr) -> Result<bool> {
    if pattr.in_trash() {
        if !ctx.is_root() {
            return Err(perm::in_trash("remove from the trash"));
        }
        return Ok(true);
    }
    perm::check(ctx, pattr, MAY_WRITE | MAY_EXEC, "remove from directory")?;
    Ok(false)
}

/// Inside a transaction that removed the last link of `ino` (`parent`/`name`; `attr`
/// already has `nlink` 0 and is stored by the caller): into the trash when the volume
/// keeps one, else held by this session until released. Returns whether the trash's
/// slot was used.
pub(crate) fn last_link_gone(
    tx: &mut dyn KvTxn,
    sid: u64,
    slot: Option<&Slot>,
    parent: Ino,
    name: &[u8],
    ino: Ino,
    attr: &mut super::super::types::Attr,
) -> Result<bool> {
    match slot {
        Some(slot) => {
            let origin = Origin {
                parent,
                name: name.to_vec(),
                truncated: None,
            };
            trash::keep(tx, slot, &origin, ino, attr)
        }
        None => {
            tx.put(&keys::sustained(sid, ino), b"")?;
            Ok(false)
        }
    }
}

/// Deletes inode `ino` if it has no links left, inside `tx`: its attribute, symlink
/// target, xattrs and directory records go now; a file's slice records stay and a `D`
/// record queues its data for the data layer's deletion, which removes them after the
/// objects. Counters are adjusted and the session's `SS` record dropped.
pub(crate) fn release_tx(tx: &mut dyn KvTxn, sid: u64, ino: Ino) -> Result<()> {
    tx.delete(&keys::sustained(sid, ino))?;
    let Some(attr) = load_attr(tx, ino)? else {
        return Ok(());
    };
    if attr.nlink > 0 || attr.in_trash() {
        return Ok(());
    }
    // Everything of the inode except its slice records (attribute, entries, symlink
    // target, xattrs) goes now, as range deletions: one operation each however many
    // xattrs there are. The slice records go with the data, through the queue.
    let prefix = keys::inode_prefix(ino);
    let chunk_prefix = keys::chunk_prefix(ino);
    let chunks_end = prefix_end(&chunk_prefix);
    let has_chunks = !tx.scan(&chunk_prefix, &chunks_end, 1)?.is_empty();
    tx.delete_range(&prefix, &chunk_prefix)?;
    tx.delete_range(&chunks_end, &prefix_end(&prefix))?;
    if attr.kind == FileKind::File && (has_chunks || attr.length > 0) {
        tx.put(&keys::deletion(ino, attr.length), b"")?;
    }
    counters::add(tx, counters::USED_SPACE, ino, -(attr.space() as i64))?;
    counters::add(tx, counters::TOTAL_INODES, ino, -1)?;
    Ok(())
}
