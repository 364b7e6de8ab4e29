//! Creating a volume (`kiseki format`) and reading its format record on open.

use super::counters;
use super::keys;
use super::kv::{KvEngine, TxnMode};
use super::records::{
    self, VolumeFormat, META_VERSION, META_VERSION_NO_TRASH, OLDEST_META_VERSION,
};
use super::txn::run_txn;
use super::types::{Attr, Ino, Timespec};
use crate::error::{Error, Result};

/// What `kiseki format` asks for; validated into a [`VolumeFormat`].
#[derive(Debug, Clone)]
pub struct FormatOptions {
    pub name: String,
    pub storage: String,
    pub bucket: String,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub block_size: u32,
    pub compression: String,
    pub capacity: u64,
    pub inodes: u64,
    /// Inline size (see `VolumeFormat::inline_size`); `None`: the engine's default.
    pub inline_size: Option<u32>,
    /// Days the trash keeps what is removed (0: no trash).
    pub trash_days: u32,
    /// Owner of the root directory (the formatting user by default).
    pub root_uid: u32,
    pub root_gid: u32,
}

impl FormatOptions {
    pub fn new(name: impl Into<String>) -> Self {
        FormatOptions {
            name: name.into(),
            storage: "fs".into(),
            bucket: String::new(),
            region: None,
            access_key: None,
            secret_key: None,
            block_size: 4 << 20,
            compression: "none".into(),
            capacity: 0,
            inodes: 0,
            inline_size: None,
            trash_days: DEFAULT_TRASH_DAYS,
            root_uid: 0,
            root_gid: 0,
        }
    }
}

impl FormatOptions {
    /// Parses `storage=s3,bucket=http://host/b,block-size=4M,compression=lz4,...` (the
    /// C and Python `format` options) over [`FormatOptions::new`]. Keys: storage,
    /// bucket, region, access-key, secret-key, block-size, compression, capacity,
    /// inodes, inline-size, trash-days; `_` and `-` are interchangeable.
    pub fn parse(name: &str, options: &str) -> Result<Self> {
        let mut o = FormatOptions::new(name);
        // SAFETY: getuid/getgid cannot fail.
        (o.root_uid, o.root_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        for item in options.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(Error::Invalid(format!(
                    "format option {item:?} needs a value"
                )));
            };
            o.set(k.trim(), v.trim())?;
        }
        Ok(o)
    }

    /// Sets one option by name (see [`FormatOptions::parse`]).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let size =
            |v: &str| crate::size::parse_size(v).map_err(|e| Error::Invalid(format!("{key}: {e}")));
        match key.replace('_', "-").as_str() {
            "storage" => self.storage = value.into(),
            "bucket" => self.bucket = value.into(),
            "region" => self.region = Some(value.into()),
            "access-key" => self.access_key = Some(value.into()),
            "secret-key" => self.secret_key = Some(value.into()),
            "block-size" => {
                self.block_size = u32::try_from(size(value)?)
                    .map_err(|_| Error::Invalid(format!("block size {value} is too large")))?
            }
            "compression" => self.compression = value.into(),
            "capacity" => self.capacity = size(value)?,
            "inline-size" => {
                self.inline_size = Some(
                    u32::try_from(size(value)?)
                        .map_err(|_| Error::Invalid(format!("inline size {value} is too large")))?,
                )
            }
            "trash-days" => self.trash_days = parse_trash_days(value)?,
            "inodes" => {
                self.inodes = value
                    .parse()
                    .map_err(|_| Error::Invalid(format!("inodes {value:?}: not a number")))?
            }
            _ => return Err(Error::Invalid(format!("unknown format option {key:?}"))),
        }
        Ok(())
    }
}

/// Days the trash keeps removed files by default (as JuiceFS).
pub const DEFAULT_TRASH_DAYS: u32 = 1;
/// The longest a trash may keep anything: ten years.
pub const MAX_TRASH_DAYS: u32 = 3650;

pub fn parse_trash_days(value: &str) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|d| *d <= MAX_TRASH_DAYS)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "trash days {value:?}: a whole number of days from 0 (no trash) to {MAX_TRASH_DAYS}"
            ))
        })
}

/// Default inline size: files up to this size live in the metadata engine. 64 KiB
/// keeps a RocksDB volume's metadata a small multiple of its inode count in size (a
/// million such files add at most 64 GiB, which RocksDB stores and compacts well) while
/// it takes the object request, the costliest part of a small file on S3, off most
/// small files: configuration, metadata and index files, small images and text.
pub const DEFAULT_INLINE_SIZE: u32 = 64 << 10;
/// On etcd, whose requests are limited to 1.5 MiB and whose database is meant to stay
/// within a few GiB, inline data is kept for tiny files only.
pub const ETCD_INLINE_SIZE: u32 = 4 << 10;
/// The largest inline size: on etcd, and on every engine.
pub const ETCD_MAX_INLINE_SIZE: u32 = 128 << 10;
pub const MAX_INLINE_SIZE: u32 = 1 << 20;

