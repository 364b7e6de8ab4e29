//! The one error type of Kiseki, shared by every layer and returned by every public
//! call, with its errno table and a coarse [`ErrorKind`] for callers that act on it.
//!
//! Every variant maps to exactly one errno in [`Error::errno`] and one kind in
//! [`Error::kind`], with no wildcard arm, so adding a variant forces a decision about
//! what the kernel, C and Python see. The metadata engines keep their own small
//! [`KvError`], folded in here as [`Error::Kv`].

use crate::meta::kv::KvError;
use crate::meta::Ino;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("file exists: {0}")]
    Exists(String),
    #[error("not a directory: {0}")]
    NotDir(String),
    #[error("is a directory: {0}")]
    IsDir(String),
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    #[error("name too long ({len} bytes, limit {max})")]
    NameTooLong { len: usize, max: usize },
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Permission bits deny the access (EACCES).
    #[error("permission denied: {0}")]
    Access(String),
    /// The caller is not allowed to perform the operation at all, whatever the mode
    /// bits say: not the owner, sticky directory, trusted xattrs (EPERM).
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("no such attribute: {0}")]
    NoData(String),
    /// A result does not fit the caller's buffer, or an xattr name is too long.
    #[error("result out of range: {0}")]
    Range(String),
    #[error("argument list too long: {0}")]
    TooBig(String),
    #[error("too many links: {0}")]
    TooManyLinks(String),
    #[error("no space left on volume: {0}")]
    NoSpace(String),
    #[error("inode quota of the volume exhausted")]
    NoInodes,
    #[error("file too large: {0}")]
    FileTooBig(String),
    #[error("operation not supported: {0}")]
    NotSupported(String),
    #[error("read-only volume")]
    ReadOnly,
    #[error("resource busy: {0}")]
    Busy(String),
    /// SEEK_DATA/SEEK_HOLE past the end, or no data after the offset.
    #[error("no such device or address: {0}")]
    NoSuchOffset(String),
    #[error("too many levels of symbolic links: {0}")]
    Loop(String),
    /// A non-blocking lock request meets a conflicting lock (EAGAIN, = EWOULDBLOCK).
    #[error("resource temporarily unavailable: {0}")]
    WouldBlock(String),
    /// A blocking lock request would wait for itself (EDEADLK).
    #[error("resource deadlock avoided: {0}")]
    Deadlock(String),
    /// A blocking request ended because its caller gave up (EINTR).
    #[error("interrupted: {0}")]
    Interrupted(String),
    #[error("bad file handle: {0}")]
    BadHandle(String),
    /// A record in the metadata store cannot be decoded or violates an invariant.
    #[error("metadata corruption at inode {ino}: {what}")]
    Corrupt { ino: Ino, what: String },
    /// The volume was formatted by an incompatible Kiseki or not formatted at all.
    #[error("volume format: {0}")]
    Format(String),
    #[error("metadata engine: {0}")]
    Kv(#[from] KvError),
    /// Object storage failed after retries (or with a permanent error).
    #[error("object storage {op} {key}: {source}")]
    Storage {
        op: &'static str,
        key: String,
        source: Box<opendal::Error>,
    },
    /// Object storage refused the probe of format, mount or connect: unreachable,
    /// no such bucket, no permission.
    #[error("object storage {store} is not usable: {why}")]
    StoreUnusable { store: String, why: String },
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
    /// A block another client staged (write-back) is not in object storage yet: its
    /// client is still uploading it past the wait, or stopped before it could.
    #[error("block {index} of slice {slice} is not uploaded yet: {why}")]
    NotUploaded { slice: u64, index: u32, why: String },
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

/// What a caller can do about an error, coarser than its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The name or inode does not exist.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// Permission bits, ownership or the sticky bit refuse it.
    PermissionDenied,
    /// The request is malformed or contradicts the file's type (EINVAL, ENOTDIR,
    /// EISDIR, ENOTEMPTY, ENAMETOOLONG, ...): retrying it unchanged fails again.
    InvalidInput,
    /// Space or inode quota, or the storage, is full.
    NoSpace,
    /// The volume or client is read-only.
    ReadOnly,
    /// The operation is not supported by Kiseki.
    Unsupported,
    /// A lock or the store is held; trying again later may succeed.
    WouldBlock,
    /// The caller gave up (a signal), or a lock wait would deadlock.
    Interrupted,
    /// A file handle or client that is closed or was never valid.
    BadHandle,
    /// Stored metadata or data is missing or does not hold what it must: data loss.
    Corrupt,
    /// The metadata engine or object storage failed or is unreachable; the operation
    /// did not happen (or, for writes, the handle is unusable).
    Unavailable,
}

