"""Kiseki from Python: a POSIX filesystem over object storage, without a mount.

    import kiseki
    kiseki.format("rocksdb:///tmp/v/meta", "demo", bucket="/tmp/v/data")
    with kiseki.connect("rocksdb:///tmp/v/meta") as fs:
        with fs.open("hello.txt", "w") as f:
            f.write("hi\\n")
        print(fs.listdir("/"))

`kiseki.open()` without `client=` uses `$KISEKI_META_URL` or the default volume.
Errors are `OSError` subclasses exactly where the builtin raises them.
"""

from ._client import (
    DEFAULT_BUFFER_SIZE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    XATTR_CREATE,
    XATTR_REPLACE,
    Client,
    DirEntry,
    connect,
    default_client,
    format,
    fsck,
    open,
)
from ._file import BufferedRandom, BufferedReader, BufferedWriter, FileIO, TextIOWrapper
from ._kiseki import __version__

__all__ = [
    "Client",
    "DirEntry",
    "FileIO",
    "BufferedReader",
    "BufferedWriter",
    "BufferedRandom",
    "TextIOWrapper",
    "connect",
    "default_client",
    "format",
    "fsck",
    "open",
    "DEFAULT_BUFFER_SIZE",
    "RENAME_NOREPLACE",
    "RENAME_EXCHANGE",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "__version__",
]
