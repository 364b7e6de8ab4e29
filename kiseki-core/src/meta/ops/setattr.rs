//! setattr: chmod, chown, truncate and utimens with the Linux permission rules.

use super::super::counters;
use super::super::perm::{self, MAY_WRITE, S_ISGID};
use super::super::trash;
use super::super::types::{
    Attr, Ctx, FileKind, Ino, SetAttr, TimeSet, Timespec, MAX_FILE_SIZE, PERM_MASK,
};
use super::super::Meta;
use super::{must_attr, store_attr};
use crate::error::{Error, Result};

impl Meta {
    /// Applies `req` to `ino` and returns the new attributes. Truncation here only
    /// changes the recorded length; the data layer drops the bytes beyond it. A
    /// truncation to 0 with `to_trash` (open with O_TRUNC) moves the old content into
    /// the trash when the volume keeps one.
    pub fn setattr(&self, ctx: &Ctx, ino: Ino, req: &SetAttr) -> Result<Attr> {
        if let Some(size) = req.size {
            if size > MAX_FILE_SIZE {
                return Err(Error::FileTooBig(format!("{size} bytes")));
            }
        }
        let slot = match req.to_trash && req.size == Some(0) {
            true => self.trash_slot()?,
            false => None,
        };
        // The trash inode that would hold the old content (unused if there is none).
        let kept = match slot {
            Some(_) => Some(Ino(self.inodes.next(&*self.kv, |_, _, _| Ok(()))?)),
            None => None,
        };
        let (attr, made) = self.write(|tx| {
            let old = must_attr(tx, ino)?;
            let mut new = apply(ctx, &old, req, Timespec::now())?;
            let mut made = false;
            if new != old {
                if new.length < old.length {
                    match (&slot, kept) {
                        (Some(slot), Some(kept)) if new.length == 0 && old.stored > 0 => {
                            made = trash::keep_content(tx, slot, ino, &old, kept)?;
                            new.stored = 0;
                        }
                        _ => {
                            let delta =
                                super::chunks::truncate_chunks(tx, ino, old.length, new.length)?;
                            new.stored = (new.stored as i64 + delta).max(0) as u64;
                        }
                    }
                }
                store_attr(tx, ino, &new)?;
                let delta = new.space() as i64 - old.space() as i64;
                counters::charge(tx, ino, &new, delta)?;
            }
            Ok((new, made))
        })?;
        if let (Some(slot), true) = (&slot, made) {
            self.trash_slot_used(slot);
        }
        Ok(attr)
    }
}

