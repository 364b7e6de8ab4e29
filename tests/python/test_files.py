"""File objects from `Client.open` / `kiseki.open`, checked against the builtin `open()`
on a local file doing the same thing."""

from __future__ import annotations

import array
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Tuple

import pytest

import kiseki
from conftest import make_volume

TEXTS = {
    "utf-8": "héllo wörld €\n日本語 𝄞\r\nthird\rlast",
    "utf-16": "héllo wörld €\n日本語 𝄞\r\nthird\rlast",
    "latin-1": "héllo wörld ß\nñandú\r\nthird\rlast",
}
NEWLINES = [None, "", "\n", "\r", "\r\n"]


def outcome(fn: Callable[[], Any]) -> Tuple[Any, ...]:
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - compared by the caller
        return ("error", type(e), getattr(e, "errno", None))


class Pair:
    """The same file name opened locally with the builtin and in the volume."""

    def __init__(self, client: kiseki.Client, local: Path) -> None:
        self.client, self.local = client, local

    def open(self, name: str, *args: Any, **kwargs: Any) -> Tuple[Any, Any]:
        lo = outcome(lambda: open(self.local / name, *args, **kwargs))
        ko = outcome(lambda: self.client.open(name, *args, **kwargs))
        assert lo[0] == ko[0] == "ok", (lo, ko)
        return lo[1], ko[1]

    def same_open(self, name: str, *args: Any, **kwargs: Any) -> Tuple[Any, ...]:
        """Opens on both sides expecting the same failure (or success)."""
        lo = outcome(lambda: open(self.local / name, *args, **kwargs))
        ko = outcome(lambda: self.client.open(name, *args, **kwargs))
        for o in (lo, ko):
            if o[0] == "ok":
                o[1].close()
        if lo[0] == "ok":
            assert ko[0] == "ok", (lo, ko)
        else:
            assert lo == ko
        return ko

    def same(self, files: Tuple[Any, Any], fn: Callable[[Any], Any]) -> Any:
        """Runs `fn` on the local and the Kiseki file: same result or same exception
        (type and errno). Returns the result, or the exception type."""
        lo, ko = outcome(lambda: fn(files[0])), outcome(lambda: fn(files[1]))
        assert lo == ko
        return lo[1]

    def write_bytes(self, name: str, data: bytes) -> None:
        (self.local / name).write_bytes(data)
        with self.client.open(name, "wb") as f:
            f.write(data)

    def read_bytes(self, name: str) -> Tuple[bytes, bytes]:
        with self.client.open(name, "rb") as f:
            return (self.local / name).read_bytes(), f.read()


@pytest.fixture
def pair(client: kiseki.Client, local: Path) -> Pair:
    return Pair(client, local)


# -- text ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(TEXTS))
@pytest.mark.parametrize("write_newline", NEWLINES)
def test_text_round_trip(pair: Pair, encoding: str, write_newline: Any) -> None:
    text = TEXTS[encoding]
    files = pair.open("t.txt", "w", encoding=encoding, newline=write_newline)
    assert pair.same(files, lambda f: f.write(text)) == len(text)
    pair.same(files, lambda f: (f.encoding, f.newlines, f.line_buffering, f.mode))
    for f in files:
        f.close()
    local_bytes, kiseki_bytes = pair.read_bytes("t.txt")
    assert local_bytes == kiseki_bytes
    assert kiseki_bytes  # not a tautology: something was written
    for read_newline in NEWLINES:
        files = pair.open("t.txt", "r", encoding=encoding, newline=read_newline)
        content = pair.same(files, lambda f: f.read())
        if read_newline == "":  # untranslated: exactly what was written
            written = text if write_newline in (None, "", "\n") else text.replace("\n", write_newline)
            assert content == written
        assert isinstance(content, str) and content
        pair.same(files, lambda f: f.newlines)
        pair.same(files, lambda f: f.seek(0))
        pair.same(files, lambda f: f.readlines())
        pair.same(files, lambda f: f.seek(0))
        pair.same(files, lambda f: list(f))
        pair.same(files, lambda f: f.seek(0))
        pair.same(files, lambda f: [f.read(3), f.readline(), f.tell(), f.readline(4), f.tell(), f.read()])
        for f in files:
            f.close()


