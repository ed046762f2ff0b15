"""Append-only Auto-Fix audit log (JSON lines) with a damage-tolerant reader.

Written during training by the Auto-Fix controller; read back by ``gradtracer audit``
and the replay. It is not an exporter of a Report, so it lives outside ``export``.

One event per line. Every event carries ``kind``, ``run_id``, ``layer`` and ``step``.
Kinds written by :class:`~gradtracer.embedding.autofix.AutoFixController`:

- ``run_start``: the policy parameters (``policy``) the run decides with.
- ``damp``: one decision that changed row scales: ``rows`` (all affected row ids,
  sorted, run-length/delta encoded by :func:`encode_ids`), ``scales`` (the factors now in
  effect for those rows, aligned with the decoded ids; 1.0 means released), the
  posterior inputs ``n_agree``/``n_disagree`` and ``q`` (oscillation confidence) per
  row, ``loss`` at that step and ``loss_trend`` (:class:`LossTrend` summary).
- ``run_end``: totals at close.

Each event is written with one ``write`` call and flushed; the file is fsynced every
``fsync_every`` events and on close. When the file would exceed ``max_bytes`` it is
rotated to ``audit.jsonl.1`` (older files shift to ``.2`` ... ``.backup_count``).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.errors import GradTracerWarning

__all__ = [
    "AUDIT_FILENAME",
    "AuditLog",
    "AuditLogger",
    "audit_files",
    "decode_ids",
    "default_audit_dir",
    "encode_ids",
    "iter_runs",
    "read_audit",
    "summarize_audit",
]

#: File name of the audit log inside the GradTracer directory.
AUDIT_FILENAME = "audit.jsonl"
#: Version of the event layout, written into every ``run_start`` event.
AUDIT_FORMAT_VERSION = 1


def default_audit_dir() -> Path:
    """Return ``$GRADTRACER_DIR`` if set, else ``.gradtracer`` in the current directory."""
    env = os.environ.get("GRADTRACER_DIR")
    return Path(env) if env else Path.cwd() / ".gradtracer"


def encode_ids(ids: Sequence[int] | np.ndarray) -> list[int]:
    """Return sorted unique ``ids`` as flat ``[gap0, len0, gap1, len1, ...]`` runs.

    Each run of consecutive ids is a pair: the gap from the end of the previous run (from
    0 for the first run) and the run length. ``[3, 4, 5, 9]`` -> ``[3, 3, 3, 1]``.
    """
    arr = np.unique(np.asarray(ids, dtype=np.int64))
    if arr.size == 0:
        return []
    if arr[0] < 0:
        raise ValueError(f"row ids must be >= 0, got {int(arr[0])}")
    breaks = np.flatnonzero(np.diff(arr) != 1) + 1
    starts = arr[np.concatenate(([0], breaks))]
    ends = arr[np.concatenate((breaks - 1, [arr.size - 1]))] + 1  # exclusive
    prev_end = np.concatenate(([0], ends[:-1]))
    out = np.empty(2 * starts.size, dtype=np.int64)
    out[0::2] = starts - prev_end
    out[1::2] = ends - starts
    return out.tolist()


def decode_ids(runs: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`encode_ids`: the sorted ids as an int64 array."""
    arr = np.asarray(runs, dtype=np.int64)
    if arr.size % 2 or (arr.size and (arr[1::2] < 1).any()) or (arr.size and (arr[0::2] < 0).any()):
        raise ValueError("row runs must be [gap, length] pairs with gap >= 0 and length >= 1")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    gaps, lengths = arr[0::2], arr[1::2]
    starts = np.cumsum(gaps + np.concatenate(([0], lengths[:-1])))
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


