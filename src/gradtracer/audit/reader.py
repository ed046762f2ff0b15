"""Damage-tolerant reader of the Auto-Fix audit log and its rotated files.

:func:`read_audit` never stops at a bad line: every line is checked on its own, so a torn
line (an interrupted write), garbage, or an event with missing or malformed fields is
reported with its file and line and skipped, and every event after it, including later
runs, is still returned. Chunk events (``"chunk": [k, n]``, see
:func:`gradtracer.audit.writer.split_event`) are joined back into one event.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.audit.ids import decode_ids, encode_ids
from gradtracer.audit.writer import AUDIT_FILENAME
from gradtracer.errors import GradTracerWarning

__all__ = ["AuditDamage", "AuditLog", "audit_files", "check_event", "read_audit"]

#: Fields every event carries, and the extra fields of the kinds the controller writes.
BASE_FIELDS = ("kind", "step")
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "run_start": ("run_id", "layer", "policy"),
    "damp": ("run_id", "layer", "rows", "scales", "n_agree", "n_disagree"),
    "run_end": ("run_id", "layer"),
}
#: ``damp`` lists that hold one value per decoded row.
PER_ROW = ("scales", "n_agree", "n_disagree", "q")


@dataclass(frozen=True)
class AuditDamage:
    """One unreadable line: where it is, why, and whether it is an interrupted write."""

    file: Path
    line: int
    reason: str
    torn: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class AuditLog:
    """What :func:`read_audit` could read.

    Attributes:
        events: the decoded events in file order (oldest rotated file first), chunk
            events joined.
        problems: every line that could not be used, in file order.
        files: the files read, oldest first.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[AuditDamage] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def damage(self) -> str | None:
        """``"path:line: reason"`` of the first unusable line, ``None`` when there is none."""
        return str(self.problems[0]) if self.problems else None

    @property
    def torn_tail(self) -> bool:
        """True when the only damage is an unterminated last line of the newest file."""
        return (
            len(self.problems) == 1
            and self.problems[0].torn
            and self.problems[0].file == self.files[-1]
        )

    @property
    def complete(self) -> bool:
        """True when nothing was lost but events whose write was interrupted (torn lines).

        A torn line is what a crash or a full disk leaves; it loses that one event only.
        Garbage, a malformed event or a missing chunk make the log incomplete.
        """
        return all(p.torn for p in self.problems)


def audit_files(path: str | Path) -> list[Path]:
    """Return ``path`` and its rotated siblings (``path.N`` ... ``path.1``), oldest first.

    ``path`` may be the log file or a directory holding ``audit.jsonl``.

    Raises:
        FileNotFoundError: no log there (names the path).
        IsADirectoryError: the log's file name is a directory.
    """
    p = Path(path)
    if p.is_dir():
        p = p / AUDIT_FILENAME
        if p.is_dir():
            raise IsADirectoryError(f"{p}: is a directory, expected the audit log file")
    pattern = re.compile(re.escape(p.name) + r"\.(\d+)$")
    rotated = []
    if p.parent.is_dir():
        for sib in p.parent.iterdir():
            m = pattern.fullmatch(sib.name)
            if m and sib.is_file():
                rotated.append((int(m.group(1)), sib))
    files = [s for _, s in sorted(rotated, reverse=True)]
    if p.exists():
        files.append(p)
    if not files:
        raise FileNotFoundError(f"no audit log at {p}")
    return files


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_event(event: Any) -> str | None:
    """Return why ``event`` is not a usable audit event, or ``None`` when it is.

    Checks the fields every event carries (``kind``, integer ``step``) and those of the
    kinds the controller writes (``run_id`` and ``layer``; ``policy`` for ``run_start``;
    for ``damp`` valid encoded ``rows`` and per-row lists as long as the decoded rows).
    Other kinds pass with the common fields only.
    """
    if not isinstance(event, dict):
        return f"not an audit event object (got {type(event).__name__})"
    kind = event.get("kind")
    if not isinstance(kind, str):
        return "missing or non-text field 'kind'"
    missing = [f for f in BASE_FIELDS + KIND_FIELDS.get(kind, ()) if f not in event]
    if missing:
        return f"{kind} event lacks field(s) {missing}"
    if not _is_int(event["step"]):
        return f"field 'step' must be an integer, got {event['step']!r}"
    if kind == "run_start" and not isinstance(event["policy"], dict):
        return "run_start field 'policy' must be an object"
    if kind == "damp":
        try:
            n = decode_ids(event["rows"]).size
        except (ValueError, TypeError) as exc:
            return f"damp field 'rows': {exc}"
        for name in PER_ROW:
            values = event.get(name)
            if values is None and name == "q":
                continue
            if not isinstance(values, list) or len(values) != n:
                got = len(values) if isinstance(values, list) else type(values).__name__
                return f"damp field {name!r} must list one number per row ({n}), got {got}"
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                return f"damp field {name!r} holds a value that is not a number"
        if "dead" in event:
            try:
                decode_ids(event["dead"])
            except (ValueError, TypeError) as exc:
                return f"damp field 'dead': {exc}"
    if "chunk" in event:
        chunk = event["chunk"]
        if not (
            isinstance(chunk, list)
            and len(chunk) == 2
            and all(_is_int(c) for c in chunk)
            and 0 <= chunk[0] < chunk[1]
        ):
            return f"field 'chunk' must be [k, n] with 0 <= k < n, got {chunk!r}"
    return None


