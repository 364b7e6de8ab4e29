//! File locks through open handles: BSD flock and fcntl record locks, whose owners the
//! kernel names, kept in the metadata engine (`meta::locks`) so they hold across
//! every client of the volume.
//!
//! Owners and their lifetimes:
//! - a **flock** belongs to the open file description, named here by our handle
//!   number (never reused), and is dropped at the handle's release;
//! - a **classic POSIX lock** belongs to the process (the kernel's `files_struct`):
//!   closing any descriptor of the file drops it (FUSE `FLUSH`, [`Fs::unlock_owner`]);
//! - an **OFD lock** (`F_OFD_SETLK`) belongs to the open file description, which the
//!   kernel names by the address of its `struct file`. FUSE never says when such a lock
//!   goes away (the kernel's own lock list for the inode is empty, so its close path
//!   sends nothing), so each handle remembers the owners that locked through it, and
//!   its release drops those no other live handle of the file shares (a freed address
//!   may be reused by a newer open before this release arrives).
//!
//! The kernel sends RELEASE asynchronously, and requests are served by several
//! threads: a lock request on a file whose release is in progress waits for it, so a
//! process that closed its last descriptor and then signalled another never lets that
//! other process see the stale lock (the window left is between reading the release
//! from the device and starting it).

use std::collections::HashSet;
use std::time::Duration;

use super::{Fs, Handle};
use crate::error::Result;
use crate::meta::{Ino, LockRecord, LockType, LockWait};

/// A lock request waits at most this long for releases in progress on its file.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The lock owners that took record locks through one handle.
#[derive(Debug, Default)]
pub(super) struct HandleLocks {
    owners: HashSet<u64>,
    flocked: bool,
}

impl Fs {
    /// fcntl F_SETLK / F_SETLKW (classic or OFD) through handle `fh`; see the module
    /// doc for owners.
    #[allow(clippy::too_many_arguments)]
    pub fn setlk(
        &self,
        fh: u64,
        owner: u64,
        pid: u32,
        typ: LockType,
        start: u64,
        end: u64,
        wait: LockWait<'_>,
    ) -> Result<()> {
        let h = self.handle(fh)?;
        self.wait_for_releases(h.ino);
        self.meta()
            .setlk(h.ino, owner, pid, typ, start, end, wait)?;
        if typ != LockType::Unlock {
            h.locks().owners.insert(owner);
        }
        Ok(())
    }

    /// fcntl F_GETLK: the first lock of another owner that would block the request.
    pub fn getlk(
        &self,
        fh: u64,
        owner: u64,
        typ: LockType,
        start: u64,
        end: u64,
    ) -> Result<Option<(LockType, LockRecord)>> {
        let h = self.handle(fh)?;
        self.wait_for_releases(h.ino);
        self.meta().getlk(h.ino, owner, typ, start, end)
    }

    /// BSD flock through handle `fh` (its owner).
    pub fn flock(&self, fh: u64, typ: LockType, wait: LockWait<'_>) -> Result<()> {
        let h = self.handle(fh)?;
        self.wait_for_releases(h.ino);
        self.meta().flock(h.ino, fh, typ, wait)?;
        if typ != LockType::Unlock {
            h.locks().flocked = true;
        }
        Ok(())
    }

    /// A process closed a descriptor of the file open as `fh`: its classic POSIX locks
    /// on the file go (POSIX), whichever descriptor took them.
    pub fn unlock_owner(&self, fh: u64, owner: u64) -> Result<()> {
        let h = self.handle(fh)?;
        self.meta().release_locks(h.ino, owner, false, true)?;
        for other in self.handles_of(h.ino) {
            other.locks().owners.remove(&owner);
        }
        Ok(())
    }

    /// At the release of `h` (already out of the handle table): drops its flock and
    /// the record locks of owners no other live handle of the file shares.
    pub(super) fn release_locks_of(&self, h: &Handle) -> Result<()> {
        let (owners, flocked) = {
            let mut l = h.locks();
            (std::mem::take(&mut l.owners), l.flocked)
        };
        let mut first = None;
        if flocked {
            if let Err(e) = self.meta().release_locks(h.ino, h.fh, true, false) {
                first.get_or_insert(e);
            }
        }
        let others = self.handles_of(h.ino);
        for owner in owners {
            if others.iter().any(|o| o.locks().owners.contains(&owner)) {
                continue;
            }
            if let Err(e) = self.meta().release_locks(h.ino, owner, false, true) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn wait_for_releases(&self, ino: Ino) {
        let releasing = self.releasing.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .released
            .wait_timeout_while(releasing, RELEASE_WAIT, |r| r.contains_key(&ino));
    }
}

impl Handle {
    fn locks(&self) -> std::sync::MutexGuard<'_, HandleLocks> {
        self.locks.lock().unwrap_or_else(|p| p.into_inner())
    }
}
