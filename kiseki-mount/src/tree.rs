//! `kiseki rmr`, `kiseki restore`, `kiseki clone` and `kiseki summary`: whole trees handled inside the
//! mount (one ioctl per tree rather than a FUSE request per entry).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

use crate::fuse::{
    CLONE_ARG, CLONE_PRESERVE, KISEKI_IOC_CLONE, KISEKI_IOC_RESTORE, KISEKI_IOC_RMR,
    KISEKI_IOC_SUMMARY, RESTORE_OUT,
};
use crate::mount::BoxError;
use crate::progress::human_bytes;

/// The errno of a failed ioctl, ENOTTY said as what it means here.
fn ioctl_error(path: &Path) -> BoxError {
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOTTY) {
        return format!("{}: not in a kiseki mount", path.display()).into();
    }
    format!("{}: {e}", path.display()).into()
}

/// Removes each path and everything under it, as `rm -rf` would but inside the mount.
pub fn rmr(paths: &[std::path::PathBuf]) -> Result<ExitCode, BoxError> {
    let mut failed = false;
    for path in paths {
        match rmr_one(path) {
            Ok(n) => println!("{}: {n} entries removed", path.display()),
            Err(e) => {
                eprintln!("kiseki: rmr {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn rmr_one(path: &Path) -> Result<u64, BoxError> {
    use std::os::unix::ffi::OsStrExt;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: names no entry to remove", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The entry must exist (and lstat says so without following a final symlink).
    std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut arg = [0u8; 256];
    let n = name.as_bytes();
    if n.len() > 255 {
        return Err(format!("{}: name too long", path.display()).into());
    }
    arg[..n.len()].copy_from_slice(n);
    let dir = std::fs::File::open(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let pb = crate::progress::spinner(&format!("removing {}", path.display()));
    // SAFETY: a valid descriptor and a 256-byte buffer, as the command's size says.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), KISEKI_IOC_RMR as _, arg.as_ptr()) };
    pb.finish_and_clear();
    if r < 0 {
        return Err(ioctl_error(path));
    }
    Ok(r as u64)
}

/// Puts back each trash path (an hour directory or an entry), saying what stayed and why.
pub fn restore(paths: &[std::path::PathBuf]) -> Result<ExitCode, BoxError> {
    let mut failed = false;
    let pb = crate::progress::bar(paths.len() as u64, "restoring");
    for path in paths {
        pb.set_message(path.display().to_string());
        match restore_one(path) {
            Ok((restored, left, why)) => {
                pb.suspend(|| {
                    println!("{}: {restored} entries restored", path.display());
                    if left > 0 {
                        failed = true;
                        println!("{}: {left} entries left in the trash:", path.display());
                        for line in why.lines() {
                            println!("  {line}");
                        }
                    }
                });
            }
            Err(e) => {
                pb.suspend(|| eprintln!("kiseki: restore {e}"));
                failed = true;
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn restore_one(path: &Path) -> Result<(u64, u64, String), BoxError> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = vec![0u8; RESTORE_OUT];
    // SAFETY: a valid descriptor and a buffer of the size the command says.
    if unsafe { libc::ioctl(f.as_raw_fd(), KISEKI_IOC_RESTORE as _, out.as_mut_ptr()) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            return Err(format!(
                "{}: not an hour directory of a mount's .trash or an entry in one",
                path.display()
            )
            .into());
        }
        return Err(ioctl_error(path));
    }
    let word = |at: usize| u64::from_ne_bytes(out[at..at + 8].try_into().unwrap_or([0; 8]));
    let end = out[16..]
        .iter()
        .position(|&b| b == 0)
        .map_or(out.len(), |n| 16 + n);
    Ok((
        word(0),
        word(8),
        String::from_utf8_lossy(&out[16..end]).into_owned(),
    ))
}

/// What the tree at `path` holds.
fn summary_of(path: &Path) -> Result<[u64; 4], BoxError> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = [0u64; 4];
    // SAFETY: a valid descriptor and a 32-byte buffer, as the command's size says.
    if unsafe { libc::ioctl(f.as_raw_fd(), KISEKI_IOC_SUMMARY as _, out.as_mut_ptr()) } < 0 {
        return Err(ioctl_error(path));
    }
    Ok(out)
}

/// Size, files and directories of the tree at `path`, and its `top` largest entries.
pub fn summary(path: &Path, top: usize) -> Result<ExitCode, BoxError> {
    let pb = crate::progress::spinner(&format!("summing {}", path.display()));
    let [bytes, files, dirs, others] = summary_of(path)?;
    let mut largest = Vec::new();
    if std::fs::symlink_metadata(path)?.is_dir() && top > 0 {
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if e.file_type()?.is_symlink() {
                continue;
            }
            if let Ok(s) = summary_of(&e.path()) {
                largest.push((s, e.file_name()));
            }
        }
        largest.sort_by(|a, b| b.0[0].cmp(&a.0[0]).then_with(|| a.1.cmp(&b.1)));
        largest.truncate(top);
    }
    pb.finish_and_clear();
    println!(
        "{}: {} in {files} files, {dirs} directories{}",
        path.display(),
        human_bytes(bytes),
        if others > 0 {
            format!(", {others} other entries")
        } else {
            String::new()
        }
    );
    if !largest.is_empty() {
        println!("largest entries:");
        for ([b, f, d, _], name) in largest {
            let name = name.to_string_lossy();
            if d > 0 {
                println!(
                    "  {:>10}  {name}/ ({f} files, {} directories)",
                    human_bytes(b),
                    d - 1
                );
            } else {
                println!("  {:>10}  {name}", human_bytes(b));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The metadata URL of the kiseki mount holding `path` (the mount's source in the mount
/// table; a URL with a password shows redacted there and must be given instead).
fn mount_source(path: &Path) -> Result<String, BoxError> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .dev();
    let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    for l in info.lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(2) == Some(&want.as_str())
            && fields
                .get(sep + 1)
                .is_some_and(|t| t.starts_with("fuse.kiseki"))
        {
            if let Some(src) = fields.get(sep + 2) {
                return Ok(src.replace("\\040", " "));
            }
        }
    }
    Err(format!("{}: not in a kiseki mount", path.display()).into())
}

/// A file's inode, attributes and where its bytes are (slices, objects); a directory's
/// totals.
pub fn info(path: &Path, meta_url: Option<String>) -> Result<ExitCode, BoxError> {
    use std::os::unix::fs::MetadataExt;
    let st = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let url = match meta_url {
        Some(u) => u,
        None => mount_source(path)?,
    };
    let fi = kiseki_core::admin::file_info(&url, kiseki_core::meta::Ino(st.ino()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let a = &fi.attr;
    use kiseki_core::meta::FileKind;
    let kind = match a.kind {
        FileKind::File => "regular file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symbolic link",
        _ => "special file",
    };
    println!(
        "{}: inode {}, {kind}, {}, mode {:04o}, uid {}, gid {}, {} links",
        path.display(),
        st.ino(),
        human_bytes(a.length),
        a.mode,
        a.uid,
        a.gid,
        a.nlink
    );
    if st.is_dir() {
        let [bytes, files, dirs, others] = summary_of(path)?;
        println!(
            "  tree: {} in {files} files, {} directories, {others} other entries",
            human_bytes(bytes),
            dirs - 1
        );
    }
    for (index, pieces) in &fi.chunks {
        println!("  chunk {index}:");
        for p in pieces {
            let at = format!("[{}, {})", p.file_offset, p.file_offset + p.len);
            if p.inline {
                println!("    {at} inline in the metadata ({} B)", p.slice_size);
            } else {
                println!(
                    "    {at} slice {} ({}) at {}: {}",
                    p.slice,
                    human_bytes(u64::from(p.slice_size)),
                    p.slice_offset,
                    p.keys.join(" ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Clones `src` as `dst` by metadata only, inside the mount holding both.
pub fn clone(src: &Path, dst: &Path, preserve: bool) -> Result<ExitCode, BoxError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let split = |p: &Path| -> Result<(std::path::PathBuf, Vec<u8>), BoxError> {
        let name = p
            .file_name()
            .ok_or_else(|| format!("{}: names no entry", p.display()))?;
        if name.len() > 255 {
            return Err(format!("{}: name too long", p.display()).into());
        }
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => ".".into(),
        };
        Ok((parent, name.as_bytes().to_vec()))
    };
    std::fs::symlink_metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let (sdir, sname) = split(src)?;
    let (ddir, dname) = split(dst)?;
    let dir = std::fs::File::open(&sdir).map_err(|e| format!("{}: {e}", sdir.display()))?;
    let dmeta = std::fs::metadata(&ddir).map_err(|e| format!("{}: {e}", ddir.display()))?;
    if dir.metadata()?.dev() != dmeta.dev() {
        return Err(format!(
            "{} and {} are not in the same kiseki mount",
            src.display(),
            dst.display()
        )
        .into());
    }
    let mut arg = [0u8; CLONE_ARG];
    arg[..sname.len()].copy_from_slice(&sname);
    arg[256..264].copy_from_slice(&dmeta.ino().to_ne_bytes());
    let flags = if preserve { CLONE_PRESERVE } else { 0 };
    arg[264..272].copy_from_slice(&flags.to_ne_bytes());
    arg[272..272 + dname.len()].copy_from_slice(&dname);
    let pb = crate::progress::spinner(&format!("cloning {}", src.display()));
    // SAFETY: a valid descriptor and a buffer of the size the command says.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), KISEKI_IOC_CLONE as _, arg.as_mut_ptr()) };
    pb.finish_and_clear();
    if r < 0 {
        let e = ioctl_error(src);
        return Err(format!("{e} (cloning to {})", dst.display()).into());
    }
    let word = |at: usize| u64::from_ne_bytes(arg[at..at + 8].try_into().unwrap_or([0; 8]));
    println!(
        "{} -> {}: {} entries, {} shared, nothing copied",
        src.display(),
        dst.display(),
        word(0),
        human_bytes(word(8))
    );
    Ok(ExitCode::SUCCESS)
}
