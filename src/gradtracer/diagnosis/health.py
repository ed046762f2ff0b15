"""The run health score (0-100) from ranked findings and loss progress."""

from __future__ import annotations

from collections.abc import Sequence

from gradtracer.diagnosis.ranking import SEVERITY_COST
from gradtracer.findings import Finding

__all__ = ["health_score"]


def health_score(ranked: Sequence[Finding], loss_progress: float | None = None) -> float:
    """0-100: 100 minus the cost of the causes (and a quarter for symptoms), minus up to 10
    points when the loss has not improved (``loss_progress`` = relative decrease so far)."""
    score = 100.0
    for f in ranked:
        cost = SEVERITY_COST[f.severity]
        score -= cost / 4.0 if getattr(f, "consequence_of", None) is not None else cost
    if loss_progress is not None:
        score -= 10.0 * (1.0 - min(1.0, max(0.0, loss_progress / 0.2)))
    return max(0.0, min(100.0, score))
