#!/usr/bin/env python3
"""The big-file, small-file and metadata workloads, in Python, through `os` and the
builtin `open()` on any directory (the local filesystem or a mount) or through the
`kiseki` package on a volume with no mount. The workload code is written once against a
small adapter, so the library path and the kernel path run exactly the same calls.

One run does one phase and prints one JSON object per measurement on stdout, as
bench/c/kbench.c does (same phases, flags and output): bench/run.sh drops the page cache
(and remounts a mount) between a write phase and its cold read phase, and a new process
is a new library connection with cold caches.

    fsbench.py (--root DIR | --meta URL [--options k=v,...]) --phase PHASE [sizes]
"""

import argparse
import json
import os
import sys
import time


class Posix:
    """A directory reached through the kernel."""

    def __init__(self, root):
        self.root = root

    def _p(self, rel):
        return os.path.join(self.root, rel)

    def open(self, rel, mode):
        # Unbuffered, like the library's raw files: every write/readinto is one call.
        return open(self._p(rel), mode, buffering=0)

    def fsync(self, f):
        os.fsync(f.fileno())

    def mkdir(self, rel):
        os.mkdir(self._p(rel))

    def stat(self, rel):
        return os.stat(self._p(rel))

    def rename(self, src, dst):
        os.rename(self._p(src), self._p(dst))

    def unlink(self, rel):
        os.unlink(self._p(rel))

    def rmdir(self, rel):
        os.rmdir(self._p(rel))

    def close(self):
        pass


class Kiseki:
    """A volume reached through `import kiseki` (no mount, no kernel)."""

    def __init__(self, meta_url, options):
        import kiseki

        self.fs = kiseki.connect(meta_url, **options)

    def open(self, rel, mode):
        return self.fs.open(rel, mode, buffering=0)

    def fsync(self, f):
        f.fsync()

    def mkdir(self, rel):
        self.fs.mkdir(rel)

    def stat(self, rel):
        return self.fs.stat(rel)

    def rename(self, src, dst):
        self.fs.rename(src, dst)

    def unlink(self, rel):
        self.fs.remove(rel)

    def rmdir(self, rel):
        self.fs.rmdir(rel)

    def close(self):
        self.fs.close()


def report(workload, value, unit):
    print(json.dumps({"workload": workload, "value": round(value, 3), "unit": unit}), flush=True)


def write_all(f, data):
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(f"short write to {f.name}")
        view = view[n:]


def read_all(f, buf):
    total = 0
    while True:
        n = f.readinto(buf)
        if not n:
            return total
        total += n


def big_write(fs, a):
    chunk = os.urandom(a.io_kib << 10)  # incompressible
    calls = (a.big_mib << 20) // len(chunk)
    t0 = time.perf_counter()
    f = fs.open("big.dat", "wb")
    for _ in range(calls):
        write_all(f, chunk)
    fs.fsync(f)  # durable before the clock stops, as in kbench and fio end_fsync
    f.close()
    report("big write", a.big_mib / (time.perf_counter() - t0), "MiB/s")


def big_read(fs, a):
    buf = bytearray(a.io_kib << 10)
    t0 = time.perf_counter()
    with fs.open("big.dat", "rb") as f:
        got = read_all(f, buf)
    dt = time.perf_counter() - t0
    if got != a.big_mib << 20:
        raise OSError(f"big.dat: read {got} bytes, expected {a.big_mib} MiB")
    report("big read", a.big_mib / dt, "MiB/s")


def small_write(fs, a):
    data = os.urandom(a.small_kib << 10)
    fs.mkdir("small")
    t0 = time.perf_counter()
    for i in range(a.small_count):
        with fs.open(f"small/f{i:06d}", "wb") as f:
            write_all(f, data)
    report("small write", a.small_count / (time.perf_counter() - t0), "files/s")


def small_read(fs, a):
    size = a.small_kib << 10
    buf = bytearray(size)
    t0 = time.perf_counter()
    for i in range(a.small_count):
        with fs.open(f"small/f{i:06d}", "rb") as f:
            got = read_all(f, buf)
        if got != size:
            raise OSError(f"small/f{i:06d}: read {got} bytes, expected {size}")
    report("small read", a.small_count / (time.perf_counter() - t0), "files/s")


def meta(fs, a):
    """Empty files in nested directories, meta/dNNNN/fNNNNNN: create, stat, rename,
    unlink, each over every file. Making and removing the directories is set-up."""
    total = a.meta_dirs * a.meta_files
    dirs = [f"meta/d{d:04d}" for d in range(a.meta_dirs)]
    names = [(f"{d}/f{i:06d}", f"{d}/g{i:06d}") for d in dirs for i in range(a.meta_files)]
    fs.mkdir("meta")
    for d in dirs:
        fs.mkdir(d)

    t0 = time.perf_counter()
    for name, _ in names:
        fs.open(name, "xb").close()
    report("meta create", total / (time.perf_counter() - t0), "ops/s")

    t0 = time.perf_counter()
    for name, _ in names:
        fs.stat(name)
    report("meta stat", total / (time.perf_counter() - t0), "ops/s")

    t0 = time.perf_counter()
    for name, renamed in names:
        fs.rename(name, renamed)
    report("meta rename", total / (time.perf_counter() - t0), "ops/s")

    t0 = time.perf_counter()
    for _, renamed in names:
        fs.unlink(renamed)
    report("meta unlink", total / (time.perf_counter() - t0), "ops/s")

    for d in dirs:
        fs.rmdir(d)
    fs.rmdir("meta")


PHASES = {
    "big-write": big_write,
    "big-read": big_read,
    "small-write": small_write,
    "small-read": small_read,
    "meta": meta,
}


def parse_options(text):
    """`buffer-size=256M,cache-dir=/x` (the C library's form) -> connect() keywords."""
    options = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        options[key.strip().replace("-", "_")] = value.strip() if value else True
    return options


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", help="directory to run in, through os")
    where.add_argument("--meta", help="Kiseki volume to run in, through `import kiseki`")
    p.add_argument("--options", default="", help="kiseki.connect options as k=v,k=v")
    p.add_argument("--phase", required=True, choices=sorted(PHASES))
    p.add_argument("--big-mib", type=int, default=1024)
    p.add_argument("--io-kib", type=int, default=1024)
    p.add_argument("--small-count", type=int, default=1000)
    p.add_argument("--small-kib", type=int, default=128)
    p.add_argument("--meta-dirs", type=int, default=100)
    p.add_argument("--meta-files", type=int, default=100, help="files per directory")
    a = p.parse_args()
    if (a.big_mib << 20) % (a.io_kib << 10):
        p.error("--big-mib must be a multiple of --io-kib")

    fs = Posix(a.root) if a.root else Kiseki(a.meta, parse_options(a.options))
    try:
        PHASES[a.phase](fs, a)
    finally:
        fs.close()


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        # One line on stderr: bench/run.sh shows it as the reason this workload failed.
        print(f"fsbench: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
