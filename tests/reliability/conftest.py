"""Fault-injection helpers: tiny tmpfs mounts, child processes with a file-size limit, kill -9.

``small_disk`` / ``read_only_dir`` mount a tmpfs (the process must be root and the
sandbox must allow mounts; otherwise the test is skipped with the reason). Where mounting
is refused, :func:`run_python` with ``fsize=`` still produces a real "disk full" for the
writer: a child process whose RLIMIT_FSIZE makes every write past that size fail with
EFBIG (SIGXFSZ ignored), the same code path as ENOSPC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount_tmpfs(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; return None on success, else why it could not be."""
    if os.name != "posix" or os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return f"mount refused here: {proc.stderr.strip() or proc.returncode}"
    return None


def _unmount(target: Path) -> None:
    for args in (["umount", str(target)], ["umount", "-l", str(target)]):
        if subprocess.run(args, capture_output=True).returncode == 0:
            return


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: writes beyond that fail with ENOSPC."""
    target = tmp_path / "small_disk"
    reason = _mount_tmpfs(target, "size=256k,mode=0755")
    if reason:
        pytest.skip(reason)
    try:
        yield target
    finally:
        _unmount(target)


@pytest.fixture()
def remount_read_only() -> Iterator[object]:
    """``remount_read_only(path)`` turns a ``small_disk`` mount read-only (EROFS)."""

    def remount(target: Path) -> None:
        proc = subprocess.run(
            ["mount", "-o", "remount,ro", str(target)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.skip(f"read-only remount refused: {proc.stderr.strip()}")

    yield remount
