//! The namespace operations of the inode-level face: each checks that the client is
//! live, runs the metadata operation, and gives back attributes as this client sees
//! them (pending writes included), so that no front-end replies with stale ones.

use super::Fs;
use crate::error::{Error, Result};
use crate::meta::{Ctx, Entry, Ino, StatFs, NAME_MAX};

/// The unit of `statvfs` block counts reported by every front-end.
pub const STATVFS_BLOCK: u64 = 4096;
/// The preferred I/O size reported as `st_blksize` by every front-end.
pub const BLKSIZE: u32 = 1 << 16;

/// statvfs(3) as every front-end reports it: counts in [`STATVFS_BLOCK`] units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatVfs {
    pub bsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub namemax: u64,
}

impl From<StatFs> for StatVfs {
    fn from(s: StatFs) -> Self {
        StatVfs {
            bsize: STATVFS_BLOCK,
            blocks: s.total_space / STATVFS_BLOCK,
            bfree: s.avail_space / STATVFS_BLOCK,
            bavail: s.avail_space / STATVFS_BLOCK,
            files: s.used_inodes + s.avail_inodes,
            ffree: s.avail_inodes,
            namemax: NAME_MAX as u64,
        }
    }
}

/// What getxattr/listxattr hand a caller who gave a buffer of `size` bytes: size 0
/// asks for the length; a smaller buffer than the value is ERANGE.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrFit<'a> {
    Size(usize),
    Data(&'a [u8]),
}

pub fn fit_xattr(value: &[u8], size: usize) -> Result<XattrFit<'_>> {
    if size == 0 {
        Ok(XattrFit::Size(value.len()))
    } else if value.len() > size {
        Err(Error::Range(format!(
            "{} bytes do not fit a buffer of {size}",
            value.len()
        )))
    } else {
        Ok(XattrFit::Data(value))
    }
}

/// listxattr's wire form: each name followed by a NUL.
pub fn join_xattr_names(names: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in names {
        out.extend_from_slice(n);
        out.push(0);
    }
    out
}

impl Fs {
    /// `e` as this client sees it (pending writes included).
    pub(super) fn fresh(&self, e: Entry) -> Result<Entry> {
        Ok(Entry {
            ino: e.ino,
            attr: self.env.refresh(e.ino, e.attr)?,
        })
    }

    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u16,
        umask: u16,
    ) -> Result<Entry> {
        self.live()?;
        self.meta().mkdir(ctx, parent, name, mode, umask)
    }

    /// mknod(2): `mode` carries the file type (`S_IFIFO`, `S_IFCHR`, ...).
    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u16,
        rdev: u32,
    ) -> Result<Entry> {
        self.live()?;
        self.meta().mknod(ctx, parent, name, mode, umask, rdev)
    }

    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &[u8], target: &[u8]) -> Result<Entry> {
        self.live()?;
        self.meta().symlink(ctx, parent, name, target)
    }

    /// link(2): the reply's attributes include this client's unflushed writes.
    pub fn link(&self, ctx: &Ctx, ino: Ino, parent: Ino, name: &[u8]) -> Result<Entry> {
        self.live()?;
        let e = self.meta().link(ctx, ino, parent, name)?;
        self.fresh(e)
    }

    /// Puts back an hour directory of the trash, or one entry of it (see
    /// [`crate::meta::Meta::restore`]).
    pub fn restore(&self, ctx: &Ctx, ino: Ino) -> Result<crate::meta::trash::Restored> {
        self.live()?;
        self.meta().restore(ctx, ino)
    }

    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.live()?;
        self.meta().unlink(ctx, parent, name)
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &[u8]) -> Result<()> {
        self.live()?;
        self.meta().rmdir(ctx, parent, name)
    }

    /// rename(2) / renameat2(2) with `RENAME_*` flags.
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> Result<()> {
        self.live()?;
        self.meta()
            .rename(ctx, parent, name, new_parent, new_name, flags)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.live()?;
        self.meta().readlink(ino)
    }

    /// access(2): `mask` is 0 or a combination of `MAY_READ`, `MAY_WRITE`, `MAY_EXEC`.
    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: u32) -> Result<()> {
        self.live()?;
        self.meta().access(ctx, ino, mask)
    }

    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        self.live()?;
        self.meta().getxattr(ctx, ino, name)
    }

    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.live()?;
        self.meta().listxattr(ctx, ino)
    }

    /// setxattr(2) with `XATTR_CREATE` / `XATTR_REPLACE` flags.
    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<()> {
        self.live()?;
        self.meta().setxattr(ctx, ino, name, value, flags)
    }

    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        self.live()?;
        self.meta().removexattr(ctx, ino, name)
    }

    /// fsyncdir(2) (and part of fsync): every metadata change so far survives a power
    /// loss when it returns.
    pub fn sync_metadata(&self) -> Result<()> {
        self.live()?;
        self.meta().sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_buffers_follow_getxattr_rules() {
        assert_eq!(fit_xattr(b"abc", 0).unwrap(), XattrFit::Size(3));
        assert_eq!(fit_xattr(b"abc", 3).unwrap(), XattrFit::Data(b"abc"));
        assert_eq!(fit_xattr(b"abc", 2).unwrap_err().errno(), libc::ERANGE);
        assert_eq!(
            join_xattr_names(&[b"user.a".to_vec(), b"b".to_vec()]),
            b"user.a\0b\0"
        );
    }
}
