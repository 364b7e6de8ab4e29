"""`Client`'s os-like path operations, checked against `os` on a local directory
holding the same tree, and bad input raising what the builtin / `os` raise."""

from __future__ import annotations

import errno
import os
import stat
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Tuple

import pytest

import kiseki
from conftest import make_volume


def outcome(fn: Callable[[], Any]) -> Tuple[Any, ...]:
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - compared by the caller
        return ("error", type(e), getattr(e, "errno", None))


class Trees:
    """The same tree built locally and in the volume:

        f          file "hello"
        d/         directory with d/g (file "gg") and d/sub/ (empty directory)
        e/         empty directory
        l -> f     ld -> d     dangling -> missing
    """

    def __init__(self, client: kiseki.Client, local: Path) -> None:
        self.c, self.local = client, local
        for make in (self._local, self._kiseki):
            make()

    def _local(self) -> None:
        (self.local / "f").write_bytes(b"hello")
        (self.local / "d" / "sub").mkdir(parents=True)
        (self.local / "d" / "g").write_bytes(b"gg")
        (self.local / "e").mkdir()
        os.symlink("f", self.local / "l")
        os.symlink("d", self.local / "ld")
        os.symlink("missing", self.local / "dangling")

    def _kiseki(self) -> None:
        with self.c.open("f", "wb") as f:
            f.write(b"hello")
        self.c.makedirs("d/sub")
        with self.c.open("d/g", "wb") as f:
            f.write(b"gg")
        self.c.mkdir("e")
        self.c.symlink("f", "l")
        self.c.symlink("d", "ld")
        self.c.symlink("missing", "dangling")

    def L(self, name: str) -> str:
        return os.path.join(str(self.local), name) if name else str(self.local)

    def same(self, local: Callable[[], Any], remote: Callable[[], Any]) -> Any:
        lo, ko = outcome(local), outcome(remote)
        assert lo == ko
        return lo[1]

    # Which positional arguments are paths (symlink's first is the link's target).
    PATH_ARGS = {"rename": (0, 1), "replace": (0, 1), "link": (0, 1), "symlink": (1,)}

    def same_os(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """`os.<op>(args with local paths)` and `client.<op>(args)`: same result or the
        same exception (type and errno). Returns the result or the exception type."""
        paths = self.PATH_ARGS.get(op, (0,))
        local_args = [self.L(a) if i in paths else a for i, a in enumerate(args)]
        lo = outcome(lambda: getattr(os, op)(*local_args, **kwargs))
        ko = outcome(lambda: getattr(self.c, op)(*args, **kwargs))
        assert lo == ko, f"{op}{args}: local {lo} != kiseki {ko}"
        return lo[1]


@pytest.fixture
def trees(client: kiseki.Client, local: Path) -> Trees:
    return Trees(client, local)


def summary(s: os.stat_result) -> Tuple[Any, ...]:
    fmt = stat.S_IFMT(s.st_mode)
    # Directory sizes and link counts are filesystem specific (ext4 counts 4096).
    size = s.st_size if not stat.S_ISDIR(s.st_mode) else None
    nlink = s.st_nlink if not stat.S_ISDIR(s.st_mode) else None
    return fmt, size, nlink


# -- metadata ------------------------------------------------------------------------------


def test_stat_result_types(trees: Trees) -> None:
    for name in ("f", "d", "l", "ld"):
        for follow in (True, False):
            st = trees.c.stat(name, follow_symlinks=follow)
            assert isinstance(st, os.stat_result)
            for field in ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
                          "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev"):
                assert type(getattr(st, field)) is int, field
            for field in ("st_atime", "st_mtime", "st_ctime"):
                assert type(getattr(st, field)) is float, field
            for i in range(10):
                assert type(st[i]) is int  # the tuple part: integral seconds, as os.stat
            assert st.st_mtime_ns // 10**9 == st[stat.ST_MTIME]
            assert abs(st.st_mtime - st.st_mtime_ns / 1e9) < 1e-3
    f, d = trees.c.stat("f"), trees.c.stat("d")
    assert f.st_ino != d.st_ino and f.st_dev == d.st_dev
    assert f.st_blocks * 512 >= f.st_size


@pytest.mark.parametrize("name", ["f", "d", "d/g", "e", "l", "ld", "dangling", "missing", "f/", "d/", "f/x", "l/", "ld/g"])
def test_stat_like_os(trees: Trees, name: str) -> None:
    trees.same(lambda: summary(os.stat(trees.L(name))), lambda: summary(trees.c.stat(name)))
    trees.same(lambda: summary(os.lstat(trees.L(name))), lambda: summary(trees.c.lstat(name)))
    trees.same(
        lambda: summary(os.stat(trees.L(name), follow_symlinks=False)),
        lambda: summary(trees.c.stat(name, follow_symlinks=False)),
    )
    for fn in ("exists", "lexists", "isdir", "isfile", "islink"):
        trees.same(lambda: getattr(os.path, fn)(trees.L(name)), lambda: getattr(trees.c, fn)(name))


