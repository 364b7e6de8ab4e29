"""A client used in a forked child fails cleanly (OSError EBADF naming the fork)
instead of hanging on the parent's runtime, whose threads the child does not have."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Dict, List, Tuple

import pytest

import kiseki

CHILD_TIMEOUT = 30.0


def wait_child(pid: int, timeout: float = CHILD_TIMEOUT) -> int:
    """waitpid with a deadline: a child still running after `timeout` is killed and
    the test fails (it hangs)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"forked child {pid} hangs (killed after {timeout:.0f} s)")
        time.sleep(0.05)


def run_in_child(steps: List[Tuple[str, Callable[[], Any]]]) -> Dict[str, Any]:
    """Forks; the child runs each step and reports its outcome (result, or exception
    type, errno and message) through a pipe, then leaves with os._exit."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(r)
            report = {}
            for name, step in steps:
                try:
                    report[name] = {"ok": repr(step())}
                except BaseException as e:  # noqa: BLE001 - reported
                    report[name] = {"type": type(e).__name__, "errno": getattr(e, "errno", None), "message": str(e)}
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(w, data) :]
            os.close(w)
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    status = wait_child(pid)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
    return json.loads(data)


def assert_fork_error(outcome: Dict[str, Any]) -> None:
    assert outcome.get("type") == "OSError", outcome
    assert outcome["errno"] == errno.EBADF, outcome
    assert "fork" in outcome["message"], outcome


def test_parent_client_in_forked_child(client: kiseki.Client, volume: str) -> None:
    with client.open("f.bin", "wb") as f:
        f.write(b"parent data")
    reader = client.open("f.bin", "rb")
    raw = client.open("f.bin", "rb", buffering=0)
    writer = client.open("w.bin", "wb")
    writer.write(b"buffered in the parent")
    try:
        report = run_in_child(
            [
                ("stat", lambda: client.stat("f.bin")),
                ("listdir", lambda: client.listdir("/")),
                ("open", lambda: client.open("f.bin", "rb")),
                ("create", lambda: client.open("child.bin", "wb")),
                ("mkdir", lambda: client.mkdir("child-dir")),
                ("read", lambda: reader.read()),
                ("raw_read", lambda: raw.read(4)),
                ("seek", lambda: raw.seek(0)),
                ("flush", lambda: writer.flush()),
            ]
        )
        for name in ("stat", "listdir", "open", "create", "mkdir", "read", "raw_read", "seek", "flush"):
            assert_fork_error(report[name])
        # The parent is unaffected: its client, files and buffered data still work,
        # and the child changed nothing in the volume.
        assert reader.read() == b"parent data"
        assert raw.read(6) == b"parent"
        writer.close()
        with client.open("w.bin", "rb") as f:
            assert f.read() == b"buffered in the parent"
        assert sorted(client.listdir("/")) == ["f.bin", "w.bin"]
    finally:
        reader.close()
        raw.close()
        writer.close()


def test_text_file_and_default_client_in_forked_child(volume: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KISEKI_META_URL", volume)
    with kiseki.open("t.txt", "w", encoding="utf-8") as f:
        f.write("line one\nline two\n")
    parent_default = kiseki.default_client()
    t = kiseki.open("t.txt", encoding="utf-8")
    assert t.readline() == "line one\n"
    try:
        report = run_in_child(
            [
                ("readline", lambda: t.readline()),
                ("stat", lambda: parent_default.stat("t.txt")),
                ("close", lambda: parent_default.close()),
            ]
        )
        # The text layer read ahead: what it holds is served, then the raw read fails.
        assert report["readline"] == {"ok": repr("line two\n")} or report["readline"].get("errno") == errno.EBADF
        assert_fork_error(report["stat"])
        # Closing in the child must not close the parent's session.
        assert "type" not in report["close"] or report["close"].get("errno") == errno.EBADF, report["close"]
        assert parent_default.stat("t.txt").st_size == 18
        assert not parent_default.closed
    finally:
        t.close()


def test_forked_child_connects_its_own_read_only_client(client: kiseki.Client, volume: str) -> None:
    with client.open("shared.bin", "wb") as f:
        f.write(b"visible to the child")

    def read_in_child() -> bytes:
        ro = kiseki.connect(volume, read_only=True)
        try:
            with ro.open("shared.bin", "rb") as f:
                return f.read()
        finally:
            ro.close()

    report = run_in_child([("read", read_in_child), ("stat", lambda: client.stat("shared.bin"))])
    assert report["read"] == {"ok": repr(b"visible to the child")}
    assert_fork_error(report["stat"])
    assert client.stat("shared.bin").st_size == 20


CHILD_EXITS_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import kiseki

    meta = sys.argv[1]
    mode = sys.argv[2]
    c = kiseki.connect(meta)
    with c.open("f", "wb") as f:
        f.write(b"x")
    pid = os.fork()
    if pid == 0:
        if mode == "use":
            try:
                c.stat("f")
            except OSError:
                pass
        sys.exit(0)  # a normal exit: atexit handlers and C++ static destructors run
    deadline = time.monotonic() + float(sys.argv[3])
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("exited", status, flush=True)
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("hangs", flush=True)
            break
        time.sleep(0.05)
    assert c.stat("f").st_size == 1  # the parent still works
    c.close()
    """
)


@pytest.mark.parametrize("mode", ["idle", "use"])
def test_forked_child_exits_normally(volume: str, mode: str) -> None:
    """A forked child that ends with a normal interpreter exit (sys.exit, end of
    script) must not hang in exit handlers on the parent's threads."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_EXITS_SCRIPT, volume, mode, "15"],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT + 60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exited 0", (proc.stdout, proc.stderr)
