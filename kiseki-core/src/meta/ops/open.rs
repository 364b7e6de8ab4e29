//! open and close: permission checks at open, and this client's open-file table that
//! keeps unlinked inodes alive until their last close.

use super::super::perm::{self, MAY_EXEC, MAY_READ, MAY_WRITE};
use super::super::types::{Attr, Ctx, FileKind, Ino, O_EXEC};
use super::super::Meta;
use super::must_attr;
use crate::error::{Error, Result};

/// Flags open(2) accepts; anything else is EINVAL rather than silently ignored.
const KNOWN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_PATH
    | libc::O_ASYNC
    | O_EXEC;

pub(crate) fn check_open_flags(flags: i32) -> Result<()> {
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Error::Invalid(format!(
            "unknown open flags {:#x}",
            flags & !KNOWN_FLAGS
        )));
    }
    if flags & libc::O_ACCMODE == libc::O_ACCMODE {
        return Err(Error::Invalid("open: access mode 3".into()));
    }
    Ok(())
}

/// The permission an open with `flags` needs.
pub(crate) fn open_mask(flags: i32) -> u32 {
    let mut mask = match flags & libc::O_ACCMODE {
        libc::O_WRONLY => MAY_WRITE,
        libc::O_RDWR => MAY_READ | MAY_WRITE,
        _ if flags & O_EXEC != 0 => MAY_EXEC,
        _ => MAY_READ,
    };
    if flags & libc::O_TRUNC != 0 {
        mask |= MAY_WRITE;
    }
    mask
}

impl Meta {
    /// Checks that `ctx` may open `ino` with `flags` and registers a handle. Every
    /// successful open must be paired with one [`Meta::close_file`]. Truncation (O_TRUNC) is
    /// the caller's job once the handle is open.
    pub fn open_file(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<Attr> {
        check_open_flags(flags)?;
        let mask = open_mask(flags);
        if mask & MAY_WRITE != 0 {
            self.writable()?;
        }
        let mut table = self.open.lock(ino);
        // Close-to-open: what other clients closed before this open must show.
        if !self.kv.exclusive() {
            self.views.forget(ino);
        }
        let attr = self.read(|tx| must_attr(tx, ino))?;
        match attr.kind {
            FileKind::Dir if mask & MAY_WRITE != 0 => {
                return Err(Error::IsDir(format!("inode {ino} opened for writing")))
            }
            FileKind::Symlink => {
                return Err(Error::Invalid(format!("inode {ino} is a symbolic link")))
            }
            _ => {}
        }
        if flags & libc::O_DIRECTORY != 0 && attr.kind != FileKind::Dir {
            return Err(Error::NotDir(format!("inode {ino}")));
        }
        if flags & O_EXEC != 0 && attr.kind != FileKind::File {
            return Err(Error::Access(format!(
                "execute inode {ino}: not a regular file"
            )));
        }
        perm::check(ctx, &attr, mask, "open")?;
        *table.entry(ino).or_insert(0) += 1;
        Ok(attr)
    }

    /// Releases one handle of `ino`. The last close of an unlinked inode deletes it.
    pub fn close_file(&self, ino: Ino) -> Result<()> {
        let mut table = self.open.lock(ino);
        let Some(count) = table.get_mut(&ino) else {
            return Err(Error::BadHandle(format!("inode {ino} is not open")));
        };
        *count -= 1;
        if *count > 0 {
            return Ok(());
        }
        table.remove(&ino);
        if self.config.read_only {
            return Ok(());
        }
        // Still under the stripe lock: no open can slip in between the check and the
        // release. Most closes find the file linked and write nothing.
        if self
            .read(|tx| super::load_attr(tx, ino))?
            .is_some_and(|a| a.nlink > 0)
        {
            return Ok(());
        }
        let sid = self.sid;
        self.write(|tx| super::release_tx(tx, sid, ino))
    }

    /// Drops a registration made in advance (a create that did not happen).
    pub(crate) fn forget_open(&self, ino: Ino) {
        let mut table = self.open.lock(ino);
        if let Some(c) = table.get_mut(&ino) {
            *c -= 1;
            if *c == 0 {
                table.remove(&ino);
            }
        }
    }

    /// After an unlink, rmdir or rename dropped the last link of `ino`: release it now
    /// unless this client still has it open (then the last close does).
    pub(crate) fn release_if_unused(&self, ino: Ino) -> Result<()> {
        let table = self.open.lock(ino);
        if table.contains_key(&ino) {
            return Ok(());
        }
        let sid = self.sid;
        let r = self.write(|tx| super::release_tx(tx, sid, ino));
        drop(table);
        r
    }
}
