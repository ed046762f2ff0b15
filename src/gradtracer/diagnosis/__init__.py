"""Run-level diagnosis: which fault caused a run to go wrong, and what fixes it.

:func:`diagnose` reads a :class:`~gradtracer.manager.FlowManager`'s trackers (see
:mod:`gradtracer.diagnosis.signals`), runs the cause detectors
(:mod:`gradtracer.diagnosis.detectors`), merges their findings with the trackers' own and
ranks them cause first (:mod:`gradtracer.diagnosis.ranking`) and scores the run's health
(:mod:`gradtracer.diagnosis.health`; its factors are in :attr:`Diagnosis.health_components`).

>>> from gradtracer.diagnosis import DiagnosisThresholds
>>> DiagnosisThresholds().huge_coord_rms
3.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gradtracer.diagnosis.detectors import DETECTORS, DiagnosisThresholds, run_detectors
from gradtracer.diagnosis.health import (
    HealthBreakdown,
    health_breakdown,
    health_score,
    loss_progress,
)
from gradtracer.diagnosis.ranking import (
    CAUSE_ORDER,
    CONSEQUENCES,
    rank_findings,
    regrade_tracker_findings,
)
from gradtracer.diagnosis.signals import RunSignals, collect_signals
from gradtracer.findings import Finding, Severity

__all__ = [
    "CAUSE_ORDER",
    "CONSEQUENCES",
    "DETECTORS",
    "Diagnosis",
    "DiagnosisThresholds",
    "HealthBreakdown",
    "RunSignals",
    "collect_signals",
    "diagnose",
    "diagnose_signals",
    "health_breakdown",
    "health_score",
    "loss_progress",
    "rank_findings",
    "run_detectors",
    "run_level_diagnosis",
    "run_level_findings",
]


@dataclass(frozen=True)
class Diagnosis:
    """Ranked findings (causes first) and the run's health score (0-100).

    Attributes:
        findings: every finding, causes first.
        health: the health score, ``health_components.score``.
        run_findings: the run-level detectors' own findings.
        health_components: the factors of the health score
            (:class:`~gradtracer.diagnosis.health.HealthBreakdown`).
    """

    findings: tuple[Finding, ...] = ()
    health: float = 100.0
    run_findings: tuple[Finding, ...] = field(default=(), repr=False)
    health_components: HealthBreakdown = field(default_factory=HealthBreakdown, repr=False)

    @property
    def top(self) -> Finding | None:
        """The first WARNING or CRITICAL finding (the named cause), or None."""
        return next((f for f in self.findings if f.severity != Severity.INFO), None)


def _loss_progress(signals: RunSignals) -> float | None:
    """Relative loss decrease of the run so far (see :func:`loss_progress`)."""
    return loss_progress(signals.losses)


def _diagnosis(ranked: Sequence[Finding], own: Sequence[Finding], signals: RunSignals) -> Diagnosis:
    warn = [f for f in ranked if f.severity != Severity.INFO]
    parts = health_breakdown(warn, signals)
    return Diagnosis(tuple(ranked), parts.score, tuple(own), parts)


def diagnose_signals(
    signals: RunSignals,
    tracker_findings: Sequence[Finding] = (),
    thresholds: DiagnosisThresholds | None = None,
) -> Diagnosis:
    """Pure form of :func:`diagnose`: detectors on ``signals`` plus ``tracker_findings``."""
    own = run_detectors(signals, thresholds)
    ranked = rank_findings([*own, *regrade_tracker_findings(tracker_findings, own)])
    return _diagnosis(ranked, own, signals)


def run_level_findings(
    manager: Any,
    tracker_findings: Sequence[Finding] = (),
    thresholds: DiagnosisThresholds | None = None,
) -> list[Finding]:
    """The run-level cause findings for ``manager``'s trackers, ranked cause first.

    These are what :meth:`FlowManager.to_report <gradtracer.manager.FlowManager.to_report>`
    adds to the manager's own findings. ``tracker_findings`` does not change them (it is
    kept for callers of the earlier signature; :func:`run_level_diagnosis` regrades the
    trackers' findings). It does not call ``manager.to_report()``.
    """
    return rank_findings(run_detectors(collect_signals(manager), thresholds))


def run_level_diagnosis(
    manager: Any,
    tracker_findings: Sequence[Finding] = (),
    thresholds: DiagnosisThresholds | None = None,
) -> Diagnosis:
    """:func:`diagnose` from the trackers' findings the caller already has.

    ``tracker_findings`` are the trackers' and the cross-tracker findings (what
    :func:`diagnose` reads from ``manager.to_report()``); given the same ones, the result
    equals ``diagnose(manager)``. It does not call ``manager.to_report()``, so the manager
    uses it while building its report.
    """
    return diagnose_signals(collect_signals(manager), tracker_findings, thresholds)


def diagnose(manager: Any, *, thresholds: DiagnosisThresholds | None = None) -> Diagnosis:
    """Diagnose the run a manager tracks: cause detectors + the trackers' findings, ranked.

    Args:
        manager: a :class:`~gradtracer.manager.FlowManager` (any object with ``trackers``,
            ``n_steps`` and ``to_report()``).
        thresholds: :class:`DiagnosisThresholds` (default values when None).
    """
    from gradtracer.findings import FindingType as T

    report = manager.to_report()
    # the manager-level list holds the cross-tracker findings and the run-level ones; the
    # run-level ones are recomputed here (with ``thresholds``)
    cross = {T.TOWER_IMBALANCE, T.EXPOSURE_MISALIGNMENT}
    tracker_level = [f for c in report.children for f in c.all_findings()]
    tracker_level += [f for f in report.findings if f.type in cross]
    return diagnose_signals(collect_signals(manager), tracker_level, thresholds)
