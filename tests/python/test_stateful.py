"""Model-based test: random sequences of file and directory operations run on a local
directory (builtin `open`, `os`) and on a Kiseki volume (the package), side by side.
Every result, and the type and errno of every exception, must be the same.

Both sides get the same explicit buffer size at open, so the `io` layers above the raw
files behave identically and any difference comes from Kiseki. Each example works
in a fresh subdirectory on both sides (one client serves all examples).
"""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import kiseki

# Nested names so that files and directories collide: "d" may be a file or a
# directory, "d/e" needs "d" to be a directory, ...
NAMES = ["a", "b", "c", "d", "d/e", "d/f", "d/e/g", "h", "h/i"]
DIRS = ["", "d", "d/e", "h", "a"]
MODES = [m + k for m in ("r", "w", "a", "x", "r+", "w+", "a+", "x+") for k in ("b", "t", "")]
BUFFERINGS = [0, 2, 64, 8192, 1 << 20]
NEWLINES = [None, "", "\n", "\r", "\r\n"]
READ_SIZES = [None, -1, 0, 1, 3, 100, 5000, (1 << 20) + 3]
SEEK_OFFSETS = [-10, -1, 0, 1, 7, 100, 5000, (2 << 20) + 1]
TRUNC_SIZES = [None, 0, 1, 3, 100, 5000, (1 << 20) + 5]

# Text with multi-byte characters and every kind of line end.
TEXT = st.lists(st.sampled_from(["a", "b", "\n", "\r", "\r\n", "é", "€", "𝄞"]), max_size=30).map("".join)


