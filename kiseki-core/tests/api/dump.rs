//! dump and load: a volume holding every kind of entry dumped while in use, loaded into
//! a fresh store, dumped again byte for byte the same, its files read back from the same
//! bucket; gzip; cut, foreign and misplaced dumps refused without leaving a volume.

use std::collections::BTreeMap;
use std::path::Path;

use kiseki_core::admin::{self, fsck, ObjectCheck};
use kiseki_core::meta::{Ctx, FileKind, CHUNK_SIZE};
use kiseki_core::vfs::Client;
use kiseki_testkit::volume::Volume;
use kiseki_testkit::{errno, pattern, read_all, write_all};

fn assert_clean(url: &str) {
    let r = fsck(url, ObjectCheck::Read).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

fn dump(url: &str, file: &Path) -> Vec<u8> {
    admin::dump(url, file, false, &mut |_| {}).unwrap();
    std::fs::read(file).unwrap()
}

/// Everything a reader sees of the tree under `dir`: path -> (kind, mode, uid, gid,
/// length, nlink, mtime, content or target, xattrs). Paths that are not UTF-8 (which
/// the path-level client cannot name) are seen through their inode.
type Seen = BTreeMap<
    Vec<u8>,
    (
        FileKind,
        u16,
        u32,
        u32,
        u64,
        u32,
        i64,
        Vec<u8>,
        Vec<Vec<u8>>,
    ),
>;

fn seen(c: &Client, dir: &str) -> Seen {
    let fs = c.fs().unwrap();
    let mut out = Seen::new();
    let mut stack = vec![dir.trim_end_matches('/').to_string()];
    while let Some(d) = stack.pop() {
        for e in c.readdir(if d.is_empty() { "/" } else { &d }).unwrap() {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let raw = [d.as_bytes(), b"/", &e.name].concat();
            let a = fs.getattr(e.ino).unwrap();
            let mut body = Vec::new();
            let mut xattrs = Vec::new();
            if let Ok(path) = std::str::from_utf8(&raw) {
                body = match a.kind {
                    FileKind::File => read_all(c, path).unwrap(),
                    FileKind::Symlink => c.readlink(path).unwrap(),
                    FileKind::Dir => {
                        stack.push(path.to_string());
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                if matches!(a.kind, FileKind::File | FileKind::Dir) {
                    for n in c.listxattr(path, false).unwrap() {
                        let v = c.getxattr(path, &n, false).unwrap();
                        xattrs.push([n, b"=".to_vec(), v].concat());
                    }
                }
            }
            out.insert(
                raw,
                (
                    a.kind,
                    a.mode,
                    a.uid,
                    a.gid,
                    a.length,
                    a.nlink,
                    a.mtime.sec,
                    body,
                    xattrs,
                ),
            );
        }
    }
    out
}

/// A volume with every kind of entry the metadata can hold.
fn populated() -> (Volume, Client) {
    let vol = Volume::rocksdb_with(|o| {
        o.block_size = 1 << 20;
        o.inline_size = Some(4096);
    });
    let c = vol.connect("");
    c.mkdir("/data", 0o755).unwrap();
    c.mkdir("/data/nested", 0o700).unwrap();
    c.mkdir("/data/nested/deeper", 0o755).unwrap();
    write_all(&c, "/data/big", &pattern(1, 3 << 20));
    write_all(&c, "/data/small", b"inline content");
    write_all(&c, "/data/nested/deeper/file", &pattern(2, 200_000));
    let f = c
        .open("/data/sparse", libc::O_WRONLY | libc::O_CREAT, 0o640)
        .unwrap();
    f.pwrite(b"far", 2 * CHUNK_SIZE + 7).unwrap();
    f.pwrite(b"near", 10).unwrap();
    f.close().unwrap();
    c.link("/data/big", "/data/nested/big-link").unwrap();
    c.symlink("../big", "/data/nested/sym").unwrap();
    c.mknod("/data/fifo", libc::S_IFIFO | 0o600, 0).unwrap();
    c.mknod("/data/dev", libc::S_IFCHR | 0o600, 0x0103).unwrap();
    c.setxattr("/data/big", b"user.bin", &[0, 255, 37, 10], 0, true)
        .unwrap();
    c.setxattr("/data", b"user.dir", b"yes", 0, true).unwrap();
    // Names that are not UTF-8, and with the escape character itself.
    let data = c.lstat("/data").unwrap().ino;
    c.fs()
        .unwrap()
        .mknod(
            &Ctx::root(),
            data,
            b"odd-\xff\xfe-100%",
            libc::S_IFREG | 0o644,
            0,
            0,
        )
        .unwrap();
    write_all(&c, "/data/100% ünïcode", b"escaped name");
    c.chown("/data/small", Some(1234), Some(5678), true)
        .unwrap();
    c.chmod("/data/nested/deeper/file", 0o4751).unwrap();
    // Shared slices (a clone), the trash (a removal and an O_TRUNC), pending deletions.
    c.clone_tree("/data/nested", "/data/nested-clone", true)
        .unwrap();
    write_all(&c, "/data/removed", b"in the trash");
    c.unlink("/data/removed").unwrap();
    write_all(&c, "/data/small", b"replaced by O_TRUNC");
    (vol, c)
}

#[test]
fn dump_load_dump_is_byte_identical_and_the_loaded_volume_reads_the_same() {
    let (vol, c) = populated();
    let work = tempfile::tempdir().unwrap();
    // Dumped while the volume is open (held by this client).
    let first = dump(&vol.meta_url, &work.path().join("one.json"));
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(
        text.starts_with("{\"kiseki\":{\"dump\":1,"),
        "{}",
        &text[..80]
    );
    assert!(text.contains("\"name\":\"odd-%FF%FE-100%25\""));
    assert!(text.trim_end().ends_with("}}") && text.contains("{\"end\":{\"records\":"));

    let url2 = format!("rocksdb://{}/meta2", work.path().display());
    let loaded = admin::load(&url2, &work.path().join("one.json"), &mut |_| {}).unwrap();
    let (format, stats) = (loaded.format, loaded.stats);
    assert_eq!(format.name, "testkit");
    assert_eq!(loaded.juicefs, None);
    assert!(stats.inodes >= 20 && stats.entries >= 18, "{stats:?}");
    let second = dump(&url2, &work.path().join("two.json"));
    assert!(first == second, "dump -> load -> dump changed the dump");

    // The loaded store on the same bucket reads the same tree, trash included.
    let loaded = Volume {
        meta_url: url2.clone(),
        dir: None,
    };
    let c2 = loaded.connect("");
    assert_eq!(seen(&c2, "/"), seen(&c, "/"));
    let hour = c.readdir("/.trash").unwrap();
    assert_eq!(c2.readdir("/.trash").unwrap().len(), hour.len());
    let (h, _) = (hour.last().unwrap(), ());
    let h = format!("/.trash/{}", String::from_utf8_lossy(&h.name));
    assert_eq!(seen(&c2, &h), seen(&c, &h));
    c2.close().unwrap();
    assert_clean(&url2);

    // gzip: the same records, a fraction of the size.
    let gz = work.path().join("one.json.gz");
    admin::dump(&vol.meta_url, &gz, false, &mut |_| {}).unwrap();
    let packed = std::fs::read(&gz).unwrap();
    assert_eq!(&packed[..2], &[0x1f, 0x8b], "a gzip file");
    assert!(
        packed.len() * 3 < first.len(),
        "{} vs {}",
        packed.len(),
        first.len()
    );
    let url3 = format!("rocksdb://{}/meta3", work.path().display());
    admin::load(&url3, &gz, &mut |_| {}).unwrap();
    assert!(dump(&url3, &work.path().join("three.json")) == first);
    c.close().unwrap();
    assert_clean(&vol.meta_url);
}

#[test]
fn cut_foreign_and_misplaced_dumps_are_refused_and_leave_no_volume() {
    let (vol, c) = populated();
    c.close().unwrap();
    let work = tempfile::tempdir().unwrap();
    let full = dump(&vol.meta_url, &work.path().join("full.json"));
    let cut = work.path().join("cut.json");
    let keep = full.len() * 2 / 3;
    std::fs::write(&cut, &full[..keep]).unwrap();
    let url = format!("rocksdb://{}/m", work.path().display());
    let e = admin::load(&url, &cut, &mut |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("line") || e.to_string().contains("cut short"),
        "{e}"
    );
    // Nothing mountable was left.
    let o = kiseki_core::vfs::ClientOptions::parse("").unwrap();
    assert!(Client::connect(Some(&url), &o).is_err());
    // Keys without a format record (what a load that failed after committing some
    // leaves) are never merged with another dump.
    {
        use kiseki_core::meta::kv::{open_engine, TxnMode};
        let kv = open_engine(&url, true).unwrap();
        let mut tx = kv.begin(TxnMode::ReadWrite { durable: false }).unwrap();
        tx.put(b"Dstray", b"").unwrap();
        tx.commit().unwrap();
    }
    let e = admin::load(&url, &work.path().join("full.json"), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    // A dump cut exactly at a line end: its end line is missing.
    let at = full[..keep].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&cut, &full[..at]).unwrap();
    let url = format!("rocksdb://{}/m2", work.path().display());
    let e = admin::load(&url, &cut, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("cut short"), "{e}");
    // A name no entry may have.
    let bad = String::from_utf8(full.clone()).unwrap().replacen(
        "\"name\":\"data\"",
        "\"name\":\"..\"",
        1,
    );
    std::fs::write(&cut, bad).unwrap();
    let url = format!("rocksdb://{}/m3", work.path().display());
    let e = admin::load(&url, &cut, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("an entry named"), "{e}");
    let url = format!("rocksdb://{}/m-fresh", work.path().display());
    admin::load(&url, &work.path().join("full.json"), &mut |_| {}).unwrap();
    assert!(dump(&url, &work.path().join("again.json")) == full);
    assert_clean(&url);
    // Into a store that holds a volume: refused, the volume untouched.
    assert_eq!(
        errno(admin::load(
            &url,
            &work.path().join("full.json"),
            &mut |_| {}
        )),
        libc::EEXIST
    );
    // Not a dump at all; a JSON file of something else.
    let junk = work.path().join("junk.json");
    std::fs::write(&junk, b"[1, 2, 3]\n").unwrap();
    let url4 = format!("rocksdb://{}/m4", work.path().display());
    let e = admin::load(&url4, &junk, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("not a kiseki dump"), "{e}");
    // JSON that is neither: read as a JuiceFS dump, refused as one.
    std::fs::write(&junk, b"{\"Setting\":{}}\n").unwrap();
    let e = admin::load(&url4, &junk, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("JuiceFS dump"), "{e}");
}

#[test]
fn a_file_open_but_unlinked_at_the_dump_is_released_by_the_load() {
    let vol = Volume::rocksdb_with(|o| o.trash_days = 0);
    let c = vol.connect("");
    write_all(&c, "/held", &pattern(3, 2 << 20));
    write_all(&c, "/kept", b"kept");
    let f = c.open("/held", libc::O_RDONLY, 0).unwrap();
    c.unlink("/held").unwrap();
    let work = tempfile::tempdir().unwrap();
    dump(&vol.meta_url, &work.path().join("d.json"));
    f.close().unwrap();
    let url = format!("rocksdb://{}/m", work.path().display());
    admin::load(&url, &work.path().join("d.json"), &mut |_| {}).unwrap();
    let r = fsck(&url, ObjectCheck::Skip).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    let loaded = Volume {
        meta_url: url,
        dir: None,
    };
    let c2 = loaded.connect("");
    assert_eq!(read_all(&c2, "/kept").unwrap(), b"kept");
    assert_eq!(c2.readdir("/").unwrap().len(), 3);
    c2.close().unwrap();
    c.close().unwrap();
}

#[test]
fn one_client_at_a_time_backs_up_and_the_newest_backups_are_kept() {
    use kiseki_core::data::backup;
    use kiseki_core::meta::keys::BACKUP_CLAIM;
    // The claim: of two clients, one takes each interval.
    let vol = Volume::memory();
    let (c1, c2) = (vol.connect(""), vol.connect(""));
    let (m1, m2) = (
        c1.fs().unwrap().meta().clone(),
        c2.fs().unwrap().meta().clone(),
    );
    assert!(m1.claim_periodic(BACKUP_CLAIM, 3600).unwrap());
    assert!(!m2.claim_periodic(BACKUP_CLAIM, 3600).unwrap());
    assert!(!m1.claim_periodic(BACKUP_CLAIM, 3600).unwrap());
    for m in [&m1, &m2] {
        m.config().clock.advance(3601);
    }
    assert!(m2.claim_periodic(BACKUP_CLAIM, 3600).unwrap());
    assert!(!m1.claim_periodic(BACKUP_CLAIM, 3600).unwrap());
    c1.close().unwrap();
    c2.close().unwrap();

    // Backups in the bucket, rotated, each a dump that loads.
    let (vol, c) = populated();
    let fs = c.fs().unwrap();
    let meta = fs.meta().clone();
    let mut names = Vec::new();
    for _ in 0..3 {
        let (name, stats) = backup::run(&meta, &fs.data().store, 2).unwrap();
        assert!(stats.inodes >= 20, "{stats:?}");
        names.push(name);
        meta.config().clock.advance(61);
    }
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    let dir = vol.bucket().unwrap().join("testkit/meta");
    let mut kept: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, names[1..], "the oldest went");
    assert!(
        names.iter().all(|n| n.starts_with("kiseki-dump-")),
        "{names:?}"
    );
    let work = tempfile::tempdir().unwrap();
    let current = dump(&vol.meta_url, &work.path().join("now.json"));
    let url = format!("rocksdb://{}/restored", work.path().display());
    admin::load(&url, &dir.join(&names[2]), &mut |_| {}).unwrap();
    assert!(dump(&url, &work.path().join("restored.json")) == current);
    c.close().unwrap();
}
