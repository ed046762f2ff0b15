"""The findings an :class:`~gradtracer.embedding.autofix.AutoFixController` reports.

Pure functions of the controller's :meth:`~gradtracer.embedding.autofix.AutoFixController.summary`
and its per-row flags: AUTOFIX_APPLIED, DEAD_EMBEDDINGS (rows left unscaled) and
AUDIT_INCOMPLETE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtracer.findings import Finding, FindingType
from gradtracer.report.catalog import make_finding

__all__ = ["detect_audit_incomplete", "detect_autofix_applied", "detect_unscaled_dead_rows"]


def detect_autofix_applied(
    layer: str, s: dict[str, Any], ever: np.ndarray | None
) -> Finding | None:
    """AUTOFIX_APPLIED: the controller gave some rows a factor below 1."""
    if not s["rows_ever_scaled"] or ever is None:
        return None
    return make_finding(
        FindingType.AUTOFIX_APPLIED,
        subject=layer,
        premise=(
            f"Auto-Fix damped {s['rows_ever_scaled']} oscillating rows ({s['rows_scaled']} "
            f"still damped, smallest factor {s['min_scale']:.3f}) over "
            f"{s['n_interventions']} decisions."
        ),
        confidence=1.0,
        evidence={
            k: s[k]
            for k in (
                "rows_scaled",
                "rows_ever_scaled",
                "min_scale",
                "n_interventions",
                "p_loss_improving",
            )
        },
        sample_ids=tuple(np.flatnonzero(ever)[:20].tolist()),
    )


def detect_unscaled_dead_rows(
    layer: str, s: dict[str, Any], dead: np.ndarray | None
) -> Finding | None:
    """DEAD_EMBEDDINGS: touched rows with a zero gradient-norm EMA (left unscaled)."""
    if not s["rows_dead"] or dead is None:
        return None
    return make_finding(
        FindingType.DEAD_EMBEDDINGS,
        subject=layer,
        premise=(
            f"{s['rows_dead']} touched rows have a zero gradient-norm EMA; Auto-Fix leaves "
            "them unscaled."
        ),
        confidence=0.9,
        evidence={"rows_dead": s["rows_dead"]},
        sample_ids=tuple(np.flatnonzero(dead)[:20].tolist()),
    )


def detect_audit_incomplete(layer: str, s: dict[str, Any]) -> Finding | None:
    """AUDIT_INCOMPLETE: some audit events could not be written."""
    if s["audit_complete"]:
        return None
    return make_finding(
        FindingType.AUDIT_INCOMPLETE,
        subject=layer,
        premise=(
            f"{s['audit_events_lost']} Auto-Fix audit events could not be written "
            f"(log: {s['audit_path'] or 'not opened'})."
        ),
        confidence=1.0,
        evidence={"audit_events_lost": s["audit_events_lost"]},
    )
