//! The namespace operations, one module per family. Each public operation is one
//! transaction; the helpers here are the record-level steps they share.

pub(crate) mod chunks;
mod clone;
mod create;
mod link;
mod lookup;
mod open;
mod readdir;
mod remove;
mod rename;
mod setattr;
mod statfs;
mod xattr;

use std::collections::BTreeMap;

pub use clone::CloneOpts;
pub(crate) use remove::release_tx;

use super::keys;
use super::kv::KvTxn;
use super::records::{self, Dentry};
use super::types::{Attr, FileKind, Ino, NAME_MAX};
use crate::error::{Error, Result};

/// Rejects names no directory entry may have. `.` and `..` pass: each operation decides
/// what they mean for it.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Invalid("empty file name".into()));
    }
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong {
            len: name.len(),
            max: NAME_MAX,
        });
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Error::Invalid(format!(
            "file name {:?} contains '/' or NUL",
            name.escape_ascii().to_string()
        )));
    }
    Ok(())
}

/// Refuses a new entry named `.trash` in the root: the name is the trash's.
pub(crate) fn check_new_name(parent: Ino, name: &[u8]) -> Result<()> {
    if parent == Ino::ROOT && name == super::trash::TRASH_NAME {
        return Err(Error::NotPermitted(
            "the name .trash in the root is reserved for the trash".into(),
        ));
    }
    Ok(())
}

/// What a loaded dump's entry name must be: any name an entry may have, not `.` or
/// `..`, not the trash's in the root.
pub(crate) fn check_entry_name(parent: Ino, name: &[u8]) -> Result<()> {
    check_name(name)?;
    if is_dot_or_dotdot(name) {
        return Err(Error::Invalid(format!("an entry named {}", show(name))));
    }
    check_new_name(parent, name)
}

pub(crate) fn is_dot_or_dotdot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

pub(crate) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

pub(crate) fn load_attr(tx: &mut dyn KvTxn, ino: Ino) -> Result<Option<Attr>> {
    match tx.get(&keys::attr(ino))? {
        Some(v) => Ok(Some(records::decode_attr(ino, &v)?)),
        None => Ok(None),
    }
}

pub(crate) fn must_attr(tx: &mut dyn KvTxn, ino: Ino) -> Result<Attr> {
    load_attr(tx, ino)?.ok_or_else(|| Error::NotFound(format!("inode {ino}")))
}

pub(crate) fn store_attr(tx: &mut dyn KvTxn, ino: Ino, attr: &Attr) -> Result<()> {
    Ok(tx.put(&keys::attr(ino), &records::encode_attr(attr))?)
}

pub(crate) fn load_dentry(tx: &mut dyn KvTxn, parent: Ino, name: &[u8]) -> Result<Option<Dentry>> {
    match tx.get(&keys::dentry(parent, name))? {
        Some(v) => Ok(Some(records::decode_dentry(parent, &v)?)),
        None => Ok(None),
    }
}

/// The checks before a new entry of `kind` named `name` goes into `parent`, in Linux's
/// order: search permission, EEXIST for a name that exists (whether or not the
/// directory is writable), then write permission and room for one more subdirectory.
pub(crate) fn check_new_entry(
    tx: &mut dyn KvTxn,
    attrs: &mut Attrs,
    ctx: &super::Ctx,
    parent: Ino,
    name: &[u8],
    kind: FileKind,
    what: &str,
) -> Result<()> {
    use super::perm::{self, MAY_EXEC, MAY_WRITE};
    let pattr = attrs.dir(tx, parent)?;
    perm::check(ctx, pattr, MAY_EXEC, "search directory")?;
    if load_dentry(tx, parent, name)?.is_some() {
        return Err(Error::Exists(show(name)));
    }
    let pattr = attrs.dir(tx, parent)?;
    perm::check(ctx, pattr, MAY_WRITE | MAY_EXEC, what)?;
    if kind == FileKind::Dir && pattr.nlink >= super::types::LINK_MAX {
        return Err(Error::TooManyLinks(format!(
            "directory {parent} has too many subdirectories"
        )));
    }
    Ok(())
}

