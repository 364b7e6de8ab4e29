"""fsspec's own conformance suites (shipped in its wheel as `fsspec.tests.abstract`)
run against `KisekiFileSystem`, wired the way fsspec wires its memory filesystem
(fsspec/implementations/tests/memory/memory_fixtures.py): each test gets a fresh
volume and paths are joined with "/" from the root. The suites run a second time
below a nested base directory. Then the rest of the filesystem's surface: the entry
point, URLs, listing, copying, removing, moving, times, and pickled files."""

from __future__ import annotations

import datetime
import errno
import multiprocessing
import os
import pickle
import stat

import fsspec
import fsspec.tests.abstract as abstract
import pytest
from fsspec.tests.abstract import AbstractFixtures

import kiseki
import kiseki._file
from kiseki.fsspec import KisekiFileSystem

from _kiseki_workers import read_pickled_file, use_pickled_filesystem


class KisekiFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, client):
        return KisekiFileSystem(client=client, skip_instance_cache=True)

    @pytest.fixture
    def fs_join(self):
        return lambda *args: "/".join(args)

    @pytest.fixture
    def fs_path(self):
        return ""


class TestKisekiCopy(abstract.AbstractCopyTests, KisekiFixtures):
    pass


class TestKisekiGet(abstract.AbstractGetTests, KisekiFixtures):
    pass


class TestKisekiPut(abstract.AbstractPutTests, KisekiFixtures):
    pass


class TestKisekiOpen(abstract.AbstractOpenTests, KisekiFixtures):
    pass


class TestKisekiPipe(abstract.AbstractPipeTests, KisekiFixtures):
    pass


class NestedKisekiFixtures(KisekiFixtures):
    """The same suites below an existing directory that is not the root."""

    @pytest.fixture
    def fs_path(self, fs):
        fs.makedirs("/base/dir")
        return "/base/dir"


class TestKisekiCopyNested(abstract.AbstractCopyTests, NestedKisekiFixtures):
    pass


class TestKisekiGetNested(abstract.AbstractGetTests, NestedKisekiFixtures):
    pass


class TestKisekiPutNested(abstract.AbstractPutTests, NestedKisekiFixtures):
    pass


# -- KisekiFileSystem beyond the abstract suites -----------------------------------


@pytest.fixture
def kfs(client):
    return KisekiFileSystem(client=client, skip_instance_cache=True)


@pytest.fixture
def cached_fs_cleanup():
    """Closes and forgets the instances fsspec caches for `fsspec.filesystem(...)`."""
    yield
    for inst in list(KisekiFileSystem._cache.values()):
        inst.client.close()
    KisekiFileSystem.clear_instance_cache()


def test_entry_point_filesystem(volume, cached_fs_cleanup):
    assert fsspec.get_filesystem_class("kiseki") is KisekiFileSystem
    fs = fsspec.filesystem("kiseki", meta=volume)
    assert isinstance(fs, KisekiFileSystem)
    assert fs.client.meta_url == volume
    fs.pipe("/dir/f.bin", b"payload")
    assert fs.cat("/dir/f.bin") == b"payload"
    assert fs.cat("kiseki://dir/f.bin") == b"payload"
    # The same arguments give the cached instance, as for every fsspec filesystem.
    assert fsspec.filesystem("kiseki", meta=volume) is fs


def test_fsspec_open_url(volume, cached_fs_cleanup):
    with fsspec.open("kiseki://data/hello.txt", "wt", meta=volume, encoding="utf-8") as f:
        f.write("héllo\nwörld\n")
    with fsspec.open("kiseki://data/hello.txt", "rb", meta=volume) as f:
        assert f.read() == "héllo\nwörld\n".encode()
    with fsspec.open("kiseki:///data/hello.txt", "rt", meta=volume, encoding="utf-8") as f:
        assert f.readlines() == ["héllo\n", "wörld\n"]
    # What fsspec wrote is in the volume for any other client.
    fs = fsspec.filesystem("kiseki", meta=volume)
    fs.client.close()
    KisekiFileSystem.clear_instance_cache()
    with kiseki.connect(volume) as c:
        assert c.listdir("/data") == ["hello.txt"]
        with c.open("data/hello.txt", encoding="utf-8") as f:
            assert f.read() == "héllo\nwörld\n"


