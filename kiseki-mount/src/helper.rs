//! `mount.kiseki` / `mount.fuse.kiseki`: the mount(8) helper form.
//!
//! mount(8) runs `/sbin/mount.kiseki SRC DIR [-sfnv] [-o opts]` for an fstab line of
//! type `kiseki` (and `mount.fuse.kiseki` for `fuse.kiseki`). Options that only mean
//! something to mount(8) or systemd are dropped, `ro` makes the mount read-only, and
//! the rest are mount options as `kiseki mount -o` takes them. The helper always
//! daemonizes and returns once the mount is up. `SRC` is a meta URL, or `default` for
//! the embedded default volume.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::mount::{mount, BoxError, MountPlan};

/// True when this binary was started under a helper name.
pub fn invoked_as_helper(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "mount.kiseki" || name == "mount.fuse.kiseki"
}

/// Options mount(8), systemd or fstab conventions own; they never reach the mount.
fn ignored(opt: &str) -> bool {
    matches!(
        opt,
        "_netdev" | "nofail" | "auto" | "noauto" | "user" | "users" | "nouser" | "rw" | "defaults"
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
}

#[derive(Debug, PartialEq)]
pub struct HelperArgs {
    pub source: String,
    pub dir: PathBuf,
    pub options: Vec<String>,
    /// `-o remount,...`: change the read-only state of an existing mount.
    pub remount: Option<bool>,
    pub fake: bool,
    pub sloppy: bool,
    pub verbose: bool,
}

pub fn parse(args: &[OsString]) -> Result<HelperArgs, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let (mut fake, mut sloppy, mut verbose) = (false, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a
            .to_str()
            .ok_or_else(|| format!("argument {a:?} is not UTF-8"))?;
        if s == "-o" {
            let v = it.next().ok_or("-o needs a value")?;
            let v = v.to_str().ok_or("mount options are not UTF-8")?;
            options.extend(v.split(',').filter(|o| !o.is_empty()).map(String::from));
        } else if let Some(v) = s.strip_prefix("-o") {
            options.extend(v.split(',').filter(|o| !o.is_empty()).map(String::from));
        } else if s.starts_with('-') && s.len() > 1 {
            for c in s[1..].chars() {
                match c {
                    'f' => fake = true,
                    's' => sloppy = true,
                    'v' => verbose = true,
                    'n' => {}
                    other => return Err(format!("unknown flag -{other}")),
                }
            }
        } else {
            positional.push(s.to_string());
        }
    }
    let [source, dir] = <[String; 2]>::try_from(positional)
        .map_err(|p| format!("expected SOURCE and DIRECTORY, got {} arguments", p.len()))?;
    let remount = options.iter().any(|o| o == "remount").then(|| {
        options
            .iter()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro")
    });
    options.retain(|o| o != "remount");
    Ok(HelperArgs {
        source,
        dir: dir.into(),
        remount,
        options: options.into_iter().filter(|o| !ignored(o)).collect(),
        fake,
        sloppy,
        verbose,
    })
}

pub fn run(args: &[OsString]) -> Result<ExitCode, BoxError> {
    let h = parse(args)?;
    if let Some(read_only) = h.remount {
        if h.fake {
            return Ok(ExitCode::SUCCESS);
        }
        remount(&h.dir, read_only)?;
        return Ok(ExitCode::SUCCESS);
    }
    let meta_url = (h.source != "default").then(|| h.source.clone());
    let mut plan = MountPlan::new(meta_url, h.dir.clone());
    plan.background = true;
    plan.announce = false;
    for o in &h.options {
        if let Err(e) = plan.apply_option(o) {
            if h.sloppy {
                tracing::warn!("ignoring mount option {o:?}: {e}");
            } else {
                return Err(format!("mount option {o:?}: {e}").into());
            }
        }
    }
    if h.verbose {
        eprintln!(
            "kiseki: mounting {} at {} with {:?}",
            h.source,
            h.dir.display(),
            h.options
        );
    }
    if h.fake {
        return Ok(ExitCode::SUCCESS);
    }
    mount(plan)
}

/// `mount -o remount,ro|rw DIR`: flips the mount's read-only state in the kernel,
/// keeping its other flags (a remount resets the flags it is not given).
fn remount(dir: &std::path::Path, read_only: bool) -> Result<(), BoxError> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    // SAFETY: statvfs fills the zeroed struct for a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("{}: {}", dir.display(), std::io::Error::last_os_error()).into());
    }
    let keep = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
    ];
    let mut flags = libc::MS_REMOUNT;
    for (st_flag, ms_flag) in keep {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    // A file closed a moment ago may still count as open for writing until the
    // kernel finishes releasing it, which makes a read-only remount EBUSY briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        // SAFETY: valid NUL-terminated strings; no data for a remount.
        let r = unsafe {
            libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() > deadline {
            return Err(format!("remounting {}: {e}", dir.display()).into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn fstab_form_drops_mount8_options() {
        let h = parse(&args(&[
            "rocksdb:///var/lib/kiseki/meta",
            "/mnt/k",
            "-o",
            "rw,_netdev,allow_other,x-systemd.automount,nofail,cache-size=1G",
        ]))
        .unwrap();
        assert_eq!(h.source, "rocksdb:///var/lib/kiseki/meta");
        assert_eq!(h.dir, PathBuf::from("/mnt/k"));
        assert_eq!(h.options, vec!["allow_other", "cache-size=1G"]);
        assert!(!h.fake);
    }

    #[test]
    fn flags_and_errors() {
        let h = parse(&args(&["-snv", "src", "dir", "-oro"])).unwrap();
        assert!(h.sloppy && h.verbose && !h.fake);
        assert_eq!(h.options, vec!["ro"]);
        assert!(parse(&args(&["src"])).is_err());
        assert!(parse(&args(&["a", "b", "c"])).is_err());
        assert!(parse(&args(&["a", "b", "-x"])).is_err());
        assert!(parse(&args(&["a", "b", "-o"])).is_err());
        let r = parse(&args(&["a", "b", "-o", "remount,ro"])).unwrap();
        assert_eq!(r.remount, Some(true));
        let r = parse(&args(&["a", "b", "-o", "rw,remount"])).unwrap();
        assert_eq!(r.remount, Some(false));
        assert_eq!(h.remount, None);
    }

    #[test]
    fn options_reach_the_plan() {
        let mut plan = MountPlan::new(None, "/mnt".into());
        plan.apply_option("ro").unwrap();
        plan.apply_option("allow_other").unwrap();
        plan.apply_option("attr_cache=0").unwrap();
        plan.apply_option("buffer-size=64M").unwrap();
        plan.apply_option("suid").unwrap();
        plan.apply_option("nosuid").unwrap();
        assert!(plan.client.read_only);
        assert_eq!(plan.acl, fuser::SessionACL::All);
        assert_eq!(plan.ttl.attr, std::time::Duration::ZERO);
        assert_eq!(plan.client.data.buffer_memory, 64 << 20);
        assert_eq!(plan.fuse_options, vec![fuser::MountOption::NoSuid]);
        assert!(plan.apply_option("bogus").is_err());
        assert!(plan.apply_option("attr-cache=-1").is_err());
        assert!(plan.apply_option("cache-size=lots").is_err());
    }
}
