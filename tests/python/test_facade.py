"""The Python package over the core's facade: attributes after every operation show
writes not yet flushed, and `kiseki.fsck` checks a volume as `kiseki fsck` does."""

from __future__ import annotations

import errno
import glob
import os

import pytest

import kiseki

LEN = 1 << 20


def test_attributes_show_unflushed_writes(client: kiseki.Client) -> None:
    data = os.urandom(LEN)
    client.mkdir("fresh")
    steps = [
        ("link", lambda: client.link("fresh/f", "fresh/g"), "fresh/g"),
        ("rename", lambda: client.rename("fresh/g", "fresh/h"), "fresh/h"),
        ("chmod", lambda: client.chmod("fresh/f", 0o600), "fresh/f"),
        ("chown", lambda: client.chown("fresh/f", 1, 1), "fresh/f"),
        ("utime", lambda: client.utime("fresh/f", (1, 1)), "fresh/f"),
        ("setxattr", lambda: client.setxattr("fresh/f", "user.k", b"v"), "fresh/f"),
        ("symlink", lambda: client.symlink("f", "fresh/s"), "fresh/s"),
        ("scandir", lambda: list(client.scandir("fresh")), "fresh/f"),
    ]
    with client.open("fresh/f", "wb", buffering=0) as f:
        f.write(data)
        for what, step, name in steps:
            step()
            assert client.stat(name).st_size == LEN, what
            with client.open(name, "rb") as back:
                assert back.read() == data, what
        sizes = {e.name: e.stat().st_size for e in client.scandir("fresh") if e.is_file()}
        assert sizes["f"] == LEN and sizes["h"] == LEN


def test_fsck_finds_a_lost_block(tmp_path) -> None:
    url = f"rocksdb://{tmp_path}/meta"
    os.makedirs(tmp_path / "data")
    kiseki.format(url, "fsck", bucket=str(tmp_path / "data"))
    with kiseki.connect(url) as c:
        with c.open("f", "wb") as f:
            f.write(os.urandom(3 << 20))
        report = kiseki.fsck(url)
        assert report["problems"] == [] and report["inodes"] == 2 and report["blocks"] >= 1
        assert report["in_use"], "checked while this client holds the volume"
    blocks = glob.glob(str(tmp_path / "data" / "**" / "chunks" / "**" / "*"), recursive=True)
    os.remove(next(b for b in blocks if os.path.isfile(b)))
    report = kiseki.fsck(url)
    assert any("missing block" in p for p in report["problems"]), report
    assert kiseki.fsck(url, objects=False)["problems"] == []


def test_a_corrupt_block_is_an_oserror_never_wrong_bytes(tmp_path) -> None:
    url = f"rocksdb://{tmp_path}/meta"
    os.makedirs(tmp_path / "data")
    kiseki.format(url, "sums", bucket=str(tmp_path / "data"))
    data = bytes(range(256)) * 4096  # 1 MiB: one block
    with kiseki.connect(url) as c:
        with c.open("f", "wb") as f:
            f.write(data)
    (block,) = [
        b
        for b in glob.glob(str(tmp_path / "data" / "**" / "chunks" / "**" / "*"), recursive=True)
        if os.path.isfile(b)
    ]
    with open(block, "r+b") as raw:
        raw.seek(500_000)
        byte = raw.read(1)
        raw.seek(500_000)
        raw.write(bytes([byte[0] ^ 1]))
    with kiseki.connect(url) as c:
        with c.open("f", "rb") as f:
            with pytest.raises(OSError) as e:
                f.read()
            assert e.value.errno == errno.EIO and os.path.basename(block) in str(e.value)
    assert kiseki.fsck(url)["problems"] == [], "listing cannot see a flipped byte"
    report = kiseki.fsck(url, read=True)
    assert any("corrupt block" in p and os.path.basename(block) in p for p in report["problems"])
