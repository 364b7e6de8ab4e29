//! `fsck --repair` on volumes broken on purpose: each kind of damage fsck reports is
//! mended with the data kept, a second check is clean; lost blocks are reported with
//! the files they belong to and keep reading as EIO.

use kiseki_core::admin::{fsck, fsck_repair, ObjectCheck};
use kiseki_core::meta::kv::{KvTxn, TxnMode};
use kiseki_core::meta::records::{self, Dentry};
use kiseki_core::meta::{keys, FileKind, Ino, Meta};
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{files_under, pattern, read_all as get, write_all as put};

/// Edits the volume's records directly, as a bug or a torn copy would.
fn damage(url: &str, f: impl FnOnce(&mut dyn KvTxn)) {
    let meta = Meta::open(url, Default::default()).unwrap();
    let kv = meta.engine().clone();
    let mut tx = kv.begin(TxnMode::ReadWrite { durable: true }).unwrap();
    f(&mut *tx);
    tx.commit().unwrap();
    meta.shutdown().unwrap();
}

fn attr_of(tx: &mut dyn KvTxn, ino: Ino) -> kiseki_core::meta::Attr {
    records::decode_attr(ino, &tx.get(&keys::attr(ino)).unwrap().unwrap()).unwrap()
}

fn dentry_of(tx: &mut dyn KvTxn, parent: Ino, name: &[u8]) -> Dentry {
    records::decode_dentry(
        parent,
        &tx.get(&keys::dentry(parent, name)).unwrap().unwrap(),
    )
    .unwrap()
}

#[test]
fn repair_mends_each_kind_of_damage_and_keeps_the_data() {
    let vol = Volume::rocksdb_with(|o| {
        o.block_size = 64 << 10;
        o.inline_size = Some(4096);
    });
    let c = vol.connect("");
    c.mkdir("/d", 0o755).unwrap();
    c.mkdir("/d/sub", 0o755).unwrap();
    let (a_data, orphan_data) = (pattern(1, 200_000), pattern(2, 100_000));
    put(&c, "/d/a", &a_data);
    c.link("/d/a", "/d/a2").unwrap();
    put(&c, "/d/b", b"bee");
    put(&c, "/orphan", &orphan_data);
    // A copy shares the slices (reference counted).
    let src = c.open("/d/a", libc::O_RDONLY, 0).unwrap();
    let dst = c
        .open("/d/copy", libc::O_CREAT | libc::O_WRONLY, 0o644)
        .unwrap();
    assert_eq!(
        src.copy_range_to(0, &dst, 0, a_data.len() as u64).unwrap(),
        200_000
    );
    dst.close().unwrap();
    src.close().unwrap();
    let ino = |p: &str| c.lstat(p).unwrap().ino;
    let (d, sub, a, b, orphan) = (
        ino("/d"),
        ino("/d/sub"),
        ino("/d/a"),
        ino("/d/b"),
        ino("/orphan"),
    );
    c.close().unwrap();
    assert!(fsck(&vol.meta_url, ObjectCheck::Read).unwrap().is_clean());

    damage(&vol.meta_url, |tx| {
        // Counters that disagree with the volume.
        tx.put(
            &keys::counter_shard("usedSpace", 3),
            &12_345i64.to_le_bytes(),
        )
        .unwrap();
        tx.put(&keys::counter_shard("totalInodes", 5), &7i64.to_le_bytes())
            .unwrap();
        // Wrong link counts: a file with two names says five, a directory says 9.
        let mut fa = attr_of(tx, a);
        fa.nlink = 5;
        tx.put(&keys::attr(a), &records::encode_attr(&fa)).unwrap();
        let mut fd = attr_of(tx, d);
        fd.nlink = 9;
        tx.put(&keys::attr(d), &records::encode_attr(&fd)).unwrap();
        // An orphan: /orphan's entry is gone, its inode is not.
        let e = dentry_of(tx, Ino::ROOT, b"orphan");
        tx.delete(&keys::dentry(Ino::ROOT, b"orphan")).unwrap();
        tx.delete(&keys::dir_index(Ino::ROOT, e.seq)).unwrap();
        // A dangling entry, with its index record, to an inode that never existed.
        let ghost = Dentry {
            kind: FileKind::File,
            ino: Ino(999_999),
            seq: 77,
        };
        tx.put(&keys::dentry(d, b"ghost"), &records::encode_dentry(&ghost))
            .unwrap();
        tx.put(
            &keys::dir_index(d, 77),
            &records::encode_dir_index(FileKind::File, Ino(999_999), b"ghost"),
        )
        .unwrap();
        // An index record without its entry, and an entry without its index record.
        tx.put(
            &keys::dir_index(d, 78),
            &records::encode_dir_index(FileKind::File, b, b"nobody"),
        )
        .unwrap();
        let e = dentry_of(tx, d, b"sub");
        tx.delete(&keys::dir_index(d, e.seq)).unwrap();
        // A subdirectory that records the wrong parent.
        let mut fs = attr_of(tx, sub);
        fs.parent = Ino::ROOT;
        tx.put(&keys::attr(sub), &records::encode_attr(&fs))
            .unwrap();
        // Recorded data bytes that disagree with the slice records.
        let mut fb = attr_of(tx, b);
        fb.stored = 1;
        tx.put(&keys::attr(b), &records::encode_attr(&fb)).unwrap();
        // A shared slice's reference count dropped (its blocks would be deleted while
        // /d/copy still needs them).
        let refs = tx.scan(b"K", b"L", 10).unwrap();
        assert!(!refs.is_empty(), "copy_file shares slices");
        for (k, _) in refs {
            tx.delete(&k).unwrap();
        }
        // Records of an inode that does not exist.
        tx.put(&keys::xattr(Ino(888_888), b"user.x"), b"1").unwrap();
        tx.put(&keys::symlink(Ino(888_889)), b"target").unwrap();
        // Checksums of a slice nothing references.
        let sums = tx.scan(keys::SLICE_SUMS_PREFIX, b"[", 1).unwrap();
        tx.put(&keys::slice_sums(u64::MAX >> 8), &sums[0].1)
            .unwrap();
    });
    let broken = fsck(&vol.meta_url, ObjectCheck::List).unwrap();
    assert!(broken.problems.len() >= 12, "{:#?}", broken.problems);

    let r = fsck_repair(&vol.meta_url, ObjectCheck::Read).unwrap();
    assert!(
        r.after.is_clean(),
        "{:#?}\nfixed: {:#?}",
        r.after.problems,
        r.fixed
    );
    let fixed = r.fixed.join("\n");
    for expected in [
        "removed entry \"ghost\"",
        "removed index record 78",
        "indexed entry \"sub\"",
        &format!("inode {a}: 2 links (was 5)"),
        &format!("inode {d}: 3 links (was 9)"),
        &format!("moved orphan inode {orphan} to /lost+found/#{orphan}"),
        "removed the records of missing inode 888888",
        "removed the records of missing inode 888889",
        &format!("file {b}: 3 data bytes (was 1)"),
        "removed unreferenced checksums",
        "counter usedSpace",
        "counter totalInodes",
    ] {
        assert!(fixed.contains(expected), "{expected:?} not in:\n{fixed}");
    }
    assert!(fixed.contains("references"), "{fixed}");
    // A second repair finds nothing to do.
    let again = fsck_repair(&vol.meta_url, ObjectCheck::Skip).unwrap();
    assert!(again.fixed.is_empty(), "{:#?}", again.fixed);

    let c = vol.connect("");
    assert_eq!(get(&c, "/d/a").unwrap(), a_data);
    assert_eq!(get(&c, "/d/a2").unwrap(), a_data);
    assert_eq!(get(&c, "/d/copy").unwrap(), a_data);
    assert_eq!(get(&c, "/d/b").unwrap(), b"bee");
    assert_eq!(
        get(&c, &format!("/lost+found/#{orphan}")).unwrap(),
        orphan_data
    );
    assert_eq!(c.stat("/d/a").unwrap().attr.nlink, 2);
    assert!(!c.exists("/d/ghost"));
    let names: Vec<String> = c
        .readdir("/d")
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    assert_eq!(names, [".", "..", "sub", "a", "a2", "b", "copy"]);
    assert_eq!(c.stat("/d/sub/..").unwrap().ino, d);
    c.close().unwrap();
}

