//! Temporary volumes: formatted, ready to connect, removed with the fixture.

use std::sync::atomic::{AtomicU64, Ordering};

use kiseki_core::meta::FormatOptions;
use kiseki_core::vfs::{Client, ClientOptions};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A formatted volume: its meta URL, and the directory holding its RocksDB metadata
/// and `fs` bucket when it has one.
pub struct Volume {
    pub meta_url: String,
    pub dir: Option<tempfile::TempDir>,
}

impl Volume {
    /// Memory metadata and memory storage, private to this test (unique name), with
    /// 64 KiB blocks so that small files span several.
    pub fn memory() -> Volume {
        Self::memory_with(|o| o.block_size = 64 << 10)
    }

    /// Like [`Volume::memory`], with format options of the caller's.
    pub fn memory_with(options: impl FnOnce(&mut FormatOptions)) -> Volume {
        let name = format!(
            "testkit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let meta_url = format!("memory://{name}");
        let mut o = FormatOptions::new("testkit");
        o.storage = "memory".into();
        options(&mut o);
        Client::format(&meta_url, &o).expect("format a memory volume");
        Volume {
            meta_url,
            dir: None,
        }
    }

    /// RocksDB metadata and an `fs` bucket in a temporary directory.
    pub fn rocksdb_with(options: impl FnOnce(&mut FormatOptions)) -> Volume {
        let dir = tempfile::tempdir().expect("temporary directory");
        let meta_url = format!("rocksdb://{}/meta", dir.path().display());
        let bucket = dir.path().join("data");
        std::fs::create_dir(&bucket).expect("bucket directory");
        let mut o = FormatOptions::new("testkit");
        o.bucket = bucket.display().to_string();
        options(&mut o);
        Client::format(&meta_url, &o).expect("format a RocksDB volume");
        Volume {
            meta_url,
            dir: Some(dir),
        }
    }

    /// A client of the volume with `options` (`key=value,...`, as `kiseki_connect`).
    pub fn connect(&self, options: &str) -> Client {
        let o = ClientOptions::parse(options).expect("client options");
        Client::connect(Some(&self.meta_url), &o).expect("connect")
    }

    /// The `fs` bucket directory, for a test that damages stored blocks.
    pub fn bucket(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("data"))
    }
}
