//! POSIX behaviour through a real mount that the conformance suites miss: permission
//! checks on every path the kernel takes without asking us (cached entries, FIFOs,
//! devices, execve), setuid/setgid clearing by unprivileged writers, readdir under
//! renames, mount defaults, file handles and a remount racing the previous daemon.
//!
//! Commands run as `nobody` (uid 65534, group `nogroup` 65534) through the real kernel,
//! so each case fails the way a user would see it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use kiseki_testkit::mount::*;

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

/// A mount whose mountpoint `nobody` can reach (the temporary directory is 0700).
fn shared_mount(extra: &[&str]) -> Mounted {
    let m = Mounted::new(extra);
    std::fs::set_permissions(m.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&m.mp, std::fs::Permissions::from_mode(0o755)).unwrap();
    m
}

/// Runs `script` with `sh -c` in `dir` as nobody:nogroup with no supplementary groups.
fn as_nobody(dir: &Path, script: &str) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .uid(NOBODY)
        .gid(NOGROUP)
        .output()
        .expect("run sh as nobody")
}

fn sh(dir: &Path, script: &str) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh")
}

fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", combined(o));
}

fn assert_denied(o: &Output, what: &str) {
    assert!(
        !o.status.success() && stderr(o).contains("Permission denied"),
        "{what} should fail with EACCES: status {:?}, {}",
        o.status,
        combined(o)
    );
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn search_permission_holds_for_entries_the_kernel_has_cached() {
    if !fuse_available() {
        return;
    }
    // A long entry lifetime: the kernel keeps `d/f` cached throughout, as it would for
    // any name used within the default second.
    let m = shared_mount(&["-o", "entry-cache=60,attr-cache=60"]);
    let d = m.path("d");
    std::fs::create_dir(&d).unwrap();
    chown(&d, NOBODY, NOGROUP);
    std::fs::create_dir(m.path("e")).unwrap();
    chown(&m.path("e"), NOBODY, NOGROUP);
    assert_ok(
        &as_nobody(&m.mp, "echo hi > d/f && cat d/f && ls -l d/f"),
        "setup",
    );
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (what, script) in [
        ("read", "cat d/f"),
        ("open for writing", "echo x >> d/f"),
        ("truncate", "truncate -s 0 d/f"),
        ("link", "ln d/f e/g"),
        ("chown", "chown nobody d/f"),
        ("stat", "stat d/f"),
    ] {
        assert_denied(&as_nobody(&m.mp, script), what);
    }
    // The owner gets search permission back and everything works again.
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ok(
        &as_nobody(&m.mp, "cat d/f && ln d/f e/g"),
        "after chmod 755",
    );
}

#[test]
fn fifo_and_device_opens_are_checked() {
    if !fuse_available() {
        return;
    }
    let m = shared_mount(&[]);
    // (mode, owner, group, read allowed, write allowed) for a caller nobody:nogroup.
    let cases = [
        (0o177, NOBODY, NOGROUP, false, false),
        (0o717, 0, NOGROUP, false, false),
        (0o771, 0, 0, false, false),
        (0o771, 0, NOGROUP, true, true),
        (0o604, 0, 0, true, false),
        (0o602, 0, 0, false, true),
        (0o440, NOBODY, 0, true, false),
    ];
    for (i, &(mode, uid, gid, read, write)) in cases.iter().enumerate() {
        let p = m.path(&format!("fifo{i}"));
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        chown(&p, uid, gid);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        // Non-blocking opens: a read end opens at once; a write end without a reader
        // is ENXIO, which comes after the permission check (so it means "allowed").
        let r = as_nobody(&m.mp, &format!("dd if={name} iflag=nonblock count=0"));
        let w = as_nobody(
            &m.mp,
            &format!("dd of={name} oflag=nonblock conv=notrunc count=0"),
        );
        let what = format!("fifo mode {mode:o} owner {uid}:{gid}");
        if read {
            assert_ok(&r, &format!("read {what}"));
        } else {
            assert_denied(&r, &format!("read {what}"));
        }
        if write {
            assert!(
                stderr(&w).contains("No such device or address"),
                "write {what}: {}",
                combined(&w)
            );
        } else {
            assert_denied(&w, &format!("write {what}"));
        }
        // O_RDWR never blocks on a FIFO: needs both.
        let rw = as_nobody(&m.mp, &format!("exec 3<>{name}"));
        if read && write {
            assert_ok(&rw, &format!("read-write {what}"));
        } else {
            assert_denied(&rw, &format!("read-write {what}"));
        }
    }
    // A character device: /dev/null's numbers, readable by others only when its mode
    // says so.
    let null = m.path("null");
    let c = CString::new(null.as_os_str().as_bytes()).unwrap();
    let dev = libc::makedev(1, 3);
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, dev) },
        0
    );
    assert_denied(&as_nobody(&m.mp, "cat null"), "device mode 600");
    std::fs::set_permissions(&null, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_ok(
        &as_nobody(&m.mp, "echo gone > null && cat null"),
        "device mode 666",
    );
    // access(2) answers from the same rules (test -r / -w use it through faccessat).
    std::fs::write(m.path("private"), b"x").unwrap();
    std::fs::set_permissions(m.path("private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!as_nobody(&m.mp, "test -r private").status.success());
    assert!(!as_nobody(&m.mp, "test -w private").status.success());
    std::fs::set_permissions(m.path("private"), std::fs::Permissions::from_mode(0o604)).unwrap();
    assert_ok(&as_nobody(&m.mp, "test -r private"), "access R_OK");
    assert!(!as_nobody(&m.mp, "test -w private").status.success());
}

#[test]
fn unprivileged_writes_truncates_and_fallocates_clear_setuid_and_setgid() {
    if !fuse_available() {
        return;
    }
    let m = shared_mount(&[]);
    let s = m.path("s");
    std::fs::write(&s, b"").unwrap();
    let arm = |mode: u32| {
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(self::mode(&s), mode);
    };
    // Each way a non-owner modifies the file succeeds and drops the bits, and the mode
    // the same process sees right after (through its descriptor) is already the new one.
    for (what, script, armed, expected) in [
        (
            "append",
            "exec 3>>s && echo x >&3 && stat -L -c %a /proc/self/fd/3",
            0o4777,
            0o777,
        ),
        (
            "write, setgid with group execute",
            "exec 3<>s && echo x >&3 && stat -L -c %a /proc/self/fd/3",
            0o6777,
            0o777,
        ),
        (
            "write, setgid without group execute",
            "exec 3<>s && echo x >&3 && stat -L -c %a /proc/self/fd/3",
            0o6767,
            0o2767,
        ),
        ("truncate", "truncate -s 1 s && stat -c %a s", 0o4777, 0o777),
        ("O_TRUNC", ": > s && stat -c %a s", 0o6777, 0o777),
        (
            "fallocate",
            "fallocate -l 8192 s && stat -c %a s",
            0o4777,
            0o777,
        ),
        (
            "punch hole",
            "fallocate -p -o 0 -l 4096 s && stat -c %a s",
            0o4777,
            0o777,
        ),
        (
            "zero range",
            "fallocate -z -o 0 -l 4096 s && stat -c %a s",
            0o6777,
            0o777,
        ),
    ] {
        arm(armed);
        let o = as_nobody(&m.mp, script);
        assert_ok(&o, what);
        let shown = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert_eq!(
            shown,
            format!("{expected:o}"),
            "{what}: mode seen by the writer"
        );
        assert_eq!(mode(&s), expected, "{what}: mode seen by root");
    }
    // Root (CAP_FSETID) keeps them.
    arm(0o6777);
    assert_ok(&sh(&m.mp, "echo root >> s && truncate -s 2 s"), "root");
    assert_eq!(mode(&s), 0o6777);
    // And the data written by the non-owner is there.
    arm(0o4777);
    assert_ok(&as_nobody(&m.mp, "printf abc > s"), "write");
    assert_eq!(std::fs::read(&s).unwrap(), b"abc");
    m.umount();
    m.mount(&[]);
    assert_eq!(mode(&s), 0o777, "cleared bits are committed");
}

#[test]
fn execute_needs_only_the_execute_bit_of_the_callers_class() {
    if !fuse_available() {
        return;
    }
    let m = shared_mount(&[]);
    let t = m.path("true");
    std::fs::copy("/bin/true", &t).unwrap();
    for (mode, gid, runs) in [
        (0o010, NOGROUP, true),
        (0o001, 0, true),
        (0o100, 0, false),
        (0o110, 0, false),
        (0o011, NOGROUP, true),
    ] {
        chown(&t, 0, gid);
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = as_nobody(&m.mp, "./true");
        if runs {
            assert_ok(&o, &format!("exec of mode {mode:o} group {gid}"));
        } else {
            assert_denied(&o, &format!("exec of mode {mode:o} group {gid}"));
        }
    }
}

#[test]
fn root_mounts_honour_setuid_and_devices_unless_asked_not_to() {
    if !fuse_available() {
        return;
    }
    let options = |m: &Mounted| {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == m.mp.to_str())
            .unwrap()
            .to_string();
        line.split(' ').nth(5).unwrap().to_string()
    };
    let m = shared_mount(&[]);
    let opts = options(&m);
    assert!(
        !opts.contains("nosuid") && !opts.contains("nodev"),
        "default mount options: {opts}"
    );
    // A setuid-root copy of id(1) gives nobody euid 0, and a device node opens.
    let id = m.path("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let o = as_nobody(&m.mp, "./id");
    assert_ok(&o, "setuid id");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("euid=0"),
        "{}",
        combined(&o)
    );
    let c = CString::new(m.path("null").as_os_str().as_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
        0
    );
    assert_ok(&sh(&m.mp, "echo x > null"), "device open");
    m.umount();

    m.mount(&["-o", "nosuid,nodev"]);
    let opts = options(&m);
    assert!(
        opts.contains("nosuid") && opts.contains("nodev"),
        "asked: {opts}"
    );
    let o = as_nobody(&m.mp, "./id");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("euid=0"));
    assert_denied(&sh(&m.mp, "echo x > null"), "device on nodev");
}

