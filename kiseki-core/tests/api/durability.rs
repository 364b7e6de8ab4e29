//! The order of durability on `fs` storage: block files are written without a sync,
//! and a commit that must survive power loss (fsync, O_SYNC, `meta-sync`, unmount) is
//! made durable only after every block it references has been synced. A journal shared
//! by the object store and a recording metadata engine gives the order of events.

use std::sync::{Arc, Mutex};

use kiseki_core::data::store::Journal;
use kiseki_core::data::DataConfig;
use kiseki_core::meta::kv::memory::MemoryKv;
use kiseki_core::meta::{Ctx, FormatOptions, Ino, Meta, MetaConfig};
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::Fs;
use kiseki_testkit::kv::RecordingKv;
use kiseki_testkit::pattern;

const BLOCK: usize = 64 << 10;

struct Setup {
    fs: Arc<Fs>,
    journal: Journal,
    _dir: tempfile::TempDir,
}

fn setup(sync_all: bool) -> Setup {
    setup_with(sync_all, &DataConfig::default())
}

fn setup_with(sync_all: bool, data: &DataConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let kv = MemoryKv::new();
    let mut o = FormatOptions::new("durability");
    o.storage = "fs".into();
    o.bucket = dir.path().join("bucket").display().to_string();
    o.block_size = BLOCK as u32;
    kiseki_core::meta::format::format(&*kv, &o).expect("format");
    let journal: Journal = Arc::new(Mutex::new(Vec::new()));
    let engine = RecordingKv::new(kv, journal.clone());
    let config = MetaConfig {
        sync_all,
        ..MetaConfig::default()
    };
    let meta = Meta::with_engine(engine, config).expect("open");
    let fs = Fs::new(meta, data).expect("client");
    fs.data().store.set_journal(Some(journal.clone()));
    Setup {
        fs,
        journal,
        _dir: dir,
    }
}

impl Setup {
    fn create(&self, name: &str, flags: i32) -> (u64, Ino) {
        let flags = flags | libc::O_RDWR | libc::O_CREAT;
        let (fh, e) =
            block_on(
                self.fs
                    .create(&Ctx::root(), Ino::ROOT, name.as_bytes(), 0o644, 0, flags),
            )
            .unwrap();
        (fh, e.ino)
    }

    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.journal.lock().unwrap())
    }
}

/// The block keys put since the journal was last read, and the events after them.
fn puts(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.strip_prefix("put ").map(str::to_string))
        .collect()
}

/// Asserts that each of `keys` was synced, and its directory too, before the first
/// `meta sync` that follows the syncs (the durable commit).
fn synced_before_commit(events: &[String], keys: &[String], what: &str) {
    assert!(!keys.is_empty(), "{what}: no blocks");
    let commit = events
        .iter()
        .rposition(|e| e == "meta sync")
        .unwrap_or_else(|| panic!("{what}: no durable commit in {events:?}"));
    for key in keys {
        let synced = events
            .iter()
            .position(|e| *e == format!("sync {key}"))
            .unwrap_or_else(|| panic!("{what}: {key} never synced: {events:?}"));
        assert!(
            synced < commit,
            "{what}: {key} synced after the commit: {events:?}"
        );
        let dir = key.rsplit_once('/').unwrap().0;
        let dir_synced = events
            .iter()
            .position(|e| *e == format!("syncdir {dir}"))
            .unwrap_or_else(|| panic!("{what}: directory {dir} never synced: {events:?}"));
        assert!(dir_synced < commit, "{what}: {dir} synced after the commit");
    }
}

#[test]
fn fsync_syncs_every_block_of_the_file_before_its_commit() {
    let s = setup(false);
    let data = pattern(1, 3 * BLOCK + 1000);
    let (fh, _) = s.create("f", 0);
    block_on(s.fs.write(&Ctx::root(), fh, Some(0), &data)).unwrap();
    block_on(s.fs.fsync(fh)).unwrap();
    let events = s.events();
    let keys = puts(&events);
    assert_eq!(keys.len(), 4, "{events:?}");
    synced_before_commit(&events, &keys, "fsync");

    // More writes, a close (which syncs nothing), then fsync through a new handle:
    // the blocks written before the close are owed to it.
    block_on(s.fs.write(&Ctx::root(), fh, Some(4 * BLOCK as u64), &data)).unwrap();
    block_on(s.fs.flush(fh)).unwrap();
    block_on(s.fs.release(fh)).unwrap();
    let events = s.events();
    let keys = puts(&events);
    assert_eq!(keys.len(), 4, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("sync ") || e == "meta sync"),
        "close synced something: {events:?}"
    );
    let ino = s.fs.lookup(&Ctx::root(), Ino::ROOT, b"f").unwrap().ino;
    let (fh, _) = block_on(s.fs.open(&Ctx::root(), ino, libc::O_RDONLY)).unwrap();
    block_on(s.fs.fsync(fh)).unwrap();
    let events = s.events();
    synced_before_commit(&events, &keys, "fsync after close");
    block_on(s.fs.release(fh)).unwrap();
    block_on(s.fs.shutdown()).unwrap();
}

