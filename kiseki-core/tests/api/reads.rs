//! What reads cost the metadata engine: an open file's attributes and slice records
//! are read once, not per request, and never hide a change: this client's own writes,
//! truncates, copies and compactions show at once, and another client's close shows at
//! the next open (close-to-open). Blocks written to a remote store are read back from
//! the cache.

use std::sync::{Arc, Mutex};

use kiseki_core::data::store::Journal;
use kiseki_core::data::DataConfig;
use kiseki_core::meta::kv::open_engine;
use kiseki_core::meta::{Ctx, FormatOptions, Ino, Meta, MetaConfig, SetAttr, CHUNK_SIZE};
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::Fs;
use kiseki_testkit::kv::RecordingKv;
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{pattern, pread_full};

fn read_all(fs: &Fs, fh: u64, len: usize, step: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    loop {
        let got = block_on(fs.read(fh, out.len() as u64, step)).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend_from_slice(&got);
    }
}

#[test]
fn reading_an_open_file_asks_the_engine_once_per_chunk_and_sees_every_local_change() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rocksdb://{}/meta", dir.path().display());
    let kv = open_engine(&url, true).unwrap();
    let mut o = FormatOptions::new("reads");
    o.bucket = dir.path().join("data").display().to_string();
    kiseki_core::meta::format::format(&*kv, &o).unwrap();
    let journal: Journal = Arc::new(Mutex::new(Vec::new()));
    let engine = RecordingKv::new(kv, journal);
    let meta = Meta::with_engine(engine.clone(), MetaConfig::default()).unwrap();
    let fs = Fs::new(meta, &DataConfig::default()).unwrap();
    let root = Ctx::root();

    let len = CHUNK_SIZE as usize + (3 << 20);
    let mut model = pattern(1, len);
    let flags = libc::O_RDWR | libc::O_CREAT;
    let (fh, e) = block_on(fs.create(&root, Ino::ROOT, b"f", 0o644, 0, flags)).unwrap();
    block_on(fs.write(&root, fh, Some(0), &model)).unwrap();
    block_on(fs.flush(fh)).unwrap();
    block_on(fs.release(fh)).unwrap();

    let (fh, _) = block_on(fs.open(&root, e.ino, libc::O_RDWR)).unwrap();
    let (reads, _) = engine.transactions();
    let back = read_all(&fs, fh, len, 128 << 10);
    let (after, _) = engine.transactions();
    assert!(back == model, "contents differ");
    // 537 reads of 128 KiB: the attributes and two chunks' records, once each.
    assert!(
        after - reads <= 6,
        "{} metadata reads for a sequential read of {len} bytes",
        after - reads
    );

    // Every local change shows at once through the same handle.
    let patch = pattern(2, 4096);
    block_on(fs.write(&root, fh, Some(1000), &patch)).unwrap();
    block_on(fs.flush(fh)).unwrap();
    model[1000..1000 + 4096].copy_from_slice(&patch);
    assert!(read_all(&fs, fh, len, 1 << 20) == model, "after a write");

    let (src, _) = block_on(fs.create(&root, Ino::ROOT, b"src", 0o644, 0, flags)).unwrap();
    let copied = pattern(3, 8192);
    block_on(fs.write(&root, src, Some(0), &copied)).unwrap();
    block_on(fs.flush(src)).unwrap();
    let n = block_on(fs.copy_file_range(&root, src, 0, fh, 5 << 20, 8192)).unwrap();
    assert_eq!(n, 8192);
    model[5 << 20..(5 << 20) + 8192].copy_from_slice(&copied);
    assert!(
        read_all(&fs, fh, len, 1 << 20) == model,
        "after copy_file_range"
    );

    block_on(kiseki_core::data::compact::compact_file(fs.data(), e.ino)).unwrap();
    assert!(read_all(&fs, fh, len, 1 << 20) == model, "after compaction");

    let set = SetAttr {
        size: Some(3 << 20),
        via_handle: true,
        ..Default::default()
    };
    block_on(fs.setattr(&root, e.ino, &set)).unwrap();
    model.truncate(3 << 20);
    assert!(read_all(&fs, fh, len, 1 << 20) == model, "after a truncate");
    for h in [fh, src] {
        block_on(fs.release(h)).unwrap();
    }
    block_on(fs.shutdown()).unwrap();
}

