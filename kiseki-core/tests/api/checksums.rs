//! End-to-end block checksums: a flipped byte anywhere between this client's memory and
//! the reader (the stored object, the disk cache) gives EIO naming the object, never
//! wrong data; `fsck` reading the objects finds it; volumes formatted before checksums
//! keep working.

use std::path::{Path, PathBuf};

use kiseki_core::admin::{fsck, ObjectCheck};
use kiseki_core::meta::kv::TxnMode;
use kiseki_core::meta::{keys, records};
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::Client;
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{files_under, pattern, write_all as write};

/// The one block object whose name ends in `suffix` (`_{index}_{length}`).
fn object(bucket: &Path, suffix: &str) -> PathBuf {
    let found: Vec<_> = files_under(bucket)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "objects ending in {suffix}: {found:?}");
    found.into_iter().next().unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut raw = std::fs::read(path).unwrap();
    raw[at] ^= 0x20;
    std::fs::write(path, raw).unwrap();
}

fn read_at(c: &Client, path: &str, off: u64, len: usize) -> kiseki_core::Result<Vec<u8>> {
    kiseki_testkit::pread_full(&c.open(path, libc::O_RDONLY, 0)?, off, len)
}

fn expect_eio(r: kiseki_core::Result<Vec<u8>>, object: &Path, what: &str) {
    let name = object.file_name().unwrap().to_str().unwrap();
    match r {
        Ok(_) => panic!("{what}: read corrupt data without an error"),
        Err(e) => {
            assert_eq!(e.errno(), libc::EIO, "{what}: {e}");
            assert!(e.to_string().contains(name), "{what}: {e} names {name}");
        }
    }
}

#[test]
fn a_flipped_byte_in_a_stored_block_is_eio_on_every_read_path() {
    for compression in ["none", "lz4", "zstd"] {
        let vol = Volume::rocksdb_with(|o| {
            o.block_size = 1 << 20;
            o.compression = compression.into();
        });
        let bucket = vol.bucket().unwrap();
        let data = pattern(3, 3_000_000);
        let c = vol.connect("");
        write(&c, "/f", &data);
        c.close().unwrap();
        let r = fsck(&vol.meta_url, ObjectCheck::Read).unwrap();
        assert!(r.is_clean(), "{compression}: {:?}", r.problems);

        // One byte of the first block, 700 kB in, as a bad disk or a buggy copy would.
        let first = object(&bucket, "_0_1048576");
        // lz4 objects start with the length and zstd ones with a frame header: flip a
        // byte of the compressed stream.
        flip(&first, if compression == "none" { 700_000 } else { 40 });
        let c = vol.connect("");
        // A small read (fetched as a range), a large one (the whole block, cached), and
        // a whole-file read: EIO, naming the object.
        if compression == "none" {
            expect_eio(read_at(&c, "/f", 699_990, 100), &first, "ranged read");
            // Sectors the flipped byte is not in stay readable.
            assert_eq!(read_at(&c, "/f", 0, 4096).unwrap(), data[..4096]);
        }
        expect_eio(read_at(&c, "/f", 0, 900_000), &first, "block read");
        expect_eio(read_at(&c, "/f", 0, data.len()), &first, "whole-file read");
        // Other blocks read back as written.
        assert_eq!(
            read_at(&c, "/f", 2 << 20, 10_000).unwrap(),
            data[2 << 20..(2 << 20) + 10_000]
        );
        c.close().unwrap();

        // fsck that reads objects names it; listing alone cannot see it.
        assert!(fsck(&vol.meta_url, ObjectCheck::List).unwrap().is_clean());
        let r = fsck(&vol.meta_url, ObjectCheck::Read).unwrap();
        assert_eq!(r.corrupt_blocks, 1, "{compression}: {:?}", r.problems);
        let name = first.file_name().unwrap().to_str().unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("corrupt block") && p.contains(name)),
            "{:?}",
            r.problems
        );
    }
}

/// Compressed volumes store smaller objects and read them back exactly, through a new
/// client (no cache) and fsck's reading check.
#[test]
fn compressed_volumes_store_less_and_read_back_exactly() {
    let text: Vec<u8> = (0..3_000_000u32)
        .flat_map(|i| format!("line {} of a log file\n", i % 5000).into_bytes())
        .take(3_000_000)
        .collect();
    for compression in ["lz4", "zstd"] {
        let vol = Volume::rocksdb_with(|o| {
            o.block_size = 1 << 20;
            o.compression = compression.into();
        });
        let c = vol.connect("");
        write(&c, "/log", &text);
        c.close().unwrap();
        let stored: u64 = files_under(&vol.bucket().unwrap())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(
            stored < text.len() as u64 / 4,
            "{compression}: {stored} bytes stored for {}",
            text.len()
        );
        let c = vol.connect("");
        assert_eq!(read_at(&c, "/log", 0, text.len()).unwrap(), text);
        assert_eq!(
            read_at(&c, "/log", 1_500_000, 5000).unwrap(),
            text[1_500_000..1_505_000]
        );
        c.close().unwrap();
        let r = fsck(&vol.meta_url, ObjectCheck::Read).unwrap();
        assert!(r.is_clean(), "{compression}: {:?}", r.problems);
    }
}

