//! Real FUSE mounts of the built `kiseki` binary, and the tools the mount tests run.
//!
//! The tests need root and `/dev/fuse`. Without them they skip, unless
//! `KISEKI_REQUIRE_FUSE=1` (set by the test command) turns a missing prerequisite into
//! a failure, so CI can never pass by skipping.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use crate::{combined, pattern, stderr};

/// The `kiseki` binary cargo built for the running tests: `target/<profile>/kiseki`,
/// beside the `deps/` directory the test executable runs from (`$KISEKI_EXE` wins).
pub fn kiseki_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("KISEKI_EXE") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test executable");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    profile.join("kiseki")
}

/// Whether mount tests can run here; panics when they must and cannot.
pub fn fuse_available() -> bool {
    let ok = unsafe { libc::geteuid() } == 0 && Path::new("/dev/fuse").exists();
    if !ok && std::env::var_os("KISEKI_REQUIRE_FUSE").is_some() {
        panic!("KISEKI_REQUIRE_FUSE is set but this is not root with /dev/fuse");
    }
    if !ok {
        eprintln!("skipping: FUSE mount tests need root and /dev/fuse");
    }
    ok
}

/// The path of an external test tool (pjdfstest, fsx, stress-ng), from
/// `$KISEKI_TOOLS_BIN` or `PATH`; `None` (skip) unless it is required.
pub fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("KISEKI_TOOLS_BIN")
        .map(|d| vec![PathBuf::from(d)])
        .unwrap_or_default();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("KISEKI_REQUIRE_FUSE").is_some() {
            panic!("{name} is required (KISEKI_REQUIRE_FUSE) but not installed");
        }
        eprintln!("skipping: {name} is not installed");
    }
    found
}

pub fn kiseki(args: &[&str], home: &Path) -> Output {
    Command::new(kiseki_exe())
        .args(args)
        .env("KISEKI_HOME", home)
        .output()
        .expect("run kiseki")
}

/// A volume in a temporary directory, mounted in the background; unmounted (and its
/// process waited for) on drop.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub mp: PathBuf,
    pub meta_url: String,
}

impl Mounted {
    /// Formats a volume (`fs` storage in the temp dir) and mounts it with `extra` args.
    pub fn new(extra: &[&str]) -> Mounted {
        Mounted::on_store(&[], extra)
    }

    /// Formats a volume with `storage` as its `kiseki format` storage arguments and its
    /// metadata in `rocksdb://TEMP/meta`; see [`Mounted::with`].
    pub fn on_store(storage: &[&str], extra: &[&str]) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let meta_url = format!("rocksdb://{}/meta", dir.path().display());
        Mounted::with(dir, meta_url, storage, extra)
    }

    /// Formats a volume in `dir` at `meta_url` with `storage` as its `kiseki format`
    /// storage arguments (`--storage s3 --bucket URL ...`; none: an `fs` bucket in
    /// `dir`) and 1 MiB blocks, and mounts it on `dir/mnt` with `extra` args.
    pub fn with(
        dir: tempfile::TempDir,
        meta_url: String,
        storage: &[&str],
        extra: &[&str],
    ) -> Mounted {
        let bucket = dir.path().join("data");
        let mut args = vec!["format", &meta_url, "test", "--block-size", "1M"];
        if storage.is_empty() {
            args.extend(["--bucket", bucket.to_str().unwrap()]);
        } else {
            args.extend_from_slice(storage);
        }
        let o = kiseki(&args, dir.path());
        assert!(o.status.success(), "format: {}", stderr(&o));
        let mp = dir.path().join("mnt");
        std::fs::create_dir(&mp).unwrap();
        let m = Mounted { dir, mp, meta_url };
        m.mount(extra);
        m
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("kiseki.log")
    }

    pub fn mount(&self, extra: &[&str]) {
        let log = self.log();
        let mut args = vec![
            "mount",
            &self.meta_url,
            self.mp.to_str().unwrap(),
            "-d",
            "--log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = kiseki(&args, self.home());
        assert!(o.status.success(), "mount: {}", stderr(&o));
    }

    pub fn umount(&self) {
        let o = kiseki(&["umount", self.mp.to_str().unwrap()], self.home());
        assert!(o.status.success(), "umount: {}", stderr(&o));
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    /// `kiseki fsck` of the (unmounted) volume; returns its output, asserting success.
    pub fn fsck(&self) -> String {
        self.fsck_with(&[])
    }

    /// `kiseki fsck` with `extra` arguments (`--objects`: read every block).
    pub fn fsck_with(&self, extra: &[&str]) -> String {
        let mut args = vec!["fsck", &self.meta_url];
        args.extend_from_slice(extra);
        let o = kiseki(&args, self.home());
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "fsck failed:\n{out}{}", stderr(&o));
        out
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.mp) {
            let o = kiseki(&["umount", self.mp.to_str().unwrap()], self.home());
            if !o.status.success() {
                let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
            }
        }
    }
}

/// The pid of the `kiseki` process serving `mp`.
pub fn mount_pid(mp: &Path) -> Option<i32> {
    let want = mp.to_str()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_kiseki = args.first()?.ends_with(b"kiseki");
        (is_kiseki && args.contains(&want.as_bytes())).then_some(pid)
    })
}

pub fn is_mounted(mp: &Path) -> bool {
    let mp = std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(mp.to_str().unwrap_or_default()))
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A tmpfs of a fixed size mounted on a temporary directory: a small disk a test can
/// fill. Unmounted on drop.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, such as `16m`). Needs root.
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(o.status.success(), "mount tmpfs: {}", stderr(&o));
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file `name` until at most `leave` bytes stay free.
    pub fn fill(&self, name: &str, leave: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join(name)).unwrap();
        let chunk = vec![0x5au8; 64 << 10];
        while self.free() > leave {
            let n = (self.free() - leave).min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }

    /// Bytes free on the disk.
    pub fn free(&self) -> u64 {
        let c = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path; `st` is written by statvfs before it is read.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
            st.f_bavail * st.f_frsize
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
