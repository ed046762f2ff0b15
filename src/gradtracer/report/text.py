"""The one plain-text renderer of a :class:`~gradtracer.findings.Report`.

:func:`render_text` returns the text, findings in :meth:`Report.sorted_findings` order
(critical first, then confidence); :func:`print_report` is the one place in the library
that prints. Every tracker's ``report()`` returns :func:`report_text` (the rendered text as
a :class:`ReportText`, which a notebook cell shows as the text itself) and never prints;
``print_report(tracker)`` prints.

>>> from gradtracer.findings import Report
>>> print(render_text(Report(kind="embedding", subject="item_emb", stats={"zombie_ratio": 0.0})))
GradTracer embedding report: item_emb
  stats:
    zombie_ratio  0
  findings: none
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any, TextIO

from gradtracer.findings import Report
from gradtracer.report.coerce import as_report

__all__ = ["ReportText", "format_value", "print_report", "render_text", "report_text"]

_INDENT = "  "
#: longest rendering of one statistic before it is cut with "..."
MAX_VALUE_CHARS = 120
# C0 control characters except tab and newline, and DEL
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
#: lists of up to this many records (dicts) are shown one record per line
MAX_RECORD_LINES = 12


def format_value(value: Any, *, max_chars: int | None = MAX_VALUE_CHARS) -> str:
    """Format one statistic: 4 significant digits for floats, ``n/a`` for None/NaN.

    Lists show their first 8 items; the whole text is cut to ``max_chars`` (None: no cut).
    """
    text = _format(value)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_format(v) for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _is_record_list(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and 0 < len(value) <= MAX_RECORD_LINES
        and all(isinstance(v, dict) for v in value)
    )


def _render(report: Report, depth: int, lines: list[str]) -> None:
    pad = _INDENT * depth
    step = report.metadata.get("step")
    head = f"GradTracer {report.kind} report: {report.subject}"
    key = report.metadata.get("tracker_key")
    if key is not None and key != report.subject:
        head += f" [{key}]"
    if step is not None:
        head += f" (step {step})"
    lines.append(pad + head)
    if report.stats:
        lines.append(pad + _INDENT + "stats:")
        width = max(len(str(k)) for k in report.stats)
        for name in sorted(report.stats):
            value = report.stats[name]
            if _is_record_list(value):  # e.g. per-pair or per-bucket records: one per line
                lines.append(f"{pad}{_INDENT * 2}{name}:")
                lines.extend(f"{pad}{_INDENT * 3}- {format_value(v)}" for v in value)
            else:
                lines.append(f"{pad}{_INDENT * 2}{name:<{width}}  {format_value(value)}")
    findings = report.sorted_findings()
    if not findings:
        lines.append(pad + _INDENT + "findings: none")
    else:
        lines.append(pad + _INDENT + f"findings ({len(findings)}):")
        for f in findings:
            lines.append(
                f"{pad}{_INDENT * 2}[{f.severity.value.upper()}] {f.type} on {f.subject} "
                f"(confidence {f.confidence:.2f})"
            )
            inner = pad + _INDENT * 3
            lines.append(f"{inner}premise:  {f.premise}")
            if f.implies:
                lines.append(f"{inner}implies:  {f.implies}")
            lines.append(f"{inner}action:   {f.action}")
            if f.expected_effect:
                lines.append(f"{inner}expected: {f.expected_effect}")
            if f.sample_ids:
                lines.append(f"{inner}examples: {_format(list(f.sample_ids))}")
    for child in report.children:
        _render(child, depth + 1, lines)


def render_text(report_or_tracker: Any) -> str:
    """Return the report (or ``obj.to_report()``) as indented plain text, children nested.

    Control characters (terminal escapes included) are removed; newlines are kept.
    """
    lines: list[str] = []
    _render(as_report(report_or_tracker), 0, lines)
    return _CONTROL.sub("", "\n".join(lines))


def print_report(report_or_text: Any, *, file: TextIO | None = None) -> str:
    """Print a report (or already rendered text) to ``file`` (default stdout); return the text."""
    text = report_or_text if isinstance(report_or_text, str) else render_text(report_or_text)
    print(text, file=file if file is not None else sys.stdout)
    return text


class ReportText(str):
    """Rendered report text: a ``str`` whose ``repr`` is the text itself, so a notebook
    cell ending in ``tracker.report()`` shows the report rather than a quoted string.

    >>> ReportText("line 1\\nline 2")
    line 1
    line 2
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def report_text(report_or_tracker: Any) -> ReportText:
    """:func:`render_text` as a :class:`ReportText`: what every ``report()`` method returns."""
    return ReportText(render_text(report_or_tracker))