def test_lstat_of_symlink(trees: Trees) -> None:
    st = trees.c.lstat("dangling")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("missing")
    assert trees.c.stat("l").st_ino == trees.c.stat("f").st_ino != trees.c.lstat("l").st_ino


def test_listdir_scandir(trees: Trees) -> None:
    for name in ("d", "e", "ld", "f", "missing", "l", "dangling", "d/sub", "ld/sub"):
        trees.same(lambda: sorted(os.listdir(trees.L(name))), lambda: sorted(trees.c.listdir(name)))
    trees.same(lambda: sorted(os.listdir(trees.L(""))), lambda: sorted(trees.c.listdir("/")))
    assert sorted(trees.c.listdir()) == ["d", "dangling", "e", "f", "l", "ld"]
    assert trees.same_os("listdir", "f") is NotADirectoryError
    assert trees.same_os("listdir", "l") is NotADirectoryError
    assert trees.same_os("listdir", "dangling") is FileNotFoundError

    def entries(it: Any) -> Any:
        out = {}
        with it:
            for e in it:
                row = [e.name, os.path.basename(e.path), e.is_dir(), e.is_file(), e.is_symlink(),
                       e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False),
                       summary(e.stat(follow_symlinks=False))]
                row.append(outcome(lambda: summary(e.stat()))[:2])
                out[e.name] = row
                assert e.inode() == e.stat(follow_symlinks=False).st_ino
                assert os.fspath(e) == e.path
        return out

    for name in ("", "d", "ld"):
        trees.same(lambda: entries(os.scandir(trees.L(name))), lambda: entries(trees.c.scandir(name or "/")))
    assert [e.path for e in trees.c.scandir("d") if e.name == "g"] == ["d/g"]
    assert {e.path for e in trees.c.scandir("/")} >= {"/f", "/d"}
    for name in ("f", "missing"):
        trees.same(lambda: list(os.scandir(trees.L(name))), lambda: list(trees.c.scandir(name)))


def _walk_rows(walk: Any, root: str) -> list:
    rows = []
    for top, dirs, files in walk:
        rel = os.path.relpath(top, root) if root else top
        rows.append((os.path.normpath(rel), sorted(dirs), sorted(files)))
    return rows


@pytest.mark.parametrize("topdown", [True, False])
@pytest.mark.parametrize("followlinks", [False, True])
def test_walk_like_os_walk(trees: Trees, topdown: bool, followlinks: bool) -> None:
    trees.c.makedirs("d/sub/deeper/deepest")
    os.makedirs(trees.L("d/sub/deeper/deepest"))
    with open(trees.L("d/sub/deeper/x"), "w"):
        pass
    with trees.c.open("d/sub/deeper/x", "w"):
        pass
    local = _walk_rows(os.walk(trees.L(""), topdown=topdown, followlinks=followlinks), trees.L(""))
    remote = _walk_rows(trees.c.walk("/", topdown=topdown, followlinks=followlinks), "/")
    assert sorted(local) == sorted(remote)
    # ., d, d/sub, d/sub/deeper, d/sub/deeper/deepest, e; and ld/... through the link.
    assert len(remote) == (10 if followlinks else 6)
    # Order: topdown yields a directory before its subdirectories, bottom-up after.
    order = [r[0] for r in remote]
    for i, path in enumerate(order):
        for j, other in enumerate(order):
            if other.startswith(path + "/") or (path == "." and other != "."):
                assert (i < j) if topdown else (i > j), (path, other, order)


def test_walk_pruning_and_errors(trees: Trees) -> None:
    seen = []
    for top, dirs, files in trees.c.walk("/", followlinks=True):
        seen.append(top)
        if "d" in dirs:
            dirs.remove("d")  # topdown: not descended into
    assert sorted(seen) == ["/", "/e", "/ld", "/ld/sub"]
    errors: list = []
    assert list(trees.c.walk("missing", onerror=errors.append)) == []
    assert len(errors) == 1 and isinstance(errors[0], FileNotFoundError)
    assert list(os.walk(trees.L("missing"))) == list(trees.c.walk("missing")) == []


