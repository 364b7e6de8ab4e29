//! Whole-tree operations done inside the client (`kiseki rmr`, `kiseki summary`): a
//! metadata walk instead of a FUSE request, or a library call, per entry.
//!
//! Both walk with an explicit stack, so a deep tree cannot exhaust a thread's stack.

use super::Fs;
use crate::error::Result;
use crate::meta::{Ctx, DirEntry, FileKind, Ino};

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
