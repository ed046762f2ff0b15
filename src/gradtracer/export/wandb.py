"""Weights & Biases bridge: log a tracker's / manager's report to a W&B run.

``wandb`` is imported only when :func:`log_to_wandb` runs (extra ``gradtracer[wandb]``).
"""

from __future__ import annotations

from typing import Any

from gradtracer._optional import require
from gradtracer.export.metrics import report_metrics
from gradtracer.report.coerce import as_report

__all__ = ["FINDINGS_TABLE_KEY", "log_to_wandb"]

#: key of the findings table logged next to the scalars
FINDINGS_TABLE_KEY = "gradtracer/findings"
_TABLE_COLUMNS = ["subject", "type", "severity", "confidence", "premise", "action"]


def log_to_wandb(
    tracker_or_report: Any,
    run: Any = None,
    step: int | None = None,
    *,
    findings_table: bool = True,
) -> dict[str, float]:
    """Log the report's metrics (and a findings table) to ``run``; return the logged scalars.

    Args:
        tracker_or_report: a Report, tracker or FlowManager.
        run: a ``wandb`` run; default the active ``wandb.run``.
        step: W&B step; default none (W&B's own counter) - pass the tracker step to align
            several calls.
        findings_table: also log a ``wandb.Table`` of every finding under
            ``"gradtracer/findings"``.

    Raises:
        ValueError: no ``run`` given and no active run (call ``wandb.init()`` first).
        MissingExtraError: ``wandb`` is not installed.
    """
    wandb = require("wandb")
    report = as_report(tracker_or_report)
    run = run if run is not None else wandb.run
    if run is None:
        raise ValueError("log_to_wandb: no active W&B run; call wandb.init() or pass run=")
    metrics = report_metrics(report)
    payload: dict[str, Any] = dict(metrics)
    if findings_table:
        rows = [
            [f.subject, f.type, f.severity.value, f.confidence, f.premise, f.action]
            for f in report.all_findings()
        ]
        payload[FINDINGS_TABLE_KEY] = wandb.Table(columns=_TABLE_COLUMNS, data=rows)
    if step is None:
        run.log(payload)
    else:
        run.log(payload, step=int(step))
    return metrics