#[test]
fn another_clients_close_shows_at_the_next_open() {
    let vol = Volume::memory();
    let (a, b) = (vol.connect(""), vol.connect(""));
    let first = pattern(4, 100_000);
    let w = b.open("/f", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
    w.write(&first).unwrap();
    w.close().unwrap();
    let read = |f: &kiseki_core::vfs::File| {
        let mut buf = vec![0u8; 200_000];
        let n = f.pread(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    };
    let r = a.open("/f", libc::O_RDONLY, 0).unwrap();
    assert!(read(&r) == first);
    r.close().unwrap();
    let second = pattern(5, 150_000);
    let w = b.open("/f", libc::O_RDWR, 0).unwrap();
    w.write(&second).unwrap();
    w.close().unwrap();
    let r = a.open("/f", libc::O_RDONLY, 0).unwrap();
    assert!(
        read(&r) == second,
        "the reopen shows the other client's close"
    );
    r.close().unwrap();
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn blocks_written_to_a_remote_store_are_read_back_from_the_cache() {
    use kiseki_core::data::store::StoreFaults;
    let vol = Volume::memory();
    let cache = tempfile::tempdir().unwrap();
    let opts = format!("cache-dir={},free-space-ratio=0", cache.path().display());
    let data = pattern(6, 3 * (64 << 10) + 500);
    let c = vol.connect(&opts);
    let f = c.open("/f", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
    // Two writes, two slices: compaction rewrites them into one, kept in the cache too.
    f.write(&data[..100_000]).unwrap();
    f.fsync().unwrap();
    f.write(&data[100_000..]).unwrap();
    f.close().unwrap();
    let fs = c.fs().unwrap();
    let ino = c.stat("/f").unwrap().ino;
    block_on(kiseki_core::data::compact::compact_file(fs.data(), ino)).unwrap();
    assert_eq!(fs.meta().read_chunk(ino, 0).unwrap().len(), 1);
    drop(fs);
    c.close().unwrap();
    assert!(
        kiseki_testkit::mount::wait_until(std::time::Duration::from_secs(10), || {
            // Two blocks of each written slice, four of the compacted one.
            kiseki_testkit::files_under(cache.path()).len() == 8
        }),
        "{:?}",
        kiseki_testkit::files_under(cache.path())
    );
    // With every store request failing, the new client reads it all from the cache.
    let c = vol.connect(&opts);
    c.fs().unwrap().data().store.set_faults(
        1,
        StoreFaults {
            error: 1.0,
            ..Default::default()
        },
    );
    let f = c.open("/f", libc::O_RDONLY, 0).unwrap();
    assert!(pread_full(&f, 0, data.len()).unwrap() == data);
    f.close().unwrap();
    c.close().unwrap();
}

/// Writes `data` to `/f` through a new client with `opts` and reads it back through
/// another (cold memory cache); both clients closed.
fn write_then_read_cold(vol: &Volume, opts: &str, data: &[u8]) {
    let c = vol.connect(opts);
    let f = c.open("/f", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
    f.write(data).unwrap();
    f.close().unwrap();
    c.close().unwrap();
    let c = vol.connect(opts);
    let f = c.open("/f", libc::O_RDONLY, 0).unwrap();
    assert!(pread_full(&f, 0, data.len()).unwrap() == data);
    f.close().unwrap();
    c.close().unwrap();
}

#[test]
fn the_disk_cache_keeps_what_its_policy_says() {
    const BLOCK: usize = 64 << 10;
    let data = pattern(9, 40 * BLOCK + 500);
    let cached = |dir: &tempfile::TempDir| kiseki_testkit::files_under(dir.path()).len();
    // Cache entries are written in the background: wait for the count to settle.
    let settles = |dirs: &[&tempfile::TempDir], want: usize| {
        let count = || dirs.iter().map(|d| cached(d)).sum::<usize>();
        kiseki_testkit::mount::wait_until(std::time::Duration::from_secs(10), || count() == want)
            && {
                std::thread::sleep(std::time::Duration::from_millis(500));
                count() == want
            }
    };

    // An `fs` bucket on the cache's own disk: nothing is copied into the cache.
    let vol = Volume::rocksdb_with(|o| o.block_size = BLOCK as u32);
    let cache = tempfile::tempdir().unwrap();
    write_then_read_cold(
        &vol,
        &format!("cache-dir={},free-space-ratio=0", cache.path().display()),
        &data,
    );
    assert!(
        settles(&[&cache], 0),
        "{:?}",
        kiseki_testkit::files_under(cache.path())
    );

    // A remote store with cache-partial-only: only the file's last, partial block.
    let vol = Volume::memory();
    let cache = tempfile::tempdir().unwrap();
    let opts = format!(
        "cache-dir={},cache-partial-only,free-space-ratio=0",
        cache.path().display()
    );
    write_then_read_cold(&vol, &opts, &data);
    assert!(
        settles(&[&cache], 1),
        "{:?}",
        kiseki_testkit::files_under(cache.path())
    );

    // A remote store and two cache directories: every block, spread over both.
    let vol = Volume::memory();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = format!(
        "cache-dir={}:{},free-space-ratio=0",
        a.path().display(),
        b.path().display()
    );
    write_then_read_cold(&vol, &opts, &data);
    assert!(
        settles(&[&a, &b], 41) && cached(&a) > 0 && cached(&b) > 0,
        "{} and {} blocks cached",
        cached(&a),
        cached(&b)
    );
    // Bad values are refused.
    for bad in ["cache-dir=", "free-space-ratio=1.5", "free-space-ratio=x"] {
        let e = kiseki_core::vfs::ClientOptions::parse(bad).err();
        assert!(e.is_some_and(|e| e.errno() == libc::EINVAL), "{bad}");
    }
}

/// What the caches hold of `path`, by `Fs::warmup`'s count.
fn cached_bytes(c: &kiseki_core::vfs::Client, path: &str) -> (u64, u64) {
    let f = c.open(path, libc::O_RDONLY, 0).unwrap();
    let w = block_on(c.fs().unwrap().warmup(f.ino(), 0, u64::MAX, false)).unwrap();
    f.close().unwrap();
    (w.cached, w.data)
}

#[test]
fn read_ahead_and_warmup_fill_the_cache_as_their_options_say() {
    let vol = Volume::memory_with(|o| o.block_size = 1 << 20);
    let len = 40 << 20;
    let data = pattern(7, len);
    {
        let c = vol.connect("");
        let f = c.open("/f", libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap();
        f.pwrite(&data, 0).unwrap();
        f.close().unwrap();
        c.close().unwrap();
    }
    // Reads the first 4 MiB in 64 KiB calls on a new client; returns how many bytes
    // are cached once read-ahead settled.
    let read_head = |opts: &str| {
        let c = vol.connect(opts);
        assert_eq!(
            cached_bytes(&c, "/f"),
            (0, len as u64),
            "{opts}: a new client"
        );
        let f = c.open("/f", libc::O_RDONLY, 0).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        for i in 0..64 {
            assert_eq!(f.read(&mut buf).unwrap(), buf.len());
            assert_eq!(buf[..], data[i * (64 << 10)..(i + 1) * (64 << 10)]);
        }
        let mut last = (0, 0);
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = cached_bytes(&c, "/f");
            if now == last {
                break;
            }
            last = now;
        }
        f.close().unwrap();
        c.close().unwrap();
        last.0
    };
    let ahead = read_head("");
    assert!(ahead >= 8 << 20, "default read-ahead cached {ahead} bytes");
    let bounded = read_head("max-readahead=2");
    assert!(
        (4 << 20..=7 << 20).contains(&bounded),
        "max-readahead=2 cached {bounded} bytes"
    );
    // Without read-ahead, 64 KiB reads fetch ranges, which are not cached.
    assert_eq!(read_head("prefetch=0"), 0, "prefetch=0");
    assert_eq!(read_head("max-readahead=0"), 0, "max-readahead=0");

    // Warm-up of a range, then of the rest: everything cached, reads intact.
    let c = vol.connect("prefetch=0");
    let f = c.open("/f", libc::O_RDONLY, 0).unwrap();
    let fs = c.fs().unwrap();
    let w = block_on(fs.warmup(f.ino(), 3 << 20, 5 << 20, true)).unwrap();
    assert_eq!((w.data, w.cached), (5 << 20, 5 << 20));
    assert_eq!(
        cached_bytes(&c, "/f").0,
        5 << 20,
        "only the range was fetched"
    );
    block_on(fs.warmup(f.ino(), 0, u64::MAX, true)).unwrap();
    assert_eq!(cached_bytes(&c, "/f"), (len as u64, len as u64));
    assert!(pread_full(&f, 0, len).unwrap() == data, "contents differ");
    f.close().unwrap();

    for bad in [
        "prefetch=-1",
        "prefetch=1000",
        "max-readahead=x",
        "max-readahead=99999999",
    ] {
        let e = kiseki_core::vfs::ClientOptions::parse(bad).err();
        assert!(e.is_some_and(|e| e.errno() == libc::EINVAL), "{bad}");
    }
}
