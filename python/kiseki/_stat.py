"""`os.stat_result` from the tuples the extension returns (shared by the client and
its files)."""

from __future__ import annotations

import os
from typing import Any, Tuple


def _stat_result(t: Tuple[Any, Any, Any]) -> os.stat_result:
    (mode, ino, dev, nlink, uid, gid, size), times, (blksize, blocks, rdev) = t
    a_s, a_n, m_s, m_n, c_s, c_n = times
    return os.stat_result(
        (mode, ino, dev, nlink, uid, gid, size, a_s, m_s, c_s),
        {
            "st_atime": a_s + a_n * 1e-9,
            "st_mtime": m_s + m_n * 1e-9,
            "st_ctime": c_s + c_n * 1e-9,
            "st_atime_ns": a_s * 10**9 + a_n,
            "st_mtime_ns": m_s * 10**9 + m_n,
            "st_ctime_ns": c_s * 10**9 + c_n,
            "st_blksize": blksize,
            "st_blocks": blocks,
            "st_rdev": rdev,
        },
    )
