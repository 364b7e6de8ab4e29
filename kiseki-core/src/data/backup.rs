//! Automatic metadata backups: a mount writes the whole metadata (`kiseki dump`'s
//! format, gzip) into the volume's own bucket every `backup-meta` interval, as
//! `{volume}/meta/kiseki-dump-YYYY-MM-DD-HHMMSS.json.gz` (UTC; JuiceFS's are `dump-*`
//! there, and a volume taken over from JuiceFS keeps them), and keeps the newest
//! `backup-keep`. One client of the volume runs each
//! backup (`Meta::claim_periodic` on the `backup-meta` key), in a thread of its own,
//! from one read-only snapshot, so the write path is never held. `kiseki load` restores
//! a volume from one (README, "Recovering a volume").

use std::io::Write;
use std::time::Duration;

use super::store::ObjectStore;
use crate::error::Result;
use crate::meta::dump::DumpStats;
use crate::meta::Meta;

/// Where backups go under the volume's prefix.
pub const BACKUP_DIR: &str = "meta";
/// Default interval of a mount's backups.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Backups kept by default.
pub const DEFAULT_KEEP: usize = 24;

/// How often, and how many to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPlan {
    pub interval: Duration,
    pub keep: usize,
}

/// The object name of a backup taken at `secs` (seconds since the epoch).
pub fn backup_name(secs: i64) -> String {
    let hour = secs - secs.rem_euclid(3600);
    let rest = secs.rem_euclid(3600);
    format!(
        "kiseki-dump-{}{:02}{:02}.json.gz",
        crate::meta::trash::hour_name(hour),
        rest / 60,
        rest % 60
    )
}

/// Dumps the metadata into a temporary file, uploads it, then deletes the oldest
/// backups beyond `keep`. Returns the object's name (under `{volume}/meta/`) and what
/// was dumped.
pub fn run(meta: &Meta, store: &ObjectStore, keep: usize) -> Result<(String, DumpStats)> {
    let start = std::time::Instant::now();
    let name = backup_name(meta.config().clock.now());
    let tmp = tempfile::NamedTempFile::new()?;
    let stats = {
        let file = std::io::BufWriter::new(tmp.as_file().try_clone()?);
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let stats = meta.dump(&mut gz, false, &mut |_| {})?;
        gz.finish()?.flush()?;
        stats
    };
    crate::runtime::block_on(async {
        store
            .put_file(&format!("{BACKUP_DIR}/{name}"), tmp.path())
            .await?;
        let backups: Vec<String> = store
            .list_names(BACKUP_DIR)
            .await?
            .into_iter()
            .filter(|n| n.starts_with("kiseki-dump-") && n.ends_with(".json.gz"))
            .collect();
        let extra = backups.len().saturating_sub(keep.max(1));
        for old in &backups[..extra] {
            store.delete_object(&format!("{BACKUP_DIR}/{old}")).await?;
        }
        Ok::<_, crate::error::Error>(())
    })?;
    tracing::info!(
        "metadata backup {name}: {} inodes in {:.1} s",
        stats.inodes,
        start.elapsed().as_secs_f64()
    );
    Ok((name, stats))
}
