//! Clone: a copy of a file, symlink or special file made of metadata only. The copy's
//! chunk records are the source's, byte for byte, so it shares the source's slices
//! (each record one more reference in `K id`, see `chunks`); no block is read or
//! written, and a later write to either side makes new slices that only that side
//! shows. Directories are walked by the caller (`vfs::tree`), one node at a time.
//!
//! A file whose records fit one transaction (etcd takes about a hundred writes) is
//! cloned atomically. A larger file is copied a page of chunks per transaction, in
//! order, its length growing with each page, so that an interrupted clone leaves a
//! shorter file (as an interrupted `cp` does), never one that reads zeros in the middle.

use std::collections::BTreeMap;

use super::super::counters;
use super::super::kv::{prefix_end, KvTxn};
use super::super::perm::{self, MAY_EXEC, MAY_READ, S_ISGID, S_ISUID};
use super::super::records;
use super::super::types::{Attr, Ctx, FileKind, Ino, Timespec};
use super::super::{keys, Meta};
use super::chunks::{count_reserved, covered, CHUNK_SIZE};
use super::{
    check_name, check_new_entry, is_dot_or_dotdot, must_attr, show, store_new_node, Attrs,
};
use crate::error::{Error, Result};

/// Chunk records plus distinct slices copied per transaction: stays well inside etcd's
/// 128 operations with the inode, entry and counter writes beside them.
const OPS_PER_TXN: usize = 80;

/// How a clone treats ownership, modes and times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneOpts {
    /// Keep the source's mode (setuid/setgid too, for root or the owner), atime and
    /// mtime, and for root its owner and group; otherwise, as `cp` without `-p`, the copy
    /// belongs to the caller, loses setuid/setgid and is stamped now.
    pub preserve: bool,
}

/// Extended attributes copied per transaction (values reach 64 KiB; etcd takes 1.5 MiB
/// per request).
const XATTRS_PER_TXN: usize = 16;

/// Where a clone in progress stands.
#[derive(Debug, Clone)]
enum Step {
    Make,
    /// Extended attributes after this name (empty: from the first).
    Xattrs(Vec<u8>),
    /// Chunks from this index.
    Chunks(u64),
    Done,
}

impl Meta {
    /// Creates `name` in `parent` as a clone of `src` (not a directory's contents: a
    /// cloned directory starts empty, its attributes and extended attributes copied).
    /// Needs read permission on `src` (and search on a directory), write and search
    /// permission on `parent`. Returns the new inode.
    pub fn clone_node(
        &self,
        ctx: &Ctx,
        src: Ino,
        parent: Ino,
        name: &[u8],
        opts: CloneOpts,
    ) -> Result<Ino> {
        check_name(name)?;
        if is_dot_or_dotdot(name) {
            return Err(Error::Exists(show(name)));
        }
        super::check_new_name(parent, name)?;
        self.writable()?;
        let ino = Ino(self.inodes.next(&*self.kv, |_, _, _| Ok(()))?);
        let mut step = Step::Make;
        while !matches!(step, Step::Done) {
            step = self.write(|tx| {
                let sattr = must_attr(tx, src)?;
                let mut step = step.clone();
                let mut budget = OPS_PER_TXN;
                loop {
                    step = match step {
                        Step::Make => {
                            self.make_clone(tx, ctx, src, &sattr, ino, parent, name, opts)?;
                            budget -= 8;
                            Step::Xattrs(Vec::new())
                        }
                        Step::Xattrs(after) => {
                            let (copied, next) = copy_xattrs(tx, src, ino, &after)?;
                            budget -= copied;
                            match next {
                                Some(last) => return Ok(Step::Xattrs(last)),
                                None if sattr.kind == FileKind::File => Step::Chunks(0),
                                None => return Ok(Step::Done),
                            }
                        }
                        Step::Chunks(from) => {
                            return self.copy_chunks(tx, src, &sattr, ino, from, budget)
                        }
                        Step::Done => return Ok(Step::Done),
                    }
                }
            })?;
        }
        Ok(ino)
    }

