"""Helpers of the fault-injection tests: fill a disk, run a child, kill -9 it, run the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system of ``directory`` until fewer than ``leave`` bytes remain free."""
    k = 0
    while True:
        free = shutil.disk_usage(directory).free
        if free <= leave:
            return
        chunk = min(free - leave, 1 << 16)
        try:
            with open(directory / f"filler{k}", "wb") as fh:
                fh.write(b"\0" * chunk)
        except OSError:
            return
        k += 1


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GRADTRACER_DEBUG", None)
    return env


def run_python(
    code: str, *, fsize: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; with ``fsize`` writes past that many bytes fail."""
    prelude = ""
    if fsize is not None:
        prelude = (
            "import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize}))\n"
        )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )


def kill_when(
    code: str, ready: Path, *, delay: float = 0.0, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """Start ``code`` in a child, wait until it creates ``ready``, sleep ``delay``, kill -9."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"child exited early ({proc.returncode}): {err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never became ready")
        time.sleep(0.005)
    if delay:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return proc


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gradtracer ARGS`` in a child; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "gradtracer", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )
