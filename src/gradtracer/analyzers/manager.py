"""Compatibility path of the published examples: ``from gradtracer.analyzers.manager import FlowManager``.

The published validation notebook calls ``manager.report()`` inside its training function
and reads the report from the cell output, so this :class:`FlowManager` keeps the published
form: ``report()`` prints the text (to ``file``, default stdout; ``quiet=True`` only
returns it) and returns it. Everything else is :class:`gradtracer.manager.FlowManager`,
whose ``report()`` returns the text without printing.
"""

from __future__ import annotations

from typing import TextIO

from gradtracer.manager.hub import FlowManager as _FlowManager
from gradtracer.report.text import ReportText, print_report

__all__ = ["FlowManager"]


class FlowManager(_FlowManager):
    """:class:`gradtracer.manager.FlowManager` whose ``report()`` also prints (published form)."""

    def report(self, *, file: TextIO | None = None, quiet: bool = False) -> ReportText:
        """Print the readable report (to ``file``, default stdout) unless ``quiet``; return it."""
        text = super().report()
        if not quiet:
            print_report(text, file=file)
        return text