    /// The clone's inode, entry and symlink target.
    #[allow(clippy::too_many_arguments)]
    fn make_clone(
        &self,
        tx: &mut dyn KvTxn,
        ctx: &Ctx,
        src: Ino,
        sattr: &Attr,
        ino: Ino,
        parent: Ino,
        name: &[u8],
        opts: CloneOpts,
    ) -> Result<()> {
        let need = if sattr.kind == FileKind::Dir {
            MAY_READ | MAY_EXEC
        } else {
            MAY_READ
        };
        perm::check(ctx, sattr, need, "clone from")?;
        if matches!(sattr.kind, FileKind::BlockDev | FileKind::CharDev) && !ctx.is_root() {
            return Err(Error::NotPermitted(
                "only root may create device nodes (a clone of one included)".into(),
            ));
        }
        let mut attrs = Attrs::default();
        check_new_entry(
            tx,
            &mut attrs,
            ctx,
            parent,
            name,
            sattr.kind,
            "create in directory",
        )?;
        self.check_quota(tx, sattr.kind)?;
        let now = Timespec::now();
        let owner = ctx.is_root() || ctx.uid == sattr.uid;
        let mut attr = Attr {
            nlink: if sattr.kind == FileKind::Dir { 2 } else { 1 },
            // A file grows as its chunks are copied.
            length: match sattr.kind {
                FileKind::File => 0,
                _ => sattr.length,
            },
            parent,
            ctime: now,
            next_entry_seq: 0,
            // Not in the trash, whatever the source: the copy is an ordinary file.
            flags: 0,
            stored: 0,
            ..sattr.clone()
        };
        if !(opts.preserve && ctx.is_root()) {
            attr.uid = ctx.uid;
            attr.gid = ctx.gid;
        }
        if !(opts.preserve && owner) {
            attr.mode &= !(S_ISUID | S_ISGID);
        }
        if !opts.preserve {
            attr.atime = now;
            attr.mtime = now;
        }
        store_new_node(tx, &mut attrs, parent, name, ino, &attr, now)?;
        if attr.kind == FileKind::Symlink {
            let target = tx
                .get(&keys::symlink(src))?
                .ok_or_else(|| Error::corrupt(src, "symlink without a target"))?;
            tx.put(&keys::symlink(ino), &target)?;
        }
        counters::add(tx, counters::USED_SPACE, ino, attr.space() as i64)?;
        counters::add(tx, counters::TOTAL_INODES, ino, 1)?;
        Ok(())
    }

    /// Copies a page of `src`'s chunks from index `from` into `ino`, within `budget`
    /// writes, sharing their slices; the clone's length follows what is copied.
    fn copy_chunks(
        &self,
        tx: &mut dyn KvTxn,
        src: Ino,
        sattr: &Attr,
        ino: Ino,
        from: u64,
        budget: usize,
    ) -> Result<Step> {
        let prefix = keys::chunk_prefix(src);
        let begin = keys::chunk(src, from.min(u64::from(u32::MAX)) as u32);
        let page = if from > u64::from(u32::MAX) {
            Vec::new()
        } else {
            tx.scan(&begin, &prefix_end(&prefix), budget)?
        };
        let mut refs: BTreeMap<u64, i64> = BTreeMap::new();
        let mut taken = 0;
        let mut delta = 0i64;
        let mut next = from;
        for (k, _) in &page {
            let Some((_, index)) = keys::parse_chunk(k) else {
                continue;
            };
            // Scans are not tracked: the chunk is read again so that a compaction of
            // it meanwhile (which may drop the last reference to a slice copied here)
            // makes this transaction conflict and retry.
            let Some(v) = tx.get(k)? else {
                continue;
            };
            let recs = records::decode_slices(src, CHUNK_SIZE, &v)?;
            let mut more = refs.clone();
            for r in recs.iter().filter(|r| r.has_blocks()) {
                *more.entry(r.id).or_default() += 1;
            }
            if taken > 0 && taken + 1 + more.len() > budget {
                break;
            }
            refs = more;
            taken += 1;
            tx.put(&keys::chunk(ino, index), &v)?;
            count_reserved(tx, ino, &[], &recs)?;
            delta += covered(&recs) as i64;
            next = u64::from(index) + 1;
        }
        for (id, n) in &refs {
            tx.incr_by(&keys::slice_refs(*id), *n)?;
        }
        let done = taken == page.len() && page.len() < budget;
        let mut attr = must_attr(tx, ino)?;
        let old_space = attr.space();
        attr.stored += delta.max(0) as u64;
        attr.length = if done {
            sattr.length
        } else {
            sattr.length.min(next * CHUNK_SIZE)
        };
        let grow = attr.space() as i64 - old_space as i64;
        self.check_capacity(tx, grow)?;
        super::store_attr(tx, ino, &attr)?;
        counters::charge(tx, ino, &attr, grow)?;
        Ok(if done { Step::Done } else { Step::Chunks(next) })
    }
}

/// Copies up to [`XATTRS_PER_TXN`] extended attributes of `src` named after `after`;
/// returns how many, and the last name copied when there may be more.
fn copy_xattrs(
    tx: &mut dyn KvTxn,
    src: Ino,
    ino: Ino,
    after: &[u8],
) -> Result<(usize, Option<Vec<u8>>)> {
    let prefix = keys::xattr_prefix(src);
    let mut begin = keys::xattr(src, after);
    if !after.is_empty() {
        begin.push(0);
    }
    let page = tx.scan(&begin, &prefix_end(&prefix), XATTRS_PER_TXN)?;
    let mut last = None;
    for (k, v) in &page {
        let name = &k[prefix.len()..];
        tx.put(&keys::xattr(ino, name), v)?;
        last = Some(name.to_vec());
    }
    let more = page.len() == XATTRS_PER_TXN;
    Ok((page.len(), if more { last } else { None }))
}
