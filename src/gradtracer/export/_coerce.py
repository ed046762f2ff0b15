"""Compatibility path: :func:`as_report` lives in :mod:`gradtracer.report.coerce`."""

from __future__ import annotations

from gradtracer.report.coerce import SupportsReport, as_report

__all__ = ["SupportsReport", "as_report"]