def _parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None, str]:
    """``(event, problem, status)`` for one line; status is ok, torn, garbage or invalid."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"unreadable: not UTF-8 ({exc.reason} at byte {exc.start})", "garbage"
    try:
        event = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        # a cut-short object fails only at its end, or inside its last (unterminated) string
        stripped = text.strip()
        cut = exc.pos >= len(stripped) or exc.msg.startswith("Unterminated string")
        if stripped.startswith("{") and cut:
            return None, "torn line (interrupted write)", "torn"
        return None, f"unreadable: {exc.msg} (column {exc.colno})", "garbage"
    except (ValueError, RecursionError) as exc:
        return None, f"unreadable: {exc}", "garbage"
    problem = check_event(event)
    if problem is not None:
        return None, problem, "invalid"
    return event, None, "ok"


class _ChunkJoiner:
    """Joins consecutive chunk events of one decision back into one event."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.parts: list[dict[str, Any]] = []
        self.where: tuple[Path, int] | None = None

    def _key(self, ev: Mapping[str, Any]) -> tuple[Any, ...]:
        return (ev.get("run_id"), ev.get("layer"), ev.get("step"), ev["chunk"][1])

    def add(self, ev: dict[str, Any], where: tuple[Path, int]) -> None:
        if "chunk" not in ev:
            self.flush()  # a decision cut short by a crash stays before what followed it
            self.log.events.append(ev)
            return
        k, n = ev["chunk"]
        if self.parts and (self._key(ev) != self._key(self.parts[0]) or k != len(self.parts)):
            # another decision follows: this one's write was interrupted; a later chunk of
            # the same decision means chunks in between were lost
            self.flush(interrupted=self._key(ev) != self._key(self.parts[0]))
        if not self.parts:
            self.where = where
            if k != 0:
                self._lost(f"chunk {k} of {n} without the chunks before it")
        self.parts.append(ev)
        if k == n - 1:
            self.flush()

    def _lost(self, reason: str, torn: bool = False) -> None:
        assert self.where is not None
        self.log.problems.append(AuditDamage(self.where[0], self.where[1], reason, torn))

    def flush(self, interrupted: bool = True) -> None:
        """Emit the pending chunks. ``interrupted``: nothing of this decision follows (the
        end of the log, or another event), so missing last chunks are an interrupted write:
        like a torn line, that decision alone is lost and is not returned."""
        if not self.parts:
            return
        parts, self.parts = self.parts, []
        n = parts[0]["chunk"][1]
        if parts[0]["chunk"][0] == 0 and len(parts) < n:
            if interrupted:
                self._lost(
                    f"decision split in {n} chunks cut after {len(parts)} (interrupted write)",
                    torn=True,
                )
                return
            self._lost(f"decision split in {n} chunks, only {len(parts)} found")
        self.log.events.append(_join(parts))


def _join(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One event from its chunks (a single chunk of a lost set keeps its ``chunk`` field)."""
    first = parts[0]
    if len(parts) == first["chunk"][1]:
        out = {k: v for k, v in first.items() if k != "chunk"}
    else:
        out = dict(first)
        out["chunk"] = [first["chunk"][0], first["chunk"][1]]
    rows = np.concatenate([decode_ids(p["rows"]) for p in parts])
    out["rows"] = encode_ids(rows)
    for name in PER_ROW:
        if all(isinstance(p.get(name), list) for p in parts):
            out[name] = [v for p in parts for v in p[name]]
    if all(isinstance(p.get("dead"), list) for p in parts):
        out["dead"] = encode_ids(np.concatenate([decode_ids(p["dead"]) for p in parts]))
    return out


def read_audit(path: str | Path, *, warn: bool = True) -> AuditLog:
    """Read an audit log and its rotated files, skipping (and reporting) unusable lines.

    Every line is parsed and checked on its own (:func:`check_event`); an unusable line
    goes into ``AuditLog.problems`` with its file and 1-based line, and reading continues
    with the next line, so a torn line never hides the events or runs after it. With
    ``warn`` a :class:`GradTracerWarning` names the first problem and the count.

    Raises:
        FileNotFoundError: no log at ``path``.
        IsADirectoryError: the log's file name is a directory.
    """
    log = AuditLog(files=audit_files(path))
    joiner = _ChunkJoiner(log)
    for fpath in log.files:
        data = fpath.read_bytes()
        lines = data.split(b"\n")
        terminated = data.endswith(b"\n")
        if terminated:
            lines = lines[:-1]
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            event, problem, status = _parse_line(raw)
            if problem is not None:
                is_last = lineno == len(lines) and not terminated
                if is_last and status in ("torn", "garbage") and raw.lstrip().startswith(b"{"):
                    status, problem = "torn", "torn last line (interrupted write)"
                log.problems.append(AuditDamage(fpath, lineno, problem, status == "torn"))
                continue
            assert event is not None
            joiner.add(event, (fpath, lineno))
    joiner.flush()
    if warn and log.problems:
        more = f" (+{len(log.problems) - 1} more)" if len(log.problems) > 1 else ""
        warnings.warn(
            f"audit log {log.damage}{more}; every other line was read",
            GradTracerWarning,
            stacklevel=2,
        )
    return log