#[test]
fn a_listing_ends_while_each_entry_read_is_renamed_away_and_back() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let d = m.path("busy");
    std::fs::create_dir(&d).unwrap();
    const N: usize = 5000;
    for i in 0..N {
        std::fs::write(d.join(format!("f{i:05}")), b"").unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for e in std::fs::read_dir(&d).unwrap() {
        let name = e.unwrap().file_name();
        total += 1;
        assert!(
            total <= N,
            "the listing passed {N} entries: it does not end"
        );
        assert!(seen.insert(name.clone()), "{name:?} listed twice");
        let tmp = d.join("renamed-away");
        std::fs::rename(d.join(&name), &tmp).unwrap();
        std::fs::rename(&tmp, d.join(&name)).unwrap();
    }
    // Every entry stayed put until it was read, so each appears exactly once.
    assert_eq!(seen.len(), N);
    // A fresh listing sees them all again, under their names.
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), N);
}

/// `name_to_handle_at` for `path`: (mount id, handle bytes).
fn handle_of(path: &Path) -> std::io::Result<Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // struct file_handle: u32 handle_bytes, i32 handle_type, then the bytes.
    let mut buf = vec![0u64; 1 + 128 / 8];
    let fh = buf.as_mut_ptr().cast::<libc::file_handle>();
    unsafe { (*fh).handle_bytes = 128 };
    let mut mount_id = 0;
    let r = unsafe { libc::name_to_handle_at(libc::AT_FDCWD, c.as_ptr(), fh, &mut mount_id, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = 8 + unsafe { (*fh).handle_bytes } as usize;
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    Ok(bytes.to_vec())
}

/// `open_by_handle_at` through the mount and a read of the whole file.
fn read_by_handle(mp: &Path, handle: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = std::fs::File::open(mp)?;
    let mut buf = vec![0u64; handle.len().div_ceil(8)];
    unsafe {
        std::ptr::copy_nonoverlapping(handle.as_ptr(), buf.as_mut_ptr().cast::<u8>(), handle.len())
    };
    let fd = unsafe {
        libc::open_by_handle_at(
            dir.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_RDONLY,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

fn drop_kernel_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
}

#[test]
fn file_handles_open_existing_files_across_remounts_and_are_stale_once_unlinked() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    std::fs::create_dir(m.path("sub")).unwrap();
    std::fs::write(m.path("sub/kept"), b"kept contents").unwrap();
    std::fs::write(m.path("sub/gone"), b"doomed").unwrap();
    let kept = handle_of(&m.path("sub/kept")).expect("name_to_handle_at");
    let gone = handle_of(&m.path("sub/gone")).unwrap();
    let dir = handle_of(&m.path("sub")).unwrap();
    // With the inode in the kernel's cache, and without (the kernel asks us for it).
    assert_eq!(read_by_handle(&m.mp, &kept).unwrap(), b"kept contents");
    drop_kernel_caches();
    assert_eq!(read_by_handle(&m.mp, &kept).unwrap(), b"kept contents");
    m.umount();
    m.mount(&[]);
    assert_eq!(
        read_by_handle(&m.mp, &kept).expect("a handle survives a remount"),
        b"kept contents"
    );
    assert!(read_by_handle(&m.mp, &dir).is_err_and(|e| e.raw_os_error() == Some(libc::EISDIR)));
    // Unlinked, the file is kept by the trash: its handle still reads it. Once root
    // removes it from the trash for good, the handle is stale.
    std::fs::remove_file(m.path("sub/gone")).unwrap();
    drop_kernel_caches();
    assert_eq!(read_by_handle(&m.mp, &gone).unwrap(), b"doomed");
    for hour in std::fs::read_dir(m.path(".trash")).unwrap() {
        std::fs::remove_dir_all(hour.unwrap().path()).unwrap();
    }
    drop_kernel_caches();
    let e = read_by_handle(&m.mp, &gone).expect_err("a removed file's handle");
    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
}

#[test]
fn a_remount_right_after_umount8_waits_for_the_exiting_daemon() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    m.umount();
    // A daemon that takes 3 s to close after the kernel lets go of the mount.
    let log = m.log();
    let o = Command::new(kiseki_exe())
        .args(["mount", &m.meta_url, m.mp.to_str().unwrap(), "-d", "--log"])
        .arg(&log)
        .env("KISEKI_HOME", m.home())
        .env("KISEKI_FAULTS", "slow-close=3000")
        .output()
        .unwrap();
    assert_ok(&o, "mount with a slow close");
    // "kiseki: mounted at MP (pid N, log FILE)"
    let said = stderr(&o);
    let pid: i32 = said
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said:?}"));
    std::fs::write(m.path("f"), b"before").unwrap();
    let o = Command::new("umount").arg(&m.mp).output().unwrap();
    assert_ok(&o, "umount(8)");
    assert!(!is_mounted(&m.mp));
    assert_eq!(
        unsafe { libc::kill(pid, 0) },
        0,
        "the old daemon is already gone, so this no longer tests the race"
    );
    // The old daemon still holds the metadata store for 3 s: the new mount waits for it
    // instead of failing with "metadata store in use".
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"before");
}

