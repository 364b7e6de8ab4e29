//! The data layer's error type and its errno table.

use crate::meta;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Meta(#[from] meta::Error),
    /// Object storage failed after retries (or with a permanent error).
    #[error("object storage {op} {key}: {source}")]
    Storage {
        op: &'static str,
        key: String,
        source: Box<opendal::Error>,
    },
    /// A block that metadata references is absent: data loss, reported as EIO.
    #[error("block {key} of slice {slice} is missing from object storage")]
    MissingBlock { slice: u64, key: String },
    /// A block exists but does not hold what metadata says (short, undecodable).
    #[error("block {key} of slice {slice} is corrupt: {why}")]
    CorruptBlock {
        slice: u64,
        key: String,
        why: String,
    },
    /// An earlier write through this file failed to upload; nothing more is accepted.
    #[error(
        "an earlier write to inode {0} failed to reach object storage; the file handle is unusable"
    )]
    Poisoned(u64),
    /// Storage settings that cannot work (unknown kind, malformed bucket URL).
    #[error("storage configuration: {0}")]
    Config(String),
    /// The same failure observed by several waiters of one fetch.
    #[error("{0}")]
    Shared(std::sync::Arc<Error>),
    /// Local I/O of the write buffer's spill file or the disk cache.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn errno(&self) -> i32 {
        match self {
            Error::Meta(e) => e.errno(),
            Error::Storage { .. } => libc::EIO,
            Error::MissingBlock { .. } => libc::EIO,
            Error::CorruptBlock { .. } => libc::EIO,
            Error::Poisoned(_) => libc::EIO,
            Error::Config(_) => libc::EINVAL,
            Error::Shared(e) => e.errno(),
            Error::Io(_) => libc::EIO,
        }
    }
}
