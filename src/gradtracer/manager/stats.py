"""Pure cross-tracker statistics of a :class:`~gradtracer.manager.FlowManager`.

- velocity correlation: Pearson correlation of two trackers' ``mean_velocity`` series,
  aligned on the steps both recorded in ``history``;
- velocity-loss correlation: Pearson correlation of a tracker's ``mean_velocity`` with
  the ``loss`` recorded in its history (needs ``step(loss=...)``);
- exposure alignment: ``1 - (|gini_a - gini_b| + |coverage_a - coverage_b| / 100) / 2``
  in [0, 1], from ``popularity_gini`` and ``active_coverage_pct``;
- health score in [0, 100] (see :func:`compute_health_score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gradtracer._numeric import finite_or_none
from gradtracer.findings import Finding, Severity
from gradtracer.report.history import history_series

__all__ = [
    "compute_exposure_alignment",
    "compute_health_score",
    "compute_tracker_health",
    "compute_velocity_correlation",
    "compute_velocity_loss_correlation",
    "pearson",
    "recent_velocity",
]


def pearson(x: Sequence[float], y: Sequence[float], *, min_points: int = 3) -> float | None:
    """Return Pearson's r of two equally long series; None with < ``min_points`` or no variance."""
    if len(x) != len(y):
        raise ValueError(f"series lengths differ: {len(x)} vs {len(y)}")
    n = len(x)
    if n < max(2, min_points):
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 0.0 or syy <= 0.0:
        return None
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    denom = math.sqrt(sxx) * math.sqrt(syy)  # not sqrt(sxx * syy): the product can underflow
    if denom <= 0.0:
        return None
    return max(-1.0, min(1.0, sxy / denom))


def compute_velocity_correlation(
    history_a: Sequence[Mapping[str, Any]],
    history_b: Sequence[Mapping[str, Any]],
    *,
    min_points: int = 3,
) -> tuple[float | None, int]:
    """Return (Pearson r of ``mean_velocity`` on the steps both histories share, n shared)."""
    a, b = history_series(history_a, "mean_velocity"), history_series(history_b, "mean_velocity")
    steps = sorted(a.keys() & b.keys())
    r = pearson([a[s] for s in steps], [b[s] for s in steps], min_points=min_points)
    return r, len(steps)


def compute_velocity_loss_correlation(
    history: Sequence[Mapping[str, Any]], *, min_points: int = 3
) -> tuple[float | None, int]:
    """Return (Pearson r of ``mean_velocity`` with ``loss`` over snapshots with both, n)."""
    v, loss = history_series(history, "mean_velocity"), history_series(history, "loss")
    steps = sorted(v.keys() & loss.keys())
    r = pearson([v[s] for s in steps], [loss[s] for s in steps], min_points=min_points)
    return r, len(steps)


def recent_velocity(
    history: Sequence[Mapping[str, Any]], stats: Mapping[str, Any], *, window: int = 5
) -> float | None:
    """Mean ``mean_velocity`` of the last ``window`` snapshots, else ``stats["mean_velocity"]``."""
    values = list(history_series(history, "mean_velocity").items())
    values.sort()
    tail = [v for _, v in values[-window:]] if window > 0 else []
    if tail:
        return sum(tail) / len(tail)
    return finite_or_none(stats.get("mean_velocity"))


def compute_exposure_alignment(
    stats_a: Mapping[str, Any], stats_b: Mapping[str, Any]
) -> float | None:
    """Return ``1 - (|Δ popularity_gini| + |Δ active_coverage_pct| / 100) / 2`` in [0, 1].

    None when either side lacks ``popularity_gini`` or ``active_coverage_pct``.
    """
    ga, gb = (
        finite_or_none(stats_a.get("popularity_gini")),
        finite_or_none(stats_b.get("popularity_gini")),
    )
    ca, cb = (
        finite_or_none(stats_a.get("active_coverage_pct")),
        finite_or_none(stats_b.get("active_coverage_pct")),
    )
    if None in (ga, gb, ca, cb):
        return None
    gap = abs(ga - gb) + abs(ca - cb) / 100.0  # type: ignore[operator]
    return max(0.0, min(1.0, 1.0 - gap / 2.0))


def _ratio(stats: Mapping[str, Any], key: str) -> float:
    value = finite_or_none(stats.get(key))
    return 0.0 if value is None else max(0.0, min(1.0, value))


def compute_tracker_health(stats: Mapping[str, Any], findings: Sequence[Finding] = ()) -> float:
    """Return one tracker's health in [0, 100].

    ``h = 100 · (1 − zombie_ratio) · (1 − dead_ratio) · (1 − g⁺/2) · c`` with
    ``g⁺ = clip((popularity_gini − 0.5) / 0.5, 0, 1)`` and ``c = 0.5`` if the tracker has a
    critical finding, else 1. A missing statistic counts as healthy (0 / no skew).
    A tracker that reports its own ``health`` in [0, 100] (FlowTracker) is taken at its word.
    """
    own = finite_or_none(stats.get("health"))
    if own is not None:
        return max(0.0, min(100.0, own))
    gini = finite_or_none(stats.get("popularity_gini"))
    skew = 0.0 if gini is None else max(0.0, min(1.0, (gini - 0.5) / 0.5))
    health = 100.0 * (1 - _ratio(stats, "zombie_ratio")) * (1 - _ratio(stats, "dead_ratio"))
    health *= 1.0 - skew / 2.0
    if any(f.severity is Severity.CRITICAL for f in findings):
        health *= 0.5
    return health


def compute_health_score(
    tracker_health: Sequence[float], cross_findings: Sequence[Finding] = ()
) -> float | None:
    """Return the global health in [0, 100]: mean tracker health − 10·warnings − 20·criticals.

    ``warnings`` / ``criticals`` count the cross-tracker findings; None without trackers.
    """
    if not tracker_health:
        return None
    penalty = sum(
        {Severity.WARNING: 10.0, Severity.CRITICAL: 20.0}.get(f.severity, 0.0)
        for f in cross_findings
    )
    return max(0.0, min(100.0, sum(tracker_health) / len(tracker_health) - penalty))
