//! The metadata layer's error type and its errno table.
//!
//! Every variant maps to exactly one errno in [`Error::errno`], with no wildcard arm,
//! so adding a variant forces a decision about what the kernel, C and Python see.

use super::kv::KvError;
use super::types::Ino;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
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
    }
}