/// The pure rule set: the attributes after `req`, or why it is refused.
pub(crate) fn apply(ctx: &Ctx, old: &Attr, req: &SetAttr, now: Timespec) -> Result<Attr> {
    // What the trash keeps is read-only by name; a handle opened before the removal
    // keeps working (ftruncate of an open-unlinked file, as POSIX allows).
    if old.in_trash() && !req.via_handle {
        return Err(perm::in_trash("change attributes"));
    }
    let mut a = old.clone();
    let owner = perm::is_owner(ctx, old);
    let mut changed = false;

    if req.uid.is_some() || req.gid.is_some() {
        if !ctx.is_root() {
            if req.uid.is_some_and(|u| u != old.uid) || !owner {
                return Err(Error::NotPermitted("only root may change the owner".into()));
            }
            if let Some(g) = req.gid {
                if g != old.gid && !ctx.in_group(g) {
                    return Err(Error::NotPermitted(format!(
                        "cannot give the file to group {g}: not a member"
                    )));
                }
            }
        }
        if let Some(u) = req.uid {
            a.uid = u;
        }
        if let Some(g) = req.gid {
            a.gid = g;
        }
        if a.kind != FileKind::Dir {
            a.mode = perm::strip_suid(a.mode);
        }
        changed = true;
    }

    if let Some(mode) = req.mode {
        if !owner {
            return Err(Error::NotPermitted(
                "only the owner may change the mode".into(),
            ));
        }
        let mut mode = mode & PERM_MASK;
        if !ctx.is_root() && !ctx.in_group(a.gid) {
            mode &= !S_ISGID;
        }
        a.mode = mode;
        changed = true;
    }

    if let Some(size) = req.size {
        match a.kind {
            FileKind::File => {}
            FileKind::Dir => return Err(Error::IsDir("truncate of a directory".into())),
            _ => return Err(Error::Invalid("truncate of a special file".into())),
        }
        if !req.via_handle {
            perm::check(ctx, old, MAY_WRITE, "truncate")?;
        }
        a.length = size;
        a.mtime = now;
        changed = true;
    }

    let explicit =
        matches!(req.atime, Some(TimeSet::At(_))) || matches!(req.mtime, Some(TimeSet::At(_)));
    if req.atime.is_some() || req.mtime.is_some() {
        if explicit {
            if !owner {
                return Err(Error::NotPermitted(
                    "only the owner may set explicit times".into(),
                ));
            }
        } else if !owner && !req.via_handle && !perm::allowed(ctx, old, MAY_WRITE) {
            return Err(Error::Access("set times to now".into()));
        }
        let resolve = |t: TimeSet| match t {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        };
        if let Some(t) = req.atime {
            a.atime = resolve(t);
        }
        if let Some(t) = req.mtime {
            a.mtime = resolve(t);
        }
        changed = true;
    }

    // A truncate by an unprivileged caller clears them as a write does (Linux
    // `should_remove_suid`; root stands for CAP_FSETID).
    let truncated = req.size.is_some() && !ctx.is_root();
    if (req.kill_suid || truncated) && a.kind == FileKind::File {
        let stripped = perm::strip_suid(a.mode);
        if stripped != a.mode {
            a.mode = stripped;
            changed = true;
        }
    }

    if changed {
        a.ctime = req.ctime.unwrap_or(now);
    } else if let Some(c) = req.ctime {
        a.ctime = c;
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u16, uid: u32, gid: u32) -> Attr {
        Attr {
            kind: FileKind::File,
            mode,
            uid,
            gid,
            rdev: 0,
            nlink: 1,
            length: 10,
            parent: Ino::ROOT,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            next_entry_seq: 0,
            flags: 0,
            stored: 0,
        }
    }

    const NOW: Timespec = Timespec { sec: 100, nsec: 5 };

    #[test]
    fn chmod_rules() {
        let f = file(0o644, 10, 20);
        let req = SetAttr {
            mode: Some(0o2755),
            ..Default::default()
        };
        assert_eq!(
            apply(&Ctx::user(11, 20, vec![]), &f, &req, NOW)
                .unwrap_err()
                .errno(),
            libc::EPERM
        );
        // Owner outside the file's group loses setgid.
        assert_eq!(
            apply(&Ctx::user(10, 30, vec![]), &f, &req, NOW)
                .unwrap()
                .mode,
            0o755
        );
        assert_eq!(
            apply(&Ctx::user(10, 30, vec![20]), &f, &req, NOW)
                .unwrap()
                .mode,
            0o2755
        );
        let a = apply(&Ctx::root(), &f, &req, NOW).unwrap();
        assert_eq!((a.mode, a.ctime), (0o2755, NOW));
    }

    #[test]
    fn chown_rules_and_suid_clearing() {
        let f = file(0o6755, 10, 20);
        let to_uid = SetAttr {
            uid: Some(11),
            ..Default::default()
        };
        assert_eq!(
            apply(&Ctx::user(10, 20, vec![]), &f, &to_uid, NOW)
                .unwrap_err()
                .errno(),
            libc::EPERM
        );
        let to_gid = SetAttr {
            gid: Some(30),
            ..Default::default()
        };
        assert_eq!(
            apply(&Ctx::user(10, 20, vec![]), &f, &to_gid, NOW)
                .unwrap_err()
                .errno(),
            libc::EPERM
        );
        let a = apply(&Ctx::user(10, 20, vec![30]), &f, &to_gid, NOW).unwrap();
        assert_eq!((a.gid, a.mode), (30, 0o755));
        let a = apply(&Ctx::root(), &f, &to_uid, NOW).unwrap();
        assert_eq!((a.uid, a.mode), (11, 0o755));
        // Not group-executable: setgid means mandatory locking and stays.
        let g = file(0o6744, 10, 20);
        assert_eq!(apply(&Ctx::root(), &g, &to_uid, NOW).unwrap().mode, 0o2744);
    }

    #[test]
    fn utimens_rules() {
        let f = file(0o666, 10, 20);
        let now = SetAttr {
            atime: Some(TimeSet::Now),
            mtime: Some(TimeSet::Now),
            ..Default::default()
        };
        let at = SetAttr {
            mtime: Some(TimeSet::At(Timespec { sec: 1, nsec: 0 })),
            ..Default::default()
        };
        // Anyone with write permission may set "now", only the owner explicit times.
        assert!(apply(&Ctx::user(11, 99, vec![]), &f, &now, NOW).is_ok());
        assert_eq!(
            apply(&Ctx::user(11, 99, vec![]), &f, &at, NOW)
                .unwrap_err()
                .errno(),
            libc::EPERM
        );
        let ro = file(0o644, 10, 20);
        assert_eq!(
            apply(&Ctx::user(11, 99, vec![]), &ro, &now, NOW)
                .unwrap_err()
                .errno(),
            libc::EACCES
        );
        let a = apply(&Ctx::user(10, 20, vec![]), &ro, &at, NOW).unwrap();
        assert_eq!(
            (a.mtime.sec, a.atime, a.ctime),
            (1, Timespec::default(), NOW)
        );
    }

    #[test]
    fn truncate_rules() {
        let f = file(0o644, 10, 20);
        let req = SetAttr {
            size: Some(0),
            ..Default::default()
        };
        assert_eq!(
            apply(&Ctx::user(11, 20, vec![]), &f, &req, NOW)
                .unwrap_err()
                .errno(),
            libc::EACCES
        );
        let via = SetAttr {
            size: Some(0),
            via_handle: true,
            ..Default::default()
        };
        assert_eq!(
            apply(&Ctx::user(11, 20, vec![]), &f, &via, NOW)
                .unwrap()
                .length,
            0
        );
        let mut d = file(0o755, 10, 20);
        d.kind = FileKind::Dir;
        assert_eq!(
            apply(&Ctx::root(), &d, &req, NOW).unwrap_err().errno(),
            libc::EISDIR
        );
    }
}
