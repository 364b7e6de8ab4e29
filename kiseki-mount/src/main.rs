//! The `kiseki` command line, and the `mount.kiseki` helper when started under that
//! name.

mod accesslog;
mod admin;
mod bench;
mod fuse;
mod helper;
mod mount;
mod profile;
mod progress;
mod stats;
mod tree;
mod warmup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kiseki_core::defaults;
use kiseki_core::meta::FormatOptions;
use kiseki_core::size::parse_size;
use kiseki_core::vfs::Client;

#[derive(Parser)]
#[command(
    name = "kiseki",
    version,
    about = "A POSIX filesystem over object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the embedded default volume unless it exists, and print where it lives.
    Init,
    /// Create a new volume.
    Format(FormatArgs),
    /// Show a volume's settings, sessions and usage (works while it is mounted).
    Status {
        /// Metadata engine URL (default: the embedded default volume).
        meta_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a volume: metadata consistency, counters, and that every referenced block
    /// exists in object storage.
    Fsck {
        /// Metadata engine URL (default: the embedded default volume).
        meta_url: Option<String>,
        /// Also read every block object and check it against its recorded checksums
        /// (reads the whole volume; without it, objects are only listed).
        #[arg(long)]
        objects: bool,
        /// Mend what the metadata check finds (counters, link counts, orphans into
        /// /lost+found, dangling entries, stale sessions, stray records), then check
        /// again. Needs the volume unmounted (no other live client).
        #[arg(long)]
        repair: bool,
    },
    /// Mount a volume with FUSE: `kiseki mount [META_URL] MOUNTPOINT`.
    Mount(MountArgs),
    /// Unmount a kiseki mount and wait until its process has flushed and exited.
    Umount {
        mountpoint: PathBuf,
        /// Detach lazily even while files are open (the process exits after the last
        /// one closes).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Find leaked objects and pending deletions; remove them with --delete.
    Gc {
        /// Metadata engine URL (default: the embedded default volume).
        meta_url: Option<String>,
        /// Delete leaked blocks and run the deletion queues now.
        #[arg(long)]
        delete: bool,
    },
    /// Rewrite fragmented files under PATH (in a kiseki mount) into whole slices.
    Compact { path: PathBuf },
    /// Remove files or whole trees of a kiseki mount inside the mount (far faster than
    /// rm -rf's request per entry); permissions apply as for rm.
    Rmr {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Put back what the trash keeps: each PATH an hour directory of a mount's
    /// `.trash` (everything in it) or one entry of one. Never overwrites: an entry whose
    /// name is taken again stays in the trash, and is listed with why.
    Restore {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write a volume's whole metadata (every inode, entry, attribute, slice record,
    /// setting and counter) to FILE as JSON lines, from one consistent snapshot; works
    /// while the volume is mounted. FILE ending in .gz is gzip-compressed; `-` is
    /// standard output. The S3 secret key is left out unless --keep-secret-key.
    Dump {
        meta_url: String,
        file: PathBuf,
        #[arg(long)]
        keep_secret_key: bool,
    },
    /// Fill an empty metadata store (any engine: RocksDB, etcd) from a `kiseki dump`
    /// file, or from a `juicefs dump` (JuiceFS 1.x JSON; plain, .gz or .zstd): moves a
    /// volume between engines, brings back one whose metadata store was lost, or takes
    /// a JuiceFS volume over. The data stays where it is (the dump names its bucket).
    Load { meta_url: String, file: PathBuf },
    /// Copy a file or a whole tree of a kiseki mount by metadata only: the copy shares
    /// the source's data (nothing is read or written in object storage) and is
    /// independent from then on (a write to either side shows only there). DST must
    /// not exist. As `cp -r`, the copy is the caller's and stamped now, unless
    /// --preserve.
    Clone {
        src: PathBuf,
        dst: PathBuf,
        /// Keep modes (setuid/setgid for root or the owner), times and, for root, owners.
        #[arg(long, short = 'p')]
        preserve: bool,
    },
    /// A file's inode, attributes and where its bytes are (slices and their objects);
    /// a directory's totals. Reads the metadata of the mount holding PATH.
    Info {
        path: PathBuf,
        /// The volume's metadata URL, when the mount table shows it redacted.
        #[arg(long, value_name = "META_URL")]
        meta_url: Option<String>,
    },
    /// Measure a volume's object store: objects put, got whole and by 4 KiB ranges,
    /// listed and deleted (under {volume}/objbench/, removed afterwards).
    Objbench {
        /// Metadata engine URL (default: the embedded default volume).
        meta_url: Option<String>,
        /// Object size.
        #[arg(long, default_value = "4M", value_parser = parse_size)]
        block_size: u64,
        /// Objects.
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Requests at a time.
        #[arg(long, short = 'p', default_value_t = 4)]
        threads: usize,
    },
    /// Change the settings that may change after format: the capacity and the inode
    /// limit (0: unlimited), never below current usage, and the trash's days. Clients
    /// apply them at their next mount or connection.
    Config {
        meta_url: String,
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        capacity: Option<u64>,
        #[arg(long, value_name = "COUNT")]
        inodes: Option<u64>,
        /// Days the trash keeps removed files (0: no trash; it is emptied).
        #[arg(long, value_name = "DAYS")]
        trash_days: Option<u32>,
    },
    /// Remove a volume for good: every object and all its metadata. Asks for the
    /// volume's name unless --yes; refused while a client uses it.
    Destroy {
        meta_url: String,
        /// Do not ask: the volume's name or uuid, given here, confirms.
        #[arg(long, value_name = "NAME_OR_UUID")]
        yes: Option<String>,
    },
    /// Size, files and directories of a tree in a kiseki mount, and its largest entries.
    Summary {
        path: PathBuf,
        /// Largest entries shown (0: none).
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Measure a mounted file system with juicefs bench's workload: a big file written
    /// and read, small files written and read, and stats, from N threads at once.
    Bench {
        path: PathBuf,
        /// Size of each write and read of the big file.
        #[arg(long, default_value = "1M", value_parser = parse_size)]
        block_size: u64,
        /// Big file per thread (0: skip).
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        big_file_size: u64,
        /// Small file size.
        #[arg(long, default_value = "128K", value_parser = parse_size)]
        small_file_size: u64,
        /// Small files per thread (0: skip).
        #[arg(long, default_value_t = 100)]
        small_file_count: u64,
        /// Threads, each with its own files.
        #[arg(long, short = 'p', default_value_t = 1)]
        threads: usize,
    },
    /// The operations taking the most total time, from a mount's access log (live, a
    /// table per interval) or from a saved one (`cat MOUNTPOINT/.accesslog > FILE`).
    Profile {
        /// A mount point, or a saved access log.
        path: PathBuf,
        /// Seconds between tables (live).
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Stop after this many tables (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// Show what a mount is doing, a row per interval: operations and their latency,
    /// throughput, metadata and object requests, cache hit rate, write buffer.
    Stats {
        mountpoint: PathBuf,
        /// Seconds between rows.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many rows (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// Fetch files, or every file under directories, of a kiseki mount into that
    /// mount's caches (disk cache when it has one, else memory), so later reads are
    /// served without object storage requests.
    Warmup {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Files warmed up at once.
        #[arg(long, short = 'p', default_value_t = 4)]
        threads: usize,
        /// Only report how much of the files' data is cached.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args)]
struct MountArgs {
    /// META_URL, or the mount point when it is the only argument (the embedded default
    /// volume, formatted on first use).
    #[arg(value_name = "META_URL")]
    first: String,
    /// Directory to mount at.
    #[arg(value_name = "MOUNTPOINT")]
    second: Option<PathBuf>,

    /// Run in the background; returns once the mount is up.
    #[arg(short = 'd', long, help_heading = "Process")]
    background: bool,
    /// Log file of a background mount (default: /var/log/kiseki.log for root).
    #[arg(long, value_name = "FILE", help_heading = "Process")]
    log: Option<PathBuf>,
    /// Threads serving FUSE requests.
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Process")]
    threads: usize,

    /// Mount options, comma separated: FUSE ones (allow_other, default_permissions,
    /// nosuid, noatime, ...), attr-cache=SECS, entry-cache=SECS, and the client options
    /// (buffer-size=SIZE, cache-dir=DIR, ...).
    #[arg(short = 'o', value_name = "OPT,...", help_heading = "Mount")]
    options: Vec<String>,
    /// Refuse every change (EROFS).
    #[arg(long, help_heading = "Mount")]
    read_only: bool,
    /// Let users other than the mounting one use the mount.
    #[arg(long, help_heading = "Mount")]
    allow_other: bool,
    /// Kernel attribute cache lifetime (0: always ask).
    #[arg(long, value_name = "SECS", help_heading = "Mount")]
    attr_cache: Option<f64>,
    /// Kernel directory entry cache lifetime (0: always ask).
    #[arg(long, value_name = "SECS", help_heading = "Mount")]
    entry_cache: Option<f64>,

    /// Directories of the disk block cache, separated by ':' (none: memory only).
    #[arg(long, value_name = "DIR[:DIR...]", help_heading = "Cache")]
    cache_dir: Option<String>,
    /// Keep in the disk cache only blocks shorter than the block size (small files and
    /// the ends of files).
    #[arg(long, help_heading = "Cache")]
    cache_partial_only: bool,
    /// Stop filling the disk cache when its disk has less than this fraction free.
    #[arg(long, value_name = "RATIO", help_heading = "Cache")]
    free_space_ratio: Option<f64>,
    /// Bound of the disk block cache.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Cache")]
    cache_size: Option<u64>,
    /// In-memory block cache.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Cache")]
    memory_cache_size: Option<u64>,
    /// Read-ahead block fetches in flight at most, over all files (0: no read-ahead).
    #[arg(long, value_name = "BLOCKS", help_heading = "Cache")]
    prefetch: Option<usize>,
    /// Largest read-ahead window of one sequential reader, in MiB (0: no read-ahead).
    #[arg(long, value_name = "MIB", help_heading = "Cache")]
    max_readahead: Option<u64>,
    /// Write buffer in memory; writers wait when it is full.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Data")]
    buffer_size: Option<u64>,
    /// Serve Prometheus metrics at IP:PORT (default 127.0.0.1:9567, or the next free
    /// port; `off` for none).
    #[arg(long, value_name = "ADDR", help_heading = "Mount")]
    metrics: Option<String>,
    /// Make every metadata change power-loss durable, not only close and fsync.
    #[arg(long, help_heading = "Data")]
    meta_sync: bool,
}

impl MountArgs {
    fn plan(self) -> Result<mount::MountPlan, String> {
        let (url, mp) = match self.second {
            Some(mp) => (Some(self.first), mp),
            None => (None, PathBuf::from(self.first)),
        };
        let mut plan = mount::MountPlan::new(url, mp);
        plan.background = self.background;
        plan.log = self.log;
        plan.threads = self.threads;
        for opts in &self.options {
            for o in opts.split(',').filter(|o| !o.is_empty()) {
                plan.apply_option(o)
                    .map_err(|e| format!("mount option {o:?}: {e}"))?;
            }
        }
        if self.read_only {
            plan.client.read_only = true;
        }
        if self.allow_other {
            plan.acl = ::fuser::SessionACL::All;
        }
        if self.meta_sync {
            plan.client.meta_sync = true;
        }
        let secs = |v: f64, what: &str| {
            if v.is_finite() && (0.0..1e9).contains(&v) {
                Ok(std::time::Duration::from_secs_f64(v))
            } else {
                Err(format!("--{what} {v} is not a number of seconds"))
            }
        };
        if let Some(v) = self.attr_cache {
            plan.ttl.attr = secs(v, "attr-cache")?;
        }
        if let Some(v) = self.entry_cache {
            plan.ttl.entry = secs(v, "entry-cache")?;
        }
        let mut cache_options = Vec::new();
        if let Some(d) = self.cache_dir {
            cache_options.push(format!("cache-dir={d}"));
        }
        if self.cache_partial_only {
            cache_options.push("cache-partial-only".to_string());
        }
        if let Some(r) = self.free_space_ratio {
            cache_options.push(format!("free-space-ratio={r}"));
        }
        if let Some(n) = self.prefetch {
            cache_options.push(format!("prefetch={n}"));
        }
        if let Some(n) = self.max_readahead {
            cache_options.push(format!("max-readahead={n}"));
        }
        if let Some(a) = self.metrics {
            cache_options.push(format!("metrics={a}"));
        }
        for o in cache_options {
            plan.client
                .apply(&o)
                .map_err(|e| format!("--{}: {e}", o.split('=').next().unwrap_or(&o)))?;
        }
        if let Some(v) = self.cache_size {
            plan.client.data.cache_disk = v;
        }
        if let Some(v) = self.memory_cache_size {
            plan.client.data.cache_memory = v;
        }
        if let Some(v) = self.buffer_size {
            plan.client.data.buffer_memory =
                usize::try_from(v).map_err(|_| "--buffer-size is too large".to_string())?;
        }
        Ok(plan)
    }
}

#[derive(Args)]
struct FormatArgs {
    /// Metadata engine URL: rocksdb:///abs/path or memory://NAME.
    meta_url: String,
    /// Volume name: 2-63 characters of a-z, 0-9 and '-'.
    name: String,

    /// Object storage kind: fs, s3 or memory.
    #[arg(long, default_value = "fs", help_heading = "Storage")]
    storage: String,
    /// Directory (fs) or endpoint URL with bucket (s3).
    #[arg(
        long,
        value_name = "DIR_OR_URL",
        default_value = "",
        help_heading = "Storage"
    )]
    bucket: String,
    /// S3 region (default: $AWS_REGION, else us-east-1).
    #[arg(long, help_heading = "Storage")]
    region: Option<String>,
    #[arg(long, value_name = "KEY", help_heading = "Storage")]
    access_key: Option<String>,
    #[arg(long, value_name = "KEY", help_heading = "Storage")]
    secret_key: Option<String>,

    /// Size of the objects data is stored in (a power of two, 64K to 64M).
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size, help_heading = "Data format")]
    block_size: u64,
    /// Block compression: none, lz4 or zstd (level 1).
    #[arg(long, default_value = "none", help_heading = "Data format")]
    compression: String,
    /// Files up to this size are stored in the metadata engine, not as objects (0: off;
    /// default 64K, 4K on etcd; at most 1M and the block size, 128K on etcd).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Data format")]
    inline_size: Option<u64>,
    /// Days the trash (`.trash` in the root) keeps removed and overwritten files
    /// (0: no trash).
    #[arg(long, value_name = "DAYS", default_value_t = kiseki_core::meta::format::DEFAULT_TRASH_DAYS, help_heading = "Data format")]
    trash_days: u32,

    /// Capacity limit (0: unlimited).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size, help_heading = "Quota")]
    capacity: u64,
    /// Inode limit (0: unlimited).
    #[arg(
        long,
        value_name = "COUNT",
        default_value_t = 0,
        help_heading = "Quota"
    )]
    inodes: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KISEKI_LOG")
                // A mount's log also says when it started and stopped, where its
                // metrics are, and each metadata backup.
                .unwrap_or_else(|_| {
                    "warn,kiseki::mount=info,kiseki_core::data::backup=info".into()
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let result = if helper::invoked_as_helper(&argv0) {
        helper::run(&args.collect::<Vec<_>>())
    } else {
        run(Cli::parse())
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiseki: {e}");
            ExitCode::FAILURE
        }
    }
}

fn meta_url_or_default(url: Option<String>) -> String {
    url.unwrap_or_else(|| defaults::default_volume().meta_url)
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Init => {
            let (v, created) = defaults::ensure_default_volume()?;
            match created {
                Some(f) => println!("formatted volume {:?} (uuid {})", f.name, f.uuid),
                None => println!("the default volume already exists"),
            }
            println!("meta URL: {}\ndata:     {}", v.meta_url, v.bucket.display());
        }
        Command::Format(a) => {
            let mut o = FormatOptions::new(a.name);
            o.storage = a.storage;
            o.bucket = a.bucket;
            o.region = a.region;
            o.access_key = a.access_key;
            o.secret_key = a.secret_key;
            o.block_size = u32::try_from(a.block_size).map_err(|_| "block size too large")?;
            o.compression = a.compression;
            o.inline_size = a
                .inline_size
                .map(|n| u32::try_from(n).map_err(|_| "inline size too large"))
                .transpose()?;
            o.capacity = a.capacity;
            o.inodes = a.inodes;
            o.trash_days = a.trash_days;
            // SAFETY: getuid/getgid cannot fail.
            (o.root_uid, o.root_gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let f = Client::format(&a.meta_url, &o)?;
            println!("formatted volume {:?} (uuid {})", f.name, f.uuid);
        }
        Command::Status { meta_url, json } => {
            let st = kiseki_core::admin::status(&meta_url_or_default(meta_url))?;
            if !json {
                print!("{}", status_text(&st));
                return Ok(ExitCode::SUCCESS);
            }
            let status = serde_json::json!({
                "setting": st.setting,
                "engine": st.engine,
                "sessions": st.sessions,
                "usage": {
                    "used_space": st.used_space,
                    "used_inodes": st.used_inodes,
                    "reserved_space": st.reserved_space,
                    "inline_space": st.inline_space,
                    "staged_blocks": st.staged_blocks,
                    "staged_bytes": st.staged_bytes,
                },
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        Command::Fsck {
            meta_url,
            objects,
            repair: true,
        } => {
            let pb = progress::spinner("repairing the metadata");
            let check = match objects {
                true => kiseki_core::admin::ObjectCheck::Read,
                false => kiseki_core::admin::ObjectCheck::List,
            };
            let r = kiseki_core::admin::fsck_repair(&meta_url_or_default(meta_url), check);
            pb.finish_and_clear();
            let r = r?;
            for f in &r.fixed {
                println!("fixed: {f}");
            }
            println!("{} repairs", r.fixed.len());
            if !r.after.is_clean() {
                for p in &r.after.problems {
                    println!("not mended: {p}");
                }
                println!("{} problems remain", r.after.problems.len());
                return Ok(ExitCode::FAILURE);
            }
            println!("volume is consistent");
        }
        Command::Fsck {
            meta_url, objects, ..
        } => {
            use kiseki_core::admin::ObjectCheck;
            let (what, check) = if objects {
                (
                    "checking metadata and reading every block object",
                    ObjectCheck::Read,
                )
            } else {
                (
                    "checking metadata and listing block objects",
                    ObjectCheck::List,
                )
            };
            let pb = progress::spinner(what);
            let r = kiseki_core::admin::fsck(&meta_url_or_default(meta_url), check)?;
            pb.finish_and_clear();
            if r.in_use {
                eprintln!(
                    "kiseki: note: the volume is in use (mounted); checked a snapshot, so \
                     blocks written or deleted meanwhile may show as leaked or missing"
                );
            }
            println!(
                "{} inodes, {} bytes used, {} open-unlinked, {} files awaiting data deletion",
                r.inodes, r.used_space, r.sustained, r.pending_deletions
            );
            println!(
                "{} block objects, {} missing, {} corrupt{}, {} leaked, {} staged for upload",
                r.blocks,
                r.missing_blocks,
                r.corrupt_blocks,
                if objects {
                    ""
                } else {
                    " (not read: --objects)"
                },
                r.leaked_blocks,
                r.staged_blocks
            );
            if !r.is_clean() {
                for p in &r.problems {
                    println!("problem: {p}");
                }
                println!("{} problems found", r.problems.len());
                return Ok(ExitCode::FAILURE);
            }
            println!("volume is consistent");
        }
        Command::Mount(a) => return mount::mount(a.plan()?),
        Command::Umount { mountpoint, force } => return admin::umount(&mountpoint, force),
        Command::Gc { meta_url, delete } => {
            return admin::gc(&meta_url_or_default(meta_url), delete)
        }
        Command::Compact { path } => return admin::compact(&path),
        Command::Bench {
            path,
            block_size,
            big_file_size,
            small_file_size,
            small_file_count,
            threads,
        } => {
            let args = bench::BenchArgs {
                block_size,
                big_file_size,
                small_file_size,
                small_file_count,
                threads,
            };
            return bench::bench(&path, &args);
        }
        Command::Profile {
            path,
            interval,
            count,
        } => return profile::profile(&path, interval, count),
        Command::Rmr { paths } => return tree::rmr(&paths),
        Command::Restore { paths } => return tree::restore(&paths),
        Command::Clone { src, dst, preserve } => return tree::clone(&src, &dst, preserve),
        Command::Dump {
            meta_url,
            file,
            keep_secret_key,
        } => {
            let pb = progress::spinner("dumping");
            let r = kiseki_core::admin::dump(&meta_url, &file, keep_secret_key, &mut |n| {
                pb.set_message(format!("dumping: {n} records"))
            });
            pb.finish_and_clear();
            let (stats, held) = r?;
            if held {
                eprintln!(
                    "kiseki: note: the volume is mounted; dumped it as it was when the dump began"
                );
            }
            eprintln!(
                "{}: {} inodes, {} entries, {} records",
                file.display(),
                stats.inodes,
                stats.entries,
                stats.records
            );
        }
        Command::Load { meta_url, file } => {
            let pb = progress::spinner("loading");
            let r = kiseki_core::admin::load(&meta_url, &file, &mut |n| {
                pb.set_message(format!("loading: {n} records"))
            });
            pb.finish_and_clear();
            let loaded = r?;
            let (format, stats) = (&loaded.format, &loaded.stats);
            let from = if loaded.juicefs.is_some() {
                " from a JuiceFS dump"
            } else {
                ""
            };
            println!(
                "{meta_url}: volume {} loaded{from}: {} inodes, {} entries; data in {} {}",
                format.name, stats.inodes, stats.entries, format.storage, format.bucket
            );
            if loaded.juicefs == Some(true) {
                println!(
                    "note: JuiceFS's trash was not loaded; its objects are now unreferenced \
                     (`kiseki gc --delete` removes them)"
                );
            }
            if format.storage == "s3" && format.secret_key.is_none() {
                println!("note: the dump has no S3 secret key; give it with AWS_SECRET_ACCESS_KEY");
            }
        }
        Command::Destroy { meta_url, yes } => {
            let confirm = match yes {
                Some(c) => c,
                None => {
                    eprint!("This removes every file of the volume at {meta_url} for good.\nType its name to go on: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim().to_string()
                }
            };
            let pb = progress::spinner("removing objects and metadata");
            let r = kiseki_core::admin::destroy(&meta_url, &confirm);
            pb.finish_and_clear();
            let (objects, keys) = r?;
            println!("destroyed: {objects} objects and {keys} metadata keys removed");
        }
        Command::Config {
            meta_url,
            capacity,
            inodes,
            trash_days,
        } => {
            if capacity.is_none() && inodes.is_none() && trash_days.is_none() {
                return Err(
                    "nothing to change: give --capacity, --inodes and/or --trash-days".into(),
                );
            }
            let changes = kiseki_core::meta::format::Changes {
                capacity,
                inodes,
                trash_days,
            };
            let f = kiseki_core::admin::config(&meta_url, &changes)?;
            let show = |n: u64, f: &dyn Fn(u64) -> String| {
                if n == 0 {
                    "unlimited".to_string()
                } else {
                    f(n)
                }
            };
            println!(
                "volume {}: capacity {}, inode limit {}, trash {}",
                f.name,
                show(f.capacity, &|n| progress::human_bytes(n)),
                show(f.inodes, &|n| n.to_string()),
                trash_days_text(f.trash_days)
            );
        }
        Command::Objbench {
            meta_url,
            block_size,
            count,
            threads,
        } => {
            let size = usize::try_from(block_size)
                .ok()
                .filter(|s| *s <= 256 << 20)
                .ok_or("--block-size: at most 256M")?;
            let rows =
                kiseki_core::admin::objbench(&meta_url_or_default(meta_url), size, count, threads)?;
            println!(
                "{:<16} {:>8} {:>12} {:>14} {:>12}",
                "request", "count", "ms each", "requests/s", "MiB/s"
            );
            for r in rows {
                let each = r.secs * 1e3 * threads.min(r.count.max(1) as usize) as f64
                    / r.count.max(1) as f64;
                println!(
                    "{:<16} {:>8} {:>12.2} {:>14.1} {:>12}",
                    r.op,
                    r.count,
                    each,
                    r.count as f64 / r.secs,
                    if r.bytes > 0 {
                        format!("{:.1}", r.bytes as f64 / (1u64 << 20) as f64 / r.secs)
                    } else {
                        "-".into()
                    }
                );
            }
        }
        Command::Info { path, meta_url } => return tree::info(&path, meta_url),
        Command::Summary { path, top } => return tree::summary(&path, top),
        Command::Stats {
            mountpoint,
            interval,
            count,
        } => return stats::stats(&mountpoint, interval, count),
        Command::Warmup {
            paths,
            threads,
            check,
        } => return warmup::warmup(&paths, threads, check),
    }
    Ok(ExitCode::SUCCESS)
}

fn trash_days_text(days: u32) -> String {
    match days {
        0 => "off".into(),
        1 => "keeps removed files 1 day".into(),
        n => format!("keeps removed files {n} days"),
    }
}

/// `kiseki status` for people: the volume, its usage, its clients.
fn status_text(st: &kiseki_core::admin::Status) -> String {
    use progress::human_bytes as b;
    let v = &st.setting;
    let limit = |n: u64, f: &dyn Fn(u64) -> String| {
        if n == 0 {
            "unlimited".to_string()
        } else {
            f(n)
        }
    };
    let mut out = format!(
        "volume    {} ({}), {} metadata, format version {}\n",
        v.name, v.uuid, st.engine, v.meta_version
    );
    out += &format!(
        "storage   {} {}, blocks of {}, compression {}, inline up to {}\n",
        v.storage,
        v.bucket,
        b(u64::from(v.block_size)),
        v.compression,
        b(u64::from(v.inline_size))
    );
    out += &format!(
        "usage     {} in {} inodes (inline {}, reserved {}); capacity {}, inode limit {}\n",
        b(st.used_space),
        st.used_inodes,
        b(st.inline_space),
        b(st.reserved_space),
        limit(v.capacity, &|n| b(n)),
        limit(v.inodes, &|n| n.to_string()),
    );
    out += &format!("trash     {}", trash_days_text(v.trash_days));
    if st.trash_inodes > 0 {
        out += &format!(
            ": {} in {} inodes (part of the usage)",
            b(st.trash_space),
            st.trash_inodes
        );
    }
    out += "\n";
    if st.staged_blocks > 0 {
        out += &format!(
            "staged    {} blocks ({}) not uploaded yet by write-back clients\n",
            st.staged_blocks,
            b(st.staged_bytes)
        );
    }
    out += &format!("sessions  {}\n", st.sessions.len());
    for s in &st.sessions {
        out += &format!(
            "  {:>4}  {} pid {}  {}  (version {}, up {})\n",
            s.sid,
            s.host,
            s.pid,
            s.client,
            s.version,
            uptime(s.started)
        );
    }
    out
}

/// How long ago `since` (seconds since the epoch) was, as 3d4h, 2h5m or 7m12s.
fn uptime(since: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = (now - since).max(0);
    match s {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}m{}s", s / 60, s % 60),
    }
}