pub const MIN_BLOCK_SIZE: u32 = 64 << 10;
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;

/// Volume names follow bucket naming so they can double as object prefixes.
fn check_volume_name(name: &str) -> Result<()> {
    let ok = (2..=63).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "volume name {name:?}: use 2-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
        )))
    }
}

pub fn validate(opts: &FormatOptions) -> Result<VolumeFormat> {
    check_volume_name(&opts.name)?;
    if !matches!(opts.storage.as_str(), "fs" | "s3" | "memory") {
        return Err(Error::Invalid(format!(
            "storage {:?}: expected fs, s3 or memory",
            opts.storage
        )));
    }
    if opts.storage != "memory" && opts.bucket.is_empty() {
        return Err(Error::Invalid(format!(
            "storage {} needs a bucket (a directory for fs, an endpoint URL for s3)",
            opts.storage
        )));
    }
    if !opts.block_size.is_power_of_two()
        || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&opts.block_size)
    {
        return Err(Error::Invalid(format!(
            "block size {}: must be a power of two from 64 KiB to 64 MiB",
            opts.block_size
        )));
    }
    if let Some(n) = opts.inline_size {
        if n > MAX_INLINE_SIZE.min(opts.block_size) {
            return Err(Error::Invalid(format!(
                "inline size {n}: at most 1 MiB and at most the block size ({})",
                opts.block_size
            )));
        }
    }
    if crate::data::compress::Codec::parse(&opts.compression).is_none() {
        return Err(Error::Invalid(format!(
            "compression {:?}: expected {}",
            opts.compression,
            crate::data::compress::Codec::NAMES
        )));
    }
    Ok(VolumeFormat {
        name: opts.name.clone(),
        uuid: uuid::Uuid::new_v4().to_string(),
        storage: opts.storage.clone(),
        bucket: opts.bucket.clone(),
        region: opts.region.clone(),
        access_key: opts.access_key.clone(),
        secret_key: opts.secret_key.clone(),
        block_size: opts.block_size,
        compression: opts.compression.clone(),
        capacity: opts.capacity,
        inodes: opts.inodes,
        inline_size: opts.inline_size.unwrap_or(DEFAULT_INLINE_SIZE),
        trash_days: opts.trash_days.min(MAX_TRASH_DAYS),
        unchecked_below: 0,
        destroying: false,
        meta_version: if opts.trash_days > 0 {
            META_VERSION
        } else {
            META_VERSION_NO_TRASH
        },
        created: Timespec::now().sec,
    })
}

/// Writes a new volume: format record, root directory and counters, in one durable
/// transaction. Refuses a store that already holds a volume (or anything else).
pub fn format(kv: &dyn KvEngine, opts: &FormatOptions) -> Result<VolumeFormat> {
    let mut fmt = validate(opts)?;
    if kv.name() == "etcd" {
        match opts.inline_size {
            None => fmt.inline_size = ETCD_INLINE_SIZE,
            Some(n) if n > ETCD_MAX_INLINE_SIZE => {
                return Err(Error::Invalid(format!(
                    "inline size {n}: at most {ETCD_MAX_INLINE_SIZE} on etcd, whose requests are limited"
                )))
            }
            Some(_) => {}
        }
    }
    run_txn(kv, TxnMode::ReadWrite { durable: true }, |tx| {
        if let Some(existing) = tx.get(keys::SETTING)? {
            let existing = records::decode_format(&existing)?;
            return Err(Error::Exists(format!(
                "a volume named {:?} (uuid {}) is already formatted here; refusing to overwrite it",
                existing.name, existing.uuid
            )));
        }
        if !tx.scan(b"", b"", 1)?.is_empty() {
            return Err(Error::Exists(
                "the metadata store is not empty but holds no volume; refusing to format it".into(),
            ));
        }
        let now = Timespec::now();
        let root = Attr::new_dir(0o755, opts.root_uid, opts.root_gid, Ino::ROOT, now);
        tx.put(keys::SETTING, &records::encode_format(&fmt))?;
        tx.put(&keys::attr(Ino::ROOT), &records::encode_attr(&root))?;
        tx.put(&keys::counter(counters::NEXT_INODE), &2i64.to_le_bytes())?;
        tx.put(&keys::counter(counters::NEXT_SLICE), &1i64.to_le_bytes())?;
        tx.put(&keys::counter(counters::NEXT_SESSION), &0i64.to_le_bytes())?;
        counters::set(tx, counters::USED_SPACE, root.space() as i64)?;
        counters::set(tx, counters::TOTAL_INODES, 1)?;
        Ok(())
    })?;
    Ok(fmt)
}

