//! Write-back staging (`writeback`): blocks a writer produces go to a local directory
//! instead of object storage, the commit records them as staged (`W` keys, see
//! `meta::ops::chunks`), and they are uploaded in the background afterwards.
//!
//! Layout: `{cache-dir}/staging/{volume uuid}/{id % 256:02x}/{id}_{index}_{len}` holds
//! a block's raw bytes (checked against the slice's recorded checksums when read or
//! uploaded), `id` names the directory in `W` keys (so a restarted client knows which
//! staged slices are its own), and `.lock` is held (flock) by the one client using it.
//! A block file is removed only after its upload succeeded (and, on `fs` storage, was
//! synced), so a crash at any point leaves every committed block either staged here
//! or in object storage.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use opendal::Buffer;

use super::BlockRef;
use crate::error::{Error, Result};

pub struct Staging {
    root: PathBuf,
    /// This directory's identity in `W` keys.
    stager: String,
    /// Held (flock) while this client uses the directory.
    _lock: std::fs::File,
    /// Staged blocks: (slice id, index) to length.
    index: Mutex<BTreeMap<(u64, u32), u32>>,
    /// Blocks found at open, left by an earlier run: recovery uploads those whose
    /// slices were committed and removes the rest.
    found: Mutex<Vec<BlockRef>>,
}

fn key(id: u64, index: u32, len: u32) -> String {
    format!("{:02x}/{id}_{index}_{len}", id % 256)
}

impl Staging {
    /// Opens (creating) the staging directory `dir`; EBUSY when another client holds it.
    pub fn open(dir: &Path) -> Result<Staging> {
        let io = |what: &str, e: std::io::Error| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("staging directory {}: {what}: {e}", dir.display()),
            ))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("creating it", e))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .map_err(|e| io("opening .lock", e))?;
        // SAFETY: a valid descriptor; flock only takes an advisory lock.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Busy(format!(
                "staging directory {} is used by another client of this volume; \
                 give each write-back client its own cache-dir",
                dir.display()
            )));
        }
        let id_path = dir.join("id");
        let stager = match std::fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = format!("{:032x}", rand::random::<u128>());
                let tmp = dir.join(".id.tmp");
                std::fs::write(&tmp, &id)
                    .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, &id_path))
                    .and_then(|()| std::fs::File::open(dir)?.sync_all())
                    .map_err(|e| io("writing its id", e))?;
                id
            }
        };
        let mut index = BTreeMap::new();
        let mut found = Vec::new();
        for bucket in std::fs::read_dir(dir)
            .map_err(|e| io("listing it", e))?
            .flatten()
        {
            if !bucket.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(bucket.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                match name.to_str().and_then(super::local::parse_block_name) {
                    Some((id, i, len)) => {
                        index.insert((id, i), len);
                        found.push((id, i, len));
                    }
                    // A write cut short by a crash: its block was never committed.
                    None if name.to_str().is_some_and(super::local::is_temporary) => {
                        let _ = std::fs::remove_file(f.path());
                    }
                    None => {}
                }
            }
        }
        Ok(Staging {
            root: dir.to_path_buf(),
            stager,
            _lock: lock,
            index: Mutex::new(index),
            found: Mutex::new(found),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u32), u32>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stager(&self) -> &str {
        &self.stager
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Stages a block (not synced: see [`Staging::sync`]).
    pub async fn put(&self, id: u64, index: u32, data: Buffer) -> std::io::Result<()> {
        let len = data.len() as u32;
        super::local::write_file(self.root.join(key(id, index, len)), data, false).await?;
        self.index().insert((id, index), len);
        Ok(())
    }

    /// The staged bytes of a block; `None` when it is not staged (never was, or its
    /// upload finished meanwhile: then object storage has it).
    pub async fn get(&self, id: u64, index: u32, len: u32) -> Option<std::io::Result<Bytes>> {
        if self.index().get(&(id, index)) != Some(&len) {
            return None;
        }
        let path = self.root.join(key(id, index, len));
        match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
            Ok(Ok(v)) => Some(Ok(Bytes::from(v))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(Err(e)) => Some(Err(e)),
            Err(e) => Some(Err(std::io::Error::other(e))),
        }
    }

    /// Whether any block of slice `id` is staged.
    pub fn has_slice(&self, id: u64) -> bool {
        self.index()
            .range((id, 0)..=(id, u32::MAX))
            .next()
            .is_some()
    }

    /// The staged blocks of slice `id`: (index, length).
    pub fn blocks_of(&self, id: u64) -> Vec<(u32, u32)> {
        self.index()
            .range((id, 0)..=(id, u32::MAX))
            .map(|(&(_, i), &len)| (i, len))
            .collect()
    }

    /// Staged blocks and their bytes.
    pub fn usage(&self) -> (u64, u64) {
        let index = self.index();
        (
            index.len() as u64,
            index.values().map(|&l| u64::from(l)).sum(),
        )
    }

    /// Forgets a block and removes its file (uploaded, or its slice is deleted).
    pub fn remove(&self, id: u64, index: u32, len: u32) {
        self.index().remove(&(id, index));
        let _ = std::fs::remove_file(self.root.join(key(id, index, len)));
    }

    /// Syncs the staged ones of `blocks` and their directories; returns the others.
    pub async fn sync(&self, blocks: Vec<BlockRef>) -> Result<Vec<BlockRef>> {
        let (staged, rest): (Vec<BlockRef>, Vec<BlockRef>) = {
            let index = self.index();
            blocks
                .into_iter()
                .partition(|&(id, i, len)| index.get(&(id, i)) == Some(&len))
        };
        if !staged.is_empty() {
            let keys = staged.iter().map(|&(id, i, len)| key(id, i, len)).collect();
            super::local::sync_files(self.root.clone(), keys, 1)
                .await
                .map_err(|(what, e)| {
                    Error::Io(std::io::Error::new(
                        e.kind(),
                        format!("syncing staged block {what}: {e}"),
                    ))
                })?;
        }
        Ok(rest)
    }

    /// The blocks found at open (once).
    pub fn take_found(&self) -> Vec<BlockRef> {
        std::mem::take(&mut *self.found.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