#[test]
fn fallocate_is_refused_beyond_the_free_space_and_counts_as_used() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let avail = |m: &Mounted| {
        let c = CString::new(m.mp.as_os_str().as_bytes()).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail * st.f_frsize
    };
    let twice = 2 * avail(&m);
    let o = sh(&m.mp, &format!("fallocate -l {twice} big"));
    assert!(
        !o.status.success() && stderr(&o).contains("No space left on device"),
        "fallocate of twice the free space: {}",
        combined(&o)
    );
    assert_eq!(
        std::fs::metadata(m.path("big"))
            .map(|md| md.len())
            .unwrap_or(0),
        0
    );
    // 8 MiB: st_blocks (du) and df count it at once, and writing into it adds nothing.
    let before = avail(&m);
    assert_ok(&sh(&m.mp, "fallocate -l 8M f"), "fallocate 8M");
    let blocks = |m: &Mounted| std::fs::metadata(m.path("f")).unwrap().blocks();
    assert_eq!(blocks(&m), (8 << 20) / 512);
    assert!(
        avail(&m) <= before - (8 << 20) + (1 << 20),
        "df: {before} before, {} after",
        avail(&m)
    );
    assert_ok(
        &sh(
            &m.mp,
            "dd if=/dev/urandom of=f bs=1M count=4 conv=notrunc status=none",
        ),
        "write into the reservation",
    );
    assert_eq!(
        blocks(&m),
        (8 << 20) / 512,
        "du grew by writing into allocated space"
    );
    m.umount();
    m.fsck();
    m.mount(&[]);
    assert_eq!(blocks(&m), (8 << 20) / 512);
}

