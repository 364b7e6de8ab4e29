//! The embedded default volume: what `kiseki mount MOUNTPOINT`, `kiseki.connect()` and
//! `kiseki_connect(NULL, ...)` use when no meta URL is given.
//!
//! Location: `$KISEKI_HOME` if set, else `/var/lib/kiseki` for root and
//! `${XDG_DATA_HOME:-~/.local/share}/kiseki` for other users. Metadata lives in
//! `HOME/meta` (RocksDB) and data in `HOME/data` (an `fs` bucket).

use std::path::PathBuf;

use crate::meta::{Error, FormatOptions, Meta, Result, VolumeFormat};

pub const DEFAULT_VOLUME_NAME: &str = "default";

#[derive(Debug, Clone)]
pub struct DefaultVolume {
    pub home: PathBuf,
    pub meta_url: String,
    pub bucket: PathBuf,
}

pub fn default_volume() -> DefaultVolume {
    let home = if let Some(h) = std::env::var_os("KISEKI_HOME").filter(|h| !h.is_empty()) {
        PathBuf::from(h)
    } else if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/kiseki")
    } else if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
        PathBuf::from(x).join("kiseki")
    } else {
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        user_home.join(".local/share/kiseki")
    };
    let home = std::path::absolute(&home).unwrap_or(home);
    DefaultVolume {
        meta_url: format!("rocksdb://{}", home.join("meta").display()),
        bucket: home.join("data"),
        home,
    }
}

/// Formats the default volume unless it exists. Returns its location and, when it was
/// created now, its format.
pub fn ensure_default_volume() -> Result<(DefaultVolume, Option<VolumeFormat>)> {
    let v = default_volume();
    std::fs::create_dir_all(&v.bucket)
        .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", v.bucket.display())))?;
    let mut opts = FormatOptions::new(DEFAULT_VOLUME_NAME);
    opts.bucket = v.bucket.display().to_string();
    // SAFETY: getuid/getgid cannot fail.
    (opts.root_uid, opts.root_gid) = unsafe { (libc::getuid(), libc::getgid()) };
    match Meta::format(&v.meta_url, &opts) {
        Ok(f) => Ok((v, Some(f))),
        Err(Error::Exists(_)) => Ok((v, None)),
        Err(e) => Err(e),
    }
}
