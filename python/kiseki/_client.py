"""The Python face of a Kiseki volume: `connect()`, `Client` with `os`-shaped path
operations, and `open()` with the builtin's exact signature and behaviour."""

from __future__ import annotations

import io
import math
import os
import stat as _stat
import threading
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import _kiseki
from . import _file
from ._file import BufferedRandom, BufferedReader, BufferedWriter, FileIO, TextIOWrapper
from ._stat import _stat_result

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

#: Buffer size of `open()` with the default `buffering=-1`: every raw call crosses into
#: the Rust runtime, so buffers larger than `io.DEFAULT_BUFFER_SIZE` pay off.
DEFAULT_BUFFER_SIZE = 1 << 20

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2


def _path(path: Any) -> str:
    """A volume path from what `os` functions accept, with the same errors."""
    if isinstance(path, int) and not isinstance(path, bool):
        raise TypeError("kiseki paths are str, bytes or os.PathLike (there are no file descriptors)")
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if "\x00" in p:
        raise ValueError("embedded null byte")
    return p


def _seconds_to_ns(t: Any) -> int:
    """Seconds (int or float) to nanoseconds exactly as `os.utime` converts `times`:
    the fraction is rounded down (toward minus infinity), without the precision lost
    by multiplying the whole float by 1e9."""
    if isinstance(t, int):
        return t * 10**9
    if not isinstance(t, float):
        raise TypeError(f"utime: 'times' must contain numbers, not {type(t).__name__}")
    frac, whole = math.modf(t)
    frac = math.floor(frac * 1e9)
    if frac >= 10**9:
        frac -= 10**9
        whole += 1.0
    elif frac < 0:
        frac += 10**9
        whole -= 1.0
    return int(whole) * 10**9 + int(frac)


def _option_strings(options: dict) -> List[str]:
    out = []
    for key, value in options.items():
        key = key.replace("_", "-")
        if value is True:
            out.append(key)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple, set, frozenset)):
            out.append(f"{key}=" + ":".join(str(int(v)) for v in value))
        elif key == "umask" and isinstance(value, int):
            out.append(f"{key}={value:o}")
        else:
            out.append(f"{key}={value}")
    return out


class DirEntry:
    """One entry of `Client.scandir`, shaped like `os.DirEntry` (its attributes come
    from the directory listing itself: no extra round trip per entry)."""

    __slots__ = ("name", "path", "_ino", "_is_dir", "_is_symlink", "_lstat", "_client")

    def __init__(self, client: "Client", parent: str, item: Tuple[Any, ...]) -> None:
        name, ino, is_dir, is_symlink, st = item
        self.name = name
        self.path = parent.rstrip("/") + "/" + name if parent not in ("", ".") else name
        self._ino = ino
        self._is_dir = is_dir
        self._is_symlink = is_symlink
        self._lstat = _stat_result(st)
        self._client = client

    def inode(self) -> int:
        return self._ino

    def is_symlink(self) -> bool:
        return self._is_symlink

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        if self._is_symlink and follow_symlinks:
            return self._client.isdir(self.path)
        return self._is_dir

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        if self._is_symlink and follow_symlinks:
            return self._client.isfile(self.path)
        return _stat.S_ISREG(self._lstat.st_mode)

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        if self._is_symlink and follow_symlinks:
            return self._client.stat(self.path)
        return self._lstat

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"<kiseki.DirEntry {self.name!r}>"


class _ScandirIterator:
    def __init__(self, entries: List[DirEntry]) -> None:
        self._it = iter(entries)

    def __iter__(self) -> "_ScandirIterator":
        return self

    def __next__(self) -> DirEntry:
        return next(self._it)

    def __enter__(self) -> "_ScandirIterator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._it = iter(())


