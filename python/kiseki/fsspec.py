"""`fsspec` filesystem for Kiseki volumes: protocol `kiseki`.

    fs = fsspec.filesystem("kiseki", meta="rocksdb:///var/lib/kiseki/meta")
    with fsspec.open("kiseki://data/train.csv", meta="rocksdb:///...") as f: ...

Files are Kiseki's native file objects (seekable; read-only ones are picklable, so a
PyTorch DataLoader can send them to workers). `cp_file` shares data instead of
copying it.
"""

from __future__ import annotations

import datetime
import errno
import os
import stat as _stat
from typing import Any, List, Optional

from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from ._client import Client, connect


class KisekiFileSystem(AbstractFileSystem):
    protocol = "kiseki"
    root_marker = "/"

    def __init__(self, meta: Optional[str] = None, client: Optional[Client] = None, **options: Any) -> None:
        """`meta`: the volume's meta URL (None: `$KISEKI_META_URL` or the default
        volume); `options`: client options as for `kiseki.connect`; or an existing
        `client`."""
        super().__init__(meta=meta, **options)
        self.meta = meta
        self.client = client if client is not None else connect(meta, **options)

    def __reduce__(self) -> Any:
        # By volume and options, so an instance made from a `client=` pickles too.
        return (_rebuild, (self.client.meta_url, dict(self.client._options)))

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        if path.startswith("kiseki://"):
            path = path[len("kiseki://") :]
        elif path.startswith("kiseki:"):
            path = path[len("kiseki:") :]
        path = "/" + path.lstrip("/")
        return path.rstrip("/") or "/"

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict:
        return {}

    # -- listing -------------------------------------------------------------------

    def _info(self, path: str, st: os.stat_result, link: Optional[os.stat_result] = None) -> dict:
        target = st
        if link is not None and _stat.S_ISLNK(link.st_mode):
            target = st
        mode = target.st_mode
        kind = "directory" if _stat.S_ISDIR(mode) else "file" if _stat.S_ISREG(mode) else "other"
        info = {
            "name": path,
            "size": target.st_size,
            "type": kind,
            "mode": mode,
            "ino": target.st_ino,
            "nlink": target.st_nlink,
            "uid": target.st_uid,
            "gid": target.st_gid,
            "created": target.st_ctime,
            "mtime": target.st_mtime,
            "islink": link is not None and _stat.S_ISLNK(link.st_mode),
        }
        if info["islink"]:
            info["destination"] = self.client.readlink(path)
        return info

    def info(self, path: Any, **kwargs: Any) -> dict:
        path = self._strip_protocol(path)
        lst = self.client.lstat(path)
        st = lst
        if _stat.S_ISLNK(lst.st_mode):
            try:
                st = self.client.stat(path)
            except FileNotFoundError:
                st = lst  # a dangling link describes itself
        return self._info(path, st, lst)

    def ls(self, path: Any, detail: bool = True, **kwargs: Any) -> List[Any]:
        path = self._strip_protocol(path)
        info = self.info(path)
        if info["type"] != "directory":
            return [info] if detail else [path]
        out = []
        for e in self.client.scandir(path):
            full = path.rstrip("/") + "/" + e.name
            if not detail:
                out.append(full)
                continue
            lst = e.stat(follow_symlinks=False)
            st = lst
            if e.is_symlink():
                try:
                    st = e.stat()
                except FileNotFoundError:
                    pass
            out.append(self._info(full, st, lst))
        return out

    def exists(self, path: Any, **kwargs: Any) -> bool:
        return self.client.lexists(self._strip_protocol(path))

    def created(self, path: Any) -> datetime.datetime:
        """The inode's change time (Linux keeps no birth time)."""
        st = self.client.stat(self._strip_protocol(path))
        return datetime.datetime.fromtimestamp(st.st_ctime, tz=datetime.timezone.utc)

    def modified(self, path: Any) -> datetime.datetime:
        st = self.client.stat(self._strip_protocol(path))
        return datetime.datetime.fromtimestamp(st.st_mtime, tz=datetime.timezone.utc)

    # -- files ---------------------------------------------------------------------

    def _open(
        self,
        path: Any,
        mode: str = "rb",
        block_size: Optional[int] = None,
        autocommit: bool = True,
        cache_options: Optional[dict] = None,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if not autocommit:
            raise NotImplementedError("kiseki files are written in place (autocommit only)")
        if "w" in mode or "a" in mode or "x" in mode:
            parent = path.rsplit("/", 1)[0]
            if parent and self.auto_mkdir and not self.client.isdir(parent):
                self.client.makedirs(parent, exist_ok=True)
        buffering = block_size if block_size and block_size > 0 else -1
        return self.client.open(path, mode, buffering=buffering)

    auto_mkdir = True

    def touch(self, path: Any, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if truncate or not self.client.exists(path):
            with self._open(path, "wb"):
                pass
        else:
            self.client.utime(path)

    def cp_file(self, path1: Any, path2: Any, **kwargs: Any) -> None:
        """Copies by sharing the source's data (no bytes are read or written)."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.client.isdir(path1):
            self.client.makedirs(path2, exist_ok=True)
            return
        parent = path2.rsplit("/", 1)[0]
        if parent and not self.client.isdir(parent):
            self.client.makedirs(parent, exist_ok=True)
        self.client.copy(path1, path2)

    def rm_file(self, path: Any) -> None:
        self.client.remove(self._strip_protocol(path))

    def _rm(self, path: Any) -> None:
        path = self._strip_protocol(path)
        if self.client.isdir(path) and not self.client.islink(path):
            self.client.rmdir(path)
        else:
            self.client.remove(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: Optional[int] = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        # `find` descends into symbolic links to directories; what lies behind a link
        # is not part of the tree being removed (only the link itself is).
        links = {p for p in paths if self.client.islink(p)}
        if links:
            paths = [p for p in paths if not any(a in links for a in _ancestors(p))]
        # Deepest first, so directories are empty when their turn comes.
        for p in sorted(paths, key=lambda p: p.count("/"), reverse=True):
            self._rm(p)

    def mkdir(self, path: Any, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if self.client.lexists(path):
            raise FileExistsError(17, os.strerror(17), path)
        if create_parents:
            self.client.makedirs(path, exist_ok=True)
        else:
            self.client.mkdir(path)

    def makedirs(self, path: Any, exist_ok: bool = False) -> None:
        self.client.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def rmdir(self, path: Any) -> None:
        self.client.rmdir(self._strip_protocol(path))

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: Optional[int] = None, **kwargs: Any) -> None:
        """Renames when given one path (a directory moves whole); otherwise copies
        and removes like the base class."""
        if isinstance(path1, str) and isinstance(path2, str) and maxdepth is None:
            p1, p2 = self._strip_protocol(path1), self._strip_protocol(path2)
            # Into an existing directory, as `mv` and LocalFileSystem.mv (shutil.move).
            if p1 != p2 and self.client.isdir(p2):
                p2 = p2.rstrip("/") + "/" + p1.rsplit("/", 1)[-1]
            self.client.rename(p1, p2)
            return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    def size(self, path: Any) -> int:
        return self.info(path)["size"]

    def isdir(self, path: Any) -> bool:
        return self.client.isdir(self._strip_protocol(path))

    def isfile(self, path: Any) -> bool:
        return self.client.isfile(self._strip_protocol(path))

    def islink(self, path: Any) -> bool:
        return self.client.islink(self._strip_protocol(path))

    def symlink(self, source: Any, destination: Any, **kwargs: Any) -> None:
        self.client.symlink(self._strip_protocol(source), self._strip_protocol(destination))

    def chmod(self, path: Any, mode: int) -> None:
        self.client.chmod(self._strip_protocol(path), mode)


def _ancestors(path: str) -> List[str]:
    """"/a/b/c" -> ["/a", "/a/b"]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(2, len(parts))]


def _rebuild(meta: Optional[str], options: dict) -> KisekiFileSystem:
    """Unpickles a filesystem (for example in a DataLoader worker). When the volume is
    held read-write by another process (embedded RocksDB has one read-write opener),
    the copy connects read-only instead: it reads the volume as of that moment, and
    writes through it fail with EROFS rather than the connect failing outright."""
    try:
        return KisekiFileSystem(meta=meta, **options)
    except OSError as e:
        if e.errno != errno.EBUSY or options.get("read_only"):
            raise
        return KisekiFileSystem(meta=meta, **dict(options, read_only=True))
