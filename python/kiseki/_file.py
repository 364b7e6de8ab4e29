"""File objects: a raw file over the Rust core, and the io classes built on it.

`open()` returns the standard `io` types (subclasses adding `fsync()`), so code that
checks `isinstance(f, io.BufferedReader)` or hands `f` to libraries expecting a real
file works unchanged.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable, Optional

from . import _kiseki
from ._stat import _stat_result

# How `_reopen` connects: set by `kiseki._client` when it is imported (it imports this
# module, so this module does not import it back).
_connect: Optional[Callable[..., Any]] = None

__all__ = ["FileIO", "BufferedReader", "BufferedWriter", "BufferedRandom", "TextIOWrapper"]

_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR


class FileIO(io.RawIOBase):
    """An unbuffered Kiseki file, the counterpart of `io.FileIO`.

    `readinto` fills the caller's buffer directly from the core (no intermediate
    copy). There is no OS file descriptor behind it: `fileno()` raises
    `io.UnsupportedOperation`, as `io.BytesIO` does.
    """

    def __init__(self, raw: _kiseki.RawFile, name: str, mode: str, client: Any) -> None:
        super().__init__()
        self._raw = raw
        self.name = name
        self._mode = mode
        # Keeps the connection open while the file is (closing the client makes every
        # file of it fail with EBADF).
        self._client = client
        access = raw.flags & _ACCMODE
        self._seekable: Optional[bool] = None
        self._readable = access in (os.O_RDONLY, os.O_RDWR)
        self._writable = access in (os.O_WRONLY, os.O_RDWR)

    @property
    def mode(self) -> str:
        return self._mode

    def __repr__(self) -> str:
        state = "closed " if self.closed else ""
        return f"<kiseki.FileIO {state}name={self.name!r} mode={self._mode!r}>"

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def readable(self) -> bool:
        self._check_open()
        return self._readable

    def writable(self) -> bool:
        self._check_open()
        return self._writable

    def seekable(self) -> bool:
        self._check_open()
        if self._seekable is None:
            self._seekable = True
        return self._seekable

    def isatty(self) -> bool:
        self._check_open()
        return False

    def fileno(self) -> int:
        self._check_open()
        raise io.UnsupportedOperation(
            "kiseki files have no OS file descriptor (use a kiseki mount for APIs that need one)"
        )

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        return self._raw.readinto(buffer)

    def readall(self) -> bytes:
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        return self._raw.readall()

    def read(self, size: Optional[int] = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            return self.readall()
        buf = bytearray(size)
        n = self.readinto(buf)
        del buf[n:]
        return bytes(buf)

    def write(self, buffer: Any) -> int:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        return self._raw.write(buffer)

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        if not isinstance(pos, int):
            raise TypeError(f"an integer is required (got type {type(pos).__name__})")
        try:
            at = self._raw.seek(pos, whence)
        except OSError:
            # io.FileIO decides seekability on its first lseek: a failing first seek
            # leaves the file unseekable for good. Behave the same.
            if self._seekable is None:
                self._seekable = False
            raise
        if self._seekable is None:
            self._seekable = True
        return at

    def tell(self) -> int:
        self._check_open()
        if self._seekable is None:
            self._seekable = True  # io.FileIO.tell is a successful lseek too
        return self._raw.tell()

    def truncate(self, size: Optional[int] = None) -> int:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        if size is None:
            size = self.tell()
        if size < 0:
            raise OSError(22, "Invalid argument", self.name)
        self._raw.truncate(size)
        return size

    def flush(self) -> None:
        """Uploads and commits what was written: other clients see it afterwards."""
        super().flush()
        if self._writable:
            self._raw.flush()

    def fsync(self) -> None:
        """Makes what was written power-loss durable."""
        self._check_open()
        self._raw.fsync()

    def fstat(self) -> os.stat_result:
        self._check_open()
        return _stat_result(self._raw.fstat())

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            self._raw.close()


class _Syncable:
    """`flush()` that reaches the volume, and `fsync()`, for the buffered classes."""

    raw: FileIO

    def flush(self) -> None:
        super().flush()  # type: ignore[misc]
        # BufferedWriter.flush only hands its buffer to the raw file; committing it is
        # what makes a flush visible to other clients, as on a local file.
        self.raw.flush()

    def fsync(self) -> None:
        self.flush()
        self.raw.fsync()


class BufferedReader(io.BufferedReader):
    """`io.BufferedReader` over a Kiseki file; picklable (it reopens by path,
    read-only, at the same position) so it can go to DataLoader workers."""

    def fsync(self) -> None:
        self.raw.fsync()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()

    def __reduce__(self) -> Any:
        raw: FileIO = self.raw  # type: ignore[assignment]
        client = raw._client
        if self.closed:
            raise ValueError("cannot pickle a closed file")
        st = raw.fstat()
        return (
            _reopen,
            (client.meta_url, client._options, raw.name, self.tell(), (st.st_ino, st.st_size, st.st_mtime_ns)),
        )


class BufferedWriter(_Syncable, io.BufferedWriter):
    """`io.BufferedWriter` over a Kiseki file, with `fsync()`."""


class BufferedRandom(_Syncable, io.BufferedRandom):
    """`io.BufferedRandom` over a Kiseki file, with `fsync()`."""


class TextIOWrapper(io.TextIOWrapper):
    """`io.TextIOWrapper` over a Kiseki file, with `fsync()`."""

    def fsync(self) -> None:
        self.flush()
        self.buffer.fsync()


_readers: dict = {}


def _reopen(
    meta_url: Optional[str], options: dict, path: str, pos: int, version: Optional[tuple] = None
) -> BufferedReader:
    """Unpickles a read-only file in another process through a read-only client of
    the same volume (which may be opened while the original process holds it).

    A read-only client sees the volume as it was when it connected, so the cached one
    is replaced when it does not show the file as it was when pickled (`version`:
    inode, size, mtime)."""
    key = (meta_url, tuple(sorted(options.items())))
    client = _readers.get(key)
    if client is not None and not client.closed and client._pid == os.getpid():
        try:
            f = client.open(path, "rb")
        except FileNotFoundError:
            pass
        else:
            st = f.raw.fstat()
            if version is None or (st.st_ino, st.st_size, st.st_mtime_ns) == tuple(version):
                f.seek(pos)
                return f
            f.close()
    opts = dict(options)
    opts["read_only"] = True
    if _connect is None:
        raise RuntimeError("kiseki._client was not imported")
    client = _connect(meta_url, **opts)
    _readers[key] = client
    f = client.open(path, "rb")
    f.seek(pos)
    return f