def _pattern(n: int, seed: int) -> bytes:
    base = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (base * (n // 251 + 1))[:n]


BINARY = st.one_of(
    st.binary(max_size=64),
    st.builds(_pattern, st.sampled_from([4095, 4096, 8193, 70000, (1 << 20) + 7]), st.integers(0, 255)),
)

_counter = itertools.count()


def outcome(fn: Callable[[], Any]) -> Tuple[Any, ...]:
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - compared below
        return ("error", type(e), getattr(e, "errno", None))


class Handle:
    """One file opened on both sides with the same arguments."""

    def __init__(self, local: Any, remote: Any, mode: str, name: str) -> None:
        self.local, self.remote, self.mode, self.name = local, remote, mode, name
        self.text = "b" not in mode


class FsMachine(RuleBasedStateMachine):
    client: kiseki.Client
    local_root: Path

    def __init__(self) -> None:
        super().__init__()
        n = next(_counter)
        self.kroot = f"/ex{n}"
        self.lroot = self.local_root / f"ex{n}"
        self.client.mkdir(self.kroot)
        self.lroot.mkdir()
        self.handles: List[Handle] = []

    # -- helpers ---------------------------------------------------------------------

    def lp(self, name: str) -> str:
        return os.path.join(str(self.lroot), name) if name else str(self.lroot)

    def kp(self, name: str) -> str:
        return f"{self.kroot}/{name}" if name else self.kroot

    def same(self, local: Callable[[], Any], remote: Callable[[], Any], what: str) -> Tuple[Any, ...]:
        lo, ko = outcome(local), outcome(remote)
        assert lo == ko, f"{what}: local {lo!r} != kiseki {ko!r}"
        return lo

    def handle(self, i: int) -> Handle:
        return self.handles[i % len(self.handles)]

    # -- files -----------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        mode=st.sampled_from(MODES),
        buffering=st.sampled_from(BUFFERINGS),
        newline=st.sampled_from(NEWLINES),
        errors=st.sampled_from([None, "replace"]),
    )
    def open(self, name: str, mode: str, buffering: int, newline: Optional[str], errors: Optional[str]) -> None:
        kw: dict = {"buffering": buffering}
        if "b" not in mode:
            kw.update(encoding="utf-8", newline=newline, errors=errors)
        lo = outcome(lambda: open(self.lp(name), mode, **kw))
        ko = outcome(lambda: self.client.open(self.kp(name), mode, **kw))
        if lo[0] == "ok" and ko[0] == "ok":
            # The builtin's io classes and Kiseki's subclasses of them.
            assert isinstance(ko[1], type(lo[1])) or type(lo[1]).__name__ == type(ko[1]).__name__
            self.handles.append(Handle(lo[1], ko[1], mode, name))
            return
        for o in (lo, ko):
            if o[0] == "ok":
                o[1].close()
        assert lo == ko, f"open({name!r}, {mode!r}, {kw}): local {lo!r} != kiseki {ko!r}"

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100), data=st.data())
    def write(self, i: int, data: st.DataObject) -> None:
        h = self.handle(i)
        payload = data.draw(TEXT if h.text else BINARY)
        self.same(lambda: h.local.write(payload), lambda: h.remote.write(payload), f"write {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100), size=st.sampled_from(READ_SIZES))
    def read(self, i: int, size: Optional[int]) -> None:
        h = self.handle(i)
        self.same(lambda: h.local.read(size), lambda: h.remote.read(size), f"read({size}) {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100), size=st.sampled_from([-1, 0, 2, 50]))
    def readline(self, i: int, size: int) -> None:
        h = self.handle(i)
        self.same(lambda: h.local.readline(size), lambda: h.remote.readline(size), f"readline {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100), offset=st.sampled_from(SEEK_OFFSETS), whence=st.sampled_from([0, 1, 2]))
    def seek(self, i: int, offset: int, whence: int) -> None:
        h = self.handle(i)
        self.same(lambda: h.local.seek(offset, whence), lambda: h.remote.seek(offset, whence), f"seek {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100))
    def tell(self, i: int) -> None:
        h = self.handle(i)
        self.same(h.local.tell, h.remote.tell, f"tell {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100), size=st.sampled_from(TRUNC_SIZES))
    def truncate(self, i: int, size: Optional[int]) -> None:
        h = self.handle(i)
        self.same(lambda: h.local.truncate(size), lambda: h.remote.truncate(size), f"truncate {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100))
    def flush(self, i: int) -> None:
        h = self.handle(i)
        self.same(h.local.flush, h.remote.flush, f"flush {h.mode}")

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100))
    def close(self, i: int) -> None:
        # Closed handles stay in the list: using them must fail alike (ValueError).
        h = self.handle(i)
        self.same(h.local.close, h.remote.close, f"close {h.mode}")
        assert h.local.closed and h.remote.closed

    @precondition(lambda self: self.handles)
    @rule(i=st.integers(0, 100))
    def file_state(self, i: int) -> None:
        h = self.handle(i)
        for attr in ("readable", "writable", "seekable"):
            self.same(getattr(h.local, attr), getattr(h.remote, attr), attr)
        assert h.local.closed == h.remote.closed

    @rule(name=st.sampled_from(NAMES))
    def read_back(self, name: str) -> None:
        """Whole contents through a fresh handle (what other handles flushed so far)."""

        def whole(opener: Callable[[], Any]) -> bytes:
            with opener() as f:
                return f.read()

        self.same(
            lambda: whole(lambda: open(self.lp(name), "rb")),
            lambda: whole(lambda: self.client.open(self.kp(name), "rb")),
            f"read_back({name!r})",
        )

    # -- namespace -------------------------------------------------------------------

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def rename(self, src: str, dst: str) -> None:
        self.same(
            lambda: os.rename(self.lp(src), self.lp(dst)),
            lambda: self.client.rename(self.kp(src), self.kp(dst)),
            f"rename({src!r}, {dst!r})",
        )

    @rule(name=st.sampled_from(NAMES))
    def remove(self, name: str) -> None:
        self.same(lambda: os.remove(self.lp(name)), lambda: self.client.remove(self.kp(name)), f"remove({name!r})")

    @rule(name=st.sampled_from(NAMES))
    def mkdir(self, name: str) -> None:
        self.same(lambda: os.mkdir(self.lp(name)), lambda: self.client.mkdir(self.kp(name)), f"mkdir({name!r})")

    @rule(name=st.sampled_from(NAMES))
    def rmdir(self, name: str) -> None:
        self.same(lambda: os.rmdir(self.lp(name)), lambda: self.client.rmdir(self.kp(name)), f"rmdir({name!r})")

    @rule(name=st.sampled_from(DIRS + NAMES))
    def listdir(self, name: str) -> None:
        self.same(
            lambda: sorted(os.listdir(self.lp(name))),
            lambda: sorted(self.client.listdir(self.kp(name))),
            f"listdir({name!r})",
        )

    @rule(name=st.sampled_from(NAMES))
    def stat(self, name: str) -> None:
        def summary(s: os.stat_result) -> Tuple[Any, ...]:
            return (s.st_size if stat.S_ISREG(s.st_mode) else None, stat.S_ISDIR(s.st_mode), stat.S_ISREG(s.st_mode))

        self.same(
            lambda: summary(os.stat(self.lp(name))),
            lambda: summary(self.client.stat(self.kp(name))),
            f"stat({name!r})",
        )

    @rule(name=st.sampled_from(NAMES))
    def exists(self, name: str) -> None:
        self.same(
            lambda: (os.path.exists(self.lp(name)), os.path.isdir(self.lp(name)), os.path.isfile(self.lp(name))),
            lambda: (self.client.exists(self.kp(name)), self.client.isdir(self.kp(name)), self.client.isfile(self.kp(name))),
            f"exists({name!r})",
        )

    @invariant()
    def open_handles_agree(self) -> None:
        for h in self.handles:
            assert h.local.closed == h.remote.closed

    def teardown(self) -> None:
        # Closing flushes what is buffered: it must fail (or not) alike.
        for h in self.handles:
            self.same(h.local.close, h.remote.close, f"close at teardown {h.mode}")
        # Then both trees hold the same names, kinds and bytes.
        local_tree, kiseki_tree = {}, {}
        for top, dirs, files in os.walk(self.lp("")):
            rel = os.path.relpath(top, self.lp(""))
            for f in files:
                with open(os.path.join(top, f), "rb") as fh:
                    local_tree[os.path.normpath(os.path.join(rel, f))] = fh.read()
            for d in dirs:
                local_tree[os.path.normpath(os.path.join(rel, d))] = "dir"
        for top, dirs, files in self.client.walk(self.kroot):
            rel = os.path.relpath(top, self.kroot)
            for f in files:
                with self.client.open(f"{top}/{f}", "rb") as fh:
                    kiseki_tree[os.path.normpath(os.path.join(rel, f))] = fh.read()
            for d in dirs:
                kiseki_tree[os.path.normpath(os.path.join(rel, d))] = "dir"
        assert sorted(local_tree) == sorted(kiseki_tree)
        for k in local_tree:
            assert local_tree[k] == kiseki_tree[k], f"contents of {k!r} differ"


def test_stateful_against_local(client: kiseki.Client, local: Path) -> None:
    FsMachine.client = client
    FsMachine.local_root = local
    run_state_machine_as_test(
        FsMachine,
        settings=settings(
            max_examples=int(os.environ.get("KISEKI_STATEFUL_EXAMPLES", "300")),
            stateful_step_count=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        ),
    )
