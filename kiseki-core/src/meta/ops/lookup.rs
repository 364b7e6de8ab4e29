//! lookup, getattr, access, readlink: read-only operations on one consistent snapshot.

use super::super::perm::{self, MAY_EXEC};
use super::super::trash::TRASH_NAME;
use super::super::types::{Attr, Ctx, Entry, FileKind, Ino};
use super::super::{keys, Meta};
use super::{check_name, load_dentry, must_attr, show, Attrs};
use crate::error::{Error, Result};

impl Meta {
    /// Finds `name` in directory `parent` (search permission required).
    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<Entry> {
        check_name(name)?;
        self.read(|tx| {
            let mut attrs = Attrs::default();
            let pattr = attrs.dir(tx, parent)?.clone();
            perm::check(ctx, &pattr, MAY_EXEC, "search directory")?;
            let ino = match name {
                b"." => parent,
                b".." => pattr.parent,
                _ => match load_dentry(tx, parent, name)? {
                    Some(d) => d.ino,
                    // The trash has no entry in the root (readdir does not list it).
                    None if parent == Ino::ROOT && name == TRASH_NAME => Ino::TRASH,
                    None => return Err(Error::NotFound(show(name))),
                },
            };
            if ino == Ino::TRASH && parent == Ino::ROOT {
                return match super::load_attr(tx, ino)? {
                    Some(attr) => Ok(Entry { ino, attr }),
                    None => Err(Error::NotFound(show(name))),
                };
            }
            let attr = super::load_attr(tx, ino)?.ok_or_else(|| {
                Error::corrupt(
                    parent,
                    format!("entry {:?} points to missing inode {ino}", show(name)),
                )
            })?;
            Ok(Entry { ino, attr })
        })
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.read(|tx| must_attr(tx, ino))
    }

    /// access(2): `mask` is 0 (existence) or a combination of `MAY_READ`, `MAY_WRITE`
    /// and `MAY_EXEC`.
    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> Result<()> {
        if mask & !7 != 0 {
            return Err(Error::Invalid(format!("access mask {mask:#o}")));
        }
        let attr = self.getattr(ino)?;
        if mask & perm::MAY_WRITE != 0 && self.config.read_only {
            return Err(Error::ReadOnly);
        }
        perm::check(ctx, &attr, mask, "access")
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.read(|tx| {
            let attr = must_attr(tx, ino)?;
            if attr.kind != FileKind::Symlink {
                return Err(Error::Invalid(format!(
                    "inode {ino} is not a symbolic link"
                )));
            }
            tx.get(&keys::symlink(ino))?
                .ok_or_else(|| Error::corrupt(ino, "symlink without a target"))
        })
    }
}