@pytest.mark.parametrize("newline", NEWLINES)
def test_reading_mixed_line_ends(pair: Pair, newline: Any) -> None:
    pair.write_bytes("m.txt", b"one\r\ntwo\rthree\nfour\r\r\nfive\n\rsix\r")
    files = pair.open("m.txt", encoding="ascii", newline=newline)
    lines = pair.same(files, lambda f: f.readlines())
    assert len(lines) >= 3 and "".join(lines).endswith("six\n" if newline is None else "six\r")
    pair.same(files, lambda f: f.newlines)
    pair.same(files, lambda f: (f.seek(0), f.read(), f.tell()))
    for f in files:
        f.close()


def test_text_line_buffering_and_append(pair: Pair) -> None:
    files = pair.open("l.txt", "w", buffering=1, encoding="utf-8")
    pair.same(files, lambda f: f.line_buffering)
    pair.same(files, lambda f: f.write("no newline yet"))
    # Not flushed yet on either side.
    assert os.path.getsize(pair.local / "l.txt") == pair.client.stat("l.txt").st_size == 0
    pair.same(files, lambda f: f.write(" and now\n"))
    assert os.path.getsize(pair.local / "l.txt") == pair.client.stat("l.txt").st_size == 23
    for f in files:
        f.close()
    files = pair.open("l.txt", "a+", encoding="utf-8")
    pair.same(files, lambda f: (f.tell(), f.write("é"), f.seek(0), f.read()))
    for f in files:
        f.close()
    assert pair.read_bytes("l.txt")[0] == pair.read_bytes("l.txt")[1] == "no newline yet and now\né".encode()


@pytest.mark.parametrize("errors", [None, "strict", "replace", "ignore", "surrogateescape", "backslashreplace"])
def test_decode_errors(pair: Pair, errors: Any) -> None:
    pair.write_bytes("bad.txt", b"ok \xff\xfe bad \x80 end\n")
    files = pair.open("bad.txt", encoding="utf-8", errors=errors)
    result = pair.same(files, lambda f: f.read())
    if errors in (None, "strict"):
        assert result is UnicodeDecodeError
    else:
        assert isinstance(result, str) and result.startswith("ok ")
    for f in files:
        f.close()


@pytest.mark.parametrize("errors", [None, "strict", "replace", "ignore", "xmlcharrefreplace", "backslashreplace", "bogus"])
def test_encode_errors(pair: Pair, errors: Any) -> None:
    files = pair.open("enc.txt", "w", encoding="ascii", errors=errors)
    result = pair.same(files, lambda f: (f.write("plain é € end"), f.flush()))
    if errors in (None, "strict"):
        assert result is UnicodeEncodeError
    elif errors == "bogus":
        assert result is LookupError  # an unknown handler fails on use, not at open
    else:
        assert result[0] > 0
    pair.same(files, lambda f: f.close())
    lb, kb = pair.read_bytes("enc.txt")
    assert lb == kb


def test_text_encoding_none_and_locale(pair: Pair) -> None:
    files = pair.open("loc.txt", "w")
    pair.same(files, lambda f: (f.encoding, f.write("abc\n")))
    for f in files:
        f.close()
    lb, kb = pair.read_bytes("loc.txt")
    assert lb == kb == b"abc\n"


# -- a large binary file -------------------------------------------------------------------


@pytest.fixture
def big_volume(tmp_path: Path) -> Any:
    root = tmp_path / "bigvol"
    url = make_volume(root)
    yield url
    shutil.rmtree(root, ignore_errors=True)  # do not leave 1 GiB behind in /tmp


