//! The `kiseki` command line.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kiseki_core::data::DataConfig;
use kiseki_core::defaults;
use kiseki_core::meta::{FormatOptions, Meta, MetaConfig};
use kiseki_core::runtime::block_on;
use kiseki_core::size::parse_size;
use kiseki_core::vfs::Fs;

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
    /// Show a volume's settings, sessions and usage.
    Status {
        /// Metadata engine URL (default: the embedded default volume).
        meta_url: Option<String>,
    },
    /// Check the consistency of a volume's metadata.
    Fsck {
        /// Metadata engine URL (default: the embedded default volume).
        meta_url: Option<String>,
    },
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
    /// Block compression: none or lz4.
    #[arg(long, default_value = "none", help_heading = "Data format")]
    compression: String,

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
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
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
            o.capacity = a.capacity;
            o.inodes = a.inodes;
            // SAFETY: getuid/getgid cannot fail.
            (o.root_uid, o.root_gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let f = Meta::format(&a.meta_url, &o)?;
            println!("formatted volume {:?} (uuid {})", f.name, f.uuid);
        }
        Command::Status { meta_url } => {
            let meta = open_read_only(&meta_url_or_default(meta_url))?;
            let mut setting = serde_json::to_value(meta.volume())?;
            if let Some(secret) = setting.get_mut("secret_key").filter(|s| !s.is_null()) {
                *secret = "removed".into();
            }
            let st = meta.statfs()?;
            let status = serde_json::json!({
                "setting": setting,
                "engine": meta.engine().name(),
                "sessions": meta.sessions()?,
                "usage": {
                    "used_space": st.total_space - st.avail_space,
                    "used_inodes": st.used_inodes,
                },
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        Command::Fsck { meta_url } => {
            let meta = open_read_only(&meta_url_or_default(meta_url))?;
            let r = meta.check()?;
            println!(
                "{} inodes, {} bytes used, {} open-unlinked, {} files awaiting data deletion",
                r.inodes, r.used_space, r.sustained, r.pending_deletions
            );
            let mut problems = r.problems.clone();
            // Every referenced block must exist in object storage; unreferenced blocks
            // that nothing is queued to delete are leaks.
            let small = DataConfig {
                buffer_memory: 1 << 20,
                cache_memory: 1 << 20,
                ..Default::default()
            };
            let fs = Fs::new(meta, &small)?;
            let objects = block_on(fs.data().check_objects())?;
            println!(
                "{} block objects, {} missing, {} leaked",
                objects.blocks,
                objects.missing.len(),
                objects.leaked.len()
            );
            problems.extend(objects.missing.iter().map(|k| format!("missing block {k}")));
            problems.extend(objects.leaked.iter().map(|k| format!("leaked block {k}")));
            if !problems.is_empty() {
                for p in &problems {
                    println!("problem: {p}");
                }
                println!("{} problems found", problems.len());
                return Ok(ExitCode::FAILURE);
            }
            println!("volume is consistent");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_read_only(url: &str) -> Result<std::sync::Arc<Meta>, kiseki_core::meta::Error> {
    Meta::open(
        url,
        MetaConfig {
            read_only: true,
            client: "kiseki-cli".into(),
            ..Default::default()
        },
    )
}