def test_mkdir_makedirs(trees: Trees) -> None:
    assert trees.same_os("mkdir", "new") is None
    assert trees.same_os("mkdir", "new") is FileExistsError
    assert trees.same_os("mkdir", "f") is FileExistsError
    assert trees.same_os("mkdir", "dangling") is FileExistsError
    assert trees.same_os("mkdir", "no/such") is FileNotFoundError
    assert trees.same_os("mkdir", "f/x") is NotADirectoryError
    assert trees.same_os("makedirs", "a/b/c") is None
    assert trees.same_os("makedirs", "a/b/c") is FileExistsError
    assert trees.same_os("makedirs", "a/b/c", exist_ok=True) is None
    assert trees.same_os("makedirs", "a/b/c/", exist_ok=True) is None
    assert trees.same_os("makedirs", "f", exist_ok=True) is FileExistsError
    assert trees.same_os("makedirs", "f/x/y", exist_ok=True) is NotADirectoryError
    assert trees.same_os("makedirs", "ld/new/deep") is None
    assert trees.c.isdir("d/new/deep")
    trees.c.mkdir("modes", 0o750)
    os.mkdir(trees.L("modes"), 0o750)
    assert stat.S_IMODE(trees.c.stat("modes").st_mode) == stat.S_IMODE(os.stat(trees.L("modes")).st_mode)


def test_rmdir_remove(trees: Trees) -> None:
    assert trees.same_os("rmdir", "d") is OSError  # ENOTEMPTY
    with pytest.raises(OSError) as e:
        trees.c.rmdir("d")
    assert e.value.errno == errno.ENOTEMPTY
    assert trees.same_os("rmdir", "f") is NotADirectoryError
    assert trees.same_os("rmdir", "missing") is FileNotFoundError
    assert trees.same_os("rmdir", "ld") is NotADirectoryError
    assert trees.same_os("rmdir", "e") is None
    assert trees.same_os("remove", "d") is IsADirectoryError
    assert trees.same_os("unlink", "d/sub") is IsADirectoryError
    assert trees.same_os("remove", "missing") is FileNotFoundError
    assert trees.same_os("remove", "f/x") is NotADirectoryError
    assert trees.same_os("remove", "ld") is None  # the link, not the directory
    assert trees.c.isdir("d")
    assert trees.same_os("unlink", "dangling") is None
    assert trees.same_os("remove", "d/g") is None
    assert trees.same_os("rmdir", "d/sub") is None
    assert trees.same_os("rmdir", "d") is None
    assert sorted(trees.c.listdir("/")) == sorted(os.listdir(trees.L(""))) == ["f", "l"]


def test_rename_replace(trees: Trees) -> None:
    assert trees.same_os("rename", "f", "f2") is None
    assert trees.same_os("rename", "f2", "d/g") is None  # replaces a file
    assert trees.same_os("rename", "d/g", "e") is IsADirectoryError
    assert trees.same_os("rename", "e", "d/g") is NotADirectoryError
    assert trees.same_os("rename", "e", "d") is OSError  # ENOTEMPTY
    with pytest.raises(OSError) as e:
        trees.c.rename("e", "d")
    assert e.value.errno == errno.ENOTEMPTY
    assert trees.same_os("rename", "d", "d/sub/inside") is OSError  # EINVAL
    with pytest.raises(OSError) as e:
        trees.c.rename("d", "d/sub/inside")
    assert e.value.errno == errno.EINVAL
    assert trees.same_os("rename", "missing", "x") is FileNotFoundError
    assert trees.same_os("rename", "d/g", "no/such/x") is FileNotFoundError
    assert trees.same_os("rename", "d/sub", "e") is None  # replaces an empty directory
    assert trees.same_os("replace", "d/g", "f") is None
    assert trees.same_os("replace", "dangling", "moved-link") is None
    assert trees.same_os("readlink", "moved-link") == "missing"
    trees.same(lambda: sorted(os.listdir(trees.L(""))), lambda: sorted(trees.c.listdir("/")))
    trees.same(lambda: sorted(os.listdir(trees.L("d"))), lambda: sorted(trees.c.listdir("d")))
    trees.same(lambda: sorted(os.listdir(trees.L("e"))), lambda: sorted(trees.c.listdir("e")))


def test_rename_flags(client: kiseki.Client) -> None:
    for name, data in (("a", b"A"), ("b", b"B")):
        with client.open(name, "wb") as f:
            f.write(data)
    with pytest.raises(FileExistsError):
        client.rename("a", "b", flags=kiseki.RENAME_NOREPLACE)
    client.rename("a", "b", flags=kiseki.RENAME_EXCHANGE)
    with client.open("a", "rb") as f:
        assert f.read() == b"B"
    with client.open("b", "rb") as f:
        assert f.read() == b"A"
    client.rename("a", "c", flags=kiseki.RENAME_NOREPLACE)
    assert sorted(client.listdir("/")) == ["b", "c"]
    with pytest.raises(FileNotFoundError):
        client.rename("b", "missing", flags=kiseki.RENAME_EXCHANGE)


