//! link(2): another name for an existing non-directory inode.

use super::super::types::{Ctx, Entry, FileKind, Ino, Timespec, LINK_MAX};
use super::super::Meta;
use super::{check_name, check_new_entry, insert_entry, is_dot_or_dotdot, show, Attrs};
use crate::error::{Error, Result};

impl Meta {
    pub fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Entry> {
        check_name(new_name)?;
        if is_dot_or_dotdot(new_name) {
            return Err(Error::Exists(show(new_name)));
        }
        super::check_new_name(new_parent, new_name)?;
        self.write(|tx| {
            let mut attrs = Attrs::default();
            check_new_entry(
                tx,
                &mut attrs,
                ctx,
                new_parent,
                new_name,
                FileKind::File,
                "link into directory",
            )?;
            let attr = attrs.get(tx, ino)?;
            if attr.kind == FileKind::Dir {
                return Err(Error::NotPermitted("hard links to directories".into()));
            }
            if attr.nlink == 0 {
                return Err(Error::NotFound(format!("inode {ino} was unlinked")));
            }
            if attr.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks(format!("inode {ino}")));
            }
            let kind = attr.kind;
            let now = Timespec::now();
            let pattr = attrs.get_mut(tx, new_parent)?;
            insert_entry(tx, new_parent, pattr, new_name, kind, ino)?;
            pattr.mtime = now;
            pattr.ctime = now;
            let attr = attrs.get_mut(tx, ino)?;
            attr.nlink += 1;
            attr.ctime = now;
            let attr = attr.clone();
            attrs.store(tx)?;
            Ok(Entry { ino, attr })
        })
    }
}
