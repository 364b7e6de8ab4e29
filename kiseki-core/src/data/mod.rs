//! The data path: object storage, the write buffer, the block cache, and reading and
//! writing file contents as slices (see `meta::ops::chunks` for their records).

pub mod buffer;
pub mod cache;
pub mod error;
pub mod overlay;
pub mod store;

mod reader;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use error::{Error, Result};

use buffer::WriteBuffer;
use cache::BlockCache;
use store::ObjectStore;
use writer::FileWriter;

use crate::meta::{Ino, Meta};

/// Sizes of the data path's memory.
#[derive(Debug, Clone)]
pub struct DataConfig {
    /// Write buffer in RAM (bytes).
    pub buffer_memory: usize,
    /// Write buffer in the mmap'd spill file (bytes; 0 for none).
    pub buffer_spill: usize,
    /// Directory of the spill file (default: the system temp directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// In-memory block cache (bytes).
    pub cache_memory: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            buffer_memory: 256 << 20,
            buffer_spill: 0,
            spill_dir: None,
            cache_memory: 512 << 20,
        }
    }
}

/// Everything the data path of one client shares.
pub struct DataEnv {
    pub meta: Arc<Meta>,
    pub store: ObjectStore,
    pub cache: BlockCache,
    pub pool: WriteBuffer,
    writers: Mutex<HashMap<Ino, Arc<FileWriter>>>,
}

impl DataEnv {
    pub fn new(meta: Arc<Meta>, config: &DataConfig) -> Result<Arc<Self>> {
        let store = ObjectStore::open(meta.volume())?;
        let pool = WriteBuffer::new(
            config.buffer_memory,
            config.buffer_spill,
            config.spill_dir.as_deref(),
        )?;
        Ok(Arc::new(DataEnv {
            meta,
            store,
            cache: BlockCache::new(config.cache_memory),
            pool,
            writers: Mutex::new(HashMap::new()),
        }))
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<Ino, Arc<FileWriter>>> {
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self, ino: Ino) -> Arc<FileWriter> {
        self.writers()
            .entry(ino)
            .or_insert_with(|| Arc::new(FileWriter::new(ino)))
            .clone()
    }

    fn existing_writer(&self, ino: Ino) -> Option<Arc<FileWriter>> {
        self.writers().get(&ino).cloned()
    }

    /// The length a reader of this client sees: committed, or further if writes are
    /// pending.
    pub fn visible_length(&self, ino: Ino, committed: u64) -> u64 {
        match self.existing_writer(ino).and_then(|w| w.pending_end()) {
            Some(end) => end.max(committed),
            None => committed,
        }
    }

    pub fn has_pending(&self, ino: Ino) -> bool {
        self.existing_writer(ino).is_some_and(|w| w.has_pending())
    }

    pub async fn write(
        self: &Arc<Self>,
        ino: Ino,
        off: u64,
        data: &[u8],
        kill_suid: bool,
    ) -> Result<()> {
        self.writer(ino).write(self, off, data, kill_suid).await
    }

    /// Uploads and commits what this client has pending for `ino`.
    pub async fn flush(self: &Arc<Self>, ino: Ino, durable: bool) -> Result<()> {
        match self.existing_writer(ino) {
            Some(w) => w.flush(self, durable).await,
            None => Ok(()),
        }
    }

    /// Forgets the writer of `ino` once nothing is pending (after the last close).
    /// A poisoned writer is forgotten too: its handles are gone.
    pub fn forget_writer(&self, ino: Ino) {
        let mut writers = self.writers();
        if writers.get(&ino).is_some_and(|w| !w.has_pending()) {
            writers.remove(&ino);
        }
    }

    pub async fn read(
        self: &Arc<Self>,
        ino: Ino,
        off: u64,
        len: usize,
        committed_len: u64,
    ) -> Result<Vec<u8>> {
        reader::read(self, ino, off, len, committed_len).await
    }

    /// Buffer pressure: commit other files' pending writes in the background so their
    /// pages return to the pool.
    fn relieve_pressure(self: &Arc<Self>, except: Ino) {
        let others: Vec<Arc<FileWriter>> = self
            .writers()
            .iter()
            .filter(|(i, w)| **i != except && w.has_pending())
            .map(|(_, w)| w.clone())
            .collect();
        for w in others {
            let env = self.clone();
            tokio::spawn(async move {
                if let Err(e) = w.flush(&env, false).await {
                    tracing::warn!("background flush under buffer pressure: {e}");
                }
            });
        }
    }

    /// Runs the deletion queues: drops the records of deleted files, then deletes the
    /// blocks of unreferenced slices. Returns the number of slices whose blocks went.
    pub async fn run_deletions(self: &Arc<Self>) -> Result<usize> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.process_file_deletions(usize::MAX))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
        let mut deleted = 0;
        loop {
            let meta = self.meta.clone();
            let batch = tokio::task::spawn_blocking(move || meta.pending_slice_deletions(256))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
            if batch.is_empty() {
                return Ok(deleted);
            }
            for (id, size) in batch {
                for index in 0..self.store.blocks_of(size) {
                    let len = self.store.block_len(size, index);
                    self.store.delete_block(id, index, len).await?;
                    self.cache.invalidate(id, index).await;
                }
                self.meta.finish_slice_deletion(id, size)?;
                deleted += 1;
            }
        }
    }
}