def test_link_nlink(trees: Trees) -> None:
    assert trees.same_os("link", "f", "hard") is None
    trees.same(lambda: os.stat(trees.L("f")).st_nlink, lambda: trees.c.stat("f").st_nlink)
    assert trees.c.stat("f").st_nlink == 2
    assert trees.c.stat("hard").st_ino == trees.c.stat("f").st_ino
    with trees.c.open("hard", "ab") as f:
        f.write(b" via link")
    with trees.c.open("f", "rb") as f:
        assert f.read() == b"hello via link"
    assert trees.same_os("link", "d", "dirlink") is PermissionError  # EPERM
    assert trees.same_os("link", "f", "d/g") is FileExistsError
    assert trees.same_os("link", "missing", "x") is FileNotFoundError
    assert trees.same_os("remove", "f") is None
    trees.same(lambda: os.stat(trees.L("hard")).st_nlink, lambda: trees.c.stat("hard").st_nlink)
    assert trees.c.stat("hard").st_nlink == 1


def test_symlink_readlink(trees: Trees) -> None:
    assert trees.same_os("symlink", "d/g", "s") is None
    assert trees.same_os("readlink", "s") == "d/g"
    assert trees.same_os("readlink", "ld") == "d"
    assert trees.same_os("readlink", "f") is OSError  # EINVAL
    with pytest.raises(OSError) as e:
        trees.c.readlink("f")
    assert e.value.errno == errno.EINVAL
    assert trees.same_os("readlink", "missing") is FileNotFoundError
    assert trees.same_os("symlink", "anything", "f") is FileExistsError
    assert trees.same_os("symlink", "x", "no/such/link") is FileNotFoundError
    with trees.c.open("s", "rb") as f:
        assert f.read() == b"gg"


def test_open_creates_through_dangling_symlink(trees: Trees) -> None:
    """open(2) with O_CREAT (not O_EXCL) through a dangling symlink creates its target."""
    assert trees.same(lambda: open(trees.L("dangling"), "x"), lambda: trees.c.open("dangling", "x")) is FileExistsError
    for mode in ("w", "a"):
        files = [open(trees.L("dangling"), mode), outcome(lambda: trees.c.open("dangling", mode))]
        files[0].close()
        assert files[1][0] == "ok", f"open('dangling', {mode!r}): {files[1]}"
        files[1][1].close()
    trees.same(lambda: sorted(os.listdir(trees.L(""))), lambda: sorted(trees.c.listdir("/")))
    assert trees.c.isfile("missing")


def test_chmod_chown(trees: Trees) -> None:
    for mode in (0o600, 0o755, 0o4711, 0o1777, 0):
        for name in ("f", "d", "l"):
            trees.same_os("chmod", name, mode)
            trees.same(lambda: os.stat(trees.L(name)).st_mode, lambda: trees.c.stat(name).st_mode)
    assert stat.S_IMODE(trees.c.stat("f").st_mode) == 0
    trees.c.chmod("f", stat.S_IFREG | 0o640)  # file-type bits are ignored
    assert trees.c.stat("f").st_mode == stat.S_IFREG | 0o640
    assert trees.same_os("chmod", "missing", 0o644) is FileNotFoundError
    if os.geteuid() == 0:
        assert trees.same_os("chown", "f", 1234, 5678) is None
        assert trees.same_os("chown", "f", -1, 42) is None
        trees.same(lambda: os.stat(trees.L("f"))[4:6], lambda: trees.c.stat("f")[4:6])
        assert trees.c.stat("f")[4:6] == (1234, 42)
        assert trees.same_os("chown", "l", 7, 8, follow_symlinks=False) is None
        trees.same(lambda: os.lstat(trees.L("l"))[4:6], lambda: trees.c.lstat("l")[4:6])
        trees.same(lambda: os.stat(trees.L("l"))[4:6], lambda: trees.c.stat("l")[4:6])
    assert trees.same_os("chown", "missing", 1, 1) is FileNotFoundError


