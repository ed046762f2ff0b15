"""Run-level cause detectors: pure functions of :class:`~gradtracer.diagnosis.signals.RunSignals`.

Each detector looks for the mechanism of one kind of training fault and returns findings
built from the catalog (:func:`gradtracer.report.catalog.make_finding`), each with a
machine-readable :class:`~gradtracer.findings.Remedy`. Every number a verdict depends on
is a field of :class:`~gradtracer.diagnosis.thresholds.DiagnosisThresholds`. Modules:
``tables`` (embedding-table faults), ``training`` (whole-run faults), ``layers``
(dense-layer faults).
"""

from __future__ import annotations

from collections.abc import Callable

from gradtracer.diagnosis.detectors.layers import (
    detect_dense_initialization,
    detect_dense_overshoot,
    detect_layer_gradients,
    detect_modules_not_updated,
    detect_tower_skew,
    movement_share,
)
from gradtracer.diagnosis.detectors.tables import (
    detect_bad_initialization,
    detect_negative_sampling,
    detect_parameters_not_updated,
    detect_unreachable_rows,
    detect_weight_decay_collapse,
)
from gradtracer.diagnosis.detectors.training import (
    detect_gradient_accumulation,
    detect_learning_rate,
    detect_no_learning_signal,
    detect_non_finite_loss,
    detect_overfitting,
)
from gradtracer.diagnosis.signals import RunSignals
from gradtracer.diagnosis.thresholds import DiagnosisThresholds
from gradtracer.findings import Finding

__all__ = [
    "DETECTORS",
    "DiagnosisThresholds",
    "detect_bad_initialization",
    "detect_dense_initialization",
    "detect_dense_overshoot",
    "detect_gradient_accumulation",
    "detect_layer_gradients",
    "detect_learning_rate",
    "detect_modules_not_updated",
    "detect_negative_sampling",
    "detect_no_learning_signal",
    "detect_non_finite_loss",
    "detect_overfitting",
    "detect_parameters_not_updated",
    "detect_tower_skew",
    "detect_unreachable_rows",
    "detect_weight_decay_collapse",
    "movement_share",
    "run_detectors",
]

Detector = Callable[[RunSignals, DiagnosisThresholds], list[Finding]]

#: the run-level detectors, in the order they run
DETECTORS: tuple[Detector, ...] = (
    detect_non_finite_loss,
    detect_parameters_not_updated,
    detect_modules_not_updated,
    detect_bad_initialization,
    detect_dense_initialization,
    detect_dense_overshoot,
    detect_gradient_accumulation,
    detect_negative_sampling,
    detect_unreachable_rows,
    detect_weight_decay_collapse,
    detect_learning_rate,
    detect_tower_skew,
    detect_no_learning_signal,
    detect_layer_gradients,
    detect_overfitting,
)


def run_detectors(
    signals: RunSignals, thresholds: DiagnosisThresholds | None = None
) -> list[Finding]:
    """Every run-level finding for ``signals`` (unranked)."""
    th = thresholds or DiagnosisThresholds()
    out: list[Finding] = []
    for detector in DETECTORS:
        out.extend(detector(signals, th))
    return out
