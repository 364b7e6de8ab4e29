//! POSIX permission checks, evaluated inside the transactions that depend on them.
//!
//! Owner, then group (primary and supplementary), then other; root bypasses read and
//! write checks and gets execute when any execute bit is set (or on directories),
//! exactly as the Linux VFS does for a process with CAP_DAC_OVERRIDE.

use super::types::{Attr, Ctx, FileKind};
use crate::error::{Error, Result};

pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

pub const S_ISUID: u16 = 0o4000;
pub const S_ISGID: u16 = 0o2000;
pub const S_ISVTX: u16 = 0o1000;
pub const S_IXGRP: u16 = 0o010;

/// True when `ctx` may access `attr` with `mask` (a combination of `MAY_*`).
pub fn allowed(ctx: &Ctx, attr: &Attr, mask: u32) -> bool {
    let mask = mask & 7;
    if ctx.is_root() {
        if mask & MAY_EXEC == 0 || attr.kind == FileKind::Dir {
            return true;
        }
        return attr.mode & 0o111 != 0;
    }
    let bits = if ctx.uid == attr.uid {
        (attr.mode >> 6) & 7
    } else if ctx.in_group(attr.gid) {
        (attr.mode >> 3) & 7
    } else {
        attr.mode & 7
    };
    u32::from(bits) & mask == mask
}

pub fn check(ctx: &Ctx, attr: &Attr, mask: u32, what: &str) -> Result<()> {
    if mask & MAY_WRITE != 0 && attr.in_trash() {
        return Err(in_trash(what));
    }
    if allowed(ctx, attr, mask) {
        Ok(())
    } else {
        Err(Error::Access(what.to_string()))
    }
}

/// The trash and what it keeps are read-only to everyone, root included: entries leave
/// it by `kiseki restore` or by expiring.
pub fn in_trash(what: &str) -> Error {
    Error::NotPermitted(format!(
        "{what}: the trash is read-only (use kiseki restore)"
    ))
}

/// In a sticky directory only the owner of the entry, the owner of the directory or
/// root may remove or rename the entry.
pub fn check_sticky(ctx: &Ctx, dir: &Attr, victim: &Attr, what: &str) -> Result<()> {
    if dir.mode & S_ISVTX != 0 && !ctx.is_root() && ctx.uid != dir.uid && ctx.uid != victim.uid {
        return Err(Error::NotPermitted(format!("{what}: sticky directory")));
    }
    Ok(())
}

pub fn is_owner(ctx: &Ctx, attr: &Attr) -> bool {
    ctx.is_root() || ctx.uid == attr.uid
}

/// The bits chown/write/truncate clear from a non-directory: setuid always, setgid only
/// when group-executable (otherwise it marks mandatory locking, not privilege).
pub fn strip_suid(mode: u16) -> u16 {
    let mut mode = mode & !S_ISUID;
    if mode & S_IXGRP != 0 {
        mode &= !S_ISGID;
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::types::{Ino, Timespec};

    fn attr(kind: FileKind, mode: u16, uid: u32, gid: u32) -> Attr {
        Attr {
            kind,
            mode,
            uid,
            gid,
            rdev: 0,
            nlink: 1,
            length: 0,
            parent: Ino::ROOT,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            next_entry_seq: 0,
            flags: 0,
            stored: 0,
        }
    }

    #[test]
    fn owner_group_other_and_supplementary_groups() {
        let f = attr(FileKind::File, 0o640, 10, 20);
        assert!(allowed(
            &Ctx::user(10, 99, vec![]),
            &f,
            MAY_READ | MAY_WRITE
        ));
        assert!(allowed(&Ctx::user(11, 20, vec![]), &f, MAY_READ));
        assert!(!allowed(&Ctx::user(11, 20, vec![]), &f, MAY_WRITE));
        assert!(allowed(&Ctx::user(11, 30, vec![5, 20]), &f, MAY_READ));
        assert!(!allowed(&Ctx::user(11, 30, vec![5]), &f, MAY_READ));
        // The owner class is used even when it grants less than the group class.
        let g = attr(FileKind::File, 0o070, 10, 20);
        assert!(!allowed(&Ctx::user(10, 20, vec![]), &g, MAY_READ));
    }

    #[test]
    fn root_needs_an_exec_bit_on_files_only() {
        let f = attr(FileKind::File, 0o600, 10, 20);
        assert!(allowed(&Ctx::root(), &f, MAY_READ | MAY_WRITE));
        assert!(!allowed(&Ctx::root(), &f, MAY_EXEC));
        let d = attr(FileKind::Dir, 0o000, 10, 20);
        assert!(allowed(&Ctx::root(), &d, MAY_EXEC | MAY_WRITE));
    }

    #[test]
    fn sticky_and_suid_rules() {
        let dir = attr(FileKind::Dir, 0o1777, 1, 1);
        let theirs = attr(FileKind::File, 0o644, 2, 2);
        assert!(check_sticky(&Ctx::user(3, 3, vec![]), &dir, &theirs, "x").is_err());
        assert!(check_sticky(&Ctx::user(2, 3, vec![]), &dir, &theirs, "x").is_ok());
        assert!(check_sticky(&Ctx::user(1, 3, vec![]), &dir, &theirs, "x").is_ok());
        assert_eq!(strip_suid(0o6755), 0o0755);
        assert_eq!(strip_suid(0o6745), 0o2745);
    }
}
