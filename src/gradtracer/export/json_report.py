"""Stable JSON for a :class:`~gradtracer.findings.Report` (sorted keys, schema version).

>>> from gradtracer.findings import Report
>>> text = to_json(Report(kind="embedding", subject="item_emb", stats={"n": 3}))
>>> report_from_json(text).stats
{'n': 3}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradtracer.export._coerce import as_report
from gradtracer.export.schema import validate_report
from gradtracer.findings import Report

__all__ = ["dumps_stable", "read_json", "report_from_json", "to_json", "write_json"]


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
    """Write :func:`to_json` to ``path`` (parent folders created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(report_or_tracker, indent=indent) + "\n", encoding="utf-8")
    return path


def report_from_json(text: str, *, source: str = "<string>") -> Report:
    """Parse and schema-check report JSON text; return the :class:`Report`.

    Raises:
        ValueError: the text is not JSON or does not match the schema (message names ``source``).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    try:
        validate_report(document)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    return Report.from_dict(document)


def read_json(path: str | Path) -> Report:
    """Read a report written by :func:`write_json` (schema-checked)."""
    path = Path(path)
    return report_from_json(path.read_text(encoding="utf-8"), source=str(path))
