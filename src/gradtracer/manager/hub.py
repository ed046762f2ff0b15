"""FlowManager: one hub for several trackers (two-tower, GNN, sequence models).

It steps every tracker, bundles their reports as children of one ``"manager"`` report and
adds the cross-tracker statistics of :mod:`gradtracer.manager.stats` and the findings of
:mod:`gradtracer.manager.detect`. The class only collects and calls them.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from gradtracer.findings import Finding, Report
from gradtracer.manager.detect import (
    ManagerThresholds,
    detect_exposure_misalignment,
    detect_tower_imbalance,
)
from gradtracer.manager.stats import (
    compute_exposure_alignment,
    compute_health_score,
    compute_tracker_health,
    compute_velocity_correlation,
    compute_velocity_loss_correlation,
    recent_velocity,
)
from gradtracer.report.text import ReportText, report_text

__all__ = ["FlowManager", "TrackerLike", "ValidationSeries"]


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
class ValidationSeries:
    """A validation metric reported by the training loop (:meth:`FlowManager.record_validation`).

    Attributes:
        name: the metric's name (e.g. ``"valid_loss"``, ``"ndcg@10"``).
        higher_is_better: True for quality metrics (NDCG, accuracy), False for losses.
        steps: manager step of each value (non-decreasing).
        values: the metric values (NaN/inf kept as reported).
    """

    name: str
    higher_is_better: bool
    steps: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    @property
    def best_index(self) -> int | None:
        """Index of the best finite value (the first one among ties); None if there is none."""
        best: int | None = None
        for i, v in enumerate(self.values):
            if not math.isfinite(v):
                continue
            if best is None or (v > self.values[best] if self.higher_is_better
                                else v < self.values[best]):  # fmt: skip
                best = i
        return best

    @property
    def best_step(self) -> int | None:
        """Step of the best finite value (None if there is none)."""
        i = self.best_index
        return None if i is None else self.steps[i]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (non-finite values as None)."""
        i = self.best_index
        return {
            "higher_is_better": self.higher_is_better,
            "steps": list(self.steps),
            "values": [v if math.isfinite(v) else None for v in self.values],
            "best_step": None if i is None else self.steps[i],
            "best_value": None if i is None else self.values[i],
        }