/// Builds `tests/c/ofd_locks.c` with the system compiler.
fn ofd_locks_program(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/c/ofd_locks.c");
    let exe = dir.join("ofd_locks");
    let o = Command::new("cc")
        .args(["-Wall", "-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run cc");
    assert_ok(&o, "cc ofd_locks.c");
    exe
}

#[test]
fn ofd_locks_live_as_long_as_their_open_file_description() {
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    let exe = ofd_locks_program(m.home());
    // The same program on the local disk first: the expectations are the kernel's own.
    let local = tempfile::tempdir_in(m.home()).unwrap();
    let o = Command::new(&exe).arg(local.path()).output().unwrap();
    assert_ok(&o, "ofd_locks on the local disk");
    // Then twice through the mount: a lock leaked by the first run would block the
    // second (the suite's hang, which the program's watchdog turns into a failure).
    for round in 0..2 {
        let o = Command::new(&exe).arg(&m.mp).output().unwrap();
        assert_ok(&o, &format!("ofd_locks on the mount, round {round}"));
        let out = String::from_utf8_lossy(&o.stdout);
        for case in ["plain", "clone_files", "dup_close"] {
            assert!(out.contains(&format!("case {case}: ok")), "{out}");
        }
    }
}

/// For every operation whose reply carries attributes, a file with writes not yet
/// flushed (this process holds it open) shows its written size right afterwards, by
/// stat and by a fresh open and read: no reply may hand the kernel stale attributes.
#[test]
fn replies_carry_the_size_of_unflushed_writes() {
    use std::io::{Read, Write};
    if !fuse_available() {
        return;
    }
    let m = Mounted::new(&[]);
    const LEN: usize = 1 << 20;
    let data = pattern(7, LEN);
    // (what, operation on `f` or around it, the name `f` has afterwards)
    type Step = (&'static str, Box<dyn Fn(&Path)>, &'static str);
    let steps: Vec<Step> = vec![
        (
            "link",
            Box::new(|d| std::fs::hard_link(d.join("f"), d.join("g")).unwrap()),
            "g",
        ),
        (
            "rename",
            Box::new(|d| std::fs::rename(d.join("f"), d.join("h")).unwrap()),
            "h",
        ),
        (
            "chmod",
            Box::new(|d| {
                std::fs::set_permissions(d.join("f"), std::fs::Permissions::from_mode(0o600))
                    .unwrap()
            }),
            "f",
        ),
        ("chown", Box::new(|d| chown(&d.join("f"), 1, 1)), "f"),
        (
            "utimens",
            Box::new(|d| {
                let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
                std::fs::File::options()
                    .write(true)
                    .open(d.join("f"))
                    .unwrap()
                    .set_modified(t)
                    .unwrap()
            }),
            "f",
        ),
        (
            "setxattr",
            Box::new(|d| {
                let p = CString::new(d.join("f").as_os_str().as_bytes()).unwrap();
                let r = unsafe {
                    libc::setxattr(p.as_ptr(), c"user.k".as_ptr(), b"v".as_ptr().cast(), 1, 0)
                };
                assert_eq!(r, 0);
            }),
            "f",
        ),
        (
            "create of the existing name",
            Box::new(|d| {
                std::fs::File::options()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(d.join("f"))
                    .unwrap();
            }),
            "f",
        ),
        (
            "mknod and symlink beside it",
            Box::new(|d| {
                let p = CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
                std::os::unix::fs::symlink("f", d.join("s")).unwrap();
            }),
            "s",
        ),
        (
            "readdirplus",
            Box::new(|d| {
                for e in std::fs::read_dir(d).unwrap() {
                    let _ = e.unwrap().metadata();
                }
            }),
            "f",
        ),
        (
            "lookup after the kernel forgot it",
            Box::new(|_| drop_kernel_caches()),
            "f",
        ),
    ];
    for (i, (what, step, name)) in steps.iter().enumerate() {
        let d = m.path(&format!("case{i}"));
        std::fs::create_dir(&d).unwrap();
        let mut f = std::fs::File::create(d.join("f")).unwrap();
        f.write_all(&data).unwrap();
        // The kernel knows the new size from the write; a reply carrying the
        // committed attributes (size 0) would overwrite it.
        step(&d);
        let p = d.join(name);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            LEN as u64,
            "{what}: stat right after"
        );
        let mut back = Vec::new();
        std::fs::File::open(&p)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == data,
            "{what}: a fresh open read {} bytes",
            back.len()
        );
        drop(f);
    }
}
