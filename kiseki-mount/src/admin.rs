//! The maintenance commands: `umount`, `gc` and `compact`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::fuse::KISEKI_IOC_COMPACT;
use crate::mount::{is_kiseki_mount, read_pid, BoxError};

/// How long `umount` waits for the mount process to flush and exit.
const EXIT_WAIT: Duration = Duration::from_secs(120);

/// Unmounts, then waits for the mount process to exit, so the volume can be mounted
/// again (RocksDB has one opener) as soon as this returns. `force` detaches lazily:
/// the mount disappears now and the process exits once the last open file closes.
pub fn umount(mountpoint: &Path, force: bool) -> Result<ExitCode, BoxError> {
    let mp =
        std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    if !is_kiseki_mount(&mp) {
        return Err(format!("{} is not a kiseki mount", mp.display()).into());
    }
    let pid = read_pid(&mp);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())?;
        let flags = if force { libc::MNT_DETACH } else { 0 };
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), flags) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                return Err(format!(
                    "{} is busy (files or directories in use); --force detaches it lazily",
                    mp.display()
                )
                .into());
            }
            return Err(format!("unmounting {}: {e}", mp.display()).into());
        }
    } else {
        let mut cmd = std::process::Command::new("fusermount3");
        cmd.arg("-u");
        if force {
            cmd.arg("-z");
        }
        let status = cmd
            .arg(&mp)
            .status()
            .map_err(|e| format!("running fusermount3: {e}"))?;
        if !status.success() {
            return Err(format!("fusermount3 -u {} failed ({status})", mp.display()).into());
        }
    }
    if let Some(pid) = pid {
        if !force && !wait_exit(pid, EXIT_WAIT) {
            return Err(format!(
                "unmounted, but the mount process {pid} has not exited after {}s",
                EXIT_WAIT.as_secs()
            )
            .into());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn wait_exit(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Reports (and with `delete` removes) what storage holds that nothing needs: blocks
/// no slice references, and slices and files queued for deletion.
pub fn gc(meta_url: &str, delete: bool) -> Result<ExitCode, BoxError> {
    let what = if delete {
        "deleting queued slices and leaked blocks"
    } else {
        "listing block objects"
    };
    let pb = crate::progress::spinner(what);
    let r = kiseki_core::admin::gc(meta_url, delete)?;
    pb.finish_and_clear();
    println!(
        "{} block objects, {} leaked, {} slices queued for deletion",
        r.blocks,
        r.leaked.len(),
        r.queued_slices
    );
    if delete {
        println!(
            "deleted {} leaked blocks and the blocks of {} deleted slices",
            r.deleted_blocks, r.deleted_slices
        );
    } else {
        for k in &r.leaked {
            println!("leaked: {k}");
        }
        if !r.leaked.is_empty() || r.queued_slices > 0 {
            println!("run with --delete to remove them");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Compacts every regular file under `path` (in a mounted volume) through the mount.
pub fn compact(path: &Path) -> Result<ExitCode, BoxError> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    let (mut chunks, mut failed) = (0u64, 0usize);
    let pb = crate::progress::bar(files.len() as u64, "compacting");
    for f in &files {
        match compact_one(f) {
            Ok(n) => chunks += n,
            Err(e) => {
                pb.suspend(|| eprintln!("kiseki: compact {}: {e}", f.display()));
                failed += 1;
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!(
        "compacted {chunks} chunks in {} files",
        files.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Regular files at or under `path`, in name order (symbolic links are not followed).
pub fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), BoxError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
    } else if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            collect_files(&e.path(), out)?;
        }
    }
    Ok(())
}

fn compact_one(path: &Path) -> Result<u64, BoxError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    // SAFETY: a valid descriptor and an ioctl without argument.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), KISEKI_IOC_COMPACT as _) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTTY) {
            return Err("not in a kiseki mount".into());
        }
        return Err(e.into());
    }
    Ok(r as u64)
}
