"""The Python package on a volume whose metadata lives in a real 3-member etcd
cluster: several clients (threads of one process and separate processes) share it
with close-to-open consistency.

The cluster is started here from Debian's `etcd` and stopped afterwards. Without
`etcd` the tests skip, unless `KISEKI_REQUIRE_ETCD=1` (set by the test command).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

import pytest

import kiseki


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd_endpoints() -> Iterator[str]:
    if shutil.which("etcd") is None:
        if os.environ.get("KISEKI_REQUIRE_ETCD"):
            pytest.fail("KISEKI_REQUIRE_ETCD is set but etcd is not installed")
        pytest.skip("etcd is not installed")
    root = Path(tempfile.mkdtemp(prefix="kiseki-etcd-py-"))
    names = [f"e{i}" for i in range(3)]
    client = [_free_port() for _ in names]
    peer = [_free_port() for _ in names]
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer))
    procs: List[subprocess.Popen] = []
    try:
        for n, c, p in zip(names, client, peer):
            log = open(root / f"{n}.log", "wb")
            procs.append(
                subprocess.Popen(
                    [
                        "etcd", "--name", n, "--data-dir", str(root / n),
                        "--listen-client-urls", f"http://127.0.0.1:{c}",
                        "--advertise-client-urls", f"http://127.0.0.1:{c}",
                        "--listen-peer-urls", f"http://127.0.0.1:{p}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                        "--initial-cluster", initial,
                        "--initial-cluster-token", "kiseki-py",
                        "--initial-cluster-state", "new",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        endpoints = ",".join(f"127.0.0.1:{c}" for c in client)
        deadline = time.monotonic() + 30
        while True:
            ok = subprocess.run(
                ["etcdctl", "--endpoints", endpoints, "--command-timeout=2s", "put", "probe", "1"],
                env={**os.environ, "ETCDCTL_API": "3"},
                capture_output=True,
            ).returncode == 0
            if ok:
                break
            assert time.monotonic() < deadline, "etcd cluster did not become healthy"
            time.sleep(0.2)
        yield endpoints
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


_count = 0


@pytest.fixture
def etcd_volume(etcd_endpoints: str, tmp_path: Path) -> str:
    global _count
    _count += 1
    url = f"etcd://{etcd_endpoints}/py-{os.getpid()}-{_count}"
    data = tmp_path / "data"
    data.mkdir()
    kiseki.format(url, "etcdpy", bucket=str(data))
    return url


def test_two_clients_see_each_others_closed_files(etcd_volume: str) -> None:
    with kiseki.connect(etcd_volume) as a, kiseki.connect(etcd_volume) as b:
        payload = os.urandom(3 << 20)
        with a.open("big.bin", "wb") as f:
            f.write(payload)
        # b opens after a's close: it sees the whole file (close-to-open).
        with b.open("big.bin", "rb") as f:
            assert f.read() == payload
        b.mkdir("dir")
        with b.open("dir/note.txt", "w", encoding="utf-8") as f:
            f.write("from b\n")
        assert a.listdir("dir") == ["note.txt"]
        with a.open("dir/note.txt", encoding="utf-8") as f:
            assert f.read() == "from b\n"
        a.rename("dir/note.txt", "moved.txt")
        assert not b.exists("dir/note.txt")
        assert b.stat("moved.txt").st_size == len("from b\n")
        with pytest.raises(FileExistsError):
            b.mkdir("dir")


_WRITER = """
import hashlib, os, sys, kiseki
url, tag = sys.argv[1], sys.argv[2]
out = {}
with kiseki.connect(url) as c:
    for i in range(20):
        data = os.urandom(4096 * (i + 1))
        with c.open(f"{tag}-{i}.bin", "wb") as f:
            f.write(data)
        out[f"{tag}-{i}.bin"] = hashlib.sha256(data).hexdigest()
print(__import__("json").dumps(out))
"""


def test_processes_write_one_volume_at_once(etcd_volume: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, etcd_volume, f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(3)
    ]
    expected = {}
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        expected.update(json.loads(out))
    assert len(expected) == 60
    with kiseki.connect(etcd_volume) as c:
        assert sorted(c.listdir("/")) == sorted(expected)
        for name, digest in expected.items():
            with c.open(name, "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest


def test_bad_etcd_urls_raise_oserror() -> None:
    with pytest.raises(OSError) as e:
        kiseki.connect("etcd://127.0.0.1:2379")
    assert e.value.errno == 22
    port = _free_port()
    with pytest.raises(OSError):
        kiseki.connect(f"etcd://127.0.0.1:{port}/nothing-listens")
