//! Buffered writes of one inode through this client, until they are committed.
//!
//! Writes land in *slices*: runs of bytes written contiguously into one chunk. A write
//! that continues the newest slice of its chunk (and is not hidden by a later one)
//! appends to it; any other write starts a new slice with a fresh id. A slice fills
//! blocks of the volume's block size; each full block is uploaded in the background at
//! once, and its pages go back to the pool when the upload finishes. Flushing freezes
//! the open slices, uploads their last partial blocks, waits for every upload and then
//! commits all their records in one metadata transaction, in write order, so later
//! writes win exactly as they would on a local file.
//!
//! A slice that reaches the end of its chunk can never grow again: it is committed in
//! the background as soon as it is, while the writer goes on into the next chunk, so a
//! long sequential write overlaps each commit with the next slice's uploads and close
//! has only the last slice left to commit. Commits of one file run one at a time, in
//! write order (`commit_lock`); each takes the oldest pending slices.
//!
//! Until the commit, the slices stay readable from here (read-your-writes): bytes in
//! pages or in flight come from memory, uploaded blocks from object storage.
//!
//! A failed upload poisons the writer: the write, flush or close that notices it fails
//! with EIO, no record of the failed slices is ever committed, and their blocks are
//! queued for deletion so nothing leaks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use opendal::Buffer;
use tokio::task::JoinHandle;

use super::buffer::Page;
use super::DataEnv;
use crate::error::{Error, Result};
use crate::meta::ops::chunks::{NewSlice, SliceCommit, SliceData, SliceSums, CHUNK_SIZE};
use crate::meta::records::SliceRecord;
use crate::meta::Ino;

enum Block {
    /// Being filled, or full but its slice not yet frozen for upload.
    Filling(Vec<Page>),
    /// Upload in flight; the bytes stay readable.
    Uploading(Vec<Bytes>),
    /// In object storage with this length and these sector checksums.
    Stored(u32, Arc<[u32]>),
}

struct SliceState {
    len: u32,
    frozen: bool,
    blocks: Vec<Block>,
    uploads: Vec<JoinHandle<Result<()>>>,
}

pub(crate) struct Slice {
    chunk: u32,
    pos: u32,
    id: u64,
    state: Mutex<SliceState>,
    /// The writer's count of uploads in flight.
    in_flight: Arc<AtomicUsize>,
}

