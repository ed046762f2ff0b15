"""Cross-tracker detectors: one pure ``detect_*`` per finding type, texts from the catalog.

- ``TOWER_IMBALANCE``: one tracker moves, another of the same kind stagnates;
- ``EXPOSURE_MISALIGNMENT``: two trackers see very different shares of their rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradtracer.findings import Finding, FindingType, Severity
from gradtracer.manager.stats import compute_exposure_alignment
from gradtracer.report.catalog import make_finding

__all__ = ["ManagerThresholds", "detect_exposure_misalignment", "detect_tower_imbalance"]


@dataclass(frozen=True)
class ManagerThresholds:
    """Thresholds of the cross-tracker findings (override any of them)."""

    #: TOWER_IMBALANCE when slowest / fastest recent mean velocity is below this ratio
    imbalance_ratio: float = 0.1
    #: EXPOSURE_MISALIGNMENT when exposure alignment is below this value (in [0, 1])
    min_exposure_alignment: float = 0.6
    #: fewest aligned history points for a correlation (fewer -> null)
    min_points: int = 3
    #: history snapshots averaged for the "recent" velocity of a tracker
    recent_window: int = 5

    def __post_init__(self) -> None:
        if not 0.0 < self.imbalance_ratio <= 1.0:
            raise ValueError(f"imbalance_ratio must be in (0, 1], got {self.imbalance_ratio!r}")
        if not 0.0 <= self.min_exposure_alignment <= 1.0:
            raise ValueError(
                f"min_exposure_alignment must be in [0, 1], got {self.min_exposure_alignment!r}"
            )
        if self.min_points < 2:
            raise ValueError(f"min_points must be >= 2, got {self.min_points!r}")
        if self.recent_window < 1:
            raise ValueError(f"recent_window must be >= 1, got {self.recent_window!r}")


def detect_tower_imbalance(
    velocities: Mapping[str, float | None], *, imbalance_ratio: float = 0.1
) -> Finding | None:
    """TOWER_IMBALANCE when the slowest tracker moves < ``imbalance_ratio`` x the fastest
    (critical when it does not move at all).

    Args:
        velocities: tracker key -> recent mean row velocity (None entries are ignored).
    """
    known = {k: v for k, v in velocities.items() if v is not None}
    if len(known) < 2:
        return None
    fast = max(known, key=lambda k: known[k])
    slow = min(known, key=lambda k: known[k])
    v_fast, v_slow = known[fast], known[slow]
    if v_fast <= 0.0:
        return None
    ratio = v_slow / v_fast
    if ratio >= imbalance_ratio:
        return None
    return make_finding(
        FindingType.TOWER_IMBALANCE,
        severity=Severity.CRITICAL if v_slow == 0.0 else Severity.WARNING,
        subject=f"{slow} vs {fast}",
        premise=(
            f"'{slow}' moves {ratio:.3g}x as fast as '{fast}' "
            f"(mean velocity {v_slow:.3g} vs {v_fast:.3g}, threshold {imbalance_ratio:g}x)."
        ),
        confidence=min(1.0, 0.5 + 0.5 * (1.0 - ratio / imbalance_ratio)),
        evidence={
            "slow_tracker": slow,
            "fast_tracker": fast,
            "slow_velocity": v_slow,
            "fast_velocity": v_fast,
            "velocity_ratio": ratio,
            "threshold": imbalance_ratio,
        },
        sample_ids=(slow, fast),
        slow=slow,
        fast=fast,
    )


def detect_exposure_misalignment(
    key_a: str,
    stats_a: Mapping[str, Any],
    key_b: str,
    stats_b: Mapping[str, Any],
    *,
    min_alignment: float = 0.6,
) -> Finding | None:
    """EXPOSURE_MISALIGNMENT when :func:`~gradtracer.manager.stats.compute_exposure_alignment`
    < ``min_alignment``."""
    alignment = compute_exposure_alignment(stats_a, stats_b)
    if alignment is None or alignment >= min_alignment:
        return None
    cov_a, cov_b = stats_a["active_coverage_pct"], stats_b["active_coverage_pct"]
    gini_a, gini_b = stats_a["popularity_gini"], stats_b["popularity_gini"]
    return make_finding(
        FindingType.EXPOSURE_MISALIGNMENT,
        subject=f"{key_a} vs {key_b}",
        premise=(
            f"Exposure alignment {alignment:.2f} < {min_alignment:g}: coverage "
            f"{cov_a:.1f}% vs {cov_b:.1f}%, popularity Gini {gini_a:.2f} vs {gini_b:.2f}."
        ),
        confidence=min(1.0, 0.5 + (min_alignment - alignment)),
        evidence={
            "exposure_alignment": alignment,
            "threshold": min_alignment,
            f"{key_a}_coverage_pct": cov_a,
            f"{key_b}_coverage_pct": cov_b,
            f"{key_a}_gini": gini_a,
            f"{key_b}_gini": gini_b,
        },
        sample_ids=(key_a, key_b),
    )
