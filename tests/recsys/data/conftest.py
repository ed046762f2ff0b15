"""Fixtures for the recommender-data tests: tiny files written on demand."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture()
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write(name, text, gz=False) -> Path``: a file under ``tmp_path``."""

    def _write(name: str, text: str, gz: bool = False) -> Path:
        path = tmp_path / name
        data = text.encode()
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    return _write