/// Counts one upload in flight for as long as it lives (however its task ends).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slice {
    fn lock(&self) -> std::sync::MutexGuard<'_, SliceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self) -> u64 {
        u64::from(self.pos) + u64::from(self.lock().len)
    }

    /// Whether the slice reaches the end of its chunk, so that no write can extend it.
    fn is_closed(&self) -> bool {
        self.end() == CHUNK_SIZE
    }

    /// True when the next byte needs a fresh page.
    fn needs_page(&self, block_size: u32) -> bool {
        let st = self.lock();
        if st.len % block_size == 0 {
            return true;
        }
        match st.blocks.last() {
            Some(Block::Filling(pages)) => pages.last().is_none_or(|p| p.room() == 0),
            _ => true,
        }
    }

    /// Appends from `data` up to the end of the current page; returns the bytes taken.
    fn append(
        self: &Arc<Self>,
        env: &Arc<DataEnv>,
        data: &[u8],
        spare: &mut Option<Page>,
    ) -> usize {
        let bs = env.store.block_size();
        let mut st = self.lock();
        let index = (st.len / bs) as usize;
        if index == st.blocks.len() {
            st.blocks.push(Block::Filling(Vec::new()));
        }
        let room_in_block = (bs - st.len % bs) as usize;
        let Some(Block::Filling(pages)) = st.blocks.last_mut() else {
            unreachable!("the current block of an unfrozen slice is filling")
        };
        if pages.last().is_none_or(|p| p.room() == 0) {
            pages.push(
                spare
                    .take()
                    .expect("caller provides a page when needs_page"),
            );
        }
        let page = pages.last_mut().expect("pushed above");
        let n = page.fill(&data[..data.len().min(room_in_block)]);
        st.len += n as u32;
        if st.len % bs == 0 {
            self.start_upload(env, &mut st, index);
        }
        n
    }

    /// Turns block `index` (filling) into an upload in the background.
    fn start_upload(self: &Arc<Self>, env: &Arc<DataEnv>, st: &mut SliceState, index: usize) {
        let Block::Filling(pages) =
            std::mem::replace(&mut st.blocks[index], Block::Stored(0, Arc::new([])))
        else {
            return;
        };
        let bytes: Vec<Bytes> = pages.into_iter().map(Page::freeze).collect();
        let len: u32 = bytes.iter().map(|b| b.len() as u32).sum();
        st.blocks[index] = Block::Uploading(bytes.clone());
        let (task_env, slice) = (env.clone(), self.clone());
        let in_flight = InFlight::new(&self.in_flight);
        st.uploads.push(env.spawn(async move {
            let _in_flight = in_flight;
            let env = task_env;
            let sums = env
                .write_block(slice.id, index as u32, Buffer::from(bytes))
                .await?;
            slice.lock().blocks[index] = Block::Stored(len, sums.into());
            Ok(())
        }));
    }

    /// Stops appends and uploads the partial last block; returns the pending uploads.
    fn freeze(self: &Arc<Self>, env: &Arc<DataEnv>) -> Vec<JoinHandle<Result<()>>> {
        let mut st = self.lock();
        if !st.frozen {
            st.frozen = true;
            if let Some(last) = st.blocks.len().checked_sub(1) {
                if matches!(st.blocks[last], Block::Filling(_)) {
                    self.start_upload(env, &mut st, last);
                }
            }
        }
        std::mem::take(&mut st.uploads)
    }

    /// Freezes a slice that never started an upload and returns its bytes, to be
    /// committed inline; `None` if any of it is already on its way to object storage.
    fn take_inline(&self) -> Option<Bytes> {
        let mut st = self.lock();
        if st.frozen || !st.uploads.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(st.len as usize);
        for b in &st.blocks {
            let Block::Filling(pages) = b else {
                return None;
            };
            for p in pages {
                out.extend_from_slice(p.as_ref());
            }
        }
        st.frozen = true;
        Some(Bytes::from(out))
    }

    /// Whether the slice holds at most `max` bytes and has started no upload (its
    /// block is still filling).
    fn is_small(&self, max: u32) -> bool {
        let st = self.lock();
        !st.frozen
            && st.uploads.is_empty()
            && st.len > 0
            && st.len <= max
            && st.blocks.iter().all(|b| matches!(b, Block::Filling(_)))
    }

    /// Freezes a small slice (see [`Slice::is_small`]) and returns its bytes as
    /// pieces, for a pack; they stay readable from here until the commit.
    fn take_for_pack(&self) -> Option<Vec<Bytes>> {
        let mut st = self.lock();
        if st.frozen || !st.uploads.is_empty() || st.blocks.len() != 1 {
            return None;
        }
        let Block::Filling(pages) =
            std::mem::replace(&mut st.blocks[0], Block::Uploading(Vec::new()))
        else {
            unreachable!("checked by is_small");
        };
        let bytes: Vec<Bytes> = pages.into_iter().map(Page::freeze).collect();
        st.blocks[0] = Block::Uploading(bytes.clone());
        st.frozen = true;
        Some(bytes)
    }

    /// The sector checksums of the whole slice, once every block is stored.
    fn sums(&self) -> Vec<u32> {
        let st = self.lock();
        let mut out = Vec::new();
        for b in &st.blocks {
            match b {
                Block::Stored(_, sums) => out.extend_from_slice(sums),
                _ => unreachable!("a slice is committed only after all its uploads succeeded"),
            }
        }
        out
    }

    /// Copies slice bytes `[off, off + out.len())` into `out`.
    async fn read(&self, env: &DataEnv, off: u64, out: &mut [u8]) -> Result<()> {
        let bs = u64::from(env.store.block_size());
        let mut done = 0usize;
        while done < out.len() {
            let at = off + done as u64;
            let index = (at / bs) as usize;
            let in_block = (at % bs) as usize;
            let want = (out.len() - done).min(bs as usize - in_block);
            let stored = {
                let st = self.lock();
                match st.blocks.get(index) {
                    Some(Block::Filling(pages)) => {
                        copy_from(
                            pages.iter().map(|p| p.as_ref()),
                            in_block,
                            &mut out[done..done + want],
                        );
                        None
                    }
                    Some(Block::Uploading(bytes)) => {
                        copy_from(
                            bytes.iter().map(|b| b.as_ref()),
                            in_block,
                            &mut out[done..done + want],
                        );
                        None
                    }
                    Some(Block::Stored(len, sums)) => Some((*len, sums.clone())),
                    None => unreachable!("reads stay within the slice's written length"),
                }
            };
            if let Some((len, sums)) = stored {
                let block = env
                    .fetch_block(self.id, index as u32, len, Some(&sums))
                    .await?;
                let avail = block.len().saturating_sub(in_block).min(want);
                out[done..done + avail].copy_from_slice(&block[in_block..in_block + avail]);
            }
            done += want;
        }
        Ok(())
    }
}