/// The settings `kiseki config` may change; `None` keeps one as it is.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Capacity in bytes (0: unlimited), never below what the volume uses.
    pub capacity: Option<u64>,
    /// Inode limit (0: unlimited), never below the inodes in use.
    pub inodes: Option<u64>,
    /// Days the trash keeps what is removed (0: no trash; what it holds then goes at
    /// the next expiry run).
    pub trash_days: Option<u32>,
}

/// Changes the settings that may change after format (`kiseki config`), checked
/// against what the volume uses now. Clients read the settings when they connect, so a
/// change applies to each at its next mount or connection. Returns the new settings.
pub fn reconfigure(kv: &dyn KvEngine, changes: &Changes) -> Result<VolumeFormat> {
    let Changes {
        capacity,
        inodes,
        trash_days,
    } = changes.clone();
    load(kv)?;
    run_txn(kv, TxnMode::ReadWrite { durable: true }, |tx| {
        let Some(v) = tx.get(keys::SETTING)? else {
            return Err(Error::Format(
                "no volume is formatted at this meta URL".into(),
            ));
        };
        let mut fmt = records::decode_format(&v)?;
        let used = counters::sum(tx, counters::USED_SPACE)?.max(0) as u64;
        let files = counters::sum(tx, counters::TOTAL_INODES)?.max(0) as u64;
        if let Some(c) = capacity {
            if c != 0 && c < used {
                return Err(Error::Invalid(format!(
                    "capacity {c} is below the {used} bytes the volume uses"
                )));
            }
            fmt.capacity = c;
        }
        if let Some(n) = inodes {
            if n != 0 && n < files {
                return Err(Error::Invalid(format!(
                    "inode limit {n} is below the {files} inodes the volume uses"
                )));
            }
            fmt.inodes = n;
        }
        if let Some(days) = trash_days {
            if days > MAX_TRASH_DAYS {
                return Err(Error::Invalid(format!(
                    "trash days {days}: at most {MAX_TRASH_DAYS}"
                )));
            }
            fmt.trash_days = days;
            if days > 0 {
                // Older Kisekis would release what the trash keeps: they must refuse it.
                fmt.meta_version = fmt.meta_version.max(META_VERSION);
            }
        }
        tx.put(keys::SETTING, &records::encode_format(&fmt))?;
        Ok(fmt)
    })
}

/// Marks the volume as being destroyed (or, with `false`, no longer): from the mark's
/// commit on no client can register a session (`session::register` reads the format
/// record in its transaction, so a registration racing the mark conflicts and then
/// sees it).
pub fn mark_destroying(kv: &dyn KvEngine, destroying: bool) -> Result<()> {
    run_txn(kv, TxnMode::ReadWrite { durable: true }, |tx| {
        let Some(v) = tx.get(keys::SETTING)? else {
            return Err(Error::Format(
                "no volume is formatted at this meta URL".into(),
            ));
        };
        let mut fmt = records::decode_format(&v)?;
        fmt.destroying = destroying;
        Ok(tx.put(keys::SETTING, &records::encode_format(&fmt))?)
    })
}

/// Deletes every key of the volume in `kv` (`kiseki destroy`), in transactions of at
/// most 100 keys (etcd bounds a transaction's operations). Returns how many.
pub fn erase(kv: &dyn KvEngine) -> Result<u64> {
    let mut erased = 0;
    loop {
        let n = run_txn(kv, TxnMode::ReadWrite { durable: true }, |tx| {
            let pairs = tx.scan(b"", &[0xff; 16], 100)?;
            for (k, _) in &pairs {
                tx.delete(k)?;
            }
            Ok(pairs.len() as u64)
        })?;
        if n == 0 {
            return Ok(erased);
        }
        erased += n;
    }
}

