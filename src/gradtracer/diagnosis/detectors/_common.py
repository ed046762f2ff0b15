"""Helpers shared by the detector modules: finding construction and loss windows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradtracer.diagnosis.signals import LayerSignals
from gradtracer.findings import Finding, FindingType, Remedy, Severity
from gradtracer.report.catalog import make_finding

T = FindingType


def _upper(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def _make(type: FindingType, subject: str, premise: str, confidence: float,
          evidence: dict | None = None, *, severity: Severity | None = None,
          remedy: Remedy | None = None, sample_ids: Sequence[int | str] = (),
          **fields: Any) -> Finding:  # fmt: skip
    return make_finding(
        type, subject=subject, premise=premise, confidence=min(1.0, max(0.0, confidence)),
        evidence=evidence or {}, severity=severity, remedy=remedy, sample_ids=sample_ids,
        who=subject, who_upper=_upper(subject), **fields,
    )  # fmt: skip


def _windows(losses: Sequence[tuple[int, float]], share: float) -> tuple[float, float, float]:
    """(mean of the first window, mean of the last window, min over window means)."""
    vals = np.asarray([v for _, v in losses if math.isfinite(v)], dtype=np.float64)
    if vals.size < 4:
        return math.nan, math.nan, math.nan
    w = max(2, int(round(share * vals.size)))
    means = np.convolve(vals, np.ones(w) / w, mode="valid")
    return float(means[0]), float(means[-1]), float(means.min())


def _modules(layers: Sequence[LayerSignals]) -> dict[str, list[LayerSignals]]:
    """Tensors grouped by their module (``item_tower.0.weight`` -> ``item_tower.0``)."""
    out: dict[str, list[LayerSignals]] = {}
    for ly in layers:
        out.setdefault(ly.module, []).append(ly)
    return out
