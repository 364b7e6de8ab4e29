//! BSD `flock` and POSIX record locks, shared by every client of the volume.
//!
//! Each inode has at most two lock tables, `A ino F` (flock) and `A ino P` (POSIX), one
//! key each; a lock operation is a read-modify-write of its table in one transaction,
//! so two clients racing for a lock conflict in the engine and exactly one wins. An
//! owner is `(session, owner)`: the kernel's lock owner (the open file description for
//! flock, the process's file table for POSIX locks) within one client's session. The
//! two kinds are separate lock spaces, as on Linux.
//!
//! Every `(session, inode)` pair with locks is indexed under `SL sid ino`, so a
//! session's locks are found without a volume scan: they are dropped when it ends and,
//! when its client dies, by the client that cleans the expired session.
//!
//! Blocking requests (`F_SETLKW`, `LOCK_EX` without `LOCK_NB`) retry until granted or
//! until the caller gives up ([`LockWait::Until`]: a signal, a dead process). A waiter is
//! woken at once by unlocks of its own client and otherwise polls with exponential
//! back-off (up to [`MAX_POLL`]), since a remote client's unlock has no cross-client
//! notification yet. A POSIX request that would wait for an owner of this client that
//! is itself waiting, directly or through others, for the requester fails with EDEADLK,
//! as the kernel does for local locks (cycles through other clients are not detected).

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::keys;
use super::kv::{prefix_end, KvTxn};
use super::types::Ino;
use super::Meta;
use crate::error::{Error, Result};

const MAX_POLL: Duration = Duration::from_millis(200);
const FIRST_POLL: Duration = Duration::from_millis(2);
/// A lock table is one value; bound it so it stays far below engine value limits.
const MAX_RECORDS: usize = 4096;

/// What a lock request does when it meets a conflicting lock.
#[derive(Clone, Copy)]
pub enum LockWait<'a> {
    /// Fail with EAGAIN (F_SETLK, LOCK_NB).
    No,
    /// Wait until granted (F_SETLKW, blocking flock); the function is asked between
    /// attempts whether the caller has given up, which ends the wait with EINTR.
    Until(&'a (dyn Fn() -> bool + Sync)),
}

/// What a lock request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    Read,
    Write,
    Unlock,
}

impl LockType {
    /// From `F_RDLCK` / `F_WRLCK` / `F_UNLCK`.
    pub fn from_fcntl(typ: i32) -> Result<Self> {
        match typ {
            libc::F_RDLCK => Ok(LockType::Read),
            libc::F_WRLCK => Ok(LockType::Write),
            libc::F_UNLCK => Ok(LockType::Unlock),
            other => Err(Error::Invalid(format!("lock type {other}"))),
        }
    }

    pub fn to_fcntl(self) -> i32 {
        match self {
            LockType::Read => libc::F_RDLCK,
            LockType::Write => libc::F_WRLCK,
            LockType::Unlock => libc::F_UNLCK,
        }
    }
}

/// One held lock. flock locks span the whole file (`start` 0, `end` u64::MAX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRecord {
    pub sid: u64,
    pub owner: u64,
    pub pid: u32,
    pub write: bool,
    /// First and last byte (inclusive).
    pub start: u64,
    pub end: u64,
}

