//! The C API from C: compiles the programs of `tests/c` and `examples/c` with the
//! system C compiler against `include/kiseki.h` and the libkiseki of this build, runs
//! each on a fresh temporary directory and expects exit 0. On failure the program's
//! output (one line per failed check, with file:line, -errno and kiseki_last_error)
//! is in the panic message.
//!
//! Needs `cc` (build-essential); the library is built by cargo for this test (it is
//! this package's library, with crate types cdylib and staticlib).

use std::ffi::CString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiseki_testkit::c::{compile, pattern, run, run_ok, Link, ASAN};

const LIMIT: Duration = Duration::from_secs(600);

/// Compiles `src` with `flags` and runs it with a fresh temporary directory as its one
/// argument, expecting success.
fn compile_and_run(src: &str, flags: &[&str], link: Link) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("prog");
    compile(src, &exe, flags, link);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let o = run_ok(Command::new(&exe).arg(&work), LIMIT);
    // The programs end with "NAME: N passed, 0 failed"; show it in the test's output.
    print!("{}", String::from_utf8_lossy(&o.stdout));
}

/// Formats a volume in `dir` through the library linked into this test (the rlib of
/// the same code) and returns its meta URL.
fn format_volume(dir: &Path, name: &str) -> String {
    format_volume_at(&format!("rocksdb://{}/meta", dir.display()), dir, name)
}

/// Formats a volume at `url` with its bucket in `dir`.
fn format_volume_at(url: &str, dir: &Path, name: &str) -> String {
    let bucket = dir.join("data");
    std::fs::create_dir_all(&bucket).unwrap();
    let url = url.to_string();
    let c_url = CString::new(url.clone()).unwrap();
    let c_name = CString::new(name).unwrap();
    let c_opts = CString::new(format!("storage=fs,bucket={}", bucket.display())).unwrap();
    // SAFETY: valid NUL-terminated strings; the library keeps none of them.
    let rc = unsafe { kiseki::kiseki_format(c_url.as_ptr(), c_name.as_ptr(), c_opts.as_ptr()) };
    assert_eq!(rc, 0, "kiseki_format({url}) = {rc}");
    url
}

#[test]
fn test_api() {
    compile_and_run("tests/c/test_api.c", &["-O2"], Link::Shared);
}

// LeakSanitizer stays on: the library's process-wide state (the runtime, the
// connection registry) is still reachable at exit, so it is not reported as leaked,
// and a connection or buffer the library forgot to free would be.
#[test]
fn test_api_asan() {
    compile_and_run("tests/c/test_api.c", ASAN, Link::Shared);
}

#[test]
fn test_threads() {
    compile_and_run("tests/c/test_threads.c", &["-O2"], Link::Shared);
}

/// The threaded program on a volume whose metadata lives in a 3-member etcd cluster,
/// then two kcp processes copying into that volume at the same time.
#[test]
fn test_threads_and_kcp_on_etcd() {
    if !kiseki_testkit::etcd::etcd_available() {
        return;
    }
    let cluster = kiseki_testkit::etcd::EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let url = format_volume_at(&cluster.url("capi"), dir.path(), "capi");
    let exe = dir.path().join("threads");
    compile("tests/c/test_threads.c", &exe, &["-O2"], Link::Shared);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let o = run_ok(Command::new(&exe).arg(&work).arg(&url), LIMIT);
    print!("{}", String::from_utf8_lossy(&o.stdout));

    let kcp = build_kcp(dir.path(), Link::Shared);
    let copiers: Vec<_> = (0..2u64)
        .map(|i| {
            let src = dir.path().join(format!("random{i}.bin"));
            let len = (3 << 20) + 77 * i as usize;
            std::fs::write(&src, pattern(0xE7CD + i, len)).unwrap();
            let (kcp, url) = (kcp.clone(), url.clone());
            std::thread::spawn(move || {
                let o = run_ok(
                    Command::new(kcp).args([&url, src.to_str().unwrap(), &format!("copy{i}.bin")]),
                    LIMIT,
                );
                let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
                assert!(
                    stdout.contains(&format!("copied {len} bytes")) && stdout.contains("verified"),
                    "{stdout}"
                );
            })
        })
        .collect();
    for c in copiers {
        c.join().unwrap();
    }
}

#[test]
fn test_threads_asan() {
    compile_and_run("tests/c/test_threads.c", ASAN, Link::Shared);
}

/// Compiles `examples/c/kcp.c` linked as `link` into `dir`.
fn build_kcp(dir: &Path, link: Link) -> std::path::PathBuf {
    compile("examples/c/kcp.c", &dir.join("kcp"), &["-O2"], link)
}

/// Runs kcp on a ~10 MiB pseudo-random file into a new volume in `dir`, checks its
/// one-line summary, and returns the volume's meta URL and the local file.
fn kcp_copies(kcp: &Path, dir: &Path) -> (String, std::path::PathBuf) {
    let url = format_volume(&dir.join("vol"), "kcp");
    let src = dir.join("random.bin");
    let len = (10 << 20) + 4321;
    std::fs::write(&src, pattern(0xC0FFEE, len)).unwrap();
    let o = run_ok(
        Command::new(kcp).args([&url, src.to_str().unwrap(), "random.bin"]),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("copied {len} bytes")) && stdout.contains("verified"),
        "unexpected kcp output: {stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    print!("{stdout}");
    (url, src)
}

#[test]
fn kcp_example() {
    let dir = tempfile::tempdir().unwrap();
    let kcp = build_kcp(dir.path(), Link::Shared);
    let (url, src) = kcp_copies(&kcp, dir.path());

    // Copying over the existing file replaces it.
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"small\n").unwrap();
    let o = run_ok(
        Command::new(&kcp).args([&url, small.to_str().unwrap(), "random.bin"]),
        LIMIT,
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("copied 6 bytes"));

    // Failures exit non-zero with the library's explanation.
    let fails = |args: &[&str], want: &str| {
        let o = run(Command::new(&kcp).args(args), LIMIT);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "kcp {args:?} should fail");
        assert!(
            err.contains(want),
            "kcp {args:?}: stderr should name {want:?}: {err}"
        );
    };
    let src = src.to_str().unwrap();
    fails(&[&url, src, "no/such/dir/file"], "kiseki_open");
    let missing = format!("rocksdb://{}/missing", dir.path().display());
    fails(&[&missing, src, "x"], "kiseki_connect");
    fails(
        &[&url, "/nonexistent/local/file", "x"],
        "/nonexistent/local/file",
    );
    fails(&[&url, src], "usage");
}

/// libkiseki.a links into a working program with the system libraries it lists.
#[test]
fn static_library() {
    let dir = tempfile::tempdir().unwrap();
    let kcp = build_kcp(dir.path(), Link::Static);
    // Nothing is loaded from libkiseki.so.
    let o = run_ok(Command::new("readelf").arg("-d").arg(&kcp), LIMIT);
    let dynamic = String::from_utf8_lossy(&o.stdout);
    assert!(
        !dynamic.contains("libkiseki"),
        "libkiseki is linked statically: {dynamic}"
    );
    kcp_copies(&kcp, dir.path());
}
