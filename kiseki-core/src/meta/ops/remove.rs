//! unlink and rmdir, and the release of an inode whose last link and last handle are
//! gone.
//!
//! Removing the last link never deletes the inode in the same transaction: it sets
//! `nlink = 0` and records the inode against this client's session (`SS` key). A second
//! step, [`release_tx`], runs once no handle of this client has the inode open. A crash
//! between the two leaves the `SS` record, and the next client to clean the dead
//! session releases the inode, so nothing leaks and nothing open is pulled away.

use super::super::counters;
use super::super::keys;
use super::super::kv::{prefix_end, KvTxn};
use super::super::perm::{self, MAY_EXEC, MAY_WRITE};
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
        let (ino, last) = self.write(|tx| {
            let mut attrs = Attrs::default();
            let pattr = attrs.dir(tx, parent)?.clone();
            perm::check(ctx, &pattr, MAY_WRITE | MAY_EXEC, "remove from directory")?;
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
            if last {
                tx.put(&keys::sustained(sid, d.ino), b"")?;
            }
            attrs.store(tx)?;
            Ok((d.ino, last))
        })?;
        if last {
            self.release_if_unused(ino)?;
        }
        Ok(())
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        match name {
            b"." => return Err(Error::Invalid("rmdir of \".\"".into())),
            b".." => return Err(Error::NotEmpty("..".into())),
            _ => {}
        }
        let sid = self.sid;
        let ino = self.write(|tx| {
            let mut attrs = Attrs::default();
            let pattr = attrs.dir(tx, parent)?.clone();
            perm::check(ctx, &pattr, MAY_WRITE | MAY_EXEC, "remove from directory")?;
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
            delete_entry(tx, parent, name, &d)?;
            let now = Timespec::now();
            let pattr = attrs.get_mut(tx, parent)?;
            pattr.nlink = pattr.nlink.saturating_sub(1);
            pattr.mtime = now;
            pattr.ctime = now;
            let attr = attrs.get_mut(tx, d.ino)?;
            attr.nlink = 0;
            attr.ctime = now;
            tx.put(&keys::sustained(sid, d.ino), b"")?;
            attrs.store(tx)?;
            Ok(d.ino)
        })?;
        self.release_if_unused(ino)
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
    if attr.nlink > 0 {
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
