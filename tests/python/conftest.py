"""Shared fixtures of the Python package's tests.

Every test gets its own volume (RocksDB metadata and `fs` data in a temporary
directory). Nothing here ever connects without a meta URL: `$KISEKI_META_URL` is
pointed at an invalid URL for every test, so an accidental `kiseki.connect()` or
`kiseki.open()` without `client=` fails instead of touching the machine's default
volume; tests of the default client set it to their own volume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

import kiseki
import kiseki._client

GUARD_URL = "invalid://tests-must-not-use-the-default-volume"


def make_volume(root: Path, name: str = "test") -> str:
    """Formats a fresh volume under `root` and returns its meta URL."""
    data = root / "data"
    data.mkdir(parents=True)
    url = f"rocksdb://{root}/meta"
    kiseki.format(url, name, bucket=str(data))
    return url


@pytest.fixture(autouse=True)
def _no_default_volume(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KISEKI_META_URL", GUARD_URL)
    old = kiseki._client._default
    kiseki._client._default = None
    yield
    d = kiseki._client._default
    if d is not None and d is not old and d._pid == os.getpid():
        d.close()
    kiseki._client._default = old


@pytest.fixture
def volume(tmp_path: Path) -> str:
    """Meta URL of a fresh, formatted, unconnected volume."""
    return make_volume(tmp_path / "vol")


@pytest.fixture
def client(volume: str) -> Iterator[kiseki.Client]:
    """A client connected to `volume`, closed at teardown."""
    c = kiseki.connect(volume)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """An empty local directory to compare the builtin `open()`/`os` against."""
    d = tmp_path / "local"
    d.mkdir()
    return d