/// Copies from a sequence of page-sized pieces starting at byte `skip`.
fn copy_from<'a>(pieces: impl Iterator<Item = &'a [u8]>, mut skip: usize, out: &mut [u8]) {
    let mut done = 0;
    for p in pieces {
        if done == out.len() {
            break;
        }
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        let n = (p.len() - skip).min(out.len() - done);
        out[done..done + n].copy_from_slice(&p[skip..skip + n]);
        done += n;
        skip = 0;
    }
}

/// Where a pending slice's bytes go at its commit.
enum Place {
    /// Its own blocks.
    Own,
    /// Into the metadata engine, with its record.
    Inline(Bytes),
    /// At `off` in shared slice `packs[pack]`.
    Packed { pack: usize, off: u32 },
}

/// A slice made of the bytes of several small slices, each committed as a record
/// pointing into it.
struct Pack {
    id: u64,
    size: u32,
    sums: Vec<u32>,
}

/// Slices up to this size are packed with others at commit.
const PACKED_SLICE_MAX: u32 = 256 << 10;
/// A pack is at most this big (records address it with 32-bit offsets; compaction and
/// deletion handle it like any slice).
const PACK_MAX: u32 = 64 << 20;

/// Splits a run of pieces into blocks of `bs` bytes (the last one shorter), without
/// copying.
fn split_blocks(pieces: Vec<Bytes>, bs: u32) -> Vec<Vec<Bytes>> {
    let bs = bs as usize;
    let mut out: Vec<Vec<Bytes>> = vec![Vec::new()];
    let mut room = bs;
    for mut piece in pieces {
        while !piece.is_empty() {
            if room == 0 {
                out.push(Vec::new());
                room = bs;
            }
            let take = piece.len().min(room);
            out.last_mut()
                .expect("never empty")
                .push(piece.split_to(take));
            room -= take;
        }
    }
    out
}

pub(crate) struct FileWriter {
    ino: Ino,
    /// Pending (uncommitted) slices, oldest first.
    slices: Mutex<Vec<Arc<Slice>>>,
    /// Serialises writes and flushes of this inode.
    write_lock: tokio::sync::Mutex<()>,
    /// Serialises commits of this inode (a flush's and those of closed slices in the
    /// background), so that they apply in write order. Taken after `write_lock`.
    commit_lock: tokio::sync::Mutex<()>,
    /// Uploads of this inode's blocks in flight.
    in_flight: Arc<AtomicUsize>,
    poisoned: AtomicBool,
    /// A commit since the last durable one was not durable (made under buffer pressure):
    /// the next durable flush must sync the metadata WAL even if nothing is pending.
    unsynced: AtomicBool,
    /// End of the furthest pending write (valid while slices are pending).
    end: AtomicU64,
    /// A pending write was made by an unprivileged caller: the commit clears setuid and
    /// setgid, and until then attributes are reported with them cleared (as a local
    /// filesystem clears them at the write itself).
    kill_suid: AtomicBool,
}