class FlowManager:
    """Steps several trackers together and reports on them as one model.

    Args:
        name: subject of the manager's report.
        thresholds: :class:`ManagerThresholds` of the cross-tracker findings.

    Example (the published notebook)::

        manager = FlowManager()
        manager.add_tracker("item", EmbeddingTracker(model.item_emb, name="item_emb"))
        ...  # loss.backward(); manager.step(); optimizer.step()
        print(manager.report())
    """

    def __init__(
        self, name: str = "flow_manager", *, thresholds: ManagerThresholds | None = None
    ) -> None:
        self.name = name
        self.thresholds = thresholds or ManagerThresholds()
        self._trackers: dict[str, TrackerLike] = {}
        self._step = 0
        self._validation: dict[str, ValidationSeries] = {}

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
    def n_steps(self) -> int:
        """Number of :meth:`step` calls so far (``summary()["step"]``)."""
        return self._step

    @property
    def global_step(self) -> int:
        """Deprecated alias of :attr:`n_steps`."""
        warnings.warn(
            "FlowManager.global_step is deprecated; use n_steps (or summary()['step'])",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._step

    # -- training loop ---------------------------------------------------------------
    def step(self, loss: Any = None) -> None:
        """Step every tracker (pass the same ``loss``: float, 0-d tensor or None)."""
        self._step += 1
        for tracker in self._trackers.values():
            tracker.step(loss)

    def record_validation(
        self,
        value: float,
        *,
        name: str = "valid_loss",
        higher_is_better: bool = False,
        step: int | None = None,
    ) -> None:
        """Record one value of a validation metric measured by the training loop.

        The series goes into the report (``stats["validation"][name]``) and into the
        run-level diagnosis, which reads it for overfitting (the validation metric getting
        worse for a sustained stretch while the training loss keeps falling).

        Args:
            value: the metric value (a real number; NaN/inf are kept and reported as None).
            name: the metric's name (default ``"valid_loss"``); one series per name.
            higher_is_better: True for quality metrics such as NDCG or accuracy, False
                (default) for losses. Must stay the same for a name.
            step: the manager step the value belongs to (default: :attr:`n_steps`, the
                number of :meth:`step` calls so far). Steps of one name must not decrease.

        Raises:
            TypeError: ``value`` is not a real number, ``name`` not a str, ``step`` not an
                int or ``higher_is_better`` not a bool.
            ValueError: empty ``name``, negative or decreasing ``step``, or a
                ``higher_is_better`` that differs from the one recorded for ``name``.
        """
        real = isinstance(value, numbers.Real) or getattr(value, "ndim", None) == 0
        if isinstance(value, bool) or not real:  # 0-d tensors and NumPy scalars pass
            raise TypeError(
                f"record_validation: value must be a real number, got "
                f"{type(value).__name__} {value!r}"
            )
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"record_validation: value must be a real number, got {value!r}"
            ) from None
        if not isinstance(name, str):
            raise TypeError(f"record_validation: name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("record_validation: name must be a non-empty string")
        if not isinstance(higher_is_better, bool):
            raise TypeError(
                f"record_validation: higher_is_better must be a bool, got "
                f"{type(higher_is_better).__name__}"
            )
        if step is None:
            step = self._step
        elif isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"record_validation: step must be an int, got {type(step).__name__}")
        step = int(step)
        if step < 0:
            raise ValueError(f"record_validation: step must be >= 0, got {step}")
        old = self._validation.get(name)
        if old is None:
            old = ValidationSeries(name, higher_is_better)
        elif old.higher_is_better != higher_is_better:
            raise ValueError(
                f"record_validation: {name!r} was recorded with higher_is_better="
                f"{old.higher_is_better}, got {higher_is_better}"
            )
        if old.steps and step < old.steps[-1]:
            raise ValueError(
                f"record_validation: step {step} of {name!r} is before its last recorded "
                f"step {old.steps[-1]}"
            )
        self._validation[name] = replace(
            old, steps=(*old.steps, step), values=(*old.values, float(value))
        )

    @property
    def validation(self) -> Mapping[str, ValidationSeries]:
        """Read-only view: metric name -> :class:`ValidationSeries`, in recording order."""
        return MappingProxyType(self._validation)

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

        # run-level causes read across all trackers (gradtracer.diagnosis); the diagnosis
        # sees the trackers' findings and the cross-tracker ones gathered so far
        causes, diagnosis = _run_level_diagnosis(
            self, [*(f for c in children for f in c.all_findings()), *findings]
        )
        findings.extend(causes)

        loss_corr = {
            k: compute_velocity_loss_correlation(histories[k], min_points=th.min_points)[0]
            for k in keys
        }
        tracker_health = {
            k: compute_tracker_health(c.stats, c.findings) for k, c in zip(keys, children)
        }
        # two health numbers with different meanings, named apart: ``run_health`` is the
        # diagnosis's (gradtracer.diagnosis.health: the share of its attainable quality the
        # run is on its way to keep); ``tracker_health_score`` is the mean of the trackers'
        # own health scores minus the cost of the report's findings, also kept under its
        # first name ``health_score`` (the agent schema and the exporters read it)
        aggregate = compute_health_score(list(tracker_health.values()), findings)
        stats: dict[str, Any] = {
            "n_trackers": len(keys),
            "step": self._step,
            "health_score": aggregate,
            "tracker_health_score": aggregate,
            "tracker_health": tracker_health,
            "run_health": diagnosis.health,
            "run_health_components": diagnosis.health_components.to_dict(),
            "recent_velocity": velocities,
            "velocity_loss_correlation": loss_corr,
            "pairs": pairs,
        }
        if self._validation:
            stats["validation"] = {k: v.to_dict() for k, v in self._validation.items()}
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
        """Return the tracker-aggregate health in [0, 100]: the mean of the trackers' own
        health scores minus 10 per WARNING and 20 per CRITICAL cross-tracker finding (None
        without trackers). The run-level health of the diagnosis is :meth:`run_health`."""
        return self.to_report().stats["health_score"]

    def run_health(self) -> float | None:
        """Return the run-level health in [0, 100] of :func:`gradtracer.diagnosis.diagnose`
        (how much of its attainable quality the run is on its way to keep; its factors are
        ``to_report().stats["run_health_components"]``); None without trackers."""
        if not self._trackers:
            return None
        return self.to_report().stats.get("run_health")

    def report(self) -> ReportText:
        """Return the readable report (the manager's findings, then each tracker's); it
        does not print: a notebook cell shows it, ``print_report(manager)`` prints it."""
        return report_text(self)

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Draw the tower figure (``<name>_towers``) and one figure per embedding or flow
        tracker into ``out_dir`` as PNG and SVG; returns the paths. See
        :mod:`gradtracer.report.figures`."""
        from gradtracer.report.figures import plot_report

        return plot_report(self.to_report(), out_dir)

    def __repr__(self) -> str:
        return (
            f"FlowManager(name={self.name!r}, trackers={list(self._trackers)}, step={self._step})"
        )


def _run_level_diagnosis(
    manager: FlowManager, tracker_findings: Sequence[Finding]
) -> tuple[list[Finding], Any]:
    """(the run-level cause findings, ranked; the whole diagnosis) for ``manager``
    (:func:`gradtracer.diagnosis.run_level_diagnosis`)."""
    from gradtracer.diagnosis import rank_findings, run_level_diagnosis

    diagnosis = run_level_diagnosis(manager, tracker_findings)
    return rank_findings(list(diagnosis.run_findings)), diagnosis