class AuditLogger:
    """Appends audit events to ``<directory>/audit.jsonl``.

    Args:
        directory: where the log lives (default :func:`default_audit_dir`). Created if absent.
        filename: log file name (default ``audit.jsonl``).
        fsync_every: fsync after this many events (default 50); always on :meth:`close`.
        max_bytes: rotate before a write would make the file larger than this (64 MiB).
        backup_count: rotated files kept (``.1`` newest ... ``.backup_count`` oldest; 5).

    Raises:
        OSError: when the directory or file cannot be created / opened for appending.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        filename: str = AUDIT_FILENAME,
        fsync_every: int = 50,
        max_bytes: int = 64 * 1024 * 1024,
        backup_count: int = 5,
    ) -> None:
        if fsync_every < 1:
            raise ValueError(f"fsync_every must be >= 1, got {fsync_every}")
        if max_bytes < 1024:
            raise ValueError(f"max_bytes must be >= 1024, got {max_bytes}")
        if backup_count < 1:
            raise ValueError(f"backup_count must be >= 1, got {backup_count}")
        self.directory = Path(directory) if directory is not None else default_audit_dir()
        self.path = self.directory / filename
        self.fsync_every = fsync_every
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.n_events = 0
        self._since_sync = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._size = self._fh.seek(0, os.SEEK_END)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._fh.closed

    def write(self, event: Mapping[str, Any]) -> None:
        """Append one event as a JSON line (one write call, flushed; fsynced on schedule)."""
        if self._fh.closed:
            raise ValueError(f"audit log {self.path} is closed")
        line = (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()
        if self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._fh.write(line)
        self._size += len(line)
        self.n_events += 1
        self._since_sync += 1
        if self._since_sync >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        """fsync the log file now."""
        if not self._fh.closed:
            os.fsync(self._fh.fileno())
            self._since_sync = 0

    def close(self) -> None:
        """fsync and close (idempotent)."""
        if self._fh.closed:
            return
        try:
            self.sync()
        finally:
            self._fh.close()

    def _rotate(self) -> None:
        self.sync()
        self._fh.close()
        for k in range(self.backup_count, 0, -1):
            src = self.path if k == 1 else self.path.with_name(f"{self.path.name}.{k - 1}")
            dst = self.path.with_name(f"{self.path.name}.{k}")
            if src.exists():
                os.replace(src, dst)
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0

    def __enter__(self) -> AuditLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class AuditLog:
    """What :func:`read_audit` could read.

    Attributes:
        events: the decoded events in file order (oldest rotated file first).
        damage: ``None`` when every line was read, else ``"path:line: reason"`` of the
            first unreadable line; events after it are not returned.
        torn_tail: True when the only damage is an unterminated last line (an interrupted
            write); that is normal after a crash and loses nothing else.
        files: the files read, oldest first.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    damage: str | None = None
    torn_tail: bool = False
    files: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing but (at most) a torn last line was lost."""
        return self.damage is None or self.torn_tail


def audit_files(path: str | Path) -> list[Path]:
    """Return ``path`` and its rotated siblings (``path.N`` ... ``path.1``), oldest first.

    ``path`` may be the log file or a directory holding ``audit.jsonl``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / AUDIT_FILENAME
    pattern = re.compile(re.escape(p.name) + r"\.(\d+)$")
    rotated = []
    if p.parent.is_dir():
        for sib in p.parent.iterdir():
            m = pattern.fullmatch(sib.name)
            if m:
                rotated.append((int(m.group(1)), sib))
    files = [s for _, s in sorted(rotated, reverse=True)]
    if p.exists():
        files.append(p)
    if not files:
        raise FileNotFoundError(f"no audit log at {p}")
    return files


def read_audit(path: str | Path, *, warn: bool = True) -> AuditLog:
    """Read an audit log (and its rotated files), stopping at the first damaged line.

    An unterminated last line that does not parse is a torn write: it is skipped with a
    :class:`GradTracerWarning` and nothing else is lost. Any other unreadable line stops the
    read there; ``AuditLog.damage`` names the file and 1-based line and a warning is issued.
    """
    log = AuditLog(files=audit_files(path))
    for fpath in log.files:
        data = fpath.read_bytes()
        lines = data.split(b"\n")
        terminated = data.endswith(b"\n")
        if terminated:
            lines = lines[:-1]
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            is_last = lineno == len(lines) and not terminated
            try:
                event = json.loads(raw)
                if not isinstance(event, dict) or "kind" not in event:
                    raise ValueError("not an audit event object with a 'kind'")
            except (ValueError, UnicodeDecodeError) as exc:
                reason = "torn last line (interrupted write)" if is_last else f"unreadable: {exc}"
                log.damage = f"{fpath}:{lineno}: {reason}"
                log.torn_tail = is_last and fpath == log.files[-1]
                if warn:
                    warnings.warn(f"audit log {log.damage}; events before it were read",
                                  GradTracerWarning, stacklevel=2)
                return log
            log.events.append(event)
    return log


def iter_runs(events: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Group events by ``(run_id, layer)`` keeping file order."""
    runs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for ev in events:
        runs.setdefault((str(ev.get("run_id")), str(ev.get("layer"))), []).append(ev)
    return runs


def summarize_audit(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return one summary row per ``(run_id, layer)``: steps, interventions, rows, scales.

    Keys: ``run_id``, ``layer``, ``first_step``, ``last_step``, ``interventions`` (``damp``
    events), ``rows_ever_damped``, ``rows_damped_at_end`` (latest logged scale < 1),
    ``min_scale``, ``last_p_improving``, ``ended`` (a ``run_end`` event was written).
    """
    out = []
    for (run_id, layer), evs in iter_runs(events).items():
        latest: dict[int, float] = {}
        ever: set[int] = set()
        n_damp, min_scale, last_g = 0, 1.0, None
        for ev in evs:
            if ev.get("kind") != "damp":
                continue
            n_damp += 1
            rows = decode_ids(ev["rows"]).tolist()
            scales = [float(s) for s in ev["scales"]]
            for r, s in zip(rows, scales, strict=False):
                latest[r] = s
                if s < 1.0:
                    ever.add(r)
            if scales:
                min_scale = min(min_scale, min(scales))
            last_g = (ev.get("loss_trend") or {}).get("p_improving")
        steps = [int(ev["step"]) for ev in evs if "step" in ev]
        out.append({
            "run_id": run_id,
            "layer": layer,
            "first_step": min(steps) if steps else None,
            "last_step": max(steps) if steps else None,
            "interventions": n_damp,
            "rows_ever_damped": len(ever),
            "rows_damped_at_end": sum(1 for s in latest.values() if s < 1.0),
            "min_scale": min_scale,
            "last_p_improving": last_g,
            "ended": any(ev.get("kind") == "run_end" for ev in evs),
        })
    return out