/// Adds `name -> (kind, ino)` to directory `parent`, taking the next readdir sequence
/// number from `pattr` (the caller stores `pattr`).
pub(crate) fn insert_entry(
    tx: &mut dyn KvTxn,
    parent: Ino,
    pattr: &mut Attr,
    name: &[u8],
    kind: FileKind,
    ino: Ino,
) -> Result<()> {
    let seq = pattr.next_entry_seq;
    pattr.next_entry_seq += 1;
    let d = Dentry { kind, ino, seq };
    tx.put(&keys::dentry(parent, name), &records::encode_dentry(&d))?;
    tx.put(
        &keys::dir_index(parent, seq),
        &records::encode_dir_index(kind, ino, name),
    )?;
    Ok(())
}

/// Stores new inode `ino` (`attr`) as `name` in `parent`: its entry, the parent's link
/// count (for a subdirectory) and times, both attributes. The one way create and clone
/// link what they make.
pub(crate) fn store_new_node(
    tx: &mut dyn KvTxn,
    attrs: &mut Attrs,
    parent: Ino,
    name: &[u8],
    ino: Ino,
    attr: &Attr,
    now: super::types::Timespec,
) -> Result<()> {
    let pattr = attrs.get_mut(tx, parent)?;
    insert_entry(tx, parent, pattr, name, attr.kind, ino)?;
    if attr.kind == FileKind::Dir {
        pattr.nlink += 1;
    }
    pattr.mtime = now;
    pattr.ctime = now;
    attrs.store(tx)?;
    store_attr(tx, ino, attr)
}

/// Points an existing entry at another inode, keeping its readdir position.
pub(crate) fn replace_entry(
    tx: &mut dyn KvTxn,
    parent: Ino,
    name: &[u8],
    seq: u64,
    kind: FileKind,
    ino: Ino,
) -> Result<()> {
    let d = Dentry { kind, ino, seq };
    tx.put(&keys::dentry(parent, name), &records::encode_dentry(&d))?;
    tx.put(
        &keys::dir_index(parent, seq),
        &records::encode_dir_index(kind, ino, name),
    )?;
    Ok(())
}

pub(crate) fn delete_entry(tx: &mut dyn KvTxn, parent: Ino, name: &[u8], d: &Dentry) -> Result<()> {
    tx.delete(&keys::dentry(parent, name))?;
    tx.delete(&keys::dir_index(parent, d.seq))?;
    Ok(())
}

/// True when directory `ino` has no entries. Scans are untracked, so callers must also
/// have read the directory's attribute in the same transaction (every entry change in
/// it writes that attribute, which makes a concurrent create conflict).
pub(crate) fn dir_is_empty(tx: &mut dyn KvTxn, ino: Ino) -> Result<bool> {
    let prefix = keys::dentry_prefix(ino);
    let end = super::kv::prefix_end(&prefix);
    Ok(tx.scan(&prefix, &end, 1)?.is_empty())
}

/// The attributes one operation reads and changes, so that an inode reached twice
/// (same parent for source and target, say) is one value, stored once.
#[derive(Default)]
pub(crate) struct Attrs {
    loaded: BTreeMap<Ino, Attr>,
    dirty: Vec<Ino>,
}

impl Attrs {
    pub fn get(&mut self, tx: &mut dyn KvTxn, ino: Ino) -> Result<&Attr> {
        self.load(tx, ino)?;
        Ok(&self.loaded[&ino])
    }

    pub fn get_mut(&mut self, tx: &mut dyn KvTxn, ino: Ino) -> Result<&mut Attr> {
        self.load(tx, ino)?;
        if !self.dirty.contains(&ino) {
            self.dirty.push(ino);
        }
        Ok(self.loaded.get_mut(&ino).expect("loaded above"))
    }

    /// Loads a directory, failing with ENOTDIR (or ENOENT once it has been removed).
    pub fn dir(&mut self, tx: &mut dyn KvTxn, ino: Ino) -> Result<&Attr> {
        let a = self.get(tx, ino)?;
        if a.kind != FileKind::Dir {
            return Err(Error::NotDir(format!("inode {ino}")));
        }
        if a.nlink == 0 {
            return Err(Error::NotFound(format!("directory {ino} was removed")));
        }
        Ok(a)
    }

    fn load(&mut self, tx: &mut dyn KvTxn, ino: Ino) -> Result<()> {
        if let std::collections::btree_map::Entry::Vacant(e) = self.loaded.entry(ino) {
            e.insert(must_attr(tx, ino)?);
        }
        Ok(())
    }

    pub fn store(&self, tx: &mut dyn KvTxn) -> Result<()> {
        for ino in &self.dirty {
            store_attr(tx, *ino, &self.loaded[ino])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