def test_one_gib_round_trip(big_volume: str) -> None:
    size = 1 << 30
    chunk = 4 << 20
    block = bytearray(os.urandom(chunk))
    written = hashlib.sha256()
    with kiseki.connect(big_volume) as c:
        with c.open("big.bin", "wb") as f:
            for i in range(size // chunk):
                block[:8] = i.to_bytes(8, "little")  # every chunk differs
                block[-8:] = (i * 7919).to_bytes(8, "little")
                written.update(block)
                assert f.write(block) == chunk
        assert c.stat("big.bin").st_size == size
    # Read back through a fresh connection, in chunks that do not line up with the
    # written ones, straight into a reused buffer.
    with kiseki.connect(big_volume) as c:
        read = hashlib.sha256()
        buf = bytearray((3 << 20) + 17)
        view = memoryview(buf)
        total = 0
        with c.open("big.bin", "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                read.update(view[:n])
                total += n
        assert total == size
        assert read.hexdigest() == written.hexdigest()
        with c.open("big.bin", "rb", buffering=0) as f:
            f.seek(size - chunk + 3)
            tail = f.read()
        assert tail == bytes(block[3:])
        c.remove("big.bin")


# -- modes -------------------------------------------------------------------------------


def test_append_mode_writes_at_end(pair: Pair) -> None:
    pair.write_bytes("a.bin", b"start")
    for mode in ("ab", "a+b"):
        files = pair.open("a.bin", mode)
        pair.same(files, lambda f: (f.tell(), f.seek(0), f.write(b"-more"), f.tell()))
        for f in files:
            f.close()
    lb, kb = pair.read_bytes("a.bin")
    assert lb == kb == b"start-more-more"


def test_append_unbuffered_seek(pair: Pair) -> None:
    pair.write_bytes("a.bin", b"0123456789")
    files = pair.open("a.bin", "a+b", buffering=0)
    pair.same(files, lambda f: [f.seek(2), f.read(3), f.write(b"XY"), f.tell(), f.seek(0), f.read()])
    for f in files:
        f.close()


def test_exclusive_write_and_read_plus(pair: Pair) -> None:
    assert pair.same_open("x.bin", "xb")[0] == "ok"
    assert pair.same_open("x.bin", "x")[1] is FileExistsError
    assert pair.same_open("x.bin", "x+b")[1] is FileExistsError
    assert pair.same_open("missing", "r+")[1] is FileNotFoundError
    assert pair.same_open("missing", "rb")[1] is FileNotFoundError
    assert pair.same_open("missing/child", "w")[1] is FileNotFoundError
    pair.write_bytes("w.bin", b"old content")
    files = pair.open("w.bin", "wb")
    pair.same(files, lambda f: f.tell())
    for f in files:
        f.close()
    assert pair.read_bytes("w.bin") == (b"", b"")


def test_open_directory(pair: Pair) -> None:
    (pair.local / "dir").mkdir()
    pair.client.mkdir("dir")
    for mode in ("r", "rb", "w", "a", "r+", "rb+", "x"):
        expected = FileExistsError if mode == "x" else IsADirectoryError
        assert pair.same_open("dir", mode)[1] is expected, mode
    with pytest.raises(IsADirectoryError):
        pair.client.open("/", "rb")


def test_write_under_a_file(pair: Pair) -> None:
    pair.write_bytes("f", b"")
    assert pair.same_open("f/child", "w")[1] is NotADirectoryError


def test_unbuffered_raw_readinto(pair: Pair) -> None:
    pair.write_bytes("r.bin", bytes(range(100)))
    files = pair.open("r.bin", "rb", buffering=0)
    assert isinstance(files[1], io.RawIOBase) and isinstance(files[1], kiseki.FileIO)
    assert not isinstance(files[1], io.BufferedIOBase)

    def fill(make: Callable[[], Any]) -> Callable[[Any], Any]:
        def run(f: Any) -> Any:
            buf = make()
            n = f.readinto(buf)
            return n, bytes(buf) if not isinstance(buf, array.array) else buf.tobytes()

        return run

    assert pair.same(files, fill(lambda: bytearray(10)))[0] == 10
    pair.same(files, fill(lambda: memoryview(bytearray(7))))
    pair.same(files, fill(lambda: array.array("i", [0] * 3)))
    pair.same(files, fill(lambda: array.array("b", [0] * 5)))
    assert pair.same(files, fill(lambda: "text")) is TypeError

    def into_slice(f: Any) -> Any:
        buf = bytearray(b"." * 12)
        n = f.readinto(memoryview(buf)[3:8])
        return n, bytes(buf)

    n, buf = pair.same(files, into_slice)
    assert n == 5 and buf[:3] == b"..." and buf[8:] == b"...." and buf[3:8] != b"....."
    pair.same(files, lambda f: (f.seek(-3, 2), f.readinto(bytearray(10)), f.readinto(bytearray(10))))
    pair.same(files, lambda f: (f.seek(0), f.read(5), f.readall()[:5], f.read()))
    for f in files:
        f.close()


@pytest.mark.parametrize(
    "make",
    [lambda: bytes(4), lambda: memoryview(bytearray(4)).toreadonly(), lambda: memoryview(bytearray(8))[::2]],
    ids=["bytes", "readonly-memoryview", "strided-memoryview"],
)
@pytest.mark.parametrize("buffering", [0, -1])
def test_readinto_unwritable_buffer_is_type_error(pair: Pair, make: Callable[[], Any], buffering: int) -> None:
    """`io.FileIO.readinto` and `io.BufferedReader.readinto` raise TypeError ("argument
    must be read-write bytes-like object") for a read-only or non-contiguous buffer."""
    pair.write_bytes("r.bin", bytes(range(10)))
    files = pair.open("r.bin", "rb", buffering=buffering)
    assert pair.same(files, lambda f: f.readinto(make())) is TypeError
    for f in files:
        f.close()


def test_buffered_readinto_memoryview_slice(pair: Pair) -> None:
    pair.write_bytes("r.bin", os.urandom(50_000))
    files = pair.open("r.bin", "rb")

    def run(f: Any) -> Any:
        buf = bytearray(40_000)
        mv = memoryview(buf)
        out = [f.readinto(mv[100:30_100]), f.readinto1(mv[:10]), f.readinto(mv[30_000:])]
        return out, hashlib.sha256(buf).hexdigest()

    pair.same(files, run)
    for f in files:
        f.close()


def test_iteration_and_context_manager(pair: Pair) -> None:
    pair.write_bytes("lines", b"a\nbb\n\nccc")
    for mode in ("rb", "r"):
        files = pair.open("lines", mode)
        pair.same(files, lambda f: list(f))
        pair.same(files, lambda f: (f.seek(0), next(f), next(iter(f))))
        for f in files:
            f.close()
    with pair.client.open("lines", "rb") as f:
        assert not f.closed
        assert f.readline() == b"a\n"
    assert f.closed
    with pytest.raises(ValueError):
        f.read()
    with pytest.raises(ValueError):
        next(iter(f))


def test_closing_flushes_for_another_client(volume: str) -> None:
    c = kiseki.connect(volume)
    with c.open("kept.txt", "w", encoding="utf-8") as f:
        f.write("written then closed ✓")
    raw = c.open("raw.bin", "wb", buffering=0)
    raw.write(b"raw bytes, file left open")
    c.close()  # closing the client flushes its open files
    with pytest.raises(OSError):
        raw.write(b"more")
    with kiseki.connect(volume) as c2:
        with c2.open("kept.txt", encoding="utf-8") as f:
            assert f.read() == "written then closed ✓"
        with c2.open("raw.bin", "rb") as f:
            assert f.read() == b"raw bytes, file left open"


def test_flush_makes_data_visible_to_read_only_client(client: kiseki.Client, volume: str) -> None:
    f = client.open("shared.bin", "wb")
    f.write(b"first part")
    with kiseki.connect(volume, read_only=True) as ro:
        # Still in the writer's buffer.
        assert ro.stat("shared.bin").st_size == 0
    f.flush()
    with kiseki.connect(volume, read_only=True) as ro:
        with ro.open("shared.bin", "rb") as g:
            assert g.read() == b"first part"
        with pytest.raises(OSError) as e:
            ro.open("other", "wb")
        assert e.value.errno == 30  # EROFS
    f.write(b" and more")
    f.close()
    with kiseki.connect(volume, read_only=True) as ro:
        with ro.open("shared.bin", "rb") as g:
            assert g.read() == b"first part and more"


def test_fileno_unsupported(client: kiseki.Client) -> None:
    for mode, buffering in (("wb", 0), ("wb", -1), ("w", -1), ("rb", 0), ("r+b", -1), ("r", -1)):
        with client.open("f", mode, buffering=buffering) as f:
            with pytest.raises(io.UnsupportedOperation):
                f.fileno()
            assert f.isatty() is False


@pytest.mark.parametrize(
    "mode,cls,kcls",
    [
        ("rb", io.BufferedReader, kiseki.BufferedReader),
        ("wb", io.BufferedWriter, kiseki.BufferedWriter),
        ("ab", io.BufferedWriter, kiseki.BufferedWriter),
        ("xb", io.BufferedWriter, kiseki.BufferedWriter),
        ("r+b", io.BufferedRandom, kiseki.BufferedRandom),
        ("w+b", io.BufferedRandom, kiseki.BufferedRandom),
        ("a+b", io.BufferedRandom, kiseki.BufferedRandom),
        ("r", io.TextIOWrapper, kiseki.TextIOWrapper),
        ("w+", io.TextIOWrapper, kiseki.TextIOWrapper),
        ("at", io.TextIOWrapper, kiseki.TextIOWrapper),
    ],
)
def test_isinstance(pair: Pair, mode: str, cls: type, kcls: type) -> None:
    pair.write_bytes("exists", b"")
    name = "exists" if "x" not in mode else "new"
    lf, kf = pair.open(name, mode)
    with lf, kf:
        assert isinstance(lf, cls)  # the builtin's type, for reference
        assert isinstance(kf, cls) and isinstance(kf, kcls) and isinstance(kf, io.IOBase)
        assert kf.name == name
        assert kf.mode == lf.mode
        raw = kf.buffer.raw if isinstance(kf, io.TextIOWrapper) else kf.raw
        assert isinstance(raw, kiseki.FileIO) and isinstance(raw, io.RawIOBase)


def test_mode_attribute_matches_builtin(pair: Pair) -> None:
    pair.write_bytes("e", b"")
    for mode in ("r", "rb", "r+", "rb+", "w", "wb", "w+b", "a", "ab", "a+", "rt", "wt"):
        for buffering in (-1, 0) if "b" in mode else (-1,):
            files = pair.open("e", mode, buffering=buffering)
            pair.same(files, lambda f: f.mode)
            pair.same(files, lambda f: (f.readable(), f.writable(), f.seekable()))
            for f in files:
                f.close()


def test_seek_tell_truncate_like_builtin(pair: Pair) -> None:
    for buffering in (0, 16, -1):
        name = f"s{buffering}"
        files = pair.open(name, "w+b", buffering=buffering)
        pair.same(files, lambda f: f.write(b"0123456789"))
        pair.same(files, lambda f: (f.tell(), f.seek(3), f.read(2), f.tell()))
        pair.same(files, lambda f: (f.seek(-2, os.SEEK_CUR), f.seek(-4, os.SEEK_END), f.read()))
        pair.same(files, lambda f: f.seek(-1))  # OSError EINVAL
        pair.same(files, lambda f: f.seek(-20, os.SEEK_END))
        pair.same(files, lambda f: f.seek(0, 3))  # bad whence
        pair.same(files, lambda f: f.seek(1.5))  # TypeError
        pair.same(files, lambda f: (f.seek(20), f.write(b"hole"), f.tell(), f.seek(0), f.read()))
        pair.same(files, lambda f: (f.truncate(5), f.tell(), f.read(), f.seek(0), f.read()))
        pair.same(files, lambda f: (f.seek(2), f.truncate(), f.tell(), f.seek(0, 2)))
        pair.same(files, lambda f: (f.truncate(100), f.tell(), f.seek(0, 2), f.seek(0), len(f.read())))
        pair.same(files, lambda f: f.truncate(-1))
        pair.same(files, lambda f: (f.seek(5), f.write(b"abc"), f.truncate(), f.tell(), f.seek(0), f.read()))
        for f in files:
            f.close()
        lb, kb = pair.read_bytes(name)
        assert lb == kb
    files = pair.open("ro", "wb")
    for f in files:
        f.close()
    files = pair.open("ro", "rb")
    pair.same(files, lambda f: f.truncate(0))  # UnsupportedOperation
    pair.same(files, lambda f: f.write(b"x"))
    for f in files:
        f.close()
    files = pair.open("ro", "wb")
    pair.same(files, lambda f: f.read())
    for f in files:
        f.close()


def test_text_seek_tell_like_builtin(pair: Pair) -> None:
    text = "ab€\nçd𝄞\r\nend\n" * 50
    files = pair.open("t", "w+", encoding="utf-8", newline="")
    pair.same(files, lambda f: f.write(text))
    pair.same(files, lambda f: (f.seek(0), f.readline(), f.tell(), f.read(7), f.tell()))
    cookie = pair.same(files, lambda f: (f.readline(), f.tell()))[1]
    pair.same(files, lambda f: (f.read(20), f.seek(cookie), f.read(20)))
    pair.same(files, lambda f: f.seek(3, os.SEEK_CUR))  # UnsupportedOperation
    pair.same(files, lambda f: (f.seek(0, os.SEEK_END), f.tell(), f.write("tail"), f.seek(0), f.read()[-10:]))
    pair.same(files, lambda f: (f.seek(0), f.truncate(10), f.tell(), f.seek(0), f.read()))
    for f in files:
        f.close()


def test_closed_file_operations(pair: Pair) -> None:
    for mode, buffering in (("wb", 0), ("w+b", -1), ("rb", -1), ("w", -1), ("r+", -1)):
        files = pair.open("c", mode, buffering=buffering)
        for f in files:
            f.close()
            f.close()  # idempotent
            assert f.closed
        data = b"x" if "b" in mode else "x"
        for op in (
            lambda f: f.read(),
            lambda f: f.read(1),
            lambda f: f.readline(),
            lambda f: f.readlines(),
            lambda f: f.write(data),
            lambda f: f.writelines([data]),
            lambda f: f.seek(0),
            lambda f: f.tell(),
            lambda f: f.truncate(),
            lambda f: f.flush(),
            lambda f: f.readable(),
            lambda f: f.writable(),
            lambda f: f.seekable(),
            lambda f: f.fileno(),
            lambda f: f.isatty(),
            lambda f: iter(f),
            lambda f: f.__enter__(),
        ):
            result = pair.same(files, op)
            # ValueError (io.UnsupportedOperation is one); TextIOWrapper.readable() is False.
            assert result is False or (isinstance(result, type) and issubclass(result, ValueError))


def test_default_client_open(volume: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KISEKI_META_URL", volume)  # conftest reset the default client
    with kiseki.open("/via-default.txt", "w", encoding="utf-8") as f:
        f.write("default client")
    default = kiseki.default_client()
    assert default.meta_url == volume
    with kiseki.open("via-default.txt", encoding="utf-8") as f:
        assert f.read() == "default client"
    assert kiseki.default_client() is default
    default.close()
    # A closed default client is replaced by a new connection on next use.
    with kiseki.open(Path("via-default.txt"), "rb") as f:
        assert f.read() == b"default client"
    assert kiseki.default_client() is not default


def test_open_with_explicit_client_and_pathlike(client: kiseki.Client) -> None:
    with kiseki.open(Path("p.bin"), "wb", client=client) as f:
        f.write(b"pathlike")
    with kiseki.open(b"p.bin", "rb", client=client) as f:
        assert f.read() == b"pathlike"
        assert f.name == "p.bin"
