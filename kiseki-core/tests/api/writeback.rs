//! Write-back (`writeback`): close returns once the blocks are staged in the cache
//! directory and the commit is made, even with the object store down; uploads follow
//! in the background, survive a restart of the client, and other clients of the volume
//! wait for them while they are staged, or fail with EIO, never reading zeros.

use std::path::Path;
use std::time::Duration;

use kiseki_core::admin::{fsck, ObjectCheck};
use kiseki_core::data::store::StoreFaults;
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::Client;
use kiseki_testkit::mount::wait_until;
use kiseki_testkit::pattern;
use kiseki_testkit::volume::Volume;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BLOCK: usize = 64 << 10;

fn writeback(vol: &Volume, cache: &Path) -> Client {
    vol.connect(&format!(
        "writeback,cache-dir={},session-ttl=2",
        cache.display()
    ))
}

/// Every request of `c`'s object store fails (`down`), or none.
fn store_down(c: &Client, down: bool) {
    let error = if down { 1.0 } else { 0.0 };
    c.fs().unwrap().data().store.set_faults(
        1,
        StoreFaults {
            error,
            ..Default::default()
        },
    );
}

fn write_file(c: &Client, path: &str, data: &[u8]) {
    let f = c
        .open(path, libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC, 0o644)
        .unwrap();
    assert_eq!(f.write(data).unwrap(), data.len());
    f.close().unwrap();
}

fn read_file(c: &Client, path: &str) -> kiseki_core::Result<Vec<u8>> {
    let f = c.open(path, libc::O_RDONLY, 0)?;
    let len = f.fstat()?.attr.length as usize;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = f.pread(&mut buf[got..], got as u64)?;
        assert!(n > 0, "{path}: short read at {got}");
        got += n;
    }
    f.close()?;
    Ok(buf)
}

/// Staged blocks of `c` and their bytes.
fn staged(c: &Client) -> (u64, u64) {
    c.fs()
        .unwrap()
        .data()
        .staged_usage()
        .expect("a write-back client")
}

fn staged_records(c: &Client) -> usize {
    c.fs().unwrap().meta().staged_slices().unwrap().len()
}

fn stored_blocks(c: &Client) -> usize {
    block_on(c.fs().unwrap().data().store.list_blocks())
        .unwrap()
        .len()
}

fn all_uploaded(c: &Client) -> bool {
    staged(c) == (0, 0) && staged_records(c) == 0
}

#[test]
fn close_returns_with_the_store_down_and_uploads_follow() {
    let vol = Volume::memory();
    let cache = tempfile::tempdir().unwrap();
    let c = writeback(&vol, cache.path());
    store_down(&c, true);
    let big = pattern(1, 5 * BLOCK + 100);
    write_file(&c, "/big", &big);
    let small = pattern(2, 1000);
    write_file(&c, "/small", &small);
    // Small random writes: packed into a shared slice, staged like any other.
    let mut model = vec![0u8; 1 << 20];
    let f = c
        .open("/random", libc::O_CREAT | libc::O_RDWR, 0o644)
        .unwrap();
    f.ftruncate(model.len() as u64).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..20 {
        let off = rng.gen_range(0..model.len() - 4096);
        let data = pattern(100 + i, 4096);
        f.pwrite(&data, off as u64).unwrap();
        model[off..off + 4096].copy_from_slice(&data);
    }
    f.close().unwrap();

    assert_eq!(stored_blocks(&c), 0, "nothing can have reached the store");
    let (blocks, bytes) = staged(&c);
    assert!(blocks >= 7, "{blocks} blocks staged");
    assert!(bytes >= big.len() as u64, "{bytes} bytes staged");
    assert!(staged_records(&c) >= 2);
    assert!(read_file(&c, "/big").unwrap() == big);
    assert!(read_file(&c, "/small").unwrap() == small);
    assert!(read_file(&c, "/random").unwrap() == model);
    let fs = c.fs().unwrap();
    let meta = fs.meta().check().unwrap();
    assert!(meta.is_clean(), "{:?}", meta.problems);
    let objects = block_on(fs.data().check_objects(false)).unwrap();
    assert!(objects.missing.is_empty(), "{objects:?}");
    assert!(!objects.staged.is_empty(), "{objects:?}");

    store_down(&c, false);
    assert!(
        wait_until(Duration::from_secs(60), || all_uploaded(&c)),
        "still staged: {:?}, {} records",
        staged(&c),
        staged_records(&c)
    );
    assert!(stored_blocks(&c) >= 6);
    let objects = block_on(fs.data().check_objects(true)).unwrap();
    assert!(
        objects.missing.is_empty()
            && objects.staged.is_empty()
            && objects.leaked.is_empty()
            && objects.corrupt.is_empty(),
        "{objects:?}"
    );
    assert!(read_file(&c, "/big").unwrap() == big);
    assert!(read_file(&c, "/random").unwrap() == model);
    // Deleting uploaded files leaves nothing behind.
    c.unlink("/big").unwrap();
    c.unlink("/random").unwrap();
    block_on(fs.data().run_deletions()).unwrap();
    let objects = block_on(fs.data().check_objects(false)).unwrap();
    assert!(objects.leaked.is_empty(), "{objects:?}");
    drop(fs);
    c.close().unwrap();
}

