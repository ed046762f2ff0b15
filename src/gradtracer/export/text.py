"""Compatibility path: the text renderer lives in :mod:`gradtracer.report.text`."""

from __future__ import annotations

from gradtracer.report.text import (
    MAX_RECORD_LINES,
    MAX_VALUE_CHARS,
    ReportText,
    format_value,
    print_report,
    render_text,
    report_text,
)

__all__ = [
    "MAX_RECORD_LINES",
    "MAX_VALUE_CHARS",
    "ReportText",
    "format_value",
    "print_report",
    "render_text",
    "report_text",
]