impl FileWriter {
    pub fn new(ino: Ino) -> Self {
        FileWriter {
            ino,
            slices: Mutex::new(Vec::new()),
            write_lock: tokio::sync::Mutex::new(()),
            commit_lock: tokio::sync::Mutex::new(()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            poisoned: AtomicBool::new(false),
            unsynced: AtomicBool::new(false),
            end: AtomicU64::new(0),
            kill_suid: AtomicBool::new(false),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slice>>> {
        self.slices.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_pending(&self) -> bool {
        !self.pending().is_empty()
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// The newest pending slice of `chunk` that a write at `pos` can extend.
    fn appendable(&self, chunk: u32, pos: u64, len: u64) -> Option<Arc<Slice>> {
        let slices = self.pending();
        for s in slices.iter().rev().take(16) {
            if s.chunk != chunk {
                continue;
            }
            let st = s.lock();
            let end = u64::from(s.pos) + u64::from(st.len);
            if !st.frozen && end == pos {
                return Some(s.clone());
            }
            // A newer slice covering the range would hide appended bytes: start fresh.
            if u64::from(s.pos) < pos + len && pos < end {
                return None;
            }
        }
        None
    }

    /// Writes `data` at `off`, or at the end of the file when `off` is `None` (O_APPEND:
    /// the end is computed under the write lock, so concurrent appends never overlap).
    /// Returns the offset written at.
    pub async fn write(
        self: &Arc<Self>,
        env: &Arc<DataEnv>,
        off: Option<u64>,
        data: &[u8],
        kill_suid: bool,
    ) -> Result<u64> {
        let locked = self.write_lock.lock().await;
        if self.is_poisoned() {
            return Err(Error::Poisoned(self.ino.0));
        }
        let off = match off {
            Some(off) => off,
            None => {
                let pending = self.snapshot().end;
                let committed = env.meta.getattr(self.ino)?.length;
                pending.map_or(committed, |e| e.max(committed))
            }
        };
        if kill_suid {
            self.kill_suid.store(true, Ordering::SeqCst);
        }
        let mut spare: Option<Page> = None;
        let mut done = 0usize;
        while done < data.len() {
            let at = off + done as u64;
            let chunk = (at / CHUNK_SIZE) as u32;
            let pos = at % CHUNK_SIZE;
            let piece = &data[done..done + (data.len() - done).min((CHUNK_SIZE - pos) as usize)];
            let slice = match self.appendable(chunk, pos, piece.len() as u64) {
                Some(s) => s,
                None => {
                    let id = env.meta.next_slice_id()?;
                    let s = Arc::new(Slice {
                        chunk,
                        pos: pos as u32,
                        id,
                        state: Mutex::new(SliceState {
                            len: 0,
                            frozen: false,
                            blocks: Vec::new(),
                            uploads: Vec::new(),
                        }),
                        in_flight: self.in_flight.clone(),
                    });
                    self.pending().push(s.clone());
                    s
                }
            };
            if slice.needs_page(env.store.block_size()) && spare.is_none() {
                match env.pool.try_page() {
                    Some(p) => spare = Some(p),
                    None => {
                        // The pool is full. This file's uploads in flight give their
                        // pages back as they finish: wait for one. A file with none
                        // holds its pages in blocks still filling: commit what it holds
                        // (uploading them). Either way, ask idle files to do the same.
                        if self.in_flight.load(Ordering::SeqCst) == 0 {
                            self.flush_locked(env, &locked, false).await?;
                        }
                        env.relieve_pressure(self.ino);
                        spare = Some(env.pool.page().await);
                        continue;
                    }
                }
            }
            let n = slice.append(env, piece, &mut spare);
            done += n;
            self.end.fetch_max(at + n as u64, Ordering::SeqCst);
            if slice.is_closed() {
                self.commit_closed_in_background(env);
            }
        }
        Ok(off)
    }

    /// Whether uploads of this file's blocks are in flight (they give pages back to the
    /// pool as they finish).
    pub fn is_uploading(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// Commits, in the background, the oldest pending slices as long as they are
    /// closed (see [`Slice::is_closed`]): their records are final, and committing them
    /// now overlaps the commit with the uploads of the slices written next.
    fn commit_closed_in_background(self: &Arc<Self>, env: &Arc<DataEnv>) {
        let (w, env2) = (self.clone(), env.clone());
        env.spawn(async move {
            let _commit = w.commit_lock.lock().await;
            let n = w.pending().iter().take_while(|s| s.is_closed()).count();
            if n == 0 || w.is_poisoned() {
                return;
            }
            // Failure poisons the writer; its next write, flush or close reports it.
            let _ = w.commit_front(&env2, n, false).await;
        });
    }

    /// Uploads everything pending and commits it; `durable` makes the commit survive
    /// power loss (close, fsync).
    pub async fn flush(&self, env: &Arc<DataEnv>, durable: bool) -> Result<()> {
        let locked = self.write_lock.lock().await;
        self.flush_locked(env, &locked, durable).await
    }

    async fn flush_locked(
        &self,
        env: &Arc<DataEnv>,
        _locked: &tokio::sync::MutexGuard<'_, ()>,
        durable: bool,
    ) -> Result<()> {
        let _commit = self.commit_lock.lock().await;
        if self.is_poisoned() {
            self.discard_pending(env).await;
            return Err(Error::Poisoned(self.ino.0));
        }
        let n = self.pending().len();
        if n == 0 {
            if durable {
                env.sync_blocks(self.ino, Vec::new()).await?;
                if self.unsynced.swap(false, Ordering::SeqCst) {
                    let meta = env.meta.clone();
                    tokio::task::spawn_blocking(move || meta.sync())
                        .await
                        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
                }
            }
            return Ok(());
        }
        self.commit_front(env, n, durable).await
    }

    /// Drops the slices written after a failed commit (in the background) poisoned the
    /// writer, once their uploads ended, and queues their blocks for deletion; the
    /// caller holds both locks.
    async fn discard_pending(&self, env: &DataEnv) {
        let slices: Vec<Arc<Slice>> = std::mem::take(&mut *self.pending());
        if slices.is_empty() {
            return;
        }
        self.end.store(0, Ordering::SeqCst);
        for s in &slices {
            // Blocks still filling are never uploaded; deleting them is a no-op.
            let uploads = {
                let mut st = s.lock();
                st.frozen = true;
                std::mem::take(&mut st.uploads)
            };
            for h in uploads {
                let _ = h.await;
            }
        }
        let ids: Vec<(u64, u32)> = slices
            .iter()
            .map(|s| (s.id, s.lock().len))
            .filter(|&(_, len)| len > 0)
            .collect();
        if let Err(e) = env.meta.queue_slice_deletions(&ids) {
            tracing::warn!(
                "inode {}: queueing the blocks of dropped slices: {e}",
                self.ino
            );
        }
    }

    /// Uploads and commits the `n` oldest pending slices, then drops them from the
    /// pending list; the caller holds `commit_lock`.
    async fn commit_front(&self, env: &Arc<DataEnv>, n: usize, durable: bool) -> Result<()> {
        let slices: Vec<Arc<Slice>> = self.pending()[..n].to_vec();
        let (placed, packs, mut failure) = self.place(env, &slices).await;
        let mut records = Vec::new();
        let mut sums: Vec<SliceSums> = Vec::new();
        for (s, place) in slices.iter().zip(&placed) {
            let len = s.lock().len;
            if len == 0 {
                continue;
            }
            let (id, size, off) = match place {
                Place::Own => (s.id, len, 0),
                Place::Inline(_) => (s.id | crate::meta::records::INLINE_BIT, len, 0),
                Place::Packed { pack, off } => (packs[*pack].id, packs[*pack].size, *off),
            };
            let rec = SliceRecord {
                pos: s.pos,
                id,
                size,
                off,
                len,
            };
            records.push(NewSlice {
                chunk: s.chunk,
                rec,
            });
            if failure.is_none() {
                match place {
                    Place::Own => sums.push((id, env.slice_data(id, len, s.sums()))),
                    Place::Inline(bytes) => sums.push((id, SliceData::Inline(bytes.clone()))),
                    Place::Packed { .. } => {}
                }
            }
        }
        for p in &packs {
            sums.push((p.id, env.slice_data(p.id, p.size, p.sums.clone())));
        }
        // Each new slice once (a pack is shared by several records).
        let mut new_slices: Vec<(u64, u32)> =
            records.iter().map(|r| (r.rec.id, r.rec.size)).collect();
        new_slices.sort_unstable();
        new_slices.dedup();
        // A commit that is durable (fsync, O_SYNC, `meta-sync`) may reference only
        // blocks that are durable too; any other leaves them owed to the next fsync.
        let sync_now = durable || env.meta.config().sync_all;
        let blocks: Vec<super::BlockRef> = new_slices
            .iter()
            .flat_map(|&(id, size)| env.blocks_of_slice(id, size))
            .collect();
        if failure.is_none() && sync_now {
            if let Err(e) = env.sync_blocks(self.ino, blocks.clone()).await {
                failure = Some(e);
            }
        }
        if failure.is_none() {
            // The end of these slices, not the furthest write: while a background
            // commit runs the writer goes on, and the length must never show bytes not
            // committed yet.
            let end = slices
                .iter()
                .map(|s| u64::from(s.chunk) * CHUNK_SIZE + s.end())
                .max()
                .unwrap_or(0);
            let kill = self.kill_suid.load(Ordering::SeqCst);
            let commit = SliceCommit {
                ino: self.ino,
                slices: records.clone(),
                sums,
                end,
                kill_suid: kill,
            };
            let meta = env.meta.clone();
            let r = tokio::task::spawn_blocking(move || meta.write_slices(commit, durable))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())));
            match r {
                Ok(Ok(attr)) => {
                    // A durable commit syncs the WAL, covering earlier commits too.
                    self.unsynced.store(!durable, Ordering::SeqCst);
                    if !sync_now {
                        env.owe_sync(self.ino, blocks);
                    }
                    env.upload_staged(new_slices.iter().map(|&(id, _)| id));
                    self.schedule_compaction(env, &records, attr.length);
                    let mut pending = self.pending();
                    pending.drain(..n);
                    if pending.is_empty() {
                        // The committed length now carries these writes; a later
                        // truncate must not be undone by a stale pending end.
                        self.end.store(0, Ordering::SeqCst);
                        if kill {
                            self.kill_suid.store(false, Ordering::SeqCst);
                        }
                    }
                    return Ok(());
                }
                Ok(Err(e)) => failure = Some(e),
                Err(e) => failure = Some(e),
            }
        }
        // Nothing of these slices was published: drop them and queue their blocks.
        self.poisoned.store(true, Ordering::SeqCst);
        {
            let mut pending = self.pending();
            pending.drain(..n);
            if pending.is_empty() {
                self.end.store(0, Ordering::SeqCst);
            }
        }
        if let Err(e) = env.meta.queue_slice_deletions(&new_slices) {
            tracing::warn!(
                "inode {}: queueing the blocks of failed slices: {e}",
                self.ino
            );
        }
        let e = failure.expect("set on every path that reaches here");
        tracing::error!("inode {}: write failed, handle poisoned: {e}", self.ino);
        Err(e)
    }

    /// Decides where each pending slice's bytes go and gets them there: inline into
    /// the commit, packed with other small slices into shared slices, or as the
    /// slice's own blocks (whose uploads this waits for). Returns the first failure.
    async fn place(
        &self,
        env: &Arc<DataEnv>,
        slices: &[Arc<Slice>],
    ) -> (Vec<Place>, Vec<Pack>, Option<Error>) {
        let bs = env.store.block_size();
        // Slices within the first `inline-size` bytes of the file are committed into
        // the metadata engine with their records: no object request at all.
        let limit = u64::from(env.inline_limit());
        let mut placed: Vec<Place> = slices
            .iter()
            .map(|s| {
                if limit > 0 && s.chunk == 0 && s.end() <= limit {
                    if let Some(bytes) = s.take_inline() {
                        return Place::Inline(bytes);
                    }
                }
                Place::Own
            })
            .collect();
        // Small slices that never started an upload (random writes) share objects:
        // one per block of their packed bytes instead of one each.
        let small: Vec<usize> = (0..slices.len())
            .filter(|&i| matches!(placed[i], Place::Own) && slices[i].is_small(PACKED_SLICE_MAX))
            .collect();
        let mut packs: Vec<Pack> = Vec::new();
        let mut pack_failure = None;
        if small.len() >= 2 {
            let mut parts: Vec<Vec<Bytes>> = Vec::new();
            for i in small {
                let Some(bytes) = slices[i].take_for_pack() else {
                    continue;
                };
                let len: u32 = bytes.iter().map(|b| b.len() as u32).sum();
                let fits = packs.last().is_some_and(|p| p.size + len <= PACK_MAX);
                if !fits {
                    match env.meta.next_slice_id() {
                        Ok(id) => packs.push(Pack {
                            id,
                            size: 0,
                            sums: Vec::new(),
                        }),
                        Err(e) => return (placed, packs, Some(e)),
                    }
                    parts.push(Vec::new());
                }
                let pack = packs.len() - 1;
                placed[i] = Place::Packed {
                    pack,
                    off: packs[pack].size,
                };
                packs[pack].size += len;
                parts[pack].extend(bytes);
            }
            let mut uploads = Vec::new();
            for (p, pieces) in packs.iter().zip(parts) {
                for (index, block) in split_blocks(pieces, bs).into_iter().enumerate() {
                    let (env2, id) = (env.clone(), p.id);
                    uploads.push(env.spawn(async move {
                        env2.write_block(id, index as u32, Buffer::from(block))
                            .await
                    }));
                }
            }
            let mut failure = None;
            let mut uploads = uploads.into_iter();
            for p in packs.iter_mut() {
                for _ in 0..env.store.blocks_of(p.size) {
                    let Some(upload) = uploads.next() else {
                        break;
                    };
                    match upload.await {
                        Ok(Ok(sums)) => p.sums.extend(sums),
                        Ok(Err(e)) => {
                            failure.get_or_insert(e);
                        }
                        Err(join) => {
                            failure
                                .get_or_insert(Error::Io(std::io::Error::other(join.to_string())));
                        }
                    }
                }
            }
            // Still wait for the other slices' uploads below: nothing may be in flight
            // when the failed commit queues its slices for deletion.
            pack_failure = failure;
        }
        let mut failure = pack_failure;
        for (s, _) in slices
            .iter()
            .zip(&placed)
            .filter(|(_, p)| matches!(p, Place::Own))
        {
            for h in s.freeze(env) {
                let r = match h.await {
                    Ok(r) => r,
                    Err(join) => Err(Error::Io(std::io::Error::other(join.to_string()))),
                };
                if let Err(e) = r {
                    failure.get_or_insert(e);
                }
            }
        }
        (placed, packs, failure)
    }

    /// Compacts, in the background, chunks this commit left with long record lists or
    /// with records it overwrote entirely.
    fn schedule_compaction(&self, env: &Arc<DataEnv>, committed: &[NewSlice], length: u64) {
        let mut chunks: Vec<u32> = committed.iter().map(|s| s.chunk).collect();
        chunks.dedup();
        for chunk in chunks {
            let fragmented = env.meta.read_chunk(self.ino, chunk).is_ok_and(|r| {
                super::compact::needs_compaction(env, self.ino, chunk, &r, Some(length))
            });
            if fragmented {
                super::compact::spawn_compaction(env, self.ino, chunk);
            }
        }
    }

    /// The pending slices and the end they imply, as of now. Readers take this *before*
    /// reading committed metadata: a commit in between then leaves the same bytes in
    /// both views, never in neither.
    pub fn snapshot(&self) -> PendingSnapshot {
        let slices = self.pending();
        let end = (!slices.is_empty()).then(|| self.end.load(Ordering::SeqCst));
        let bytes = slices.iter().map(|s| u64::from(s.lock().len)).sum();
        PendingSnapshot {
            slices: slices.clone(),
            end,
            bytes,
            kill_suid: self.kill_suid.load(Ordering::SeqCst),
        }
    }
}

/// What a writer had pending at one moment (see [`FileWriter::snapshot`]).
#[derive(Default)]
pub(crate) struct PendingSnapshot {
    slices: Vec<Arc<Slice>>,
    /// End of the furthest pending write, if anything is pending.
    pub end: Option<u64>,
    /// Bytes pending (overlaps counted once per write).
    pub bytes: u64,
    /// The next commit clears setuid/setgid.
    pub kill_suid: bool,
}

impl PendingSnapshot {
    /// Overlays the pending bytes of file range `[off, off + out.len())` onto `out`,
    /// oldest slice first so newer writes win.
    pub async fn overlay(&self, env: &DataEnv, off: u64, out: &mut [u8]) -> Result<()> {
        let slices = &self.slices;
        let end = off + out.len() as u64;
        for s in slices.iter() {
            let start = u64::from(s.chunk) * CHUNK_SIZE + u64::from(s.pos);
            let s_end = u64::from(s.chunk) * CHUNK_SIZE + s.end();
            let (a, b) = (start.max(off), s_end.min(end));
            if a >= b {
                continue;
            }
            s.read(
                env,
                a - start,
                &mut out[(a - off) as usize..(b - off) as usize],
            )
            .await?;
        }
        Ok(())
    }
}
