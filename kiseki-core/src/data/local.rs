//! Block files in a local directory (the `fs` store, the write-back staging area):
//! written without a sync and synced only when a durable commit needs them.
//!
//! A file is written to a temporary name beside its final one and renamed into place,
//! so a name never shows a partial file. Temporary names start with `.` and hold
//! `.tmp`, so a directory walk can tell them from block files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use opendal::Buffer;

/// Writes `body` to `path` (creating its directory when missing), not synced; `kick`
/// starts its writeback now, so that a later sync finds little left to write.
pub(crate) async fn write_file(path: PathBuf, body: Buffer, kick: bool) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = path.parent().expect("block files have a directory");
        let name = path.file_name().expect("block files have a name");
        let tmp = dir.join(format!(
            ".{}.tmp{:016x}",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
        };
        let mut f = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                create()?
            }
            r => r?,
        };
        let written = (|| {
            for piece in body {
                f.write_all(&piece)?;
            }
            if kick {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid descriptor; the call only starts writeback.
                unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
            }
            drop(f);
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Syncs the files `keys` (paths relative to `root`) and, since directories are made
/// on demand, up to `levels` of the directories that name them. Files and directories
/// deleted since are skipped. Returns the directories synced, or the path that failed.
pub(crate) async fn sync_files(
    root: PathBuf,
    keys: Vec<String>,
    levels: usize,
) -> Result<BTreeSet<PathBuf>, (String, std::io::Error)> {
    let mut dirs = BTreeSet::new();
    for key in &keys {
        let mut dir = Path::new(key).parent();
        for _ in 0..levels {
            let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) else {
                break;
            };
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    let join = |e: tokio::task::JoinError| (String::new(), std::io::Error::other(e));
    // A few threads, so that the syncs of many files overlap in the device queue.
    let lanes = keys.len().clamp(1, 4);
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let mine: Vec<String> = keys.iter().skip(lane).step_by(lanes).cloned().collect();
        let root = root.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            for key in mine {
                sync_one(&root.join(&key), false).map_err(|e| (key, e))?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.map_err(join)??;
    }
    let list: Vec<PathBuf> = dirs.iter().cloned().collect();
    tokio::task::spawn_blocking(move || {
        for d in list {
            sync_one(&root.join(&d), true).map_err(|e| (d.display().to_string(), e))?;
        }
        Ok(())
    })
    .await
    .map_err(join)??;
    Ok(dirs)
}

fn sync_one(path: &Path, all: bool) -> std::io::Result<()> {
    let r = std::fs::File::open(path).and_then(|f| if all { f.sync_all() } else { f.sync_data() });
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Whether `name` is a temporary file [`write_file`] left behind (a crash mid-write).
pub(crate) fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Parses a block's name `{id}_{index}_{length}` (as object keys, staged files and
/// disk-cache entries end) back to (slice id, index, length).
pub(crate) fn parse_block_name(name: &str) -> Option<super::BlockRef> {
    let mut it = name.split('_');
    let r = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(r)
}