def test_strip_protocol():
    s = KisekiFileSystem._strip_protocol
    assert s("kiseki://a/b") == "/a/b"
    assert s("kiseki:///a/b/") == "/a/b"
    assert s("/a//") == "/a"
    assert s("kiseki://") == "/"
    assert s("") == "/"


def test_ls_and_info(kfs):
    kfs.pipe("/d/f1", b"12345")
    kfs.mkdir("/d/sub")
    kfs.symlink("/d/f1", "/d/link")
    assert sorted(kfs.ls("/d", detail=False)) == ["/d/f1", "/d/link", "/d/sub"]
    by_name = {i["name"]: i for i in kfs.ls("kiseki://d", detail=True)}
    assert by_name["/d/f1"]["type"] == "file" and by_name["/d/f1"]["size"] == 5
    assert by_name["/d/sub"]["type"] == "directory"
    link = by_name["/d/link"]
    assert link["islink"] and link["type"] == "file" and link["size"] == 5
    assert link["destination"] == "/d/f1"
    info = kfs.info("/d/f1")
    assert info["name"] == "/d/f1" and info["type"] == "file" and info["size"] == 5
    assert stat.S_ISREG(info["mode"]) and not info["islink"]
    assert kfs.info("/d")["type"] == "directory"
    # ls of a file lists the file itself, as LocalFileSystem does.
    assert kfs.ls("/d/f1", detail=False) == ["/d/f1"]
    assert kfs.size("/d/f1") == 5
    assert kfs.isfile("/d/f1") and not kfs.isdir("/d/f1")
    assert kfs.isdir("/d/sub") and kfs.islink("/d/link")
    with pytest.raises(FileNotFoundError):
        kfs.info("/d/missing")
    with pytest.raises(FileNotFoundError):
        kfs.ls("/nowhere")
    assert not kfs.exists("/d/missing")
    assert kfs.exists("/d/f1") and kfs.exists("/")


def test_cp_file_shares_data_but_not_changes(kfs):
    data = os.urandom(3 << 20) + b"tail"
    kfs.pipe("/src.bin", data)
    kfs.cp_file("/src.bin", "/new/dir/dst.bin")
    assert kfs.cat("/new/dir/dst.bin") == data
    # Writes to the copy must not reach the source, nor the reverse.
    with kfs.open("/new/dir/dst.bin", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"X" * 100)
    with kfs.open("/src.bin", "ab") as f:
        f.write(b"more")
    assert kfs.cat("/src.bin") == data + b"more"
    expected = bytearray(data)
    expected[1 << 20 : (1 << 20) + 100] = b"X" * 100
    assert kfs.cat("/new/dir/dst.bin") == bytes(expected)
    # Copying onto an existing file replaces it.
    kfs.pipe("/small", b"small")
    kfs.cp_file("/small", "/src.bin")
    assert kfs.cat("/src.bin") == b"small"
    kfs.copy("/new", "/copied", recursive=True)
    assert kfs.cat("/copied/dir/dst.bin") == bytes(expected)


def test_rm(kfs):
    kfs.pipe("/t/a", b"a")
    kfs.pipe("/t/sub/b", b"b")
    kfs.pipe("/t/sub/deeper/c", b"c")
    kfs.rm("/t/a")
    assert not kfs.exists("/t/a")
    with pytest.raises(OSError) as e:
        kfs.rm("/t/sub")  # not recursive: a non-empty directory stays
    assert e.value.errno == errno.ENOTEMPTY
    kfs.rm("/t", recursive=True)
    assert not kfs.exists("/t")
    assert kfs.ls("/", detail=False) == []
    with pytest.raises(FileNotFoundError):
        kfs.rm("/t", recursive=True)


def test_rm_recursive_does_not_follow_symlinks(kfs):
    kfs.pipe("/keep/precious", b"x")
    kfs.pipe("/tree/f", b"y")
    kfs.symlink("/keep", "/tree/link")
    kfs.rm("/tree", recursive=True)
    assert not kfs.exists("/tree")
    assert kfs.cat("/keep/precious") == b"x"


