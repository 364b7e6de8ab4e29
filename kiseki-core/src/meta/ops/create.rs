//! mknod, mkdir, create, symlink: everything that makes a new inode.

use super::super::counters;
use super::super::perm::{self, MAY_EXEC, MAY_WRITE, S_ISGID, S_IXGRP};
use super::super::types::{
    Attr, Ctx, Entry, FileKind, Ino, Timespec, LINK_MAX, PERM_MASK, SYMLINK_MAX,
};
use super::super::{keys, Meta};
use super::{check_name, is_dot_or_dotdot, load_dentry, must_attr, show, Attrs};
use crate::error::{Error, Result};

/// What to create.
struct NewNode<'a> {
    kind: FileKind,
    /// Requested permission bits (before umask).
    mode: u16,
    umask: u16,
    rdev: u32,
    target: Option<&'a [u8]>,
    /// Fail with EEXIST if the name exists (always true except for `create` without
    /// O_EXCL, which opens the existing file instead).
    exclusive: bool,
}

impl Meta {
    /// mknod(2) for regular files, FIFOs, sockets and devices (`mode` carries the type
    /// bits; 0 means a regular file). Devices need root.
    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u16,
        rdev: u32,
    ) -> Result<Entry> {
        let kind = FileKind::from_mode(mode).ok_or_else(|| {
            Error::Invalid(format!("mknod: file type {:#o}", mode & libc::S_IFMT))
        })?;
        match kind {
            FileKind::Dir | FileKind::Symlink => {
                return Err(Error::Invalid(format!(
                    "mknod cannot create a {kind:?}: use mkdir or symlink"
                )))
            }
            FileKind::BlockDev | FileKind::CharDev if !ctx.is_root() => {
                return Err(Error::NotPermitted(
                    "only root may create device nodes".into(),
                ))
            }
            _ => {}
        }
        let rdev = if matches!(kind, FileKind::BlockDev | FileKind::CharDev) {
            rdev
        } else {
            0
        };
        let node = NewNode {
            kind,
            mode: mode as u16 & PERM_MASK,
            umask,
            rdev,
            target: None,
            exclusive: true,
        };
        Ok(self.create_node(ctx, parent, name, &node, None)?.0)
    }

    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u16,
        umask: u16,
    ) -> Result<Entry> {
        let node = NewNode {
            kind: FileKind::Dir,
            mode: mode & PERM_MASK,
            umask,
            rdev: 0,
            target: None,
            exclusive: true,
        };
        Ok(self.create_node(ctx, parent, name, &node, None)?.0)
    }

    /// open(2) with O_CREAT: creates a regular file, or with `flags` lacking O_EXCL opens
    /// the existing one. Either way the file is registered as open by this client (call
    /// [`Meta::close_file`] when the handle is released). Returns whether it was created.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u16,
        umask: u16,
        flags: i32,
    ) -> Result<(Entry, bool)> {
        super::open::check_open_flags(flags)?;
        let node = NewNode {
            kind: FileKind::File,
            mode: mode & PERM_MASK,
            umask,
            rdev: 0,
            target: None,
            exclusive: flags & libc::O_EXCL != 0,
        };
        let (entry, created) = self.create_node(ctx, parent, name, &node, Some(flags))?;
        if created {
            return Ok((entry, true));
        }
        // The name existed: open it like open(2) without O_CREAT would.
        let attr = self.open_file(ctx, entry.ino, flags & !libc::O_CREAT)?;
        Ok((
            Entry {
                ino: entry.ino,
                attr,
            },
            false,
        ))
    }

    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &[u8], target: &[u8]) -> Result<Entry> {
        if target.is_empty() {
            return Err(Error::NotFound("empty symlink target".into()));
        }
        if target.len() > SYMLINK_MAX {
            return Err(Error::NameTooLong {
                len: target.len(),
                max: SYMLINK_MAX,
            });
        }
        if target.contains(&0) {
            return Err(Error::Invalid("symlink target contains NUL".into()));
        }
        let node = NewNode {
            kind: FileKind::Symlink,
            mode: 0o777,
            umask: 0,
            rdev: 0,
            target: Some(target),
            exclusive: true,
        };
        Ok(self.create_node(ctx, parent, name, &node, None)?.0)
    }

    /// The one place inodes are born. With `open_flags`, the new inode is registered as
    /// open before the transaction commits, so no unlink can release it in between.
    fn create_node(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        node: &NewNode<'_>,
        open_flags: Option<i32>,
    ) -> Result<(Entry, bool)> {
        check_name(name)?;
        if is_dot_or_dotdot(name) {
            return Err(Error::Exists(show(name)));
        }
        super::check_new_name(parent, name)?;
        self.writable()?;
        let ino = Ino(self.inodes.next(&*self.kv, |_, _, _| Ok(()))?);
        if open_flags.is_some() {
            *self.open.lock(ino).entry(ino).or_insert(0) += 1;
        }
        let result = self.write(|tx| {
            let mut attrs = Attrs::default();
            let pattr = attrs.dir(tx, parent)?;
            // As Linux: finding the name needs search permission only; an existing name
            // is EEXIST (or, for open with O_CREAT, opened) whether or not the
            // directory is writable. Only creating needs write permission.
            perm::check(ctx, pattr, MAY_EXEC, "search directory")?;
            if let Some(d) = load_dentry(tx, parent, name)? {
                if node.exclusive || node.kind != FileKind::File {
                    return Err(Error::Exists(show(name)));
                }
                let attr = must_attr(tx, d.ino)?;
                if attr.kind == FileKind::Dir {
                    return Err(Error::IsDir(show(name)));
                }
                return Ok((Entry { ino: d.ino, attr }, false));
            }
            let pattr = attrs.dir(tx, parent)?;
            perm::check(ctx, pattr, MAY_WRITE | MAY_EXEC, "create in directory")?;
            if node.kind == FileKind::Dir && pattr.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks(format!(
                    "directory {parent} has too many subdirectories"
                )));
            }
            self.check_quota(tx, node.kind)?;
            let now = Timespec::now();
            let (parent_mode, parent_gid) = (pattr.mode, pattr.gid);
            let mut mode = node.mode & !node.umask & PERM_MASK;
            let mut gid = ctx.gid;
            if parent_mode & S_ISGID != 0 {
                // BSD group semantics in setgid directories, inherited by subdirectories.
                gid = parent_gid;
                if node.kind == FileKind::Dir {
                    mode |= S_ISGID;
                }
            } else if mode & (S_ISGID | S_IXGRP) == (S_ISGID | S_IXGRP)
                && !ctx.in_group(gid)
                && !ctx.is_root()
            {
                mode &= !S_ISGID;
            }
            let attr = Attr {
                kind: node.kind,
                mode,
                uid: ctx.uid,
                gid,
                rdev: node.rdev,
                nlink: if node.kind == FileKind::Dir { 2 } else { 1 },
                length: match (node.kind, node.target) {
                    (FileKind::Dir, _) => 4096,
                    (_, Some(t)) => t.len() as u64,
                    _ => 0,
                },
                parent,
                atime: now,
                mtime: now,
                ctime: now,
                next_entry_seq: 0,
                flags: 0,
                stored: 0,
            };
            super::store_new_node(tx, &mut attrs, parent, name, ino, &attr, now)?;
            if let Some(target) = node.target {
                tx.put(&keys::symlink(ino), target)?;
            }
            counters::add(tx, counters::USED_SPACE, ino, attr.space() as i64)?;
            counters::add(tx, counters::TOTAL_INODES, ino, 1)?;
            Ok((Entry { ino, attr }, true))
        });
        if open_flags.is_some() && !matches!(result, Ok((_, true))) {
            self.forget_open(ino);
        }
        result
    }

    /// Inode and capacity limits of the volume (soft by the few operations in flight:
    /// the counters are read with an untracked scan, see `counters::sum`).
    pub(super) fn check_quota(
        &self,
        tx: &mut dyn super::super::kv::KvTxn,
        kind: FileKind,
    ) -> Result<()> {
        if self.format.inodes > 0
            && counters::sum(tx, counters::TOTAL_INODES)? as u64 >= self.format.inodes
        {
            return Err(Error::NoInodes);
        }
        let needs_space = matches!(kind, FileKind::Dir | FileKind::Symlink);
        if needs_space
            && self.format.capacity > 0
            && counters::sum(tx, counters::USED_SPACE)? as u64 + 4096 > self.format.capacity
        {
            return Err(Error::NoSpace(format!(
                "capacity {} bytes reached",
                self.format.capacity
            )));
        }
        Ok(())
    }
}