def test_utime(trees: Trees) -> None:
    assert trees.same_os("utime", "f", (1.5, 2.25)) is None
    st = trees.c.stat("f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_500_000_000, 2_250_000_000)
    assert (st.st_atime, st.st_mtime) == (1.5, 2.25)
    trees.same(lambda: os.stat(trees.L("f")).st_mtime_ns, lambda: trees.c.stat("f").st_mtime_ns)
    ns = (1_600_000_000_123_456_789, 1_700_000_000_987_654_321)
    assert trees.same_os("utime", "f", ns=ns) is None
    st = trees.c.stat("f")
    assert (st.st_atime_ns, st.st_mtime_ns) == ns
    trees.same(lambda: os.stat(trees.L("f"))[7:9], lambda: trees.c.stat("f")[7:9])
    # Float seconds convert to nanoseconds as os.utime does (fraction rounded down).
    for t in (1_700_000_000.1234567, 123_456_789.987654321, -1.0000000005, -0.3, 0.9999999999999999, 7):
        assert trees.same_os("utime", "f", (t, t)) is None
        trees.same(lambda: os.stat(trees.L("f")).st_mtime_ns, lambda: trees.c.stat("f").st_mtime_ns)
        trees.same(lambda: os.stat(trees.L("f")).st_atime_ns, lambda: trees.c.stat("f").st_atime_ns)
    assert trees.same_os("utime", "f", ("1", 2)) is TypeError
    assert trees.same_os("utime", "f", (1, 2), ns=(1, 2)) is ValueError
    assert trees.same_os("utime", "f", (1,)) is TypeError
    assert trees.same_os("utime", "missing", (1, 2)) is FileNotFoundError
    before = trees.c.stat("d").st_mtime
    assert trees.same_os("utime", "d") is None  # now
    assert trees.c.stat("d").st_mtime >= before
    assert abs(trees.c.stat("d").st_mtime - time.time()) < 300
    assert trees.same_os("utime", "l", ns=(5, 6), follow_symlinks=False) is None
    assert trees.c.lstat("l").st_mtime_ns == 6 and trees.c.stat("l").st_mtime_ns == 7 * 10**9


def test_truncate(trees: Trees) -> None:
    assert trees.same_os("truncate", "f", 3) is None
    assert trees.same_os("truncate", "f", 10) is None
    with trees.c.open("f", "rb") as f:
        assert f.read() == b"hel" + bytes(7)
    trees.same(lambda: open(trees.L("f"), "rb").read(), lambda: trees.c.open("f", "rb").read())
    assert trees.same_os("truncate", "f", -1) is OSError
    assert trees.same_os("truncate", "d", 0) is IsADirectoryError
    assert trees.same_os("truncate", "missing", 0) is FileNotFoundError
    assert trees.same_os("truncate", "l", 1) is None
    assert trees.c.stat("f").st_size == 1


def test_xattrs(trees: Trees) -> None:
    assert trees.same_os("listxattr", "f") == []
    assert trees.same_os("setxattr", "f", "user.color", b"blue") is None
    assert trees.same_os("setxattr", "f", "user.empty", b"") is None
    assert trees.same_os("getxattr", "f", "user.color") == b"blue"
    assert trees.same_os("getxattr", "f", "user.empty") == b""
    assert trees.same(lambda: sorted(os.listxattr(trees.L("f"))), lambda: sorted(trees.c.listxattr("f"))) == [
        "user.color",
        "user.empty",
    ]
    assert trees.same_os("getxattr", "f", "user.missing") is OSError
    with pytest.raises(OSError) as e:
        trees.c.getxattr("f", "user.missing")
    assert e.value.errno == errno.ENODATA
    assert trees.same_os("setxattr", "f", "user.color", b"red", os.XATTR_CREATE) is FileExistsError
    assert trees.same_os("setxattr", "f", "user.new", b"x", os.XATTR_REPLACE) is OSError  # ENODATA
    assert trees.same_os("setxattr", "f", "user.color", b"red", os.XATTR_REPLACE) is None
    assert trees.same_os("getxattr", "l", "user.color") == b"red"  # follows the link
    assert trees.same_os("removexattr", "f", "user.color") is None
    assert trees.same_os("removexattr", "f", "user.color") is OSError
    assert trees.same_os("getxattr", "missing", "user.x") is FileNotFoundError
    assert trees.same_os("setxattr", "d", "user.on-dir", b"\x00\xff") is None
    assert trees.same_os("getxattr", "d", "user.on-dir") == b"\x00\xff"
    assert kiseki.XATTR_CREATE == os.XATTR_CREATE and kiseki.XATTR_REPLACE == os.XATTR_REPLACE


def test_statvfs(client: kiseki.Client) -> None:
    s = client.statvfs()
    assert isinstance(s, os.statvfs_result)
    assert s.f_bsize > 0 and s.f_frsize > 0 and s.f_namemax == 255
    assert s.f_bavail <= s.f_blocks and s.f_bfree <= s.f_blocks
    assert all(type(v) is int for v in s)
    assert isinstance(client.statvfs("/"), os.statvfs_result)
    with pytest.raises(FileNotFoundError):
        client.statvfs("missing")


def test_stats_counts_what_the_process_did(client: kiseki.Client) -> None:
    before = client.stats()
    assert all(isinstance(v, float) for v in before.values())
    with client.open("/stats-probe", "wb") as f:
        f.write(b"x" * 100_000)
    with client.open("/stats-probe", "rb") as f:
        assert len(f.read()) == 100_000
    after = client.stats()
    assert after["kiseki_written_bytes_total"] - before.get("kiseki_written_bytes_total", 0) >= 100_000
    assert after["kiseki_read_bytes_total"] - before.get("kiseki_read_bytes_total", 0) >= 100_000
    assert after['kiseki_meta_txn_duration_seconds_count{kind="write"}'] > 0
    assert after["kiseki_buffer_size_bytes"] > 0
    client.remove("/stats-probe")


def test_access_and_getsize(trees: Trees) -> None:
    for name in ("f", "d", "missing", "dangling"):
        for mode in (os.F_OK, os.R_OK, os.W_OK, os.X_OK, os.R_OK | os.W_OK):
            trees.same(lambda: os.access(trees.L(name), mode), lambda: trees.c.access(name, mode))
    assert trees.c.getsize("f") == 5


def test_paths_accept_bytes_and_pathlike(trees: Trees) -> None:
    assert trees.c.stat(b"f").st_size == trees.c.stat(Path("f")).st_size == 5
    assert sorted(trees.c.listdir(Path("d"))) == ["g", "sub"]
    with pytest.raises(TypeError):
        trees.c.stat(3)  # no file descriptors
    with pytest.raises(TypeError):
        trees.c.stat(None)


def test_copy(client: kiseki.Client) -> None:
    with client.open("src", "wb") as f:
        f.write(b"to copy" * 1000)
    assert client.copy("src", "dst") == 7000
    with client.open("dst", "rb") as f:
        assert f.read() == b"to copy" * 1000
    with pytest.raises(FileNotFoundError):
        client.copy("missing", "x")


# -- bad input ------------------------------------------------------------------------------


BAD_MODES = ["rw", "rr", "z", "bt", "U", "rU", "", "r+b+", "wx", "+", "b", "t", "ra", "rbb", "w+t+", "xa", "R", " r"]


@pytest.mark.parametrize("mode", BAD_MODES)
def test_bad_mode_strings(trees: Trees, mode: str) -> None:
    assert trees.same(lambda: open(trees.L("f"), mode), lambda: trees.c.open("f", mode)) is ValueError
    assert os.listdir(trees.L("")) and trees.c.stat("f").st_size == 5  # untouched


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((123.4,), {}),
        ((None,), {}),
        (("f",), {"mode": 1}),
        (("f",), {"mode": b"r"}),
        (("f",), {"buffering": "x"}),
        (("f",), {"buffering": 1.5}),
        (("f",), {"buffering": None}),
        (("f",), {"encoding": 5}),
        (("f",), {"errors": 5}),
        (("f",), {"newline": 5}),
        (("f", "r", -1, None, None, None, True, None, "extra"), {}),
        (("f",), {"bogus": 1}),
    ],
)
def test_wrong_argument_types(trees: Trees, args: tuple, kwargs: dict) -> None:
    local_args = (trees.L(args[0]),) + args[1:] if isinstance(args[0], str) else args
    result = trees.same(lambda: open(*local_args, **kwargs), lambda: trees.c.open(*args, **kwargs))
    assert result is TypeError


