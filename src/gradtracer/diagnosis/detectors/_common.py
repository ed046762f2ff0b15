"""Helpers shared by the detector modules: finding construction, loss windows and a
table's movement per update."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradtracer.diagnosis.signals import LayerSignals, TableSignals
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


def _change_point(lv: np.ndarray, *, rising: bool) -> int:
    """Split index ``i`` (1..n-1) of a two-segment fit of ``lv``: the split with the largest
    size-weighted gap of the segment means, ``lv[i:]`` above ``lv[:i]`` when ``rising``,
    below it otherwise."""
    n = lv.size
    sign = 1.0 if rising else -1.0
    score = [
        sign * math.sqrt(i * (n - i) / n) * (lv[i:].mean() - lv[:i].mean()) for i in range(1, n)
    ]
    return 1 + int(np.argmax(score))


def _series_drop(series: Sequence[tuple[int, float]]) -> tuple[int, float, float] | None:
    """(step, velocity before, late velocity) when a velocity series fell by 10x or more
    from its early level (median of the first 20% of snapshots) to its late level (last
    20%). The step is the snapshot before the change point: the split of the log velocity
    into two segments with the largest size-weighted gap of their means (a cut learning
    rate drops the velocity and keeps it down; early noise does not). ``before`` is the median
    of the 20% of snapshots just before the split. None without such a drop."""
    vals = [(st, v) for st, v in series if math.isfinite(v) and v >= 0]
    if len(vals) < 10:
        return None
    k = max(2, len(vals) // 5)
    v = np.asarray([x for _, x in vals], dtype=np.float64)
    early, late = float(np.median(v[:k])), float(np.median(v[-k:]))
    if early <= 0 or late * 10.0 > early:
        return None
    lv = np.log(np.maximum(v, 1e-30))
    i = _change_point(lv, rising=False)
    before = float(np.median(v[max(0, i - k) : i]))
    return int(vals[i - 1][0]), before, late


def init_displacement(t: TableSignals) -> float:
    """Displacement of the table's rows per update over their mean norm when training
    started (``rel_velocity`` when that is unknown): the larger of the mean velocity EMA of
    the exposed rows and the median one of the most exposed half (whose EMAs reflect the
    recent updates, e.g. after a rate raised mid-run). Movement per update scales with the
    learning rate (Adam's step is about ``lr`` per coordinate), while ``rel_velocity``
    divides by the current norm, which a too high rate blows up as well, so it saturates."""
    init = t.init_mean_row_norm
    if init is None or not math.isfinite(init) or init <= 0:
        return t.rel_velocity
    moved = t.rel_velocity * t.mean_row_norm
    v, e = t.row_velocity, t.exposure
    if v.size and v.size == e.size and (e > 0).any():
        seen = e > 0
        busy = seen & (e >= np.median(e[seen]))
        moved = max(moved, float(np.median(v[busy])))
    return moved / init