impl LockRecord {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    fn same_owner(&self, sid: u64, owner: u64) -> bool {
        self.sid == sid && self.owner == owner
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flock,
    Posix,
}

impl Kind {
    fn key(self, ino: Ino) -> Vec<u8> {
        match self {
            Kind::Flock => keys::flock_table(ino),
            Kind::Posix => keys::posix_lock_table(ino),
        }
    }
}

const RECORD_LEN: usize = 8 + 8 + 4 + 1 + 8 + 8;

fn encode(records: &[LockRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * RECORD_LEN);
    for r in records {
        out.extend_from_slice(&r.sid.to_be_bytes());
        out.extend_from_slice(&r.owner.to_be_bytes());
        out.extend_from_slice(&r.pid.to_be_bytes());
        out.push(r.write as u8);
        out.extend_from_slice(&r.start.to_be_bytes());
        out.extend_from_slice(&r.end.to_be_bytes());
    }
    out
}

fn decode(ino: Ino, v: &[u8]) -> Result<Vec<LockRecord>> {
    if v.len() % RECORD_LEN != 0 {
        return Err(Error::corrupt(
            ino,
            format!("lock table of {} bytes", v.len()),
        ));
    }
    let u64_at = |c: &[u8], i: usize| u64::from_be_bytes(c[i..i + 8].try_into().expect("8"));
    Ok(v.chunks_exact(RECORD_LEN)
        .map(|c| LockRecord {
            sid: u64_at(c, 0),
            owner: u64_at(c, 8),
            pid: u32::from_be_bytes(c[16..20].try_into().expect("4")),
            write: c[20] != 0,
            start: u64_at(c, 21),
            end: u64_at(c, 29),
        })
        .collect())
}

fn load(tx: &mut dyn KvTxn, kind: Kind, ino: Ino) -> Result<Vec<LockRecord>> {
    match tx.get(&kind.key(ino))? {
        Some(v) => decode(ino, &v),
        None => Ok(Vec::new()),
    }
}

/// Writes a table back and keeps the session index `SL sid ino` true for `sid`.
fn store(tx: &mut dyn KvTxn, kind: Kind, ino: Ino, sid: u64, records: &[LockRecord]) -> Result<()> {
    if records.len() > MAX_RECORDS {
        return Err(Error::NoSpace(format!(
            "more than {MAX_RECORDS} lock records on inode {ino}"
        )));
    }
    let key = kind.key(ino);
    if records.is_empty() {
        tx.delete(&key)?;
    } else {
        tx.put(&key, &encode(records))?;
    }
    let other = match kind {
        Kind::Flock => Kind::Posix,
        Kind::Posix => Kind::Flock,
    };
    let holds =
        records.iter().any(|r| r.sid == sid) || load(tx, other, ino)?.iter().any(|r| r.sid == sid);
    if holds {
        tx.put(&keys::session_lock(sid, ino), b"")?;
    } else {
        tx.delete(&keys::session_lock(sid, ino))?;
    }
    Ok(())
}

/// Applies a POSIX lock request of one owner to a table: conflicts with other owners
/// fail the request; the owner's own overlapping locks are replaced (split where the
/// new range cuts them), as fcntl does.
fn apply(records: &mut Vec<LockRecord>, req: LockRecord, typ: LockType) -> Result<()> {
    if typ != LockType::Unlock {
        if let Some(c) = conflict(records, &req, typ) {
            return Err(Error::WouldBlock(format!(
                "byte range {}-{} is locked by another owner (pid {})",
                c.start, c.end, c.pid
            )));
        }
    }
    let mut kept = Vec::with_capacity(records.len() + 2);
    for r in records.drain(..) {
        if !r.same_owner(req.sid, req.owner) || !r.overlaps(req.start, req.end) {
            kept.push(r);
            continue;
        }
        if r.start < req.start {
            kept.push(LockRecord {
                end: req.start - 1,
                ..r
            });
        }
        if r.end > req.end {
            kept.push(LockRecord {
                start: req.end + 1,
                ..r
            });
        }
    }
    if typ != LockType::Unlock {
        kept.push(req);
        merge_adjacent(&mut kept, req.sid, req.owner);
    }
    *records = kept;
    Ok(())
}

/// Joins an owner's touching ranges of the same type, so tables stay small.
fn merge_adjacent(records: &mut Vec<LockRecord>, sid: u64, owner: u64) {
    let (mut mine, others): (Vec<_>, Vec<_>) =
        records.drain(..).partition(|r| r.same_owner(sid, owner));
    mine.sort_by_key(|r| r.start);
    let mut merged: Vec<LockRecord> = Vec::with_capacity(mine.len());
    for r in mine {
        match merged.last_mut() {
            Some(last)
                if last.write == r.write
                    && last.end.checked_add(1).is_none_or(|n| n >= r.start) =>
            {
                last.end = last.end.max(r.end);
                last.pid = r.pid;
            }
            _ => merged.push(r),
        }
    }
    *records = others;
    records.extend(merged);
}

/// The owners (of session `req.sid`) whose locks block `req`.
fn local_blockers(records: &[LockRecord], req: &LockRecord, typ: LockType) -> Vec<u64> {
    let mut owners: Vec<u64> = records
        .iter()
        .filter(|r| {
            r.sid == req.sid
                && r.owner != req.owner
                && r.overlaps(req.start, req.end)
                && (typ == LockType::Write || r.write)
        })
        .map(|r| r.owner)
        .collect();
    owners.sort_unstable();
    owners.dedup();
    owners
}

/// This client's POSIX waiters: owner -> the owners of this client it waits for.
#[derive(Default)]
pub(super) struct WaitGraph(Mutex<HashMap<u64, Vec<u64>>>);

impl WaitGraph {
    /// Records that `owner` waits for `blockers`, unless that closes a cycle.
    fn wait(&self, owner: u64, blockers: Vec<u64>) -> bool {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut stack = blockers.clone();
        let mut seen = HashSet::new();
        while let Some(o) = stack.pop() {
            if o == owner {
                return false;
            }
            if seen.insert(o) {
                if let Some(next) = g.get(&o) {
                    stack.extend(next.iter().copied());
                }
            }
        }
        g.insert(owner, blockers);
        true
    }

