"""FlowManager: one hub for several trackers (two-tower, GNN, sequence models).

It steps every tracker, bundles their reports as children of one ``"manager"`` report and
adds cross-tracker statistics and findings:

- velocity correlation: Pearson correlation of two trackers' ``mean_velocity`` series,
  aligned on the steps both recorded in ``history``;
- velocity-loss correlation: Pearson correlation of a tracker's ``mean_velocity`` with
  the ``loss`` recorded in its history (needs ``step(loss=...)``);
- exposure alignment: ``1 - (|gini_a - gini_b| + |coverage_a - coverage_b| / 100) / 2``
  in [0, 1], from ``popularity_gini`` and ``active_coverage_pct``;
- health score in [0, 100] (see :func:`compute_health_score`);
- findings ``TOWER_IMBALANCE`` (one tracker moves, another stagnates) and
  ``EXPOSURE_MISALIGNMENT`` (the trackers see very different shares of their rows).

The statistics are pure functions below; the class only collects and calls them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TextIO, runtime_checkable

from gradtracer.findings import Finding, FindingType, Report, Severity
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
]


@runtime_checkable
class TrackerLike(Protocol):
    """What FlowManager needs from a tracker (EmbeddingTracker, FlowTracker, ...)."""

    name: str

    @property
    def history(self) -> Sequence[Mapping[str, Any]]:
        """Snapshots every ``track_interval`` steps: ``step``, ``loss``, ``mean_velocity``..."""
        ...

    def step(self, loss: Any = None) -> Any: ...

    def summary(self) -> dict[str, Any]: ...

    def findings(self) -> list[Finding]: ...

    def to_report(self) -> Report: ...


_REQUIRED = ("step", "summary", "findings", "to_report")


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


# ---------------------------------------------------------------------------------------
# pure statistics


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


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
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


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
    return _finite(stats.get("mean_velocity"))


def compute_exposure_alignment(
    stats_a: Mapping[str, Any], stats_b: Mapping[str, Any]
) -> float | None:
    """Return ``1 - (|Δ popularity_gini| + |Δ active_coverage_pct| / 100) / 2`` in [0, 1].

    None when either side lacks ``popularity_gini`` or ``active_coverage_pct``.
    """
    ga, gb = _finite(stats_a.get("popularity_gini")), _finite(stats_b.get("popularity_gini"))
    ca, cb = (
        _finite(stats_a.get("active_coverage_pct")),
        _finite(stats_b.get("active_coverage_pct")),
    )
    if None in (ga, gb, ca, cb):
        return None
    gap = abs(ga - gb) + abs(ca - cb) / 100.0  # type: ignore[operator]
    return max(0.0, min(1.0, 1.0 - gap / 2.0))


def _ratio(stats: Mapping[str, Any], key: str) -> float:
    value = _finite(stats.get(key))
    return 0.0 if value is None else max(0.0, min(1.0, value))


def compute_tracker_health(stats: Mapping[str, Any], findings: Sequence[Finding] = ()) -> float:
    """Return one tracker's health in [0, 100].

    ``h = 100 · (1 − zombie_ratio) · (1 − dead_ratio) · (1 − g⁺/2) · c`` with
    ``g⁺ = clip((popularity_gini − 0.5) / 0.5, 0, 1)`` and ``c = 0.5`` if the tracker has a
    critical finding, else 1. A missing statistic counts as healthy (0 / no skew).
    A tracker that reports its own ``health`` in [0, 100] (FlowTracker) is taken at its word.
    """
    own = _finite(stats.get("health"))
    if own is not None:
        return max(0.0, min(100.0, own))
    gini = _finite(stats.get("popularity_gini"))
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


def detect_tower_imbalance(
    velocities: Mapping[str, float | None], *, imbalance_ratio: float = 0.1
) -> Finding | None:
    """TOWER_IMBALANCE when the slowest tracker moves < ``imbalance_ratio`` × the fastest.

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
    severity = Severity.CRITICAL if v_slow == 0.0 else Severity.WARNING
    return Finding(
        type=FindingType.TOWER_IMBALANCE,
        severity=severity,
        subject=f"{slow} vs {fast}",
        premise=(
            f"'{slow}' moves {ratio:.3g}x as fast as '{fast}' "
            f"(mean velocity {v_slow:.3g} vs {v_fast:.3g}, threshold {imbalance_ratio:g}x)."
        ),
        implies=(
            f"'{slow}' is stagnating while '{fast}' keeps learning; the dot product is "
            f"driven by one side only."
        ),
        action="RAISE_LR_OR_CHECK_GRADIENT_FLOW_OF_STAGNANT_TOWER",
        expected_effect=f"Both towers move at comparable rates and '{slow}' starts learning.",
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
    )