#[test]
fn a_small_file_is_committed_inline_without_any_object() {
    let s = setup(false);
    let (fh, _) = s.create("small", 0);
    block_on(s.fs.write(&Ctx::root(), fh, Some(0), &pattern(6, 1000))).unwrap();
    block_on(s.fs.fsync(fh)).unwrap();
    let events = s.events();
    assert_eq!(events, ["meta sync"], "a 1000-byte file's fsync");
    let back = block_on(s.fs.read(fh, 0, 2000)).unwrap();
    assert_eq!(back, pattern(6, 1000));
    block_on(s.fs.release(fh)).unwrap();
    block_on(s.fs.shutdown()).unwrap();
}

#[test]
fn o_sync_and_meta_sync_commit_only_synced_blocks() {
    let s = setup(false);
    let (fh, _) = s.create("o_sync", libc::O_SYNC);
    block_on(s.fs.write(&Ctx::root(), fh, Some(0), &pattern(2, BLOCK + 10))).unwrap();
    let events = s.events();
    synced_before_commit(&events, &puts(&events), "O_SYNC");
    block_on(s.fs.release(fh)).unwrap();
    block_on(s.fs.shutdown()).unwrap();

    let s = setup(true);
    let (fh, _) = s.create("meta_sync", 0);
    block_on(s.fs.write(&Ctx::root(), fh, Some(0), &pattern(3, 2 * BLOCK))).unwrap();
    block_on(s.fs.flush(fh)).unwrap();
    let events = s.events();
    synced_before_commit(&events, &puts(&events), "meta-sync close");
    block_on(s.fs.release(fh)).unwrap();
    block_on(s.fs.shutdown()).unwrap();
}

#[test]
fn copied_ranges_and_unmount_leave_nothing_unsynced() {
    let s = setup(false);
    let (src, _) = s.create("src", 0);
    block_on(s.fs.write(&Ctx::root(), src, Some(0), &pattern(4, 2 * BLOCK))).unwrap();
    block_on(s.fs.flush(src)).unwrap();
    let keys = puts(&s.events());
    assert_eq!(keys.len(), 2);
    // The copy shares the source's slices: fsync of the copy syncs the source's blocks.
    let (dst, _) = s.create("dst", 0);
    let n = block_on(s.fs.copy_file_range(&Ctx::root(), src, 0, dst, 0, 2 * BLOCK as u64)).unwrap();
    assert_eq!(n, 2 * BLOCK as u64);
    block_on(s.fs.fsync(dst)).unwrap();
    synced_before_commit(&s.events(), &keys, "fsync of a copy");

    // Closed, never fsynced: unmount syncs it.
    let (f, _) = s.create("closed", 0);
    block_on(s.fs.write(&Ctx::root(), f, Some(0), &pattern(5, BLOCK + 5))).unwrap();
    block_on(s.fs.flush(f)).unwrap();
    block_on(s.fs.release(f)).unwrap();
    let keys = puts(&s.events());
    for fh in [src, dst] {
        block_on(s.fs.release(fh)).unwrap();
    }
    block_on(s.fs.shutdown()).unwrap();
    synced_before_commit(&s.events(), &keys, "unmount");
}

#[test]
fn writeback_syncs_staged_blocks_before_a_durable_commit() {
    use kiseki_core::data::store::StoreFaults;
    let cache = tempfile::tempdir().unwrap();
    let s = setup_with(
        false,
        &DataConfig {
            writeback: true,
            cache_dirs: vec![cache.path().to_path_buf()],
            ..DataConfig::default()
        },
    );
    // Uploads fail: every block stays staged, so fsync must sync the staged copies.
    s.fs.data().store.set_faults(
        1,
        StoreFaults {
            error: 1.0,
            ..Default::default()
        },
    );
    let data = pattern(7, 3 * BLOCK + 1000);
    let (fh, _) = s.create("f", 0);
    block_on(s.fs.write(&Ctx::root(), fh, Some(0), &data)).unwrap();
    block_on(s.fs.fsync(fh)).unwrap();
    let events = s.events();
    let staged: Vec<String> = events
        .iter()
        .filter_map(|e| e.strip_prefix("stage ").map(str::to_string))
        .collect();
    assert_eq!(staged.len(), 4, "{events:?}");
    assert!(puts(&events).is_empty(), "{events:?}");
    let commit = events.iter().rposition(|e| e == "meta sync").unwrap();
    for key in &staged {
        let synced = events.iter().position(|e| *e == format!("sync {key}"));
        assert!(
            synced.is_some_and(|i| i < commit),
            "{key} not synced before the commit: {events:?}"
        );
    }
    assert_eq!(block_on(s.fs.read(fh, 0, data.len() + 10)).unwrap(), data);
    block_on(s.fs.release(fh)).unwrap();
    block_on(s.fs.shutdown()).unwrap();
}