@pytest.mark.parametrize(
    "mode,kwargs",
    [
        ("rb", {"encoding": "utf-8"}),
        ("wb", {"errors": "strict"}),
        ("rb", {"newline": "\n"}),
        ("r", {"newline": "x"}),
        ("r", {"newline": "\n\r"}),
        ("r", {"buffering": 0}),
        ("w", {"buffering": 0}),
        ("r", {"closefd": False}),
    ],
)
def test_bad_argument_values(trees: Trees, mode: str, kwargs: dict) -> None:
    result = trees.same(lambda: open(trees.L("f"), mode, **kwargs), lambda: trees.c.open("f", mode, **kwargs))
    assert result is ValueError
    # Failing after the open as the builtin does, `w` truncated both.
    trees.same(lambda: os.stat(trees.L("f")).st_size, lambda: trees.c.stat("f").st_size)


def test_unknown_encoding(trees: Trees) -> None:
    assert trees.same(lambda: open(trees.L("f"), "r", encoding="no-such-codec"),
                      lambda: trees.c.open("f", "r", encoding="no-such-codec")) is LookupError
    assert trees.same(lambda: open(trees.L("nf"), "r", encoding="no-such-codec"),
                      lambda: trees.c.open("nf", "r", encoding="no-such-codec")) is FileNotFoundError


def test_line_buffering_binary_warns(trees: Trees) -> None:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with trees.c.open("f", "rb", buffering=1) as f:
            assert f.read() == b"hello"
    assert [x.category for x in w] == [RuntimeWarning]


@pytest.mark.parametrize(
    "op",
    [
        lambda c, p: c.open(p),
        lambda c, p: c.open(p, "wb"),
        lambda c, p: c.stat(p),
        lambda c, p: c.lstat(p),
        lambda c, p: c.listdir(p),
        lambda c, p: c.scandir(p),
        lambda c, p: c.mkdir(p),
        lambda c, p: c.makedirs(p),
        lambda c, p: c.rmdir(p),
        lambda c, p: c.remove(p),
        lambda c, p: c.rename(p, "f"),
        lambda c, p: c.rename("f", p),
        lambda c, p: c.symlink(p, "x"),
        lambda c, p: c.readlink(p),
        lambda c, p: c.chmod(p, 0o644),
        lambda c, p: c.utime(p),
        lambda c, p: c.truncate(p, 0),
        lambda c, p: c.getxattr(p, "user.x"),
        lambda c, p: c.link("f", p),
    ],
)
def test_embedded_nul(client: kiseki.Client, op: Callable[..., Any]) -> None:
    with client.open("f", "wb"):
        pass
    with pytest.raises(ValueError):
        op(client, "a\x00b")
    with pytest.raises(ValueError):
        op(client, b"a\x00b")
    assert client.listdir("/") == ["f"]


