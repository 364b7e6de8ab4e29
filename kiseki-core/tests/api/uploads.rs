//! How writes reach object storage: at most `max-uploads` block uploads at once, and
//! small random writes packed into shared slices (a few objects, not one per write),
//! read back exactly, with exact reference counts (fsck) and nothing leaked once
//! deleted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiseki_core::data::store::{Journal, StoreFaults};
use kiseki_core::runtime::block_on;
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{pattern, pread_full};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BLOCK: usize = 64 << 10;

fn volume() -> Volume {
    Volume::rocksdb_with(|o| o.block_size = BLOCK as u32)
}

fn journal(c: &kiseki_core::vfs::Client) -> Journal {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    c.fs().unwrap().data().store.set_journal(Some(j.clone()));
    j
}

#[test]
fn uploads_stay_within_max_uploads() {
    let vol = volume();
    let c = vol.connect("max-uploads=2,upload-limit=64M");
    let j = journal(&c);
    // Slow uploads, so that many would overlap without the bound.
    c.fs().unwrap().data().store.set_faults(
        7,
        StoreFaults {
            max_latency: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let data = pattern(1, 40 * BLOCK);
    let f = c.open("/big", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
    f.write(&data).unwrap();
    f.close().unwrap();
    let events = j.lock().unwrap().clone();
    let (mut now, mut peak, mut done) = (0i32, 0i32, 0);
    for e in &events {
        if e.starts_with("begin put ") {
            now += 1;
            peak = peak.max(now);
        } else if e.starts_with("put ") {
            now -= 1;
            done += 1;
        }
    }
    assert_eq!(done, 40, "{events:?}");
    assert!(peak <= 2, "{peak} uploads at once with max-uploads=2");
    let back = c.open("/big", libc::O_RDONLY, 0).unwrap();
    assert!(pread_full(&back, 0, data.len()).unwrap() == data);
    c.close().unwrap();
}

#[test]
fn small_random_writes_share_objects() {
    let vol = volume();
    let c = vol.connect("");
    let fs = c.fs().unwrap();
    let size = 8 << 20;
    let f = c
        .open("/random", libc::O_CREAT | libc::O_RDWR, 0o644)
        .unwrap();
    f.ftruncate(size as u64).unwrap();
    let j = journal(&c);
    let mut model = vec![0u8; size];
    let mut rng = StdRng::seed_from_u64(3);
    const WRITES: usize = 200;
    for i in 0..WRITES {
        let off = rng.gen_range(0..size - 4096);
        let data = pattern(i as u64 + 10, 4096);
        f.pwrite(&data, off as u64).unwrap();
        model[off..off + 4096].copy_from_slice(&data);
    }
    f.fsync().unwrap();
    let puts = j
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("put "))
        .count();
    let packed = (WRITES * 4096).div_ceil(BLOCK);
    assert!(
        puts <= packed + 1,
        "{WRITES} random 4 KiB writes made {puts} objects (packed: {packed})"
    );
    let check = |what: &str, model: &[u8]| {
        let buf = pread_full(&f, 0, size).unwrap();
        assert!(buf == model, "{what}: contents differ from the model");
        let report = fs.meta().check().unwrap();
        assert!(report.is_clean(), "{what}: fsck: {:?}", report.problems);
    };
    check("after the commit", &model);
    // Overwrites hide parts of the packs; compaction rewrites the file's chunk.
    for i in 0..50 {
        let off = rng.gen_range(0..size - 8192);
        let data = pattern(i as u64 + 1000, 8192);
        f.pwrite(&data, off as u64).unwrap();
        model[off..off + 8192].copy_from_slice(&data);
    }
    f.fsync().unwrap();
    block_on(kiseki_core::data::compact::compact_file(fs.data(), f.ino())).unwrap();
    check("after overwrites and compaction", &model);
    f.close().unwrap();
    c.unlink("/random").unwrap();
    block_on(fs.data().run_deletions()).unwrap();
    let report = block_on(fs.data().check_objects(false)).unwrap();
    assert!(
        report.missing.is_empty() && report.leaked.is_empty(),
        "{report:?}"
    );
    let meta = fs.meta().check().unwrap();
    assert!(meta.is_clean(), "after deletion: {:?}", meta.problems);
    drop(fs);
    c.close().unwrap();
}