impl Error {
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::Exists(_) => libc::EEXIST,
            Error::NotDir(_) => libc::ENOTDIR,
            Error::IsDir(_) => libc::EISDIR,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::NameTooLong { .. } => libc::ENAMETOOLONG,
            Error::Invalid(_) => libc::EINVAL,
            Error::Access(_) => libc::EACCES,
            Error::NotPermitted(_) => libc::EPERM,
            Error::NoData(_) => libc::ENODATA,
            Error::Range(_) => libc::ERANGE,
            Error::TooBig(_) => libc::E2BIG,
            Error::TooManyLinks(_) => libc::EMLINK,
            Error::NoSpace(_) => libc::ENOSPC,
            Error::NoInodes => libc::ENOSPC,
            Error::FileTooBig(_) => libc::EFBIG,
            Error::NotSupported(_) => libc::EOPNOTSUPP,
            Error::ReadOnly => libc::EROFS,
            Error::Busy(_) => libc::EBUSY,
            Error::NoSuchOffset(_) => libc::ENXIO,
            Error::Loop(_) => libc::ELOOP,
            Error::WouldBlock(_) => libc::EAGAIN,
            Error::Deadlock(_) => libc::EDEADLK,
            Error::Interrupted(_) => libc::EINTR,
            Error::BadHandle(_) => libc::EBADF,
            Error::Corrupt { .. } => libc::EIO,
            Error::Format(_) => libc::EINVAL,
            Error::Kv(e) => e.errno(),
            Error::Storage { .. } => libc::EIO,
            Error::StoreUnusable { .. } => libc::EIO,
            Error::MissingBlock { .. } => libc::EIO,
            Error::CorruptBlock { .. } => libc::EIO,
            Error::Poisoned(_) => libc::EIO,
            Error::NotUploaded { .. } => libc::EIO,
            Error::Config(_) => libc::EINVAL,
            Error::Shared(e) => e.errno(),
            Error::Io(_) => libc::EIO,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::NotFound(_) => K::NotFound,
            Error::Exists(_) => K::AlreadyExists,
            Error::NotDir(_)
            | Error::IsDir(_)
            | Error::NotEmpty(_)
            | Error::NameTooLong { .. }
            | Error::Invalid(_)
            | Error::NoData(_)
            | Error::Range(_)
            | Error::TooBig(_)
            | Error::TooManyLinks(_)
            | Error::FileTooBig(_)
            | Error::NoSuchOffset(_)
            | Error::Loop(_)
            | Error::Format(_)
            | Error::Config(_) => K::InvalidInput,
            Error::Access(_) | Error::NotPermitted(_) => K::PermissionDenied,
            Error::NoSpace(_) | Error::NoInodes => K::NoSpace,
            Error::NotSupported(_) => K::Unsupported,
            Error::ReadOnly => K::ReadOnly,
            Error::Busy(_) | Error::WouldBlock(_) => K::WouldBlock,
            Error::Deadlock(_) | Error::Interrupted(_) => K::Interrupted,
            Error::BadHandle(_) => K::BadHandle,
            Error::Corrupt { .. } | Error::MissingBlock { .. } | Error::CorruptBlock { .. } => {
                K::Corrupt
            }
            Error::Kv(e) => match e {
                KvError::Missing(_) => K::NotFound,
                KvError::InUse(_) => K::WouldBlock,
                KvError::BadUrl(_) => K::InvalidInput,
                KvError::Conflict | KvError::Unavailable(_) | KvError::Engine(_) => K::Unavailable,
            },
            Error::Storage { .. }
            | Error::StoreUnusable { .. }
            | Error::Poisoned(_)
            | Error::NotUploaded { .. }
            | Error::Io(_) => K::Unavailable,
            Error::Shared(e) => e.kind(),
        }
    }

    pub(crate) fn corrupt(ino: Ino, what: impl Into<String>) -> Self {
        Error::Corrupt {
            ino,
            what: what.into(),
        }
    }

    /// True when the operation may be retried as a whole (optimistic conflict).
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Error::Kv(KvError::Conflict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table_is_distinct_where_it_matters() {
        assert_eq!(Error::NotFound("x".into()).errno(), libc::ENOENT);
        assert_eq!(Error::corrupt(Ino(5), "bad").errno(), libc::EIO);
        assert_eq!(Error::Kv(KvError::Conflict).errno(), libc::EIO);
        assert_eq!(
            Error::NameTooLong { len: 300, max: 255 }.errno(),
            libc::ENAMETOOLONG
        );
        assert_eq!(Error::Poisoned(1).errno(), libc::EIO);
    }

    #[test]
    fn kinds_follow_what_a_caller_can_do() {
        assert_eq!(
            Error::Access("x".into()).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(Error::NoInodes.kind(), ErrorKind::NoSpace);
        assert_eq!(
            Error::Kv(KvError::Unavailable("x".into())).kind(),
            ErrorKind::Unavailable
        );
        let shared = Error::Shared(std::sync::Arc::new(Error::MissingBlock {
            slice: 1,
            key: "k".into(),
        }));
        assert_eq!(
            (shared.kind(), shared.errno()),
            (ErrorKind::Corrupt, libc::EIO)
        );
    }
}
