"""A writer killed mid-write leaves a temporary; the next write of that file removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gradtracer.durable import atomic_write_text, remove_orphaned_temporaries

_CHILD = """
import sys, time
from gradtracer.durable import atomic_open
with atomic_open(sys.argv[1], "w") as fh:
    fh.write("partial")
    fh.flush()
    print("inside", flush=True)
    time.sleep(60)
"""


def _temporaries(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def test_killed_writer_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    atomic_write_text(target, "old\n")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "inside"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    left = _temporaries(target)
    assert len(left) == 1 and f".{child.pid}." in left[0].name
    assert target.read_text() == "old\n"  # the kill did not touch the previous content

    atomic_write_text(target, "new\n")
    assert _temporaries(target) == []
    assert target.read_text() == "new\n"


def test_a_live_writers_temporary_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "arrays.npz"
    live = tmp_path / f".{target.name}.{os.getpid()}.abc123.tmp"
    live.write_text("in progress")
    dead_pid = _dead_pid()
    dead = tmp_path / f".{target.name}.{dead_pid}.def456.tmp"
    dead.write_text("orphan")
    other = tmp_path / ".other.npz.1.x.tmp"  # another file's temporary is not ours to judge
    other.write_text("x")
    assert remove_orphaned_temporaries(target) == [dead]
    assert live.exists() and other.exists() and not dead.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    return proc.pid
