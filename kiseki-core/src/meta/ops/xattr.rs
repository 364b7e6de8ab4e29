//! Extended attributes in the `user.`, `trusted.` and `security.` namespaces.
//!
//! Linux rules: `user.` attributes live only on regular files and directories and need
//! read (get) or write (set/remove) permission, and in sticky directories ownership;
//! `trusted.` attributes are root's and invisible to others; `system.` (POSIX ACLs) is
//! not supported, so ACL-aware tools fall back to the mode bits.

use super::super::keys;
use super::super::kv::prefix_end;
use super::super::perm::{self, MAY_READ, MAY_WRITE, S_ISVTX};
use super::super::types::{
    Attr, Ctx, FileKind, Ino, Timespec, XATTR_CREATE, XATTR_LIST_MAX, XATTR_NAME_MAX,
    XATTR_REPLACE, XATTR_SIZE_MAX,
};
use super::super::Meta;
use super::{must_attr, show, store_attr};
use crate::error::{Error, Result};

#[derive(PartialEq, Eq, Clone, Copy)]
enum Namespace {
    User,
    Trusted,
    Security,
}

fn namespace(name: &[u8]) -> Result<Namespace> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Error::Range(format!("xattr name of {} bytes", name.len())));
    }
    if name.contains(&0) {
        return Err(Error::Invalid("xattr name contains NUL".into()));
    }
    let (ns, rest) = if let Some(r) = name.strip_prefix(b"user.") {
        (Namespace::User, r)
    } else if let Some(r) = name.strip_prefix(b"trusted.") {
        (Namespace::Trusted, r)
    } else if let Some(r) = name.strip_prefix(b"security.") {
        (Namespace::Security, r)
    } else {
        return Err(Error::NotSupported(format!(
            "xattr namespace of {:?}",
            show(name)
        )));
    };
    if rest.is_empty() {
        return Err(Error::Invalid(format!(
            "xattr name {:?} has no name after the namespace",
            show(name)
        )));
    }
    Ok(ns)
}

/// Permission to read (`write == false`) or change an attribute in `ns` on `attr`.
fn check_access(ctx: &Ctx, attr: &Attr, ns: Namespace, write: bool, name: &[u8]) -> Result<()> {
    if write && attr.in_trash() {
        return Err(perm::in_trash("xattr"));
    }
    match ns {
        Namespace::Trusted if !ctx.is_root() => {
            // Unprivileged callers cannot see trusted attributes at all.
            if write {
                Err(Error::NotPermitted("trusted xattrs are root's".into()))
            } else {
                Err(Error::NoData(show(name)))
            }
        }
        Namespace::Trusted => Ok(()),
        Namespace::User => {
            if !matches!(attr.kind, FileKind::File | FileKind::Dir) {
                return if write {
                    Err(Error::NotPermitted("user xattrs on special files".into()))
                } else {
                    Err(Error::NoData(show(name)))
                };
            }
            if write
                && attr.kind == FileKind::Dir
                && attr.mode & S_ISVTX != 0
                && !perm::is_owner(ctx, attr)
            {
                return Err(Error::NotPermitted(
                    "user xattrs on another's sticky directory".into(),
                ));
            }
            perm::check(ctx, attr, if write { MAY_WRITE } else { MAY_READ }, "xattr")
        }
        Namespace::Security => {
            if write {
                perm::check(ctx, attr, MAY_WRITE, "xattr")
            } else {
                Ok(())
            }
        }
    }
}

impl Meta {
    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<()> {
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 || flags == XATTR_CREATE | XATTR_REPLACE {
            return Err(Error::Invalid(format!("setxattr flags {flags:#x}")));
        }
        let ns = namespace(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Error::TooBig(format!(
                "xattr value of {} bytes (limit {XATTR_SIZE_MAX})",
                value.len()
            )));
        }
        self.write(|tx| {
            let mut attr = must_attr(tx, ino)?;
            check_access(ctx, &attr, ns, true, name)?;
            let key = keys::xattr(ino, name);
            let exists = tx.get(&key)?.is_some();
            if exists && flags & XATTR_CREATE != 0 {
                return Err(Error::Exists(show(name)));
            }
            if !exists && flags & XATTR_REPLACE != 0 {
                return Err(Error::NoData(show(name)));
            }
            tx.put(&key, value)?;
            attr.ctime = Timespec::now();
            store_attr(tx, ino, &attr)
        })
    }

    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let ns = namespace(name)?;
        self.read(|tx| {
            let attr = must_attr(tx, ino)?;
            check_access(ctx, &attr, ns, false, name)?;
            tx.get(&keys::xattr(ino, name))?
                .ok_or_else(|| Error::NoData(show(name)))
        })
    }

    /// Names of the attributes `ctx` may see, in byte order.
    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.read(|tx| {
            must_attr(tx, ino)?;
            let prefix = keys::xattr_prefix(ino);
            let end = prefix_end(&prefix);
            let mut names = Vec::new();
            let mut total = 0;
            let mut start = prefix.clone();
            loop {
                let page = tx.scan(&start, &end, 1000)?;
                let full = page.len() == 1000;
                for (k, _) in &page {
                    let name = k[prefix.len()..].to_vec();
                    if name.starts_with(b"trusted.") && !ctx.is_root() {
                        continue;
                    }
                    total += name.len() + 1;
                    names.push(name);
                }
                if total > XATTR_LIST_MAX {
                    return Err(Error::TooBig("xattr names exceed the list limit".into()));
                }
                match page.last() {
                    Some((k, _)) if full => {
                        start = k.clone();
                        start.push(0);
                    }
                    _ => return Ok(names),
                }
            }
        })
    }

    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &[u8]) -> Result<()> {
        let ns = namespace(name)?;
        self.write(|tx| {
            let mut attr = must_attr(tx, ino)?;
            check_access(ctx, &attr, ns, true, name)?;
            let key = keys::xattr(ino, name);
            if tx.get(&key)?.is_none() {
                return Err(Error::NoData(show(name)));
            }
            tx.delete(&key)?;
            attr.ctime = Timespec::now();
            store_attr(tx, ino, &attr)
        })
    }
}