#[test]
fn staged_blocks_are_uploaded_when_the_client_starts_again() {
    // No trash: a deleted file's staged blocks are deleted after their upload.
    let vol = Volume::rocksdb_with(|o| {
        o.block_size = BLOCK as u32;
        o.trash_days = 0;
    });
    let cache = tempfile::tempdir().unwrap();
    let c = writeback(&vol, cache.path());
    let uuid = c.fs().unwrap().meta().volume().uuid.clone();
    store_down(&c, true);
    let data = pattern(3, 3 * BLOCK + 7);
    write_file(&c, "/a", &data);
    // A deletion while staged waits for the upload (deleting first would leak it).
    write_file(&c, "/doomed", &pattern(4, 2 * BLOCK));
    c.unlink("/doomed").unwrap();
    block_on(c.fs().unwrap().data().run_deletions()).unwrap();
    // Disconnecting with the store down leaves the blocks staged.
    c.close().unwrap();

    let staging = cache.path().join("staging").join(&uuid);
    // Left by a crash: a block no commit references, and a half-written file.
    std::fs::create_dir_all(staging.join("07")).unwrap();
    std::fs::write(staging.join("07/7_0_10"), [0u8; 10]).unwrap();
    std::fs::write(staging.join("07/.7_1_10.tmp0123"), [0u8; 3]).unwrap();
    let report = fsck(&vol.meta_url, ObjectCheck::List).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.staged_blocks, 4, "{report:?}");
    assert_eq!(report.missing_blocks, 0);

    let c = writeback(&vol, cache.path());
    assert!(
        wait_until(Duration::from_secs(60), || all_uploaded(&c)),
        "still staged after the restart: {:?}",
        staged(&c)
    );
    assert!(read_file(&c, "/a").unwrap() == data);
    assert!(!staging.join("07/7_0_10").exists());
    assert!(!staging.join("07/.7_1_10.tmp0123").exists());
    // The doomed file's blocks, uploaded, can now go.
    block_on(c.fs().unwrap().data().run_deletions()).unwrap();
    c.close().unwrap();
    let report = fsck(&vol.meta_url, ObjectCheck::Read).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.staged_blocks, report.blocks), (0, 4), "{report:?}");
}

#[test]
fn other_clients_wait_for_staged_blocks_or_fail_with_eio() {
    let vol = Volume::memory();
    let cache = tempfile::tempdir().unwrap();
    let a = writeback(&vol, cache.path());
    let b = vol.connect("session-ttl=2");
    store_down(&a, true);
    let data = pattern(5, 3 * BLOCK);
    write_file(&a, "/f", &data);
    assert_eq!(stored_blocks(&b), 0);
    // B's read waits while A's uploads fail, and returns the bytes once they pass.
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| read_file(&b, "/f"));
        std::thread::sleep(Duration::from_millis(1500));
        store_down(&a, false);
        reader.join().unwrap()
    });
    assert!(got.unwrap() == data);

    // A stops with blocks staged: B fails with EIO at once rather than waiting.
    store_down(&a, true);
    let later = pattern(6, 2 * BLOCK + 5);
    write_file(&a, "/g", &later);
    a.close().unwrap();
    let e = read_file(&b, "/g").unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert!(e.to_string().contains("not uploaded"), "{e}");
    // A starts again on its cache directory and uploads them.
    let a = writeback(&vol, cache.path());
    assert!(wait_until(Duration::from_secs(60), || all_uploaded(&a)));
    assert!(read_file(&b, "/g").unwrap() == later);
    let fs = b.fs().unwrap();
    let meta = fs.meta().check().unwrap();
    assert!(meta.is_clean(), "{:?}", meta.problems);
    drop(fs);
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn writeback_needs_a_cache_dir_of_its_own() {
    let vol = Volume::memory();
    let o = kiseki_core::vfs::ClientOptions::parse("writeback").unwrap();
    let e = Client::connect(Some(&vol.meta_url), &o).err().unwrap();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    let cache = tempfile::tempdir().unwrap();
    let a = writeback(&vol, cache.path());
    let o = kiseki_core::vfs::ClientOptions::parse(&format!(
        "writeback,cache-dir={}",
        cache.path().display()
    ))
    .unwrap();
    let e = Client::connect(Some(&vol.meta_url), &o).err().unwrap();
    assert_eq!(e.errno(), libc::EBUSY, "{e}");
    a.close().unwrap();
}
