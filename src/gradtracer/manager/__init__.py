"""The multi-tracker hub: :class:`FlowManager` and its cross-tracker statistics and findings.

- :mod:`~gradtracer.manager.hub`: :class:`FlowManager` and the :class:`TrackerLike` protocol;
- :mod:`~gradtracer.manager.stats`: pure statistics (velocity correlations, exposure
  alignment, health scores);
- :mod:`~gradtracer.manager.detect`: ``TOWER_IMBALANCE`` and ``EXPOSURE_MISALIGNMENT``
  detectors and :class:`ManagerThresholds`.

The manager sits above the trackers (embedding, flow, trees): it steps any object with
``step``/``summary``/``findings``/``to_report`` and imports none of them.
"""

from __future__ import annotations

from gradtracer.manager.detect import (
    ManagerThresholds,
    detect_exposure_misalignment,
    detect_tower_imbalance,
)
from gradtracer.manager.hub import FlowManager, TrackerLike
from gradtracer.manager.stats import (
    compute_exposure_alignment,
    compute_health_score,
    compute_tracker_health,
    compute_velocity_correlation,
    compute_velocity_loss_correlation,
    pearson,
    recent_velocity,
)

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
    "pearson",
    "recent_velocity",
]
