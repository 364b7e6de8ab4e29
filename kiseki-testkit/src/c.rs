//! Building and running the C programs of `tests/c` and `examples/c` from Rust tests
//! (`kiseki-ffi/tests/c_api.rs`, `kiseki-mount/tests/c_fuse.rs`).
//!
//! Programs are compiled with the system C compiler (`$CC`, default `cc`) against the
//! committed `include/kiseki.h` and the libkiseki this `cargo test` built, found next
//! to the test executable: `$CARGO_TARGET_DIR/release/deps/<test>-<hash>` runs from
//! `deps/`, and cargo writes the library to `deps/` and copies it to `release/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root (this crate sits one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives inside the repository")
        .to_path_buf()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut out = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.file_type().ok()?.is_dir() {
            newest(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        out = out.max(t);
    }
    out
}

/// The directory holding the freshly built `libkiseki.so` and `libkiseki.a`: the
/// profile directory (`$CARGO_TARGET_DIR/release`) above the test executable's `deps/`.
///
/// `cargo test` may build the crate only as the rlib the tests link; the C libraries
/// come from `cargo build` (`scripts/test.sh` runs it first). So that a stale library
/// never passes for the current code, it must be newer than every source file of
/// kiseki-ffi and kiseki-core.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable is in deps/");
    let release = deps.parent().expect("deps/ is in the profile directory");
    let root = repo_root();
    let source = ["kiseki-ffi/src", "kiseki-core/src"]
        .iter()
        .filter_map(|d| newest(&root.join(d)))
        .max();
    let build = "build it with `cargo build --release -p kiseki-ffi` \
                 (scripts/test.sh does before testing)";
    for lib in ["libkiseki.so", "libkiseki.a"] {
        let path = release.join(lib);
        match std::fs::metadata(&path).and_then(|m| m.modified()).ok() {
            None => panic!("{lib} is not in {}: {build}", release.display()),
            Some(l) if source.is_some_and(|s| l < s) => panic!(
                "{} is older than the source under test: {build}",
                path.display()
            ),
            _ => {}
        }
    }
    release.to_path_buf()
}

/// The C compiler, or a panic saying how to get one.
pub fn cc() -> String {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    match Command::new(&cc).arg("--version").output() {
        Ok(o) if o.status.success() => cc,
        Ok(o) => panic!(
            "the C compiler `{cc} --version` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "no C compiler: running `{cc}` failed ({e}). The C API tests compile C programs: \
             install one (`apt-get install build-essential`; scripts/test.sh does) or set $CC"
        ),
    }
}

/// How a program is linked with libkiseki.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `-lkiseki` against `libkiseki.so`, with an rpath to its directory.
    Shared,
    /// `libkiseki.a` and the system libraries it needs.
    Static,
}

/// The system libraries `libkiseki.a` needs: OpenSSL (object storage over HTTPS),
/// the C++ runtime (RocksDB) and what Rust's standard library uses.
pub const STATIC_LIBS: &[&str] = &["-lssl", "-lcrypto", "-lstdc++", "-lpthread", "-ldl", "-lm"];

/// Warnings are errors: the header and the programs must compile cleanly as C11.
pub const STRICT: &[&str] = &["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror"];

/// AddressSanitizer flags.
pub const ASAN: &[&str] = &["-O1", "-fsanitize=address", "-fno-omit-frame-pointer"];

/// Compiles `src` (relative to the repository root) into `out` with `flags`, linked
/// with libkiseki as `link` says. Panics with the compiler's output on failure.
pub fn compile(src: &str, out: &Path, flags: &[&str], link: Link) -> PathBuf {
    let root = repo_root();
    let lib = lib_dir();
    let mut cmd = Command::new(cc());
    cmd.args(STRICT)
        .arg("-g")
        .args(flags)
        .arg("-I")
        .arg(root.join("include"))
        .arg("-I")
        .arg(root.join("tests/c"))
        .arg("-o")
        .arg(out)
        .arg(root.join(src));
    match link {
        Link::Shared => {
            cmd.arg("-L")
                .arg(&lib)
                .arg("-lkiseki")
                .arg("-lpthread")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libkiseki.a")).args(STATIC_LIBS);
        }
    }
    let o = run(&mut cmd, Duration::from_secs(300));
    assert!(
        o.status.success(),
        "compiling {src} failed:\n{:?}\n{}",
        cmd,
        combined(&o)
    );
    out.to_path_buf()
}

/// Runs `cmd` to completion, killing it after `limit` (a hung C test must not hang
/// `cargo test`), and returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the child") {
            break s;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("waiting for the killed child");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    assert!(
        !timed_out,
        "{what} timed out after {limit:?}\n{}",
        combined(&o)
    );
    o
}

/// Runs `cmd` and asserts it exited 0, showing its output otherwise.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Output {
    let o = run(cmd, limit);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}",
        o.status,
        combined(&o)
    );
    o
}

/// `tests/c/driver.c`: one libkiseki connection kept open across a test, asked to
/// write and read files one line at a time, each command in a thread of its own (see
/// that file for the protocol).
pub struct Driver {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    next_id: u64,
    /// Answers read while waiting for another command's.
    answers: std::collections::HashMap<u64, String>,
}

impl Driver {
    /// Connects the driver `exe` (built by [`compile`]) to `meta_url` with `options`.
    pub fn start(exe: &Path, meta_url: &str, options: &str) -> Driver {
        let mut child = Command::new(exe)
            .arg(meta_url)
            .arg(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut d = Driver {
            child,
            stdin,
            stdout,
            next_id: 1,
            answers: Default::default(),
        };
        let ready = d.line();
        assert_eq!(ready, "ready", "the driver did not connect");
        d
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read from the driver");
        assert!(!l.is_empty(), "the driver exited");
        l.trim_end().to_string()
    }

    /// Starts one command (`write PATH LEN SEED`, `read PATH LEN SEED`) in the
    /// background; returns its id for [`Driver::wait`].
    pub fn send(&mut self, command: &str) -> u64 {
        use std::io::Write;
        let id = self.next_id;
        self.next_id += 1;
        writeln!(self.stdin, "{id} {command}").expect("write to the driver");
        id
    }

    /// The answer of command `id`: `ok`, `err ERRNO ...` or `mismatch OFFSET`.
    pub fn wait(&mut self, id: u64) -> String {
        loop {
            if let Some(a) = self.answers.remove(&id) {
                return a;
            }
            let line = self.line();
            let (n, rest) = line.split_once(' ').expect("ID ANSWER");
            self.answers
                .insert(n.parse().expect("a numeric id"), rest.to_string());
        }
    }

    /// Runs one command to completion; returns its answer.
    pub fn cmd(&mut self, command: &str) -> String {
        let id = self.send(command);
        self.wait(id)
    }

    /// Disconnects; panics unless the driver exits 0.
    pub fn quit(mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let status = self.child.wait().expect("wait for the driver");
        assert!(status.success(), "the driver exited with {status}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use crate::{combined, pattern};
