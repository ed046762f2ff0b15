"""Append-only writer of the Auto-Fix audit log (JSON lines), safe across crashes and processes.

Guarantees of :class:`AuditLogger`:

- **One event, one line.** Each line is written with ``os.write`` calls until every byte
  is out (a short write is continued, not dropped). Before appending, the writer checks
  that the file ends in a newline; if an earlier write was torn (a crash, a full disk),
  it first terminates that fragment so the new event starts on its own line and the
  reader can skip the fragment and keep everything after it.
- **Bounded lines.** An event larger than ``max_line_bytes`` whose per-row lists follow
  its ``rows`` (a ``damp`` decision on a large table) is split into chunk events of at
  most ``chunk_rows`` rows, each marked ``"chunk": [k, n]`` and complete on its own; the
  reader joins them back into one event.
- **Rotation keeps replay working.** When a write would make the file larger than
  ``max_bytes`` it is renamed to ``audit.jsonl.1`` (older files shift up to
  ``.backup_count``; the oldest is dropped) and every ``run_start`` of the runs still open
  in this logger is written again at the top of the new file (``"reemitted": true``), so a
  run whose first file was rotated away can still be replayed from what is left.
- **Several processes, one log.** Every write and rotation holds an exclusive
  ``fcntl.flock`` on ``audit.jsonl.lock``; a writer that finds the file rotated by another
  process reopens the new file (and re-emits its own open runs' headers) instead of
  appending to the renamed one.
- **Durability.** Flushed to the OS on every event (another process reads it at once);
  ``fsync`` every ``fsync_every`` events and on :meth:`AuditLogger.close`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.audit.ids import decode_ids, encode_ids

try:  # POSIX advisory locks; without them (Windows) a log must have a single writer
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "AUDIT_FILENAME",
    "AUDIT_FORMAT_VERSION",
    "AuditLogger",
    "default_audit_dir",
    "split_event",
]

#: File name of the audit log inside the GradTracer directory.
AUDIT_FILENAME = "audit.jsonl"
#: Version of the event layout, written into every ``run_start`` event.
AUDIT_FORMAT_VERSION = 1
#: Suffix of the lock file next to the log.
LOCK_SUFFIX = ".lock"


def default_audit_dir() -> Path:
    """Return ``$GRADTRACER_DIR`` if set, else ``.gradtracer`` in the current directory."""
    env = os.environ.get("GRADTRACER_DIR")
    return Path(env) if env else Path.cwd() / ".gradtracer"


def _dumps(event: Mapping[str, Any]) -> bytes:
    return (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()


def split_event(event: Mapping[str, Any], chunk_rows: int) -> list[dict[str, Any]]:
    """Split an event with encoded ``rows`` into events of at most ``chunk_rows`` rows.

    Every list field as long as the decoded rows is sliced alongside them; an encoded
    ``dead`` id list keeps the ids of each chunk; other fields are copied. Each part gets
    ``"chunk": [k, n]``. An event without ``rows``, or with no more rows than
    ``chunk_rows``, is returned unchanged (as the only element).
    """
    if "rows" not in event or chunk_rows < 1:
        return [dict(event)]
    rows = decode_ids(event["rows"])
    if rows.size <= chunk_rows:
        return [dict(event)]
    per_row = [
        k for k, v in event.items() if k != "rows" and isinstance(v, list) and len(v) == rows.size
    ]
    dead = decode_ids(event["dead"]) if isinstance(event.get("dead"), list) else None
    n = -(-rows.size // chunk_rows)
    parts = []
    for k in range(n):
        lo, hi = k * chunk_rows, min((k + 1) * chunk_rows, rows.size)
        part = dict(event)
        part["rows"] = encode_ids(rows[lo:hi])
        for key in per_row:
            part[key] = event[key][lo:hi]
        if dead is not None:
            part["dead"] = encode_ids(dead[np.isin(dead, rows[lo:hi])])
        part["chunk"] = [k, n]
        parts.append(part)
    return parts


class AuditLogger:
    """Appends audit events to ``<directory>/audit.jsonl``.

    Args:
        directory: where the log lives (default :func:`default_audit_dir`). Created if absent.
        filename: log file name (default ``audit.jsonl``).
        fsync_every: fsync after this many events (default 50); always on :meth:`close`.
        max_bytes: rotate before a write would make the file larger than this (64 MiB).
        backup_count: rotated files kept (``.1`` newest ... ``.backup_count`` oldest; 5).
        max_line_bytes: events whose line would be longer are split into chunk events
            (default 1 MiB).
        chunk_rows: rows per chunk event when splitting (default 16,384).

    Raises:
        OSError: when the directory or file cannot be created / opened for appending
            (the message names the path; a directory in place of the file is
            ``IsADirectoryError``).
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        filename: str = AUDIT_FILENAME,
        fsync_every: int = 50,
        max_bytes: int = 64 * 1024 * 1024,
        backup_count: int = 5,
        max_line_bytes: int = 1024 * 1024,
        chunk_rows: int = 16384,
    ) -> None:
        if fsync_every < 1:
            raise ValueError(f"fsync_every must be >= 1, got {fsync_every}")
        if max_bytes < 1024:
            raise ValueError(f"max_bytes must be >= 1024, got {max_bytes}")
        if backup_count < 1:
            raise ValueError(f"backup_count must be >= 1, got {backup_count}")
        if max_line_bytes < 256:
            raise ValueError(f"max_line_bytes must be >= 256, got {max_line_bytes}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.directory = Path(directory) if directory is not None else default_audit_dir()
        self.path = self.directory / filename
        self.fsync_every = fsync_every
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.max_line_bytes = max_line_bytes
        self.chunk_rows = chunk_rows
        self.n_events = 0
        self._since_sync = 0
        self._open_runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir():
            raise IsADirectoryError(
                errno.EISDIR, "is a directory, expected the audit log file", str(self.path)
            )
        self._lock_fd = os.open(str(self.path) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        self._fd = -1
        try:
            with self._locked():
                self._fd = self._open_log()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # ------------------------------------------------------------------ public
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._fd < 0

    def write(self, event: Mapping[str, Any]) -> None:
        """Append one event (one line, or chunk lines for a large ``damp``); flushed.

        Raises:
            ValueError: the logger is closed or the event holds a non-finite float.
            OSError: the write failed (disk full, permissions); bytes already on disk are a
                torn line that the next write terminates and the reader skips.
        """
        if self.closed:
            raise ValueError(f"audit log {self.path} is closed")
        line = _dumps(event)
        lines = [line]
        if len(line) > self.max_line_bytes:
            lines = [_dumps(part) for part in split_event(event, self.chunk_rows)]
        with self._locked():
            self._follow_rotation()
            size = self._terminate_torn_tail()
            total = sum(len(x) for x in lines)
            if size > 0 and size + total > self.max_bytes:
                self._rotate()
            for data in lines:
                self._write_all(data)
        key = (str(event.get("run_id")), str(event.get("layer")))
        if event.get("kind") == "run_start":
            self._open_runs[key] = dict(event)
        elif event.get("kind") == "run_end":
            self._open_runs.pop(key, None)
        self.n_events += 1
        self._since_sync += 1
        if self._since_sync >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        """fsync the log file now."""
        if not self.closed:
            os.fsync(self._fd)
            self._since_sync = 0

    def close(self) -> None:
        """fsync and close (idempotent)."""
        if self.closed:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)

    def __enter__(self) -> AuditLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open_log(self) -> int:
        try:
            return os.open(str(self.path), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self.path)
            raise

    def _follow_rotation(self) -> None:
        """Reopen the log when another process renamed it away (rotation) or removed it."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(self._fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return
        os.close(self._fd)
        self._fd = self._open_log()
        self._reemit_headers()

    def _terminate_torn_tail(self) -> int:
        """End a torn last line with a newline; return the file size after that."""
        size = os.fstat(self._fd).st_size
        if size > 0:
            if os.pread(self._fd, 1, size - 1) not in (b"\n", b""):
                self._write_all(b"\n")
                size += 1
        return size

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            if n <= 0:  # pragma: no cover - os.write raises instead on POSIX
                raise OSError(errno.ENOSPC, "short write to the audit log", str(self.path))
            view = view[n:]

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        names = [self.path] + [
            self.path.with_name(f"{self.path.name}.{k}") for k in range(1, self.backup_count + 1)
        ]
        for k in range(self.backup_count, 0, -1):
            if names[k - 1].exists():
                os.replace(names[k - 1], names[k])
        self._fd = self._open_log()
        self._reemit_headers()
        with contextlib.suppress(OSError):
            fd = os.open(str(self.directory), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _reemit_headers(self) -> None:
        for header in self._open_runs.values():
            self._write_all(_dumps({**header, "reemitted": True}))