def test_embedded_nul_like_os(trees: Trees) -> None:
    for op in ("stat", "listdir", "mkdir", "remove", "rmdir"):
        assert trees.same_os(op, "a\x00b") is ValueError
    assert trees.same(lambda: open(trees.L("a\x00b")), lambda: trees.c.open("a\x00b")) is ValueError


def test_name_too_long(trees: Trees) -> None:
    long = "x" * 256
    ok = "y" * 255
    for op, args in (("mkdir", (long,)), ("stat", (long,)), ("rename", ("f", long)), ("symlink", ("f", long)),
                     ("link", ("f", long)), ("rmdir", (long,)), ("remove", (long,)), ("listdir", (long,))):
        result = trees.same_os(op, *args)
        assert result is OSError, (op, result)
        with pytest.raises(OSError) as e:
            getattr(trees.c, op)(*args)
        assert e.value.errno == errno.ENAMETOOLONG
    assert trees.same(lambda: open(trees.L(long), "w"), lambda: trees.c.open(long, "w")) is OSError
    with pytest.raises(OSError) as e:
        trees.c.open("d/" + long, "wb")
    assert e.value.errno == errno.ENAMETOOLONG
    with trees.c.open(ok, "wb") as f:  # 255 bytes is fine
        f.write(b"ok")
    assert ok in trees.c.listdir("/")
    # The limit is in bytes: 128 two-byte characters are 256 bytes.
    assert trees.same_os("mkdir", "é" * 128) is OSError
    assert trees.same_os("mkdir", "é" * 127) is None


def test_errors_carry_filenames(client: kiseki.Client) -> None:
    with pytest.raises(FileNotFoundError) as e:
        client.stat("dir/missing")
    assert e.value.errno == errno.ENOENT and "dir/missing" in str(e.value.filename)
    with pytest.raises(FileNotFoundError) as e:
        client.rename("missing-src", "dst")
    assert e.value.filename == "missing-src" and e.value.filename2 == "dst"


# -- client and volume lifecycle ------------------------------------------------------------


def test_closed_client(volume: str) -> None:
    c = kiseki.connect(volume)
    with c.open("f", "wb") as f:
        f.write(b"data")
    f = c.open("f", "rb", buffering=0)
    w = c.open("g", "wb", buffering=0)
    assert not c.closed
    c.close()
    assert c.closed
    c.close()  # idempotent
    assert "closed" in repr(c)
    for op in (
        lambda: c.stat("f"),
        lambda: c.listdir("/"),
        lambda: c.open("f", "rb"),
        lambda: c.open("new", "wb"),
        lambda: c.mkdir("d"),
        lambda: c.remove("f"),
        lambda: c.rename("f", "g"),
        lambda: c.statvfs(),
        lambda: c.getxattr("f", "user.x"),
        lambda: c.copy("f", "h"),
        lambda: f.read(),
        lambda: f.seek(0),
        lambda: w.write(b"x"),
        lambda: c.truncate("f", 0),
    ):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EBADF, e.value
    # Predicates answer False rather than raise.
    assert c.exists("f") is False and c.isdir("/") is False
    # Closing a file of a closed client: done, or EBADF (its data was flushed when the
    # client closed); either way the file is closed.
    for fh in (f, w):
        result = outcome(fh.close)
        assert result == ("ok", None) or result[1:] == (OSError, errno.EBADF), result
        assert fh.closed
    with kiseki.connect(volume) as c2:
        assert sorted(c2.listdir("/")) == ["f", "g"]
        assert c2.stat("f").st_size == 4


def test_context_manager_closes(volume: str) -> None:
    with kiseki.connect(volume) as c:
        assert isinstance(c, kiseki.Client) and c.meta_url == volume
        assert "open" in repr(c)
    assert c.closed
    with pytest.raises(OSError) as e:
        c.stat("/")
    assert e.value.errno == errno.EBADF


def test_one_writer_per_volume(volume: str) -> None:
    with kiseki.connect(volume):
        with pytest.raises(OSError):
            kiseki.connect(volume)
        with kiseki.connect(volume, read_only=True) as ro:  # lock-free
            assert ro.listdir("/") == []


def test_format_twice(tmp_path: Path) -> None:
    url = make_volume(tmp_path / "v")
    with pytest.raises(FileExistsError):
        kiseki.format(url, "again", bucket=str(tmp_path / "v" / "data"))
    with kiseki.connect(url) as c:  # the first volume is intact
        assert c.listdir("/") == []
    info = kiseki.format(f"rocksdb://{tmp_path}/other/meta", "other-vol", bucket=str(tmp_path / "v" / "data2"))
    assert info["name"] == "other-vol" and len(info["uuid"]) == 36


def test_format_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(OSError) as e:
        kiseki.format(f"rocksdb://{tmp_path}/m1", "x", bucket=str(tmp_path))  # name too short
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        kiseki.format(f"rocksdb://{tmp_path}/m2", "vol", bucket=str(tmp_path), storage="no-such-storage")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        kiseki.format("nope://x", "vol", bucket=str(tmp_path))


@pytest.mark.parametrize("url", ["invalid://x", "bogus", "", "rocksdb://"])
def test_connect_bad_url(url: str) -> None:
    with pytest.raises(OSError):
        kiseki.connect(url)


def test_connect_missing_volume(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        kiseki.connect(f"rocksdb://{tmp_path}/nothing-here/meta")
    assert not (tmp_path / "nothing-here").exists()


def test_connect_unknown_option(volume: str) -> None:
    with pytest.raises(OSError) as e:
        kiseki.connect(volume, no_such_option=1)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        kiseki.connect(volume, buffer_size="lots")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        kiseki.connect(42)
    # The volume is still free for a correct connection.
    with kiseki.connect(volume, buffer_size="8M", read_only=False) as c:
        assert c.listdir("/") == []


def test_version() -> None:
    assert isinstance(kiseki.__version__, str) and kiseki.__version__[0].isdigit()


def test_removed_files_wait_in_the_trash_and_come_back(client: kiseki.Client) -> None:
    with client.open("/trash-probe", "wb") as f:
        f.write(b"keep me")
    client.makedirs("/trash-dir/sub")
    client.remove("/trash-probe")
    client.rmdir("/trash-dir/sub")
    assert not client.exists("/trash-probe")
    assert ".trash" not in client.listdir("/")
    (hour,) = client.listdir("/.trash")
    kept = {n.rsplit("-", 1)[-1]: n for n in client.listdir(f"/.trash/{hour}")}
    assert sorted(kept) == ["probe", "sub"], kept
    entry = f"/.trash/{hour}/{kept['probe']}"
    with client.open(entry, "rb") as f:
        assert f.read() == b"keep me"
    # Read-only, for root too: EPERM is PermissionError.
    with pytest.raises(PermissionError):
        client.open(entry, "wb")
    with client.open("/trash-probe", "wb") as f:
        f.write(b"new")
    restored, left = client.restore(f"/.trash/{hour}")
    assert restored == 1 and len(left) == 1 and "not overwritten" in left[0], left
    assert client.isdir("/trash-dir/sub")
    client.remove("/trash-probe")
    assert client.restore(entry) == (1, [])
    with client.open("/trash-probe", "rb") as f:
        assert f.read() == b"keep me"
    with pytest.raises(OSError):
        client.restore("/trash-probe")


def test_clone_copies_a_tree_by_metadata_and_the_sides_stay_apart(
    client: kiseki.Client,
) -> None:
    client.makedirs("/clone-src/sub")
    big = bytes(range(256)) * 8192
    with client.open("/clone-src/big", "wb") as f:
        f.write(big)
    with client.open("/clone-src/sub/small", "wb") as f:
        f.write(b"small")
    client.symlink("big", "/clone-src/link")
    client.setxattr("/clone-src/big", "user.k", b"v")
    used = client.statvfs("/")
    used_before = (used.f_blocks - used.f_bfree) * used.f_frsize
    entries, shared = client.clone("/clone-src", "/clone-dst")
    assert (entries, shared) == (5, len(big) + 5)
    with client.open("/clone-dst/big", "rb") as f:
        assert f.read() == big
    assert client.readlink("/clone-dst/link") == "big"
    assert client.getxattr("/clone-dst/big", "user.k") == b"v"
    after = client.statvfs("/")
    assert (after.f_blocks - after.f_bfree) * after.f_frsize > used_before
    with client.open("/clone-dst/sub/small", "r+b") as f:
        f.write(b"SMALL")
    with client.open("/clone-src/sub/small", "rb") as f:
        assert f.read() == b"small"
    with pytest.raises(FileExistsError):
        client.clone("/clone-src", "/clone-dst")
    with pytest.raises(OSError) as e:
        client.clone("/clone-src", "/clone-src/sub/inside")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        client.clone("/no-such", "/clone-x")
    assert client.clone("/clone-src/big", "/clone-one", preserve=True) == (1, len(big))
    assert client.stat("/clone-one").st_mtime_ns == client.stat("/clone-src/big").st_mtime_ns