#[test]
fn a_disk_cache_entry_that_fails_the_slice_checksums_is_refetched() {
    let vol = Volume::rocksdb_with(|o| o.block_size = 64 << 10);
    let cache = kiseki_testkit::cache_dir_off_device();
    let opts = format!(
        "cache-dir={},cache-size=100M,memory-cache-size=1M,free-space-ratio=0",
        cache.path().display()
    );
    let data = pattern(9, 200_000);
    let c = vol.connect(&opts);
    write(&c, "/f", &data);
    c.close().unwrap();
    // A new client reads every block from the store, filling the disk cache (the
    // writer kept its partial last block in memory).
    let c = vol.connect(&opts);
    assert_eq!(read_at(&c, "/f", 0, data.len()).unwrap(), data);
    c.close().unwrap();
    let mut entries = Vec::new();
    for _ in 0..200 {
        entries = files_under(cache.path());
        if entries.len() == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(entries.len(), 4, "{entries:?}");
    // Rewrite every entry with a flipped byte *and* a matching entry checksum, as a
    // cache written by a buggy client would be: only the slice's checksums catch it.
    for e in &entries {
        let raw = std::fs::read(e).unwrap();
        let mut body = raw[4..].to_vec();
        body[1000] ^= 1;
        let mut forged = crc32c::crc32c(&body).to_le_bytes().to_vec();
        forged.extend_from_slice(&body);
        std::fs::write(e, forged).unwrap();
    }
    let c = vol.connect(&opts);
    assert_eq!(
        read_at(&c, "/f", 0, data.len()).unwrap(),
        data,
        "bad cache entries are dropped and the blocks fetched from the store"
    );
    c.close().unwrap();
}

#[test]
fn compacted_and_copied_slices_are_checked_too() {
    let vol = Volume::rocksdb_with(|o| o.block_size = 64 << 10);
    let c = vol.connect("");
    // Many small writes: the commit compacts the chunk into fresh slices.
    let f = c
        .open("/frag", libc::O_CREAT | libc::O_RDWR, 0o644)
        .unwrap();
    let data = pattern(4, 100 * 1000);
    for i in 0..100 {
        f.pwrite(&data[i * 1000..(i + 1) * 1000], (i * 1000) as u64)
            .unwrap();
        f.fsync().unwrap();
    }
    let ino = c.stat("/frag").unwrap().ino;
    let fs = c.fs().unwrap();
    block_on(kiseki_core::data::compact::compact_file(fs.data(), ino)).unwrap();
    assert_eq!(fs.meta().read_chunk(ino, 0).unwrap().len(), 1, "compacted");
    drop(fs);
    let src = c.open("/frag", libc::O_RDONLY, 0).unwrap();
    let dst = c
        .open("/copy", libc::O_CREAT | libc::O_WRONLY, 0o644)
        .unwrap();
    src.copy_range_to(0, &dst, 0, data.len() as u64).unwrap();
    dst.close().unwrap();
    f.close().unwrap();
    assert_eq!(read_at(&c, "/copy", 0, data.len()).unwrap(), data);
    c.close().unwrap();
    let r = fsck(&vol.meta_url, ObjectCheck::Read).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    // Every referenced slice has checksums (fsck's metadata pass checks that on a v3
    // volume); flip a byte of every object and both files fail to read.
    for o in files_under(&vol.bucket().unwrap()) {
        flip(&o, 10);
    }
    let c = vol.connect("");
    for path in ["/frag", "/copy"] {
        let e = read_at(&c, path, 0, 100).unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{path}: {e}");
    }
    c.close().unwrap();
}

/// Rewrites the volume as a Kiseki from before checksums left it: layout v2, no `Z`
/// records.
fn as_pre_checksum_volume(url: &str, layout: u32) {
    let meta = kiseki_core::meta::Meta::open(url, Default::default()).unwrap();
    let kv = meta.engine().clone();
    let mut tx = kv.begin(TxnMode::ReadWrite { durable: true }).unwrap();
    let mut fmt = records::decode_format(&tx.get(keys::SETTING).unwrap().unwrap()).unwrap();
    fmt.meta_version = layout;
    tx.put(keys::SETTING, &records::encode_format(&fmt))
        .unwrap();
    let sums = tx.scan(keys::SLICE_SUMS_PREFIX, b"[", usize::MAX).unwrap();
    assert!(!sums.is_empty());
    for (k, _) in sums {
        tx.delete(&k).unwrap();
    }
    tx.commit().unwrap();
    drop(kv);
    drop(meta);
}

#[test]
fn volumes_formatted_before_checksums_keep_working() {
    let data = pattern(5, 500_000);
    let vol = Volume::rocksdb_with(|o| o.block_size = 64 << 10);
    let c = vol.connect("");
    write(&c, "/old", &data);
    c.close().unwrap();
    as_pre_checksum_volume(&vol.meta_url, 2);
    let c = vol.connect("");
    assert_eq!(read_at(&c, "/old", 0, data.len()).unwrap(), data);
    // Slices written now have checksums, and are checked.
    write(&c, "/new", &data);
    c.close().unwrap();
    let r = fsck(&vol.meta_url, ObjectCheck::Read).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    let bucket = vol.bucket().unwrap();
    for o in files_under(&bucket) {
        flip(&o, 10);
    }
    let c = vol.connect("");
    assert_eq!(read_at(&c, "/new", 0, 10).unwrap_err().errno(), libc::EIO);
    // The old slices cannot be checked: read as they are, as before.
    assert_ne!(read_at(&c, "/old", 0, 100).unwrap(), data[..100]);
    c.close().unwrap();

    // On a volume formatted with checksums, a slice without them is corruption.
    let vol = Volume::rocksdb_with(|o| o.block_size = 64 << 10);
    let c = vol.connect("");
    write(&c, "/f", &data);
    c.close().unwrap();
    as_pre_checksum_volume(&vol.meta_url, 3);
    let c = vol.connect("");
    let e = read_at(&c, "/f", 0, 100).unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert!(e.to_string().contains("no recorded checksums"), "{e}");
    c.close().unwrap();
    let r = fsck(&vol.meta_url, ObjectCheck::Skip).unwrap();
    assert!(
        r.problems.iter().any(|p| p.contains("no checksums")),
        "{:?}",
        r.problems
    );
}