def test_mkdir_makedirs_rmdir(kfs):
    kfs.mkdir("/a/b/c")  # create_parents=True by default
    assert kfs.isdir("/a/b/c")
    with pytest.raises(FileExistsError):
        kfs.mkdir("/a/b/c")
    with pytest.raises(FileNotFoundError):
        kfs.mkdir("/x/y", create_parents=False)
    kfs.mkdir("/a/d", create_parents=False)
    with pytest.raises(FileExistsError):
        kfs.makedirs("/a/b")
    kfs.makedirs("/a/b", exist_ok=True)
    kfs.makedirs("/a/b/e/f", exist_ok=True)
    assert kfs.isdir("/a/b/e/f")
    with pytest.raises(OSError) as e:
        kfs.rmdir("/a/b")
    assert e.value.errno == errno.ENOTEMPTY
    kfs.rmdir("/a/b/e/f")
    assert not kfs.exists("/a/b/e/f") and kfs.isdir("/a/b/e")
    with pytest.raises(FileNotFoundError):
        kfs.rmdir("/a/b/e/f")


def test_mv(kfs):
    kfs.pipe("/f", b"1")
    kfs.mv("/f", "/g")
    assert not kfs.exists("/f") and kfs.cat("/g") == b"1"
    kfs.mkdir("/dir")
    kfs.mv("/g", "/dir")  # into an existing directory
    assert kfs.cat("/dir/g") == b"1"
    kfs.mkdir("/other")
    kfs.mv("/dir", "/other")  # a directory into an existing (empty) directory
    assert kfs.find("/", withdirs=True) == ["/", "/other", "/other/dir", "/other/dir/g"]
    kfs.mv("/other/dir", "/renamed")
    assert kfs.cat("/renamed/g") == b"1"
    with pytest.raises(FileNotFoundError):
        kfs.mv("/renamed/g", "/no/such/dir/g")
    with pytest.raises(FileNotFoundError):
        kfs.mv("/missing", "/x")
    kfs.pipe("/p/a", b"a")
    kfs.pipe("/p/b", b"b")
    kfs.mv(["/p/a", "/p/b"], "/q/", recursive=True)  # lists: copy and remove
    assert kfs.cat("/q/a") == b"a" and kfs.cat("/q/b") == b"b"
    assert not kfs.exists("/p/a") and not kfs.exists("/p/b")


def test_created_modified_touch(kfs):
    kfs.touch("/t")
    assert kfs.cat("/t") == b""
    created, modified = kfs.created("/t"), kfs.modified("/t")
    for d in (created, modified):
        assert isinstance(d, datetime.datetime) and d.tzinfo is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((modified - now).total_seconds()) < 300
    kfs.client.utime("/t", ns=(1_000_000_000_123_456_789, 1_500_000_000_500_000_000))
    assert kfs.modified("/t") == datetime.datetime(2017, 7, 14, 2, 40, 0, 500000, tzinfo=datetime.timezone.utc)
    kfs.pipe("/t", b"content")
    assert kfs.modified("/t") > datetime.datetime(2017, 7, 15, tzinfo=datetime.timezone.utc)
    kfs.client.utime("/t", ns=(1_000_000_000_000_000_000, 1_500_000_000_000_000_000))
    kfs.touch("/t", truncate=False)  # keeps the data, updates the times
    assert kfs.cat("/t") == b"content"
    assert kfs.modified("/t") > datetime.datetime(2017, 7, 15, tzinfo=datetime.timezone.utc)
    kfs.touch("/t")  # truncate=True
    assert kfs.cat("/t") == b""
    kfs.touch("/new/dir/file")
    assert kfs.isfile("/new/dir/file")


def test_open_modes_and_types(kfs):
    with kfs.open("/f", "wb") as f:
        assert isinstance(f, kiseki.BufferedWriter)
        f.write(b"abc")
    with kfs.open("/f", "ab") as f:
        f.write(b"def")
    with kfs.open("/f", "rb") as f:
        assert isinstance(f, kiseki.BufferedReader)
        assert f.read() == b"abcdef"
    with kfs.open("/f", "rt", encoding="ascii") as f:
        assert f.read() == "abcdef"
    with pytest.raises(FileExistsError):
        kfs.open("/f", "xb")
    with pytest.raises(FileNotFoundError):
        kfs.open("/missing", "rb")


