//! How writes are committed: a slice that reaches its chunk's end is committed in the
//! background while the writer goes on (never showing bytes not committed yet), a
//! failure of that commit reaches the writer and leaks nothing, and fsyncs of several
//! files at once share their metadata transactions and WAL syncs (group commit).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiseki_core::data::store::{Journal, StoreFaults};
use kiseki_core::data::DataConfig;
use kiseki_core::meta::kv::open_engine;
use kiseki_core::meta::{Ctx, FormatOptions, Ino, Meta, MetaConfig, CHUNK_SIZE};
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::Fs;
use kiseki_testkit::kv::RecordingKv;
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{pattern, pread_full};

const BLOCK: usize = 1 << 20;

/// Waits (bounded: a liveness check, not a timing one) until the committed length of
/// `ino` is at least `len`, and returns it.
fn committed_length_reaches(meta: &Meta, ino: Ino, len: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = meta.getattr(ino).unwrap().length;
        if got >= len {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "committed length still {got}, expected {len} without a flush"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn closed_chunks_are_committed_while_the_writer_goes_on() {
    let vol = Volume::rocksdb_with(|o| o.block_size = BLOCK as u32);
    // A buffer larger than the file: nothing commits for lack of pages.
    let c = vol.connect("buffer-size=1G");
    let fs = c.fs().unwrap();
    let chunk = CHUNK_SIZE as usize;
    let data = pattern(5, 2 * chunk + 3 * BLOCK + 123);
    let f = c.open("/seq", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
    f.write(&data[..2 * chunk + BLOCK]).unwrap();
    // The two chunks written to their end commit without a flush, and the length
    // committed stops at them: the third chunk's megabyte is not committed yet.
    let len = committed_length_reaches(fs.meta(), f.ino(), 2 * CHUNK_SIZE);
    assert_eq!(len, 2 * CHUNK_SIZE);
    // Each chunk is one record: the writer went on into a new slice, without
    // fragmenting the ones committed.
    for index in 0..2 {
        assert_eq!(fs.meta().read_chunk(f.ino(), index).unwrap().len(), 1);
    }
    // Read-your-writes across committed and pending slices.
    assert_eq!(f.fstat().unwrap().attr.length, (2 * chunk + BLOCK) as u64);
    let at = chunk * 2 - BLOCK;
    assert!(pread_full(&f, at as u64, 2 * BLOCK).unwrap() == data[at..at + 2 * BLOCK]);
    f.write(&data[2 * chunk + BLOCK..]).unwrap();
    f.close().unwrap();
    let back = c.open("/seq", libc::O_RDONLY, 0).unwrap();
    assert!(pread_full(&back, 0, data.len()).unwrap() == data);
    let report = fs.meta().check().unwrap();
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
    drop(fs);
    c.close().unwrap();
}

#[test]
fn a_failed_background_commit_fails_the_writer_and_leaks_nothing() {
    let vol = Volume::rocksdb_with(|o| o.block_size = BLOCK as u32);
    let c = vol.connect("buffer-size=1G");
    let fs = c.fs().unwrap();
    let store = &fs.data().store;
    let chunk = CHUNK_SIZE as usize;
    let f = c.open("/f", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
    // The first chunk commits; the second's uploads fail, so its background commit
    // fails while the writer is already in the third chunk.
    f.write(&pattern(1, chunk)).unwrap();
    committed_length_reaches(fs.meta(), f.ino(), CHUNK_SIZE);
    store.set_faults(
        3,
        StoreFaults {
            error: 1.0,
            ..Default::default()
        },
    );
    let second = f.write(&pattern(2, chunk + BLOCK));
    // The failure reaches this write if the commit failed in time, else the next
    // operation; it never goes unnoticed.
    let failed = match second {
        Err(e) => e,
        Ok(_) => match f.write(&pattern(3, BLOCK)) {
            Err(e) => e,
            Ok(_) => f
                .fsync()
                .expect_err("a failed commit must reach the writer"),
        },
    };
    assert_eq!(failed.errno(), libc::EIO, "{failed}");
    store.set_faults(3, StoreFaults::default());
    assert!(f.close().is_err(), "close after a failed commit reports it");
    // What was committed stays; nothing of the failed slices is referenced or kept.
    assert_eq!(fs.meta().getattr(f.ino()).unwrap().length, CHUNK_SIZE);
    let back = c.open("/f", libc::O_RDONLY, 0).unwrap();
    assert!(pread_full(&back, 0, chunk + 1).unwrap() == pattern(1, chunk));
    back.close().unwrap();
    block_on(fs.data().run_deletions()).unwrap();
    let objects = block_on(fs.data().check_objects(false)).unwrap();
    assert!(
        objects.missing.is_empty() && objects.leaked.is_empty(),
        "{objects:?}"
    );
    let report = fs.meta().check().unwrap();
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
    drop(fs);
    c.close().unwrap();
}

#[test]
fn fsyncs_of_several_files_at_once_share_metadata_commits() {
    const FILES: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rocksdb://{}/meta", dir.path().display());
    let kv = open_engine(&url, true).unwrap();
    let mut o = FormatOptions::new("commits");
    o.bucket = dir.path().join("data").display().to_string();
    kiseki_core::meta::format::format(&*kv, &o).unwrap();
    let journal: Journal = Arc::new(Mutex::new(Vec::new()));
    let engine = RecordingKv::new(kv, journal.clone());
    let meta = Meta::with_engine(engine.clone(), MetaConfig::default()).unwrap();
    let fs = Fs::new(meta, &DataConfig::default()).unwrap();
    let root = Ctx::root();
    let flags = libc::O_RDWR | libc::O_CREAT;
    let files: Vec<(u64, Vec<u8>)> = (0..FILES)
        .map(|i| {
            let name = format!("f{i}");
            let (fh, _) =
                block_on(fs.create(&root, Ino::ROOT, name.as_bytes(), 0o644, 0, flags)).unwrap();
            // Past the inline limit, and one that is inline.
            let data = pattern(i as u64, if i == 0 { 1000 } else { 200 << 10 });
            block_on(fs.write(&root, fh, Some(0), &data)).unwrap();
            (fh, data)
        })
        .collect();
    // A remote engine or a slow disk: each commit and WAL sync takes a while, so
    // fsyncs queue up behind each other.
    engine.slow_commits(Duration::from_millis(30));
    journal.lock().unwrap().clear();
    let (_, writes_before) = engine.transactions();
    std::thread::scope(|s| {
        for (fh, _) in &files {
            let fs = &fs;
            s.spawn(move || block_on(fs.fsync(*fh)).unwrap());
        }
    });
    engine.slow_commits(Duration::ZERO);
    let commits = engine.transactions().1 - writes_before;
    let syncs = journal
        .lock()
        .unwrap()
        .iter()
        .filter(|e| *e == "meta sync")
        .count();
    assert!(
        commits as usize <= FILES / 2 && syncs <= FILES / 2,
        "{FILES} fsyncs at once made {commits} commits and {syncs} WAL syncs"
    );
    for (fh, data) in &files {
        let back = block_on(fs.read(*fh, 0, data.len() + 1)).unwrap();
        assert!(back == *data);
        block_on(fs.release(*fh)).unwrap();
    }
    let report = fs.meta().check().unwrap();
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
    block_on(fs.shutdown()).unwrap();
}
