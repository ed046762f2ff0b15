"""Compatibility path: report figures live in :mod:`gradtracer.report.figures`."""

from __future__ import annotations

from gradtracer.report.figures import (
    MAX_FLOW_LAYERS,
    MAX_HISTORY_POINTS,
    plot_embedding_report,
    plot_flow_report,
    plot_manager_report,
    plot_report,
    thin_history,
)

__all__ = [
    "MAX_FLOW_LAYERS",
    "MAX_HISTORY_POINTS",
    "plot_embedding_report",
    "plot_flow_report",
    "plot_manager_report",
    "plot_report",
    "thin_history",
]
