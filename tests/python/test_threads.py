"""Python threads sharing one client: concurrent I/O on distinct files and on disjoint
regions of one file, and proof that Kiseki calls release the GIL."""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from typing import Any, Callable, List

import pytest

import kiseki

THREADS = 8


def _data(seed: int, n: int) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "little")).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def run_threads(target: Callable[[int], Any], n: int = THREADS) -> List[Any]:
    """Runs target(0..n-1) in threads started together; re-raises the first error."""
    barrier = threading.Barrier(n)
    results: List[Any] = [None] * n
    errors: List[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = target(i)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,), name=f"kiseki-test-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), f"{t.name} hangs"
    if errors:
        raise errors[0]
    return results


def test_threads_distinct_files_and_shared_file(client: kiseki.Client) -> None:
    region = (1 << 20) + 4099  # regions that do not line up with blocks or buffers
    sizes = [0, 1, 4096, 65537, (1 << 20), (3 << 20) + 5, 777, (5 << 20) + 1]
    with client.open("shared.bin", "wb") as f:
        f.truncate(region * THREADS)
    client.mkdir("own")

    def writer(i: int) -> None:
        data = _data(i, sizes[i])
        # Its own file, in uneven chunks, and a directory of its own.
        with client.open(f"own/file{i}.bin", "wb") as f:
            pos = 0
            step = 1000 + i * 37_000
            while pos < len(data):
                f.write(data[pos : pos + step])
                pos += step
        client.mkdir(f"own/dir{i}")
        for k in range(5):
            with client.open(f"own/dir{i}/{k}", "w") as f:
                f.write(str(i * 100 + k))
        # Its region of the shared file, through its own handle.
        mine = _data(1000 + i, region)
        with client.open("shared.bin", "r+b", buffering=0 if i % 2 else -1) as f:
            f.seek(i * region)
            for pos in range(0, region, 300_000):
                f.write(mine[pos : pos + 300_000])

    run_threads(writer)

    def reader(i: int) -> None:
        # Read what another thread wrote, while the others read too.
        j = (i + 3) % THREADS
        with client.open(f"own/file{j}.bin", "rb") as f:
            assert f.read() == _data(j, sizes[j]), j
        assert sorted(client.listdir(f"own/dir{j}")) == [str(k) for k in range(5)]
        with client.open(f"own/dir{j}/4", encoding="ascii") as f:
            assert f.read() == str(j * 100 + 4)
        with client.open("shared.bin", "rb", buffering=0) as f:
            f.seek(j * region)
            buf = bytearray(region)
            view = memoryview(buf)
            got = 0
            while got < region:
                n = f.readinto(view[got:])
                assert n > 0
                got += n
            assert bytes(buf) == _data(1000 + j, region), j

    run_threads(reader)
    assert client.stat("shared.bin").st_size == region * THREADS
    assert sorted(client.listdir("own")) == sorted([f"file{i}.bin" for i in range(THREADS)] + [f"dir{i}" for i in range(THREADS)])


def test_threads_interleaved_readers_and_writers(client: kiseki.Client) -> None:
    """Half the threads append records to their own files while the other half keep
    re-reading completed files; every read sees a prefix of whole records."""
    record = 4096
    rounds = 40
    done = threading.Event()

    def work(i: int) -> int:
        if i % 2 == 0:
            with client.open(f"log{i}", "ab", buffering=0) as f:
                for r in range(rounds):
                    f.write(bytes([r % 251]) * record)
            done.set()
            return rounds
        reads = 0
        target = f"log{i - 1}"
        while not (done.is_set() and reads > 3):
            try:
                with client.open(target, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            for r in range(len(data) // record):
                assert data[r * record : (r + 1) * record] == bytes([r % 251]) * record
            reads += 1
        return reads

    results = run_threads(work)
    assert all(r >= 1 for r in results)
    for i in range(0, THREADS, 2):
        assert client.stat(f"log{i}").st_size == record * rounds


class _Spinner:
    """A pure-Python busy loop in its own thread. It sleeps briefly now and then (which
    releases the GIL) so the main thread gets the GIL back after a call."""

    def __init__(self) -> None:
        self.counter = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, name="spinner")

    def run(self) -> None:
        while not self.stop:
            for _ in range(2000):
                self.counter += 1
            time.sleep(0.0005)

    def __enter__(self) -> "_Spinner":
        self.thread.start()
        while self.counter == 0:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop = True
        self.thread.join(10)


def _progress_during(
    spinner: _Spinner,
    call: Callable[[], Any],
    attempts: int = 40,
    enough: int = 3,
    prepare: Callable[[], Any] = lambda: None,
) -> int:
    """How many times, out of at most `attempts` calls, the spinner advanced while
    `call` ran (stopping at `enough`). With the switch interval made huge, the main
    thread never hands the GIL over involuntarily: between reading the counter before
    and after the call, the spinner can only run if `call` itself releases the GIL."""
    seen = 0
    for _ in range(attempts):
        prepare()  # not measured (it may release the GIL itself)
        time.sleep(0.002)  # let the spinner have the GIL
        before = spinner.counter
        call()
        after = spinner.counter
        if after != before:
            seen += 1
            if seen >= enough:
                break
    return seen


def test_io_releases_the_gil(client: kiseki.Client) -> None:
    big = _data(7, 16 << 20)
    buf = bytearray(len(big))
    old = sys.getswitchinterval()
    f = client.open("gil.bin", "w+b", buffering=0)
    try:
        sys.setswitchinterval(1000.0)
        with _Spinner() as spinner:
            # Control: a long C call that holds the GIL shows no progress at all, so
            # the measure cannot pass by accident.
            assert _progress_during(spinner, lambda: sum(range(3_000_000)), attempts=5, enough=5) == 0

            def rewind() -> None:
                f.seek(0)

            def write() -> None:
                assert f.write(big) == len(big)

            def read() -> None:
                assert f.readinto(buf) == len(buf)

            assert _progress_during(spinner, write, prepare=rewind) > 0
            assert _progress_during(spinner, read, prepare=rewind) > 0
    finally:
        sys.setswitchinterval(old)
        f.close()
    assert bytes(buf) == big


@pytest.mark.parametrize("op", ["stat", "listdir"])
def test_metadata_calls_concurrently(client: kiseki.Client, op: str) -> None:
    for i in range(20):
        client.makedirs(f"m/{i}")

    def work(i: int) -> None:
        for _ in range(50):
            if op == "stat":
                assert client.isdir(f"m/{(i * 7) % 20}")
            else:
                assert len(client.listdir("m")) == 20

    run_threads(work)