    fn done(&self, owner: u64) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&owner);
    }
}

fn conflict<'a>(
    records: &'a [LockRecord],
    req: &LockRecord,
    typ: LockType,
) -> Option<&'a LockRecord> {
    records.iter().find(|r| {
        !r.same_owner(req.sid, req.owner)
            && r.overlaps(req.start, req.end)
            && (typ == LockType::Write || r.write)
    })
}

/// Wakes this client's waiters when one of its own locks is released.
#[derive(Default)]
pub(super) struct Waiters {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Waiters {
    fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// Waits until a notification after `seen` or `timeout`.
    fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |g| *g == seen);
    }
}

/// Inodes on which this client may hold locks, so that closing a file that was never
/// locked costs no transaction.
#[derive(Default)]
pub(super) struct Held(Mutex<HashSet<Ino>>);

impl Held {
    /// Only ever grows while the session lives: removing on unlock would race with a
    /// concurrent lock of another owner on the same inode and could skip its release.
    fn add(&self, ino: Ino) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(ino);
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn contains(&self, ino: Ino) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ino)
    }
}

impl Meta {
    /// BSD flock: `owner` is the open file description. A conversion (shared to
    /// exclusive or back) replaces the owner's lock. Without `wait`, a conflicting lock
    /// fails with EWOULDBLOCK.
    pub fn flock(&self, ino: Ino, owner: u64, typ: LockType, wait: LockWait<'_>) -> Result<()> {
        let req = LockRecord {
            sid: self.sid,
            owner,
            pid: 0,
            write: typ == LockType::Write,
            start: 0,
            end: u64::MAX,
        };
        self.lock_op(Kind::Flock, ino, req, typ, wait)
    }

    /// fcntl F_SETLK / F_SETLKW on bytes `start..=end` (`end` u64::MAX: to the end of
    /// the file, however it grows).
    #[allow(clippy::too_many_arguments)]
    pub fn setlk(
        &self,
        ino: Ino,
        owner: u64,
        pid: u32,
        typ: LockType,
        start: u64,
        end: u64,
        wait: LockWait<'_>,
    ) -> Result<()> {
        if start > end {
            return Err(Error::Invalid(format!("lock range {start}-{end}")));
        }
        let req = LockRecord {
            sid: self.sid,
            owner,
            pid,
            write: typ == LockType::Write,
            start,
            end,
        };
        self.lock_op(Kind::Posix, ino, req, typ, wait)
    }

    /// fcntl F_GETLK: the first lock of another owner that would block this request.
    pub fn getlk(
        &self,
        ino: Ino,
        owner: u64,
        typ: LockType,
        start: u64,
        end: u64,
    ) -> Result<Option<(LockType, LockRecord)>> {
        let req = LockRecord {
            sid: self.sid,
            owner,
            pid: 0,
            write: typ == LockType::Write,
            start,
            end,
        };
        self.read(|tx| {
            let records = load(tx, Kind::Posix, ino)?;
            Ok(conflict(&records, &req, typ).map(|r| {
                let t = if r.write {
                    LockType::Write
                } else {
                    LockType::Read
                };
                (t, *r)
            }))
        })
    }

    /// Drops the locks `owner` holds on `ino`: its POSIX locks when the process closes
    /// any descriptor of the file (flush), its flock when the open file description is
    /// released. Free when this client never locked the file.
    pub fn release_locks(&self, ino: Ino, owner: u64, flock: bool, posix: bool) -> Result<()> {
        if !self.held.contains(ino) || self.config.read_only {
            return Ok(());
        }
        let sid = self.sid;
        let mut changed = false;
        self.write(|tx| {
            changed = false;
            for (kind, on) in [(Kind::Flock, flock), (Kind::Posix, posix)] {
                if !on {
                    continue;
                }
                let mut records = load(tx, kind, ino)?;
                let before = records.len();
                records.retain(|r| !r.same_owner(sid, owner));
                if records.len() != before {
                    changed = true;
                    store(tx, kind, ino, sid, &records)?;
                }
            }
            Ok(())
        })?;
        if changed {
            self.lock_waiters.notify();
        }
        Ok(())
    }