def detect_exposure_misalignment(
    key_a: str,
    stats_a: Mapping[str, Any],
    key_b: str,
    stats_b: Mapping[str, Any],
    *,
    min_alignment: float = 0.6,
) -> Finding | None:
    """EXPOSURE_MISALIGNMENT when :func:`compute_exposure_alignment` < ``min_alignment``."""
    alignment = compute_exposure_alignment(stats_a, stats_b)
    if alignment is None or alignment >= min_alignment:
        return None
    cov_a, cov_b = stats_a["active_coverage_pct"], stats_b["active_coverage_pct"]
    gini_a, gini_b = stats_a["popularity_gini"], stats_b["popularity_gini"]
    return Finding(
        type=FindingType.EXPOSURE_MISALIGNMENT,
        severity=Severity.WARNING,
        subject=f"{key_a} vs {key_b}",
        premise=(
            f"Exposure alignment {alignment:.2f} < {min_alignment:g}: coverage "
            f"{cov_a:.1f}% vs {cov_b:.1f}%, popularity Gini {gini_a:.2f} vs {gini_b:.2f}."
        ),
        implies=(
            "The towers are trained on very different shares of their rows; the rarely "
            "exposed side lags and pairs are scored with stale vectors."
        ),
        action="REBALANCE_NEGATIVE_SAMPLING_OR_APPLY_LOG_Q_CORRECTION",
        expected_effect="Comparable coverage and skew on both towers; better long-tail recall.",
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


# ---------------------------------------------------------------------------------------
# the stateful hub


class FlowManager:
    """Steps several trackers together and reports on them as one model.

    Args:
        name: subject of the manager's report.
        thresholds: :class:`ManagerThresholds` of the cross-tracker findings.

    Example (the published notebook)::

        manager = FlowManager()
        manager.add_tracker("item", EmbeddingTracker(model.item_emb, name="item_emb"))
        ...  # loss.backward(); manager.step(); optimizer.step()
        manager.report()  # prints and returns the text
    """

    def __init__(
        self, name: str = "flow_manager", *, thresholds: ManagerThresholds | None = None
    ) -> None:
        self.name = name
        self.thresholds = thresholds or ManagerThresholds()
        self._trackers: dict[str, TrackerLike] = {}
        self._step = 0

    # -- registry --------------------------------------------------------------------
    def add_tracker(self, key: str, tracker: TrackerLike) -> TrackerLike:
        """Register ``tracker`` under ``key``; return it.

        Raises:
            ValueError: ``key`` is empty or already used, or ``tracker`` is already added.
            TypeError: ``key`` is not a str or ``tracker`` lacks step/summary/findings/to_report.
        """
        if not isinstance(key, str):
            raise TypeError(f"tracker key must be a str, got {type(key).__name__}")
        if not key:
            raise ValueError("tracker key must be a non-empty string")
        if key in self._trackers:
            raise ValueError(f"a tracker is already registered under key {key!r}")
        missing = [m for m in _REQUIRED if not callable(getattr(tracker, m, None))]
        if missing:
            raise TypeError(
                f"tracker {key!r} of type {type(tracker).__name__} lacks {', '.join(missing)}"
            )
        for other_key, other in self._trackers.items():
            if other is tracker:
                raise ValueError(f"this tracker is already registered under key {other_key!r}")
        self._trackers[key] = tracker
        return tracker

    @property
    def trackers(self) -> Mapping[str, TrackerLike]:
        """Read-only view: key -> tracker, in registration order."""
        return MappingProxyType(self._trackers)

    def __getitem__(self, key: str) -> TrackerLike:
        return self._trackers[key]

    def __contains__(self, key: object) -> bool:
        return key in self._trackers

    def __len__(self) -> int:
        return len(self._trackers)

    def __iter__(self) -> Iterator[str]:
        return iter(self._trackers)

    @property
    def global_step(self) -> int:
        """Number of :meth:`step` calls so far."""
        return self._step

    # -- training loop ---------------------------------------------------------------
    def step(self, loss: Any = None) -> None:
        """Step every tracker (pass the same ``loss``: float, 0-d tensor or None)."""
        self._step += 1
        for tracker in self._trackers.values():
            tracker.step(loss)

    def detach(self) -> None:
        """Detach every tracker that has ``detach()`` (removes their hooks)."""
        for tracker in self._trackers.values():
            detach = getattr(tracker, "detach", None)
            if callable(detach):
                detach()

    # -- analysis --------------------------------------------------------------------
    def _children(self) -> list[Report]:
        children = []
        for key, tracker in self._trackers.items():
            report = tracker.to_report()
            children.append(replace(report, metadata={**report.metadata, "tracker_key": key}))
        return children

    def _history(self, key: str) -> Sequence[Mapping[str, Any]]:
        history = getattr(self._trackers[key], "history", None)
        return list(history) if history is not None else []

    def to_report(self) -> Report:
        """Return the ``"manager"`` report: cross-tracker stats and findings, trackers as children."""
        th = self.thresholds
        children = self._children()
        keys = list(self._trackers)
        stats_of = {k: c.stats for k, c in zip(keys, children)}
        histories = {k: self._history(k) for k in keys}

        pairs: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                r, n = compute_velocity_correlation(
                    histories[a], histories[b], min_points=th.min_points
                )
                alignment = compute_exposure_alignment(stats_of[a], stats_of[b])
                pairs.append(
                    {
                        "a": a,
                        "b": b,
                        "velocity_correlation": r,
                        "n_points": n,
                        "exposure_alignment": alignment,
                    }
                )
                finding = detect_exposure_misalignment(
                    a, stats_of[a], b, stats_of[b], min_alignment=th.min_exposure_alignment
                )
                if finding is not None:
                    findings.append(finding)

        velocities = {
            k: recent_velocity(histories[k], stats_of[k], window=th.recent_window) for k in keys
        }
        # velocities are only comparable between trackers of one kind (embedding rows vs
        # embedding rows, layers vs layers)
        kinds = {k: c.kind for k, c in zip(keys, children)}
        for kind in dict.fromkeys(kinds.values()):
            group = {k: v for k, v in velocities.items() if kinds[k] == kind}
            imbalance = detect_tower_imbalance(group, imbalance_ratio=th.imbalance_ratio)
            if imbalance is not None:
                findings.append(imbalance)

        loss_corr = {
            k: compute_velocity_loss_correlation(histories[k], min_points=th.min_points)[0]
            for k in keys
        }
        tracker_health = {
            k: compute_tracker_health(c.stats, c.findings) for k, c in zip(keys, children)
        }
        stats: dict[str, Any] = {
            "n_trackers": len(keys),
            "step": self._step,
            "health_score": compute_health_score(list(tracker_health.values()), findings),
            "tracker_health": tracker_health,
            "recent_velocity": velocities,
            "velocity_loss_correlation": loss_corr,
            "pairs": pairs,
        }
        return Report(
            kind="manager",
            subject=self.name,
            stats=stats,
            findings=findings,
            metadata={"step": self._step, "trackers": keys},
            children=children,
        )

    def summary(self) -> dict[str, Any]:
        """Return the manager statistics plus ``trackers``: key -> that tracker's statistics."""
        report = self.to_report()
        out = dict(report.stats)
        out["trackers"] = {c.metadata["tracker_key"]: dict(c.stats) for c in report.children}
        return out

    def findings(self) -> list[Finding]:
        """Return every finding (each tracker's and the cross-tracker ones), most severe first."""
        return self.to_report().all_findings()

    def health_score(self) -> float | None:
        """Return the global health score in [0, 100] (None without trackers)."""
        return self.to_report().stats["health_score"]

    def report(self, *, file: TextIO | None = None, quiet: bool = False) -> str:
        """Print the readable report (to ``file``, default stdout) and return its text.

        ``quiet=True`` only returns the text.
        """
        from gradtracer.report.text import print_report, render_text

        text = render_text(self.to_report())
        if not quiet:
            print_report(text, file=file)
        return text

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Draw the tower figure (``<name>_towers``) and one figure per embedding or flow
        tracker into ``out_dir`` as PNG and SVG; returns the paths. See
        :mod:`gradtracer.export.figures`."""
        from gradtracer.report.figures import plot_report

        return plot_report(self.to_report(), out_dir)

    def __repr__(self) -> str:
        return (
            f"FlowManager(name={self.name!r}, trackers={list(self._trackers)}, step={self._step})"
        )