/// Reads the format record; layouts from [`OLDEST_META_VERSION`] on are read as they
/// are (see [`META_VERSION`]).
pub fn load(kv: &dyn KvEngine) -> Result<VolumeFormat> {
    let fmt = run_txn(kv, TxnMode::ReadOnly, |tx| match tx.get(keys::SETTING)? {
        Some(v) => records::decode_format(&v),
        None => Err(Error::Format(
            "no volume is formatted at this meta URL (run `kiseki format` first)".into(),
        )),
    })?;
    match fmt.meta_version {
        v if (OLDEST_META_VERSION..=META_VERSION).contains(&v) => Ok(fmt),
        v if v > META_VERSION => Err(Error::Format(format!(
            "volume {:?} uses metadata layout v{v}; this Kiseki reads up to v{META_VERSION}: upgrade Kiseki",
            fmt.name
        ))),
        v => Err(Error::Format(format!(
            "volume {:?} uses metadata layout v{v}, which no released Kiseki wrote",
            fmt.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::kv::memory::MemoryKv;

    #[test]
    fn rejects_bad_options() {
        let mut o = FormatOptions::new("Bad_Name");
        o.storage = "memory".into();
        assert!(validate(&o).is_err());
        o.name = "good".into();
        o.block_size = 3 << 20;
        assert!(validate(&o).is_err());
        o.block_size = 1 << 20;
        o.compression = "gzip".into();
        assert!(validate(&o).is_err());
        o.compression = "zstd".into();
        assert!(validate(&o).is_ok());
        o.compression = "lz4".into();
        assert!(validate(&o).is_ok());
        o.storage = "fs".into();
        assert!(validate(&o).is_err(), "fs needs a bucket");
    }

    #[test]
    fn refuses_to_format_twice_and_loads() {
        let kv = MemoryKv::new();
        let mut o = FormatOptions::new("vol");
        o.storage = "memory".into();
        let f = format(&*kv, &o).unwrap();
        assert_eq!(load(&*kv).unwrap(), f);
        let err = format(&*kv, &o).unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST);
        assert!(err.to_string().contains(&f.uuid));
    }

    #[test]
    fn reconfigure_changes_limits_but_not_below_usage() {
        let kv = MemoryKv::new();
        let mut o = FormatOptions::new("vol");
        o.storage = "memory".into();
        format(&*kv, &o).unwrap();
        let change = |capacity, inodes, trash_days| Changes {
            capacity,
            inodes,
            trash_days,
        };
        let f = reconfigure(&*kv, &change(Some(1 << 30), Some(1000), None)).unwrap();
        assert_eq!((f.capacity, f.inodes), (1 << 30, 1000));
        assert_eq!(load(&*kv).unwrap(), f);
        let f = reconfigure(&*kv, &change(Some(0), None, Some(7))).unwrap();
        assert_eq!(
            (f.capacity, f.inodes, f.trash_days),
            (0, 1000, 7),
            "only what is given changes"
        );
        assert!(reconfigure(&*kv, &change(None, None, Some(MAX_TRASH_DAYS + 1))).is_err());
        assert!(
            reconfigure(&*MemoryKv::new(), &Changes::default()).is_err(),
            "no volume there"
        );
        // A volume without a trash keeps the layout older Kisekis read, until one is
        // configured.
        let kv = MemoryKv::new();
        o.trash_days = 0;
        assert_eq!(
            format(&*kv, &o).unwrap().meta_version,
            META_VERSION_NO_TRASH
        );
        let f = reconfigure(&*kv, &change(None, None, Some(1))).unwrap();
        assert_eq!(f.meta_version, META_VERSION);
    }

    #[test]
    fn a_volume_marked_for_destruction_admits_no_new_session() {
        let kv = MemoryKv::new();
        let mut o = FormatOptions::new("vol");
        o.storage = "memory".into();
        format(&*kv, &o).unwrap();
        mark_destroying(&*kv, true).unwrap();
        assert!(load(&*kv).unwrap().destroying);
        let e = crate::meta::Meta::with_engine(kv.clone(), Default::default())
            .err()
            .expect("no session on a volume being destroyed");
        assert_eq!(e.errno(), libc::EBUSY, "{e}");
        // Read-only clients (status, fsck) still open it; unmarked, it works again.
        let ro = crate::meta::MetaConfig {
            read_only: true,
            ..Default::default()
        };
        assert!(crate::meta::Meta::with_engine(kv.clone(), ro).is_ok());
        mark_destroying(&*kv, false).unwrap();
        assert!(crate::meta::Meta::with_engine(kv, Default::default()).is_ok());
    }

    #[test]
    fn newer_layout_is_refused() {
        let kv = MemoryKv::new();
        let mut o = FormatOptions::new("vol");
        o.storage = "memory".into();
        let mut f = format(&*kv, &o).unwrap();
        f.meta_version = META_VERSION + 1;
        run_txn(&*kv, TxnMode::ReadWrite { durable: false }, |tx| {
            Ok(tx.put(keys::SETTING, &records::encode_format(&f))?)
        })
        .unwrap();
        assert!(load(&*kv).unwrap_err().to_string().contains("upgrade"));
    }
}
