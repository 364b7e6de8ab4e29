//! What this client last read of a file's attributes and slice records, kept so that
//! reading an open file does not ask the engine on every request.
//!
//! Every write transaction of this client invalidates the inodes whose keys it wrote,
//! once it ends (committed or not), so the cache never hides this client's own
//! changes. Other clients of a shared engine change files behind it: their changes are
//! seen at the next open (`forget`, close-to-open) and otherwise within [`SHARED_TTL`].
//! A load races with invalidations through a per-inode generation: a load that began
//! before an invalidation of its inode is not stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::kv::{KvPair, KvResult, KvTxn};
use super::overlay::Resolved;
use super::types::{Attr, Ino};

/// How long an entry serves on an engine other clients share.
pub const SHARED_TTL: Duration = Duration::from_secs(1);

/// Inodes tracked at most; past this everything is dropped at once.
const MAX_INODES: usize = 1 << 16;

#[derive(Default)]
struct View {
    gen: u64,
    attr: Option<(Instant, Attr)>,
    chunks: HashMap<u32, (Instant, Arc<Resolved>)>,
}

#[derive(Default)]
struct State {
    views: HashMap<Ino, View>,
    /// Bumped when every view is dropped at once.
    epoch: u64,
}

pub(crate) struct Views {
    state: Mutex<State>,
    /// `None`: this client is the only one (an exclusive engine); entries never expire.
    ttl: Option<Duration>,
}

/// Where a load stood when it began; see [`Views::stamp`].
#[derive(Clone, Copy)]
pub(crate) struct Stamp {
    epoch: u64,
    gen: u64,
}

impl Views {
    pub fn new(exclusive: bool) -> Self {
        Views {
            state: Mutex::default(),
            ttl: (!exclusive).then_some(SHARED_TTL),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, at: Instant) -> bool {
        self.ttl.is_none_or(|ttl| at.elapsed() < ttl)
    }

    pub fn attr(&self, ino: Ino) -> Option<Attr> {
        let st = self.state();
        let (at, attr) = st.views.get(&ino)?.attr.as_ref()?;
        self.fresh(*at).then(|| attr.clone())
    }

    pub fn chunk(&self, ino: Ino, index: u32) -> Option<Arc<Resolved>> {
        let st = self.state();
        let (at, recs) = st.views.get(&ino)?.chunks.get(&index)?;
        self.fresh(*at).then(|| recs.clone())
    }

    /// Taken before loading from the engine, and given back to store what was loaded.
    pub fn stamp(&self, ino: Ino) -> Stamp {
        let st = self.state();
        Stamp {
            epoch: st.epoch,
            gen: st.views.get(&ino).map_or(0, |v| v.gen),
        }
    }

    /// The view of `ino` to store into, if nothing invalidated it since `stamp`.
    fn store(&self, ino: Ino, stamp: Stamp, f: impl FnOnce(&mut View)) {
        let mut st = self.state();
        if st.epoch != stamp.epoch {
            return;
        }
        if !st.views.contains_key(&ino) && st.views.len() >= MAX_INODES {
            st.views.clear();
            st.epoch += 1;
            return;
        }
        let view = st.views.entry(ino).or_default();
        if view.gen == stamp.gen {
            f(view);
        }
    }

    pub fn store_attr(&self, ino: Ino, stamp: Stamp, attr: &Attr) {
        self.store(ino, stamp, |v| {
            v.attr = Some((Instant::now(), attr.clone()))
        });
    }

    pub fn store_chunk(&self, ino: Ino, index: u32, stamp: Stamp, recs: Arc<Resolved>) {
        self.store(ino, stamp, |v| {
            v.chunks.insert(index, (Instant::now(), recs));
        });
    }

    /// Drops what is cached of `ino`; loads in flight for it will not be stored.
    pub fn forget(&self, ino: Ino) {
        let mut st = self.state();
        if !st.views.contains_key(&ino) && st.views.len() >= MAX_INODES {
            st.views.clear();
            st.epoch += 1;
            return;
        }
        let view = st.views.entry(ino).or_default();
        view.gen += 1;
        view.attr = None;
        view.chunks.clear();
    }

    /// Drops everything.
    pub fn forget_all(&self) {
        let mut st = self.state();
        st.views.clear();
        st.epoch += 1;
    }

    /// Applies what a write transaction touched.
    pub fn forget_touched(&self, touched: &Touched) {
        if touched.all {
            self.forget_all();
        } else {
            for ino in &touched.inodes {
                self.forget(*ino);
            }
        }
    }
}

/// The inodes a write transaction wrote keys of (`all`: a range spanning inodes).
#[derive(Default)]
pub(crate) struct Touched {
    inodes: HashSet<Ino>,
    all: bool,
}

/// The inode a key of the `A` ino ... family belongs to.
fn inode_of(key: &[u8]) -> Option<Ino> {
    (key.len() >= 9 && key[0] == b'A').then(|| {
        Ino(u64::from_be_bytes(
            key[1..9].try_into().expect("nine bytes checked"),
        ))
    })
}

/// A write transaction that notes the inodes whose keys it writes.
pub(crate) struct Noting<'a, 'b> {
    pub inner: &'a mut (dyn KvTxn + 'b),
    pub touched: &'a mut Touched,
}

impl Noting<'_, '_> {
    fn note(&mut self, key: &[u8]) {
        if let Some(ino) = inode_of(key) {
            self.touched.inodes.insert(ino);
        }
    }
}

impl KvTxn for Noting<'_, '_> {
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn batch_get(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Vec<u8>>>> {
        self.inner.batch_get(keys)
    }
    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>> {
        self.inner.scan(begin, end, limit)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.note(key);
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> KvResult<()> {
        self.note(key);
        self.inner.delete(key)
    }
    fn delete_range(&mut self, begin: &[u8], end: &[u8]) -> KvResult<()> {
        match (inode_of(begin), inode_of(end)) {
            (Some(a), Some(b)) if a == b => {
                self.touched.inodes.insert(a);
            }
            // An inode's whole key range ends where the next inode's begins.
            (Some(a), Some(b)) if b.0 == a.0.wrapping_add(1) && end.len() == 9 => {
                self.touched.inodes.insert(a);
            }
            // Any other range that may hold inode keys.
            _ if begin.first().is_none_or(|&b| b <= b'A')
                && (end.is_empty() || end > &b"A"[..]) =>
            {
                self.touched.all = true;
            }
            _ => {}
        }
        self.inner.delete_range(begin, end)
    }
    fn commit(self: Box<Self>) -> KvResult<()> {
        unreachable!("a noting transaction is committed through its inner one")
    }
}