#[test]
fn lost_blocks_are_reported_with_their_files_and_keep_reading_as_eio() {
    let vol = Volume::rocksdb_with(|o| o.block_size = 64 << 10);
    let c = vol.connect("");
    c.mkdir("/dir", 0o755).unwrap();
    let data = pattern(3, 300_000);
    put(&c, "/dir/f", &data);
    let f_ino = c.lstat("/dir/f").unwrap().ino;
    c.close().unwrap();
    let victim = files_under(&vol.bucket().unwrap())
        .into_iter()
        .find(|p| p.to_str().unwrap().ends_with("_1_65536"))
        .expect("the second block");
    std::fs::remove_file(&victim).unwrap();
    let r = fsck(&vol.meta_url, ObjectCheck::List).unwrap();
    assert_eq!(r.missing_blocks, 1);
    assert_eq!(r.damaged_files.len(), 1, "{:?}", r.damaged_files);
    assert!(
        r.damaged_files[0].starts_with(&format!("file /dir/f (inode {f_ino}): reads of slice")),
        "{:?}",
        r.damaged_files
    );
    // Repair cannot bring data back: it says so, and changes nothing of the file.
    let rep = fsck_repair(&vol.meta_url, ObjectCheck::List).unwrap();
    assert!(rep.fixed.is_empty(), "{:?}", rep.fixed);
    assert!(!rep.after.is_clean());
    assert_eq!(rep.after.damaged_files, r.damaged_files);
    let c = vol.connect("");
    let f = c.open("/dir/f", libc::O_RDONLY, 0).unwrap();
    assert_eq!(
        kiseki_testkit::pread_full(&f, 0, 65_536).unwrap(),
        data[..65_536]
    );
    let e = kiseki_testkit::pread_full(&f, 65_536, 10).unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert_eq!(
        kiseki_testkit::pread_full(&f, 131_072, 1000).unwrap(),
        data[131_072..132_072]
    );
    f.close().unwrap();
    c.close().unwrap();
}
