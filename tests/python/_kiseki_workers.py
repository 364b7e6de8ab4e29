"""Functions run in `multiprocessing` children started with the 'spawn' method (they
must be importable by name there, so they do not live in a test module)."""

from __future__ import annotations

from typing import Any


def read_pickled_file(f: Any, queue: Any) -> None:
    """Receives an unpickled Kiseki file: reports its type, position and the rest of
    its contents (or the exception)."""
    try:
        pos = f.tell()
        data = f.read()
        queue.put(("ok", type(f).__module__ + "." + type(f).__qualname__, pos, data))
        f.close()
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", type(e).__name__, str(e), None))


def use_pickled_filesystem(fs: Any, queue: Any) -> None:
    """Receives an unpickled KisekiFileSystem: lists, reads, and tries to write."""
    try:
        names = sorted(fs.ls("/", detail=False))
        data = fs.cat("/fs.bin")
        try:
            fs.pipe("/from-child", b"x")
            wrote = "wrote"
        except OSError as e:
            wrote = f"{type(e).__name__} {e.errno}"
        queue.put(("ok", names, data, wrote))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", type(e).__name__, str(e), None))