def test_pickle_read_only_file_same_process(kfs):
    kfs.pipe("/p.bin", bytes(range(256)) * 10)
    f = kfs.open("/p.bin", "rb")
    try:
        f.seek(300)
        g = pickle.loads(pickle.dumps(f))
        try:
            assert isinstance(g, kiseki.BufferedReader)
            assert g.tell() == 300
            assert g.read() == (bytes(range(256)) * 10)[300:]
            assert f.read(4) == bytes([44, 45, 46, 47])  # the original is untouched
        finally:
            g.close()
    finally:
        f.close()
        _close_readers(kfs.client.meta_url)
    with pytest.raises(ValueError):
        pickle.dumps(f)  # closed
    with kfs.open("/w.bin", "wb") as w:
        with pytest.raises(TypeError):
            pickle.dumps(w)


def test_unpickle_sees_changes_made_after_an_earlier_unpickle(kfs):
    """A read-only client sees the volume as it was when it connected: unpickling must
    not serve a file from an older cached connection."""
    kfs.pipe("/one", b"1")
    try:
        with kfs.open("/one", "rb") as f:
            with pickle.loads(pickle.dumps(f)) as g:
                assert g.read() == b"1"
        kfs.pipe("/two", b"2")
        kfs.pipe("/one", b"1 changed")
        for path, data in (("/two", b"2"), ("/one", b"1 changed"), ("/two", b"2")):
            with kfs.open(path, "rb") as f:
                with pickle.loads(pickle.dumps(f)) as g:
                    assert g.read() == data, path
    finally:
        _close_readers(kfs.client.meta_url)


def test_pickle_read_only_file_spawn(kfs):
    data = os.urandom(1 << 20)
    kfs.pipe("/spawn.bin", data)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with kfs.open("/spawn.bin", "rb") as f:
        f.seek(1000)
        # The parent keeps its read-write client (and this file) open throughout.
        p = ctx.Process(target=read_pickled_file, args=(f, queue))
        p.start()
        try:
            result = queue.get(timeout=120)
        finally:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
        assert result[0] == "ok", result
        assert result[1] == "kiseki._file.BufferedReader"
        assert result[2] == 1000
        assert result[3] == data[1000:]
        assert p.exitcode == 0
        assert f.read(10) == data[1000:1010]
    assert kfs.cat("/spawn.bin") == data


def test_pickled_filesystem_works_in_a_spawned_worker(kfs):
    """A filesystem made from a client pickles by volume; in a worker the copy connects
    read-only because the parent holds the volume read-write: reads work, writes are
    EROFS, and the parent is unaffected."""
    kfs.pipe("/fs.bin", b"payload")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=use_pickled_filesystem, args=(kfs, queue))
    p.start()
    try:
        result = queue.get(timeout=120)
    finally:
        p.join(60)
        if p.is_alive():
            p.kill()
            p.join()
    assert result[0] == "ok", result
    assert result[1] == ["/fs.bin"]
    assert result[2] == b"payload"
    assert result[3] == f"OSError {errno.EROFS}", result
    assert p.exitcode == 0
    assert not kfs.exists("/from-child")
    kfs.pipe("/after", b"parent still writes")
    assert kfs.cat("/after") == b"parent still writes"


def test_pickled_filesystem_in_the_same_process(kfs):
    kfs.pipe("/same", b"1")
    # kfs's client holds the volume read-write here too, so the copy is read-only.
    copy = pickle.loads(pickle.dumps(kfs))
    try:
        assert copy.client is not kfs.client
        assert copy.cat("/same") == b"1"
        with pytest.raises(OSError) as e:
            copy.pipe("/nope", b"x")
        assert e.value.errno == errno.EROFS
    finally:
        copy.client.close()
        KisekiFileSystem.clear_instance_cache()


def _close_readers(meta_url):
    for key, c in list(kiseki._file._readers.items()):
        if key[0] == meta_url:
            c.close()
            del kiseki._file._readers[key]
