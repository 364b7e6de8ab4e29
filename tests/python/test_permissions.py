"""Permission rules through the Python package with a caller identity (`uid=`, `gid=`,
`groups=`, `umask=`), the same rules a mount applies to each calling process."""

from __future__ import annotations

import os
import stat

import pytest

import kiseki

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


def test_caller_identity_search_fifo_and_setuid(volume: str) -> None:
    with kiseki.connect(volume) as root:
        root.mkdir("d")
        root.chown("d", NOBODY, NOBODY)
        with root.open("d/p", "wb") as f:
            f.write(b"owner may not read")
        root.chown("d/p", NOBODY, 0)
        root.chmod("d/p", 0o177)
        with root.open("s", "wb") as f:
            f.write(b"")
        root.chmod("s", 0o6777)

    with kiseki.connect(volume, uid=NOBODY, gid=NOBODY, groups=[], umask=0o027) as nobody:
        with nobody.open("d/f", "w") as f:
            f.write("mine")
        st = nobody.stat("d/f")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
        # The owner's class applies even though others could read.
        with pytest.raises(PermissionError):
            nobody.open("d/p", "rb")
        # A write by a non-owner clears setuid and setgid (group-executable), and the
        # writer sees it at once.
        with nobody.open("s", "ab", buffering=0) as f:
            f.write(b"x")
            assert stat.S_IMODE(nobody.stat("s").st_mode) == 0o777
        with pytest.raises(PermissionError):
            nobody.chown("d/f", 0, 0)
        with pytest.raises(PermissionError):
            nobody.chmod("s", 0o4777)

    with kiseki.connect(volume) as root:
        root.chmod("d", 0o644)
    with kiseki.connect(volume, uid=NOBODY, gid=NOBODY, groups=[]) as nobody:
        for op in (lambda: nobody.open("d/f"), lambda: nobody.stat("d/f"), lambda: nobody.truncate("d/f", 0)):
            with pytest.raises(PermissionError):
                op()


def test_only_root_takes_another_identity(volume: str) -> None:
    # Run in a child that drops to nobody first: it cannot claim root's identity back.
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                kiseki.connect(volume, uid=0)
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_open_with_o_creat_of_an_existing_file_needs_no_directory_write(volume: str) -> None:
    with kiseki.connect(volume) as root:
        root.mkdir("ro", 0o755)
        with root.open("ro/f", "w") as f:
            f.write("x")
        root.chmod("ro/f", 0o666)
    with kiseki.connect(volume, uid=NOBODY, gid=NOBODY, groups=[]) as nobody:
        # "a" is O_CREAT|O_APPEND: the name exists, so only the file's permission counts.
        with nobody.open("ro/f", "a") as f:
            f.write("y")
        with pytest.raises(PermissionError):
            nobody.open("ro/new", "w")
        with pytest.raises(FileExistsError):
            nobody.open("ro/f", "x")
        with pytest.raises(FileExistsError):
            nobody.mkdir("ro/f")
        with pytest.raises(FileExistsError):
            nobody.link("ro/f", "ro/f")