class Client:
    """A connection to one Kiseki volume. Thread safe; a context manager that closes
    (flushing every open file) on exit. Paths are relative to the volume root; a
    leading `/` is allowed."""

    def __init__(self, meta_url: Optional[str] = None, **options: Any) -> None:
        if meta_url is None:
            meta_url = os.environ.get("KISEKI_META_URL") or None
        if meta_url is not None and not isinstance(meta_url, str):
            raise TypeError(f"meta_url must be a str, not {type(meta_url).__name__}")
        self._options = dict(options)
        self._pid = os.getpid()
        self._inner = _kiseki.Client(meta_url, _option_strings(options))

    @property
    def meta_url(self) -> Optional[str]:
        return self._inner.meta_url

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def close(self) -> None:
        """Flushes every open file of this client and ends its session. Files still
        open fail with EBADF afterwards. Idempotent."""
        self._inner.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<kiseki.Client {self.meta_url or 'default volume'} {state}>"

    # -- files -------------------------------------------------------------------

    def open(
        self,
        file: PathLike,
        mode: str = "r",
        buffering: int = -1,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
        closefd: bool = True,
        opener: Optional[Callable[..., Any]] = None,
    ) -> Any:
        """Opens a file of the volume exactly as the builtin `open()` opens a local
        one: same modes, same return types (`io.BufferedReader`, `BufferedWriter`,
        `BufferedRandom`, `TextIOWrapper`, or a raw `FileIO` with `buffering=0`), same
        exceptions."""
        if not isinstance(mode, str):
            raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
        if not isinstance(buffering, int) or isinstance(buffering, bool):
            raise TypeError(f"'{type(buffering).__name__}' object cannot be interpreted as an integer")
        if encoding is not None and not isinstance(encoding, str):
            raise TypeError(f"open() argument 'encoding' must be str or None, not {type(encoding).__name__}")
        if errors is not None and not isinstance(errors, str):
            raise TypeError(f"open() argument 'errors' must be str or None, not {type(errors).__name__}")
        if newline is not None and not isinstance(newline, str):
            raise TypeError(f"open() argument 'newline' must be str or None, not {type(newline).__name__}")
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        if opener is not None:
            raise ValueError("kiseki.open does not take an opener (there are no file descriptors)")
        path = _path(file)
        modes = set(mode)
        if modes - set("axrwb+t") or len(mode) > len(modes):
            raise ValueError(f"invalid mode: '{mode}'")
        creating, reading, writing, appending = "x" in modes, "r" in modes, "w" in modes, "a" in modes
        updating, text, binary = "+" in modes, "t" in modes, "b" in modes
        if text and binary:
            raise ValueError("can't have text and binary mode at once")
        if creating + reading + writing + appending > 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        if not (creating or reading or writing or appending):
            raise ValueError("Must have exactly one of create/read/write/append mode and at most one plus")
        if binary and encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if binary and errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if binary and newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
        if binary and buffering == 1:
            warnings.warn(
                "line buffering (buffering=1) isn't supported in binary mode, the default buffer size will be used",
                RuntimeWarning,
                2,
            )
        if not binary:
            if hasattr(io, "text_encoding"):
                encoding = io.text_encoding(encoding)
            elif encoding is None:
                import locale

                encoding = locale.getpreferredencoding(False)
        # As the builtin, the file is opened (created, truncated) before unbuffered
        # text, an unknown encoding or a bad newline fail; an unknown error handler
        # only fails when it is used.

        flags = os.O_RDWR if updating else (os.O_RDONLY if reading else os.O_WRONLY)
        if writing:
            flags |= os.O_CREAT | os.O_TRUNC
        elif creating:
            flags |= os.O_CREAT | os.O_EXCL
        elif appending:
            flags |= os.O_CREAT | os.O_APPEND
        if creating:
            raw_mode = "xb+" if updating else "xb"
        elif appending:
            raw_mode = "ab+" if updating else "ab"
        elif updating:
            raw_mode = "rb+"
        elif reading:
            raw_mode = "rb"
        else:
            raw_mode = "wb"

        handle = self._inner.open(path, flags, 0o666)
        raw = FileIO(handle, path, raw_mode, self)
        try:
            if handle.is_dir:
                raise IsADirectoryError(21, os.strerror(21), path)
            if appending:
                raw.seek(0, os.SEEK_END)
            line_buffering = False
            if buffering == 1:
                buffering = -1
                line_buffering = True
            if buffering < 0:
                buffering = DEFAULT_BUFFER_SIZE
            if buffering == 0:
                if binary:
                    return raw
                raise ValueError("can't have unbuffered text I/O")
            buffer: Any
            if updating:
                buffer = BufferedRandom(raw, buffering)
            elif creating or writing or appending:
                buffer = BufferedWriter(raw, buffering)
            else:
                buffer = BufferedReader(raw, buffering)
            if binary:
                return buffer
            wrapper = TextIOWrapper(buffer, encoding, errors, newline, line_buffering)
            wrapper.mode = mode
            return wrapper
        except BaseException:
            raw.close()
            raise

    def copy(self, src: PathLike, dst: PathLike) -> int:
        """Copies file `src` to `dst` (replacing it) by sharing its data: no bytes are
        read or written, however large the file. Returns the size copied."""
        return self._inner.copy_file(_path(src), _path(dst))

    def clone(self, src: PathLike, dst: PathLike, *, preserve: bool = False) -> Tuple[int, int]:
        """Copies ``src`` (a file, a symlink or a whole directory tree) to ``dst``, which
        must not exist, by metadata only: the copy shares the source's data, costs no
        object storage until either side is written, and a write to either side never
        shows in the other. As ``cp -r``, the copy is the caller's and stamped now,
        unless ``preserve`` (modes, times, and owners for root). Returns the number of
        entries made and the bytes shared."""
        return self._inner.clone_tree(_path(src), _path(dst), preserve)

    # -- metadata ------------------------------------------------------------------

    def stat(self, path: PathLike, *, follow_symlinks: bool = True) -> os.stat_result:
        return _stat_result(self._inner.stat(_path(path), follow_symlinks))

    def lstat(self, path: PathLike) -> os.stat_result:
        return _stat_result(self._inner.stat(_path(path), False))

    def _mode(self, path: PathLike, follow: bool) -> Optional[int]:
        """`st_mode`, or None where `os.path` predicates answer False (missing,
        inaccessible, invalid)."""
        try:
            return self.stat(path, follow_symlinks=follow).st_mode
        except (OSError, ValueError):
            return None

    def exists(self, path: PathLike) -> bool:
        return self._mode(path, True) is not None

    def lexists(self, path: PathLike) -> bool:
        return self._mode(path, False) is not None

    def isdir(self, path: PathLike) -> bool:
        return _stat.S_ISDIR(self._mode(path, True) or 0)

    def isfile(self, path: PathLike) -> bool:
        return _stat.S_ISREG(self._mode(path, True) or 0)

    def islink(self, path: PathLike) -> bool:
        return _stat.S_ISLNK(self._mode(path, False) or 0)

    def getsize(self, path: PathLike) -> int:
        return self.stat(path).st_size

    def access(self, path: PathLike, mode: int) -> bool:
        return self._inner.access(_path(path), mode)

    def chmod(self, path: PathLike, mode: int, *, follow_symlinks: bool = True) -> None:
        self._inner.chmod(_path(path), mode, follow_symlinks)

    def chown(self, path: PathLike, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
        self._inner.chown(_path(path), uid, gid, follow_symlinks)

    def utime(
        self,
        path: PathLike,
        times: Optional[Tuple[float, float]] = None,
        *,
        ns: Optional[Tuple[int, int]] = None,
        follow_symlinks: bool = True,
    ) -> None:
        """Sets access and modification times like `os.utime` (`times` in seconds or
        `ns` in nanoseconds; neither means now)."""
        if times is not None and ns is not None:
            raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
        if times is not None:
            if not isinstance(times, tuple) or len(times) != 2:
                raise TypeError("utime: 'times' must be either a tuple of two ints or None")
            ns = (_seconds_to_ns(times[0]), _seconds_to_ns(times[1]))
        if ns is not None:
            if not isinstance(ns, tuple) or len(ns) != 2:
                raise TypeError("utime: 'ns' must be a tuple of two ints")
            a, m = (divmod(int(v), 10**9) for v in ns)
            self._inner.utime(_path(path), a, m, follow_symlinks)
        else:
            self._inner.utime(_path(path), None, None, follow_symlinks)

    def truncate(self, path: PathLike, length: int) -> None:
        if length < 0:
            raise OSError(22, "Invalid argument", _path(path))
        self._inner.truncate(_path(path), length)

    def getxattr(self, path: PathLike, attribute: str, *, follow_symlinks: bool = True) -> bytes:
        return self._inner.getxattr(_path(path), attribute, follow_symlinks)

    def setxattr(
        self, path: PathLike, attribute: str, value: bytes, flags: int = 0, *, follow_symlinks: bool = True
    ) -> None:
        self._inner.setxattr(_path(path), attribute, bytes(value), flags, follow_symlinks)

    def listxattr(self, path: PathLike = "/", *, follow_symlinks: bool = True) -> List[str]:
        return self._inner.listxattr(_path(path), follow_symlinks)

    def removexattr(self, path: PathLike, attribute: str, *, follow_symlinks: bool = True) -> None:
        self._inner.removexattr(_path(path), attribute, follow_symlinks)

    def restore(self, path: PathLike) -> Tuple[int, List[str]]:
        """Puts back what the trash keeps at ``path``: an hour directory of
        ``/.trash`` (every entry in it) or one entry, never overwriting. Returns the
        number of entries restored and, for each entry left in the trash, why."""
        return self._inner.restore(_path(path))

    def stats(self) -> Dict[str, float]:
        """The metrics of this process's Kiseki clients (all of them together), as
        ``{"name{labels}": value}``: the series a mount serves to Prometheus, for
        programs that have no mount to scrape."""
        return self._inner.stats()

    def statvfs(self, path: PathLike = "/") -> os.statvfs_result:
        self.stat(path)
        return os.statvfs_result(self._inner.statvfs())

    # -- namespace -----------------------------------------------------------------

    def listdir(self, path: PathLike = "/") -> List[str]:
        return self._inner.listdir(_path(path))

    def scandir(self, path: PathLike = "/") -> _ScandirIterator:
        p = _path(path)
        return _ScandirIterator([DirEntry(self, p, item) for item in self._inner.scandir(p)])

    def walk(
        self,
        top: PathLike = "/",
        topdown: bool = True,
        onerror: Optional[Callable[[OSError], Any]] = None,
        followlinks: bool = False,
    ) -> Iterator[Tuple[str, List[str], List[str]]]:
        """Like `os.walk`."""
        top = _path(top)
        try:
            entries = list(self.scandir(top))
        except OSError as e:
            if onerror is not None:
                onerror(e)
            return
        dirs, files, walk_into = [], [], []
        for e in entries:
            is_dir = e.is_dir()
            (dirs if is_dir else files).append(e.name)
            if is_dir and not topdown and (followlinks or not e.is_symlink()):
                walk_into.append(e.path)
        if topdown:
            yield top, dirs, files
            for name in dirs:
                path = top.rstrip("/") + "/" + name if top not in ("", ".") else name
                if followlinks or not self.islink(path):
                    yield from self.walk(path, topdown, onerror, followlinks)
        else:
            for path in walk_into:
                yield from self.walk(path, topdown, onerror, followlinks)
            yield top, dirs, files

    def mkdir(self, path: PathLike, mode: int = 0o777) -> None:
        self._inner.mkdir(_path(path), mode)

    def makedirs(self, name: PathLike, mode: int = 0o777, exist_ok: bool = False) -> None:
        """Like `os.makedirs`."""
        path = _path(name).rstrip("/")
        if not path:
            if not exist_ok:
                raise FileExistsError(17, os.strerror(17), _path(name))
            return
        head, _, tail = path.rpartition("/")
        if head and not self.exists(head):
            try:
                self.makedirs(head, exist_ok=True)
            except FileExistsError:
                pass
        try:
            self.mkdir(path, mode)
        except OSError:
            if not exist_ok or not self.isdir(path):
                raise

    def rmdir(self, path: PathLike) -> None:
        self._inner.rmdir(_path(path))

    def remove(self, path: PathLike) -> None:
        self._inner.unlink(_path(path))

    unlink = remove

    def rename(self, src: PathLike, dst: PathLike, *, flags: int = 0) -> None:
        """Like `os.rename`; `flags` may be RENAME_NOREPLACE or RENAME_EXCHANGE
        (renameat2)."""
        self._inner.rename(_path(src), _path(dst), flags)

    def replace(self, src: PathLike, dst: PathLike) -> None:
        self._inner.rename(_path(src), _path(dst), 0)

    def link(self, src: PathLike, dst: PathLike) -> None:
        self._inner.link(_path(src), _path(dst))

    def symlink(self, src: PathLike, dst: PathLike) -> None:
        """Creates `dst` as a symbolic link pointing to `src` (as `os.symlink`)."""
        self._inner.symlink(_path(src), _path(dst))

    def readlink(self, path: PathLike) -> str:
        return self._inner.readlink(_path(path))


def connect(meta_url: Optional[str] = None, **options: Any) -> Client:
    """Connects to the volume at `meta_url`; without one, to `$KISEKI_META_URL` or
    else the embedded default volume that `kiseki mount MOUNTPOINT` uses.

    Options: `buffer_size`, `spill_size`, `spill_dir`, `cache_dir`, `cache_size`,
    `memory_cache_size` (sizes as ints or strings like "512M"), `read_only`,
    `meta_sync`, `name`, `session_ttl` (seconds); `uid`, `gid`, `groups` (a list)
    and `umask` (an int) to act as another user, which needs root."""
    return Client(meta_url, **options)


_file._connect = connect


def format(
    meta_url: str,
    name: str,
    *,
    storage: str = "fs",
    bucket: Optional[str] = None,
    block_size: Union[int, str] = 4 << 20,
    compression: str = "none",
    capacity: Union[int, str] = 0,
    inodes: int = 0,
    region: Optional[str] = None,
    access_key: Optional[str] = None,
    secret_key: Optional[str] = None,
) -> dict:
    """Creates a volume: metadata at `meta_url`, data in `storage` (`fs`: `bucket` is a
    directory; `s3`: `bucket` is an endpoint URL with the bucket; `memory`). Raises
    `FileExistsError` if `meta_url` already holds a volume. Returns its name and uuid."""
    options = [
        ("storage", storage),
        ("block-size", str(block_size)),
        ("compression", compression),
        ("capacity", str(capacity)),
        ("inodes", str(inodes)),
    ]
    for key, value in (("bucket", bucket), ("region", region), ("access-key", access_key), ("secret-key", secret_key)):
        if value is not None:
            options.append((key, str(value)))
    vol, uuid = _kiseki.format(meta_url, name, options)
    return {"name": vol, "uuid": uuid}


_default: Optional[Client] = None
_default_lock = threading.Lock()


def fsck(meta_url: Optional[str] = None, *, objects: bool = True, read: bool = False) -> dict:
    """Checks the volume at `meta_url` (default: `$KISEKI_META_URL`, else the embedded
    default volume) as `kiseki fsck` does: the metadata's invariants and counters and,
    with `objects`, that every referenced block exists in object storage and none is
    leaked; with `read` (`kiseki fsck --objects`), also reads every block and checks it
    against its recorded checksums. Works while the volume is mounted (on a snapshot,
    `in_use` is then True). Returns the counts and `problems`, a list of strings
    (empty: consistent)."""
    if meta_url is None:
        meta_url = os.environ.get("KISEKI_META_URL") or None
    inodes, used, sustained, pending, blocks, problems, in_use = _kiseki.fsck(
        meta_url, objects, read
    )
    return {
        "inodes": inodes,
        "used_space": used,
        "open_unlinked": sustained,
        "pending_deletions": pending,
        "blocks": blocks,
        "problems": problems,
        "in_use": in_use,
    }


def default_client() -> Client:
    """The client `kiseki.open()` uses without `client=`: connected on first use to
    `$KISEKI_META_URL` or the default volume (again in a forked child)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed or _default._pid != os.getpid():
            _default = Client()
        return _default


def open(
    file: PathLike,
    mode: str = "r",
    buffering: int = -1,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
    closefd: bool = True,
    opener: Optional[Callable[..., Any]] = None,
    *,
    client: Optional[Client] = None,
) -> Any:
    """The builtin `open()` for Kiseki paths (see `Client.open`)."""
    c = client if client is not None else default_client()
    return c.open(file, mode, buffering, encoding, errors, newline, closefd, opener)
