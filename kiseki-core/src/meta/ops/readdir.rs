//! readdir and readdirplus with cookies that survive concurrent changes.
//!
//! Cookie 0 starts a listing; `.` carries cookie 1, `..` cookie 2, and an entry with
//! directory sequence number `s` carries `s + 3`. Resuming from cookie `c >= 2` scans the
//! directory index from sequence `c - 2`, so entries removed meanwhile simply vanish and
//! no remaining entry is skipped or repeated.
//!
//! A listing is bounded by the directory's next sequence number when it started
//! ([`Meta::readdir_bounded`]): an entry created, or renamed (which gives it a new
//! sequence number), after that point is not listed. Without the bound a program that
//! renames each entry it reads away and back would meet it again at the end, forever
//! (the "infinite directory read" btrfs once had). With it a listing always ends, never
//! returns more entries than existed, and lists an entry that stayed put exactly once.

use super::super::keys;
use super::super::kv::prefix_end;
use super::super::records;
use super::super::types::{DirEntry, FileKind, Ino};
use super::super::Meta;
use super::Attrs;
use crate::error::{Error, Result};

const DOT_COOKIE: u64 = 1;
const DOTDOT_COOKIE: u64 = 2;
const SEQ_BASE: u64 = 3;

impl Meta {
    /// Up to `limit` entries of directory `ino` after cookie `offset`. With `plus`, each
    /// entry carries its attributes (one batch read). Read permission is checked when the
    /// directory is opened ([`Meta::open_file`]), as the kernel does.
    pub fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
    ) -> Result<Vec<DirEntry>> {
        Ok(self.readdir_bounded(ino, offset, limit, plus, None)?.0)
    }

    /// [`Meta::readdir`] listing only entries whose sequence number is below `until`
    /// (the directory's next sequence number when the listing started). Also returns the
    /// directory's next sequence number now, the bound for a listing that starts here.
    pub fn readdir_bounded(
        &self,
        ino: Ino,
        offset: u64,
        limit: usize,
        plus: bool,
        until: Option<u64>,
    ) -> Result<(Vec<DirEntry>, u64)> {
        self.read(|tx| {
            let mut attrs = Attrs::default();
            let dir = attrs.get(tx, ino)?.clone();
            if dir.kind != FileKind::Dir {
                return Err(Error::NotDir(format!("inode {ino}")));
            }
            let mut out = Vec::new();
            let mut dots = Vec::new();
            if offset < DOT_COOKIE {
                dots.push((b".".to_vec(), ino, DOT_COOKIE));
            }
            if offset < DOTDOT_COOKIE {
                dots.push((b"..".to_vec(), dir.parent, DOTDOT_COOKIE));
            }
            for (name, dino, cookie) in dots {
                if out.len() >= limit {
                    return Ok((out, dir.next_entry_seq));
                }
                let attr = if plus {
                    Some(attrs.get(tx, dino)?.clone())
                } else {
                    None
                };
                out.push(DirEntry {
                    name,
                    ino: dino,
                    kind: FileKind::Dir,
                    offset: cookie,
                    attr,
                });
            }
            if out.len() >= limit || dir.nlink == 0 {
                return Ok((out, dir.next_entry_seq));
            }
            let from_seq = offset.max(DOTDOT_COOKIE) - DOTDOT_COOKIE;
            let begin = keys::dir_index(ino, from_seq);
            let end = match until {
                Some(seq) if seq <= from_seq => return Ok((out, dir.next_entry_seq)),
                Some(seq) => keys::dir_index(ino, seq),
                None => prefix_end(&keys::dir_index_prefix(ino)),
            };
            let page = tx.scan(&begin, &end, limit - out.len())?;
            let first_child = out.len();
            for (k, v) in page {
                let seq = keys::parse_dir_index(&k)
                    .ok_or_else(|| Error::corrupt(ino, "malformed directory index key"))?;
                let (kind, child, name) = records::decode_dir_index(ino, &v)?;
                out.push(DirEntry {
                    name,
                    ino: child,
                    kind,
                    offset: seq + SEQ_BASE,
                    attr: None,
                });
            }
            if plus && out.len() > first_child {
                let wanted: Vec<Vec<u8>> = out[first_child..]
                    .iter()
                    .map(|e| keys::attr(e.ino))
                    .collect();
                let found = tx.batch_get(&wanted)?;
                for (e, v) in out[first_child..].iter_mut().zip(found) {
                    let v = v.ok_or_else(|| {
                        Error::corrupt(
                            ino,
                            format!(
                                "entry {:?} points to missing inode {}",
                                super::show(&e.name),
                                e.ino
                            ),
                        )
                    })?;
                    e.attr = Some(records::decode_attr(e.ino, &v)?);
                }
            }
            Ok((out, dir.next_entry_seq))
        })
    }
}
