"""Stable JSON for a :class:`~gradtracer.findings.Report` (sorted keys, schema version).

>>> from gradtracer.findings import Report
>>> text = to_json(Report(kind="embedding", subject="item_emb", stats={"n": 3}))
>>> report_from_json(text).stats
{'n': 3}
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from gradtracer.durable import atomic_write_text
from gradtracer.export.schema import validate_report
from gradtracer.findings import Report
from gradtracer.report.coerce import as_report

__all__ = [
    "dumps_stable",
    "loads_strict",
    "read_json",
    "report_from_json",
    "to_json",
    "write_json",
]

_NON_FINITE = re.compile(r"(?<![\w.])(-?Infinity|NaN|-?\d+(?:\.\d+)?[eE][+]?\d{3,})(?![\w.])")


def dumps_stable(document: Any, *, indent: int | None = 2) -> str:
    """Serialise ``document`` with sorted keys, UTF-8 text and no NaN/Infinity literals."""
    return json.dumps(document, sort_keys=True, indent=indent, ensure_ascii=False, allow_nan=False)


def to_json(report_or_tracker: Any, *, indent: int | None = 2, validate: bool = True) -> str:
    """Return the report as stable JSON text (schema-checked unless ``validate=False``).

    Args:
        report_or_tracker: a :class:`Report` or anything with ``to_report()``.
        indent: spaces per level; ``None`` writes one line.
        validate: check the document against the shipped ``report`` schema first.
    """
    document = as_report(report_or_tracker).to_dict()
    if validate:
        validate_report(document)
    return dumps_stable(document, indent=indent)


def write_json(report_or_tracker: Any, path: str | Path, *, indent: int | None = 2) -> Path:
    """Write :func:`to_json` to ``path`` atomically (parent folders created); return the path.

    The text is complete before the file is touched, and it replaces ``path`` by rename
    (:func:`gradtracer.durable.atomic_write_text`): a crash or a full disk leaves the
    previous report in place, never a truncated one.
    """
    text = to_json(report_or_tracker, indent=indent) + "\n"
    return atomic_write_text(path, text)


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def loads_strict(text: str, *, source: str = "<string>") -> Any:
    """Parse JSON text, refusing ``NaN``, ``Infinity`` and numbers that overflow to infinity.

    Python's ``json`` accepts those (they are not JSON); a report holding one would pass
    the schema and then fail in the renderers.

    Raises:
        ValueError: ``"<source>:<line>: ..."`` naming the line of the problem.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except _NonFinite as exc:
        match = _NON_FINITE.search(text)
        line = text.count("\n", 0, match.start()) + 1 if match else None
        where = f"{source}:{line}" if line else source
        raise ValueError(
            f"{where}: non-finite number {exc} (JSON has no NaN/Infinity; write null)"
        ) from None
    except RecursionError:
        raise ValueError(f"{source}: JSON nested too deeply") from None


def report_from_json(text: str, *, source: str = "<string>") -> Report:
    """Parse and schema-check report JSON text; return the :class:`Report`.

    Raises:
        ValueError: the text is not JSON or does not match the schema (message names ``source``).
    """
    document = loads_strict(text, source=source)
    try:
        validate_report(document)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    try:
        return Report.from_dict(document)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{source}: not a valid report ({exc})") from exc


def read_json(path: str | Path) -> Report:
    """Read a report written by :func:`write_json` (schema-checked).

    Raises:
        ValueError: not UTF-8, not JSON, a non-finite number, or not a valid report
            (the message names the file, and the line where JSON parsing failed).
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return report_from_json(text, source=str(path))
