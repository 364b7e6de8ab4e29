//! rename(2) and renameat2(2) flags: atomic replace, RENAME_NOREPLACE, RENAME_EXCHANGE.
//!
//! The whole rename is one transaction. Loop prevention walks the destination's
//! ancestors reading each attribute (tracked), so a concurrent rename that changes the
//! ancestry conflicts instead of creating a cycle.

use super::super::kv::KvTxn;
use super::super::perm::{self, MAY_EXEC, MAY_WRITE};
use super::super::types::{
    Ctx, FileKind, Ino, Timespec, LINK_MAX, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT,
};
use super::super::Meta;
use super::{
    check_name, delete_entry, dir_is_empty, insert_entry, is_dot_or_dotdot, load_dentry,
    replace_entry, show, Attrs,
};
use crate::error::{Error, Result};

impl Meta {
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> Result<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 {
            return Err(Error::Invalid(format!("rename flags {flags:#x}")));
        }
        if flags & RENAME_WHITEOUT != 0 {
            return Err(Error::Invalid("RENAME_WHITEOUT is not supported".into()));
        }
        if flags & RENAME_NOREPLACE != 0 && flags & RENAME_EXCHANGE != 0 {
            return Err(Error::Invalid(
                "RENAME_NOREPLACE with RENAME_EXCHANGE".into(),
            ));
        }
        check_name(name)?;
        check_name(new_name)?;
        if is_dot_or_dotdot(name) || is_dot_or_dotdot(new_name) {
            return Err(Error::Busy("rename of \".\" or \"..\"".into()));
        }
        super::check_new_name(new_parent, new_name)?;
        let sid = self.sid;
        let slot = self.trash_slot()?;
        let (victim, made) = self.write(|tx| {
            let mut attrs = Attrs::default();
            for dir in [parent, new_parent] {
                let a = attrs.dir(tx, dir)?;
                perm::check(ctx, a, MAY_WRITE | MAY_EXEC, "rename in directory")?;
            }
            let src = load_dentry(tx, parent, name)?.ok_or_else(|| Error::NotFound(show(name)))?;
            let dst = load_dentry(tx, new_parent, new_name)?;
            if dst.is_some() && flags & RENAME_NOREPLACE != 0 {
                return Err(Error::Exists(show(new_name)));
            }
            if dst.is_none() && flags & RENAME_EXCHANGE != 0 {
                return Err(Error::NotFound(show(new_name)));
            }
            let sattr = attrs.get(tx, src.ino)?.clone();
            let dattr = match &dst {
                Some(d) => Some(attrs.get(tx, d.ino)?.clone()),
                None => None,
            };
            let exchange = flags & RENAME_EXCHANGE != 0;
            // Loop checks come first, as in Linux's lock_rename "trap".
            if parent != new_parent {
                if sattr.kind == FileKind::Dir && is_ancestor(tx, &mut attrs, src.ino, new_parent)?
                {
                    return Err(Error::Invalid(
                        "cannot move a directory into itself or its own subdirectory".into(),
                    ));
                }
                if let (Some(d), Some(da)) = (&dst, &dattr) {
                    if da.kind == FileKind::Dir && is_ancestor(tx, &mut attrs, d.ino, parent)? {
                        return Err(if exchange {
                            Error::Invalid(
                                "cannot exchange a directory with its own descendant".into(),
                            )
                        } else {
                            Error::NotEmpty(show(new_name))
                        });
                    }
                }
            }
            if dst.as_ref().is_some_and(|d| d.ino == src.ino) {
                // Two names of one inode (or the same name): POSIX says do nothing.
                return Ok((None, false));
            }
            let pattr = attrs.get(tx, parent)?.clone();
            perm::check_sticky(ctx, &pattr, &sattr, "rename")?;
            if let (Some(d), Some(dattr)) = (&dst, &dattr) {
                let npattr = attrs.get(tx, new_parent)?.clone();
                perm::check_sticky(ctx, &npattr, dattr, "rename over")?;
                if !exchange {
                    match (sattr.kind == FileKind::Dir, dattr.kind == FileKind::Dir) {
                        (true, false) => return Err(Error::NotDir(show(new_name))),
                        (false, true) => return Err(Error::IsDir(show(new_name))),
                        (true, true) if !dir_is_empty(tx, d.ino)? => {
                            return Err(Error::NotEmpty(show(new_name)))
                        }
                        _ => {}
                    }
                } else if dattr.kind == FileKind::Dir && parent != new_parent {
                    perm::check(ctx, dattr, MAY_WRITE, "move directory")?;
                }
            }
            if sattr.kind == FileKind::Dir && parent != new_parent {
                // Moving a directory rewrites its "..": that needs write access to it.
                perm::check(ctx, &sattr, MAY_WRITE, "move directory")?;
            }

            let now = Timespec::now();
            let mut victim = None;
            let mut made = false;
            if let (Some(dst), true) = (&dst, exchange) {
                let dkind = attrs.get(tx, dst.ino)?.kind;
                replace_entry(tx, parent, name, src.seq, dkind, dst.ino)?;
                replace_entry(tx, new_parent, new_name, dst.seq, sattr.kind, src.ino)?;
                if parent != new_parent {
                    let sdir = i64::from(sattr.kind == FileKind::Dir);
                    let ddir = i64::from(dkind == FileKind::Dir);
                    adjust_nlink(tx, &mut attrs, parent, ddir - sdir)?;
                    adjust_nlink(tx, &mut attrs, new_parent, sdir - ddir)?;
                }
                let d = attrs.get_mut(tx, dst.ino)?;
                d.parent = parent;
                d.ctime = now;
            } else {
                if let Some(dst) = &dst {
                    delete_entry(tx, new_parent, new_name, dst)?;
                    let d = attrs.get_mut(tx, dst.ino)?;
                    let was_dir = d.kind == FileKind::Dir;
                    d.nlink = if was_dir {
                        0
                    } else {
                        d.nlink.saturating_sub(1)
                    };
                    d.ctime = now;
                    if d.nlink == 0 {
                        made = super::remove::last_link_gone(
                            tx,
                            sid,
                            slot.as_ref(),
                            new_parent,
                            new_name,
                            dst.ino,
                            d,
                        )?;
                        victim = Some(dst.ino);
                    }
                    if was_dir {
                        adjust_nlink(tx, &mut attrs, new_parent, -1)?;
                    }
                }
                delete_entry(tx, parent, name, &src)?;
                let np = attrs.get_mut(tx, new_parent)?;
                insert_entry(tx, new_parent, np, new_name, sattr.kind, src.ino)?;
                if sattr.kind == FileKind::Dir && parent != new_parent {
                    adjust_nlink(tx, &mut attrs, parent, -1)?;
                    adjust_nlink(tx, &mut attrs, new_parent, 1)?;
                }
            }
            let s = attrs.get_mut(tx, src.ino)?;
            s.parent = new_parent;
            s.ctime = now;
            for dir in [parent, new_parent] {
                let a = attrs.get_mut(tx, dir)?;
                a.mtime = now;
                a.ctime = now;
            }
            attrs.store(tx)?;
            Ok((victim, made))
        })?;
        self.after_last_link(slot.as_ref(), made, victim)
    }
}

fn adjust_nlink(tx: &mut dyn KvTxn, attrs: &mut Attrs, dir: Ino, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let a = attrs.get_mut(tx, dir)?;
    let n = i64::from(a.nlink) + delta;
    if n > i64::from(LINK_MAX) {
        return Err(Error::TooManyLinks(format!("directory {dir}")));
    }
    a.nlink = n.max(0) as u32;
    Ok(())
}

/// True when directory `dir` is `target` or one of its ancestors. Every attribute on
/// the way up is read (and so tracked): a concurrent rename that changes the ancestry
/// makes this transaction conflict instead of creating a cycle.
fn is_ancestor(tx: &mut dyn KvTxn, attrs: &mut Attrs, dir: Ino, target: Ino) -> Result<bool> {
    let mut cur = target;
    // Bounded: a corrupt parent chain must not loop forever.
    for _ in 0..100_000 {
        if cur == dir {
            return Ok(true);
        }
        if cur == Ino::ROOT {
            return Ok(false);
        }
        cur = attrs.get(tx, cur)?.parent;
    }
    Err(Error::corrupt(
        target,
        "parent chain does not reach the root",
    ))
}