    fn lock_op(
        &self,
        kind: Kind,
        ino: Ino,
        req: LockRecord,
        typ: LockType,
        wait: LockWait<'_>,
    ) -> Result<()> {
        self.writable()?;
        let mut poll = FIRST_POLL;
        // Before the attempt: a release racing with it must not skip the inode.
        self.held.add(ino);
        let result = loop {
            let seen = self.lock_waiters.generation();
            let mut blockers = Vec::new();
            let result = self.write(|tx| {
                if super::ops::load_attr(tx, ino)?.is_none() {
                    return Err(Error::NotFound(format!("inode {ino}")));
                }
                let mut records = load(tx, kind, ino)?;
                if typ != LockType::Unlock {
                    blockers = local_blockers(&records, &req, typ);
                }
                apply(&mut records, req, typ)?;
                store(tx, kind, ino, req.sid, &records)
            });
            let LockWait::Until(gave_up) = wait else {
                break result;
            };
            match result {
                Err(Error::WouldBlock(_)) if !self.is_closed() => {
                    if kind == Kind::Posix && !self.lock_graph.wait(req.owner, blockers) {
                        break Err(Error::Deadlock(format!(
                            "waiting for the lock on inode {ino} would deadlock"
                        )));
                    }
                    if gave_up() {
                        break Err(Error::Interrupted("lock wait".into()));
                    }
                    self.lock_waiters.wait(seen, poll);
                    poll = (poll * 2).min(MAX_POLL);
                }
                other => break other,
            }
        };
        if kind == Kind::Posix {
            self.lock_graph.done(req.owner);
        }
        if result.is_ok() && typ != LockType::Write {
            // An unlock or a downgrade may unblock our other waiters.
            self.lock_waiters.notify();
        }
        result
    }
    /// Removes every lock of session `sid` (its end, or its cleanup after it died).
    pub(super) fn release_session_locks(&self, sid: u64) -> Result<()> {
        let prefix = keys::session_lock_prefix(sid);
        let inos: Vec<Ino> = self.read(|tx| {
            Ok(tx
                .scan(&prefix, &prefix_end(&prefix), usize::MAX)?
                .iter()
                .filter_map(|(k, _)| keys::parse_session_lock(k).map(|(_, ino)| ino))
                .collect())
        })?;
        for ino in inos {
            self.write(|tx| {
                for kind in [Kind::Flock, Kind::Posix] {
                    let mut records = load(tx, kind, ino)?;
                    let before = records.len();
                    records.retain(|r| r.sid != sid);
                    if records.len() != before {
                        let key = kind.key(ino);
                        if records.is_empty() {
                            tx.delete(&key)?;
                        } else {
                            tx.put(&key, &encode(&records))?;
                        }
                    }
                }
                tx.delete(&keys::session_lock(sid, ino))?;
                Ok(())
            })?;
        }
        if sid == self.sid {
            self.held.clear();
        }
        self.lock_waiters.notify();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: u64, write: bool, start: u64, end: u64) -> LockRecord {
        LockRecord {
            sid: 1,
            owner,
            pid: owner as u32,
            write,
            start,
            end,
        }
    }

    #[test]
    fn wait_cycles_are_refused() {
        let g = WaitGraph::default();
        assert!(g.wait(1, vec![2]));
        assert!(g.wait(2, vec![3]));
        assert!(!g.wait(3, vec![1]), "3 -> 1 -> 2 -> 3");
        g.done(2);
        assert!(g.wait(3, vec![1]));
    }

    #[test]
    fn posix_ranges_split_merge_and_conflict_like_fcntl() {
        let mut t = Vec::new();
        apply(&mut t, rec(1, true, 0, 99), LockType::Write).unwrap();
        // Unlocking the middle splits the lock in two.
        apply(&mut t, rec(1, false, 40, 59), LockType::Unlock).unwrap();
        let mut ranges: Vec<(u64, u64)> = t.iter().map(|r| (r.start, r.end)).collect();
        ranges.sort();
        assert_eq!(ranges, vec![(0, 39), (60, 99)]);
        // Another owner can read-lock the hole but not overlap a write lock.
        apply(&mut t, rec(2, false, 40, 59), LockType::Read).unwrap();
        assert!(matches!(
            apply(&mut t, rec(2, false, 30, 45), LockType::Read),
            Err(Error::WouldBlock(_))
        ));
        // Owner 1 re-locking the whole range conflicts with owner 2's read lock...
        assert!(apply(&mut t, rec(1, true, 0, 99), LockType::Write).is_err());
        // ...and a read lock over it merges owner 1's pieces with it into one range.
        apply(&mut t, rec(1, false, 0, 99), LockType::Read).unwrap();
        let mine: Vec<_> = t.iter().filter(|r| r.owner == 1).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].start, mine[0].end, mine[0].write), (0, 99, false));
        // Locks to EOF never overflow when merged.
        apply(&mut t, rec(3, false, 200, u64::MAX), LockType::Read).unwrap();
        apply(&mut t, rec(3, false, 100, 199), LockType::Read).unwrap();
        assert!(t
            .iter()
            .any(|r| r.owner == 3 && r.start == 100 && r.end == u64::MAX));
        let bytes = encode(&t);
        assert_eq!(decode(Ino(1), &bytes).unwrap(), t);
        assert!(decode(Ino(1), &bytes[1..]).is_err());
    }
}
