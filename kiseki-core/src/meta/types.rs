//! Plain data types of the metadata layer: inodes, attributes, requests and replies.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// An inode number. 1 is the root directory; 0 is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(pub u64);

impl Ino {
    pub const ROOT: Ino = Ino(1);
    /// The trash directory, `.trash` in the root (see `meta::trash`). The number is
    /// JuiceFS's, far above any allocated inode.
    pub const TRASH: Ino = Ino(0x7FFF_FFFF_1000_0000);
}

/// `Attr::flags`: the inode is the trash, one of its hour directories, or an entry in
/// one. Such inodes are read-only to everyone (see `meta::trash`).
pub const FLAG_TRASH: u32 = 1;

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    BlockDev,
    CharDev,
    Socket,
}

impl FileKind {
    pub fn code(self) -> u8 {
        match self {
            FileKind::File => 1,
            FileKind::Dir => 2,
            FileKind::Symlink => 3,
            FileKind::Fifo => 4,
            FileKind::BlockDev => 5,
            FileKind::CharDev => 6,
            FileKind::Socket => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => FileKind::File,
            2 => FileKind::Dir,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::BlockDev,
            6 => FileKind::CharDev,
            7 => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `S_IF*` bits of `st_mode`.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::BlockDev => libc::S_IFBLK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }

    /// From the `S_IF*` bits of a mode; `0` means a regular file, as mknod(2) says.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            0 | libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFBLK => FileKind::BlockDev,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `DT_*` value readdir reports.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileKind::File => libc::DT_REG,
            FileKind::Dir => libc::DT_DIR,
            FileKind::Symlink => libc::DT_LNK,
            FileKind::Fifo => libc::DT_FIFO,
            FileKind::BlockDev => libc::DT_BLK,
            FileKind::CharDev => libc::DT_CHR,
            FileKind::Socket => libc::DT_SOCK,
        }
    }
}

/// A point in time with nanosecond precision (seconds may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (sec, nsec) = if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                };
                Timespec { sec, nsec }
            }
        }
    }
}

/// Permission and special bits of a mode (`07777`).
pub const PERM_MASK: u16 = 0o7777;

/// Attributes of an inode, as stored (see `records::encode_attr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`07777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub nlink: u32,
    pub length: u64,
    /// Parent directory of a directory (for `..` and rename loop checks); for other kinds
    /// the parent it was created in (informational: hard links have several).
    pub parent: Ino,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    /// Directories only: the sequence number the next entry gets (readdir cookies).
    pub next_entry_seq: u64,
    pub flags: u32,
    /// Regular files: how many bytes of the file hold data rather than holes. Space
    /// accounting and `st_blocks` count these, so sparse files are cheap.
    pub stored: u64,
}

impl Attr {
    /// `st_mode`: type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.mode)
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    /// A new empty directory in `parent` (nlink 2, created `now`).
    pub fn new_dir(mode: u16, uid: u32, gid: u32, parent: Ino, now: Timespec) -> Attr {
        Attr {
            kind: FileKind::Dir,
            mode,
            uid,
            gid,
            rdev: 0,
            nlink: 2,
            length: 4096,
            parent,
            atime: now,
            mtime: now,
            ctime: now,
            next_entry_seq: 0,
            flags: 0,
            stored: 0,
        }
    }

    /// The trash, an hour directory of it, or something kept in it (read-only).
    pub fn in_trash(&self) -> bool {
        self.flags & FLAG_TRASH != 0
    }

    /// Bytes of storage the inode is charged for, in whole 4 KiB units: a file's data
    /// bytes (holes are free), a directory's or symlink's one unit.
    pub fn space(&self) -> u64 {
        match self.kind {
            FileKind::File => align4k(self.stored),
            FileKind::Dir | FileKind::Symlink => 4096,
            _ => 0,
        }
    }

    /// 512-byte blocks for `st_blocks`.
    pub fn blocks(&self) -> u64 {
        self.space().div_ceil(512)
    }
}

pub fn align4k(len: u64) -> u64 {
    len.div_ceil(4096).saturating_mul(4096)
}

/// An inode and its attributes, as lookup and create return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ino: Ino,
    pub attr: Attr,
}

/// The caller of an operation, for permission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group need not be repeated).
    pub groups: Vec<u32>,
    pub pid: u32,
}

impl Ctx {
    pub fn root() -> Self {
        Ctx {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            pid: 0,
        }
    }

    pub fn user(uid: u32, gid: u32, groups: Vec<u32>) -> Self {
        Ctx {
            uid,
            gid,
            groups,
            pid: 0,
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// A time to set: an explicit value or "now" (`UTIME_NOW`). Omission is `None` in
/// [`SetAttr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timespec),
}

/// A setattr request: `None` leaves a field unchanged (`UTIME_OMIT`, `-1` owner).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// An explicit ctime (only FUSE on some platforms sends one).
    pub ctime: Option<Timespec>,
    /// The request comes through an open file handle (ftruncate, futimens): write
    /// permission was checked when the file was opened.
    pub via_handle: bool,
    /// Clear setuid, and setgid when group-executable (the kernel asks for it on write
    /// and truncate by unprivileged callers).
    pub kill_suid: bool,
    /// A truncation to 0 by open(O_TRUNC): when the volume keeps a trash, the old
    /// content moves there (as a new inode) instead of being deleted.
    pub to_trash: bool,
}

/// One directory entry as readdir returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: FileKind,
    /// The cookie to pass back to continue after this entry.
    pub offset: u64,
    /// Filled by readdirplus.
    pub attr: Option<Attr>,
}

/// Volume usage for statfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub total_space: u64,
    pub avail_space: u64,
    /// Of the used space, what fallocate reserved and nothing has written yet.
    pub reserved_space: u64,
    /// Of the used space, what inline slices hold in the metadata engine.
    pub inline_space: u64,
    pub used_inodes: u64,
    pub avail_inodes: u64,
}

/// An open for execve (the kernel's `__FMODE_EXEC`): it needs execute permission, not
/// read, so a program whose only execute bit is its group's or others' still runs.
pub const O_EXEC: i32 = 0o40;

/// `rename(2)` flags (Linux `renameat2`).
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

/// `setxattr(2)` flags.
pub const XATTR_CREATE: u32 = 1;
pub const XATTR_REPLACE: u32 = 2;

/// Limits enforced everywhere a name, target or attribute enters the engine.
pub const NAME_MAX: usize = 255;
pub const SYMLINK_MAX: usize = 4096;
pub const XATTR_NAME_MAX: usize = 255;
pub const XATTR_SIZE_MAX: usize = 65536;
/// Total bytes of names listxattr may return (Linux `XATTR_LIST_MAX`).
pub const XATTR_LIST_MAX: usize = 65536;
/// Hard links per inode (and subdirectories per directory).
pub const LINK_MAX: u32 = 65000;
/// Largest file: 2^63 - 1 would overflow chunk arithmetic; 2^52 is plenty (4 PiB).
pub const MAX_FILE_SIZE: u64 = 1 << 52;
