"""Compatibility path: the multi-tracker hub lives in :mod:`gradtracer.manager`.

``from gradtracer.flow.manager import FlowManager`` keeps working (the same class);
``history_series`` lives in :mod:`gradtracer.report.history`.
"""

from __future__ import annotations

from gradtracer.manager import (
    FlowManager,
    ManagerThresholds,
    TrackerLike,
    compute_exposure_alignment,
    compute_health_score,
    compute_tracker_health,
    compute_velocity_correlation,
    compute_velocity_loss_correlation,
    detect_exposure_misalignment,
    detect_tower_imbalance,
    pearson,
    recent_velocity,
)
from gradtracer.report.history import history_series

__all__ = [
    "FlowManager",
    "ManagerThresholds",
    "TrackerLike",
    "compute_exposure_alignment",
    "compute_health_score",
    "compute_tracker_health",
    "compute_velocity_correlation",
    "compute_velocity_loss_correlation",
    "detect_exposure_misalignment",
    "detect_tower_imbalance",
    "history_series",
    "pearson",
    "recent_velocity",
]
