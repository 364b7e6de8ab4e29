//! Whole-tree operations done inside the client (`kiseki rmr`, `kiseki summary`,
//! `kiseki clone`): a metadata walk instead of a FUSE request, or a library call, per
//! entry.
//!
//! Both walk with an explicit stack, so a deep tree cannot exhaust a thread's stack.

use super::Fs;
use crate::error::{Error, Result};
use crate::meta::{CloneOpts, Ctx, DirEntry, FileKind, Ino};

/// Entries listed per metadata request.
const PAGE: usize = 1024;

/// What a tree holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of the regular files (their lengths; a file with several links is counted
    /// at each).
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    /// Symbolic links, devices, FIFOs and sockets.
    pub others: u64,
}

/// What a clone made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cloned {
    /// Entries created (the top one included).
    pub entries: u64,
    /// Bytes of the regular files cloned, now shared with the source.
    pub bytes: u64,
}

impl Fs {
    /// Entries of directory `dir` after cookie `offset`, without `.` and `..`, with
    /// attributes when `plus`; and the cookie to continue from (`None` at the end).
    fn page(&self, dir: Ino, offset: u64, plus: bool) -> Result<(Vec<DirEntry>, Option<u64>)> {
        let (entries, _) = self.meta().readdir_bounded(dir, offset, PAGE, plus, None)?;
        let next = (entries.len() == PAGE).then(|| entries.last().map_or(offset, |e| e.offset));
        let entries = entries
            .into_iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .collect();
        Ok((entries, next))
    }

    /// Removes `name` from directory `parent` and, when it is a directory, everything
    /// under it first, each entry as `ctx`'s unlink or rmdir would (permissions, sticky
    /// directories, open files kept until closed). Stops at the first failure, leaving
    /// the rest in place. Returns how many entries were removed.
    pub fn remove_tree(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<u64> {
        self.live()?;
        let top = self.lookup(ctx, parent, name)?;
        if top.attr.kind != FileKind::Dir {
            self.unlink(ctx, parent, name)?;
            return Ok(1);
        }
        let mut removed = 0;
        // Directories being emptied, deepest last: (directory, its parent, its name).
        let mut stack = vec![(top.ino, parent, name.to_vec())];
        while let Some(&(dir, up, _)) = stack.last() {
            // Always the first page: what was removed is gone from the listing.
            let (entries, _) = self.page(dir, 0, false)?;
            if entries.is_empty() {
                if let Some((_, _, name)) = stack.pop() {
                    self.rmdir(ctx, up, &name)?;
                    removed += 1;
                }
                continue;
            }
            for e in entries {
                if e.kind == FileKind::Dir {
                    stack.push((e.ino, dir, e.name));
                    break;
                }
                self.unlink(ctx, dir, &e.name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Clones `src` as `name` in directory `parent` by metadata only (see
    /// [`crate::meta::Meta::clone_node`]): a file, symlink or special file, or a directory
    /// and everything under it, each node as `ctx` may read it. The copy shares the
    /// source's slices; writes to either side never show in the other. This client's
    /// writes pending on a source file are committed first. Hard links inside the tree
    /// become separate files. Each file is one transaction (very large ones a page of
    /// chunks at a time), not the tree: a failure stops the clone and leaves what was
    /// made, as `cp -r` would.
    pub async fn clone_tree(
        &self,
        ctx: &Ctx,
        src: Ino,
        parent: Ino,
        name: &[u8],
        opts: CloneOpts,
    ) -> Result<Cloned> {
        self.live()?;
        let kind = self.meta().getattr(src)?.kind;
        // The destination may come as an inode number (the mount's ioctl), not a path
        // the kernel walked: each directory above it must be searchable, as in a walk.
        // A directory cloned into its own tree would never finish.
        let mut up = parent;
        loop {
            if kind == FileKind::Dir && up == src {
                return Err(Error::Invalid(
                    "cannot clone a directory into itself".into(),
                ));
            }
            let a = self.meta().getattr(up)?;
            if a.kind != FileKind::Dir {
                return Err(Error::NotDir(format!("inode {up}")));
            }
            self.meta().access(ctx, up, crate::meta::MAY_EXEC)?;
            if up == Ino::ROOT || a.parent == up {
                break;
            }
            up = a.parent;
        }
        let mut out = Cloned::default();
        let top = self
            .clone_one(ctx, src, kind, parent, name, opts, &mut out)
            .await?;
        if kind != FileKind::Dir {
            return Ok(out);
        }
        // Directories still to copy: (source, copy, readdir cookie to go on from).
        let mut stack = vec![(src, top, 0u64)];
        while let Some((from, to, cookie)) = stack.pop() {
            let (entries, next) = self.page(from, cookie, false)?;
            if let Some(next) = next {
                stack.push((from, to, next));
            }
            for e in entries {
                let copy = self
                    .clone_one(ctx, e.ino, e.kind, to, &e.name, opts, &mut out)
                    .await?;
                if e.kind == FileKind::Dir {
                    stack.push((e.ino, copy, 0));
                }
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn clone_one(
        &self,
        ctx: &Ctx,
        src: Ino,
        kind: FileKind,
        parent: Ino,
        name: &[u8],
        opts: CloneOpts,
        out: &mut Cloned,
    ) -> Result<Ino> {
        if kind == FileKind::File {
            self.env.flush(src, false).await?;
        }
        let ino = self.meta().clone_node(ctx, src, parent, name, opts)?;
        out.entries += 1;
        if kind == FileKind::File {
            out.bytes += self.meta().getattr(ino)?.length;
        }
        Ok(ino)
    }

    /// What the tree at `ino` holds (the inode itself included), read from the
    /// metadata: this client's unflushed writes are not counted.
    pub fn summary(&self, ino: Ino) -> Result<Summary> {
        self.live()?;
        let attr = self.getattr(ino)?;
        let mut s = Summary::default();
        let count = |s: &mut Summary, kind: FileKind, length: u64| match kind {
            FileKind::Dir => s.dirs += 1,
            FileKind::File => {
                s.files += 1;
                s.bytes += length;
            }
            _ => s.others += 1,
        };
        count(&mut s, attr.kind, attr.length);
        if attr.kind != FileKind::Dir {
            return Ok(s);
        }
        let mut dirs = vec![ino];
        while let Some(dir) = dirs.pop() {
            let mut offset = 0;
            loop {
                let (entries, next) = self.page(dir, offset, true)?;
                for e in entries {
                    let length = e.attr.as_ref().map_or(0, |a| a.length);
                    count(&mut s, e.kind, length);
                    if e.kind == FileKind::Dir {
                        dirs.push(e.ino);
                    }
                }
                match next {
                    Some(n) => offset = n,
                    None => break,
                }
            }
        }
        Ok(s)
    }
}
