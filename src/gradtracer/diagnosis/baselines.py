"""Same-suite baselines: a trivial monitor and AUTOTRAINER-style rules.

Both read only what the suite records for every run (the loss per step and per-layer
gradient statistics), and name the finding type that corresponds to the problem they
report, so that they are scored exactly like GradTracer's diagnosis.

* :func:`trivial_monitor` -- a non-finite check plus an early-stopping rule: the loss
  has not improved on its best by ``min_delta`` (relative) for ``patience`` (a share of
  the run). Its names: ``NON_FINITE_LOSS`` and ``LOSS_PLATEAU``.
* :func:`autotrainer_rules` -- the five problems of AUTOTRAINER (Zhang et al., ICSE 2021):
  vanishing gradient, exploding gradient, dying ReLU, oscillating loss, slow convergence,
  with the paper's defaults as recalled here (not from its code): dying ReLU when at least
  ``gamma = 0.7`` of a ReLU layer's units are dead; vanishing gradient when the first
  layer's gradient norm is below ``beta_1 = 1e-3`` times the last layer's, or its
  gradient norm per element is under ``beta_2 = 1e-4``; exploding when the loss or a gradient is not
  finite or a gradient norm exceeds ``beta_3 = 70`` times its median; oscillating loss
  when the loss's relative fluctuation around its trend over the last window exceeds
  ``zeta = 0.03`` while it does not decrease; slow convergence when the relative
  improvement over the window stays under ``delta = 0.01``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["autotrainer_rules", "trivial_monitor"]


def _finite(losses: Sequence[float]) -> np.ndarray:
    return np.asarray([x for x in losses if math.isfinite(x)], dtype=np.float64)


def trivial_monitor(
    losses: Sequence[float], *, patience: float = 0.2, min_delta: float = 0.01
) -> list[tuple[str, str]]:
    """``[(finding type, severity)]`` of the trivial monitor for one run's losses."""
    out: list[tuple[str, str]] = []
    if any(not math.isfinite(x) for x in losses):
        out.append(("NON_FINITE_LOSS", "critical"))
        return out
    vals = np.asarray(losses, dtype=np.float64)
    if vals.size < 10:
        return out
    w = max(2, vals.size // 20)
    smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
    best_at = int(np.argmin(smooth))
    wait = max(1, int(patience * smooth.size))
    stale = smooth.size - 1 - best_at
    if stale >= wait:
        out.append(("LOSS_PLATEAU", "warning"))
    return out


def autotrainer_rules(
    losses: Sequence[float],
    layers: Mapping[str, Mapping[str, Any]],
    *,
    gamma: float = 0.7,
    beta_1: float = 1e-3,
    beta_2: float = 1e-4,
    beta_3: float = 70.0,
    zeta: float = 0.03,
    delta: float = 0.01,
    window: float = 0.2,
) -> list[tuple[str, str]]:
    """``[(finding type, severity)]`` of the AUTOTRAINER-style rules for one run.

    Args:
        losses: loss per step.
        layers: per tensor ``grad_norm_median``, ``grad_norm_max``, ``numel`` and, for
            activation modules, ``dead_fraction`` (what the suite records per run).
    """
    out: list[tuple[str, str]] = []
    if any(not math.isfinite(x) for x in losses):
        return [("NON_FINITE_LOSS", "critical")]
    weights = [(n, s) for n, s in layers.items() if s.get("numel") and n.endswith("weight")]
    for s in layers.values():
        dead = s.get("dead_fraction")
        if dead is not None and not s.get("numel") and dead >= gamma:
            out.append(("DEAD_ACTIVATIONS", "warning"))
            break
    if len(weights) >= 2:
        first = float(weights[0][1].get("grad_norm_median") or 0.0)
        last = float(weights[-1][1].get("grad_norm_median") or 0.0)
        numel = max(float(weights[0][1].get("numel") or 1.0), 1.0)
        if (last > 0 and first < beta_1 * last) or (0 < first / math.sqrt(numel) < beta_2):
            out.append(("VANISHING_GRADIENT", "warning"))
    for _, s in weights:
        med, top = float(s.get("grad_norm_median") or 0.0), float(s.get("grad_norm_max") or 0.0)
        if med > 0 and (not math.isfinite(top) or top > beta_3 * med):
            out.append(("EXPLODING_GRADIENT", "warning"))
            break
    vals = _finite(losses)
    if vals.size >= 10:
        w = max(3, int(window * vals.size))
        tail = vals[-w:]
        x = np.arange(tail.size, dtype=np.float64)
        slope, icpt = np.polyfit(x, tail, 1)
        resid = tail - (slope * x + icpt)
        scale = max(abs(float(tail.mean())), 1e-12)
        improvement = (float(vals[:w].mean()) - float(tail.mean())) / max(abs(float(vals[:w].mean())),
                                                                          1e-12)  # fmt: skip
        if float(resid.std()) / scale > zeta and slope >= 0:
            out.append(("LEARNING_RATE_TOO_HIGH", "warning"))  # oscillating loss
        elif improvement < delta:
            out.append(("LEARNING_RATE_TOO_LOW", "warning"))  # slow convergence
    return out
