"""Same-suite baselines: a trivial monitor and the AUTOTRAINER rules.

Both read only what their method sees of a run (the loss per step; for AUTOTRAINER also
the per-step gradients that :class:`AutotrainerProbe` records from the same training
loop), and name the finding type that corresponds to the problem they report, so that
they are scored exactly like GradTracer's diagnosis.

* :func:`trivial_monitor` -- a non-finite check plus an early-stopping rule: the loss
  has not improved on its best by ``min_delta`` (relative) for ``patience`` (a share of
  the run). Its names: ``NON_FINITE_LOSS`` and ``LOSS_PLATEAU``.
* :func:`autotrainer_rules` -- the five problem symptoms of AUTOTRAINER (Zhang, Zhai, Lou,
  Hao, Mei: "AUTOTRAINER: An Automatic DNN Training Problem Detection and Repair System",
  ICSE 2021), written from the paper's Table I and its section V-D defaults, not from its
  code. See ``docs/diagnosis.md`` ("Baselines") for the definitions, the source of every
  number and the readings the paper leaves open.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AUTOTRAINER_NAMES", "AutotrainerProbe", "autotrainer_rules", "trivial_monitor"]

#: AUTOTRAINER problem -> the finding type it is scored as (same meaning)
AUTOTRAINER_NAMES: Mapping[str, str] = {
    "vanishing_gradient": "VANISHING_GRADIENT",
    "exploding_gradient": "EXPLODING_GRADIENT",
    "exploding_gradient_nan": "NON_FINITE_GRADIENT",  # EG through its "G = NaN" clause
    "dying_relu": "DEAD_ACTIVATIONS",
    "oscillating_loss": "LEARNING_RATE_TOO_HIGH",
    "slow_convergence": "LEARNING_RATE_TOO_LOW",
}


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


class AutotrainerProbe:
    """Records, per training step, what AUTOTRAINER's problem recognizer reads.

    Call :meth:`record` once per step after ``loss.backward()`` (before clipping or
    ``optimizer.step()``). Layers are the model's trainable weight tensors (two or more
    dimensions) in definition order; the gradient of "layer 2" in the paper's notation
    (the first layer with weights) is the first of them, "layer n" the last. Neurons are
    the output units of the ``nn.Linear`` layers; a unit's gradient is its weight row
    and bias entry (embedding rows are lookups, not neurons).

    Args:
        model: the trained ``nn.Module``.
        steps_per_epoch: training steps per epoch (the accuracy/loss series is per epoch).
    """

    def __init__(self, model: Any, *, steps_per_epoch: int = 1) -> None:
        from torch import nn

        if int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch!r}")
        self.steps_per_epoch = int(steps_per_epoch)
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._weights = [p for p in self._params if p.dim() >= 2]
        self._linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.first_grad_norm: list[float | None] = []
        self.last_grad_norm: list[float | None] = []
        self.non_finite_grad: list[bool] = []
        self.zero_grad_share: list[float | None] = []

    @staticmethod
    def _values(g: Any) -> Any:
        return g.coalesce().values() if g.is_sparse else g

    def record(self) -> None:
        """Read this step's gradients (norms, non-finite entries, zero-gradient units)."""
        import torch

        with torch.no_grad():
            grads = [self._values(p.grad) for p in self._params if p.grad is not None]
            bad = any(not bool(torch.isfinite(g).all()) for g in grads)
            norms: list[float | None] = []
            for p in (self._weights[:1] + self._weights[-1:]) if self._weights else []:
                norms.append(None if p.grad is None else float(self._values(p.grad).norm()))
            zero = total = 0
            for m in self._linear:
                g = m.weight.grad
                if g is None:
                    continue
                dead = g.abs().sum(dim=1) == 0
                if m.bias is not None and m.bias.grad is not None:
                    dead &= m.bias.grad == 0
                zero += int(dead.sum())
                total += int(dead.numel())
        self.first_grad_norm.append(norms[0] if norms else None)
        self.last_grad_norm.append(norms[-1] if norms else None)
        self.non_finite_grad.append(bad)
        self.zero_grad_share.append(zero / total if total else None)

    def trace(self) -> dict[str, Any]:
        """What :func:`autotrainer_rules` reads (JSON-safe lists, one entry per step)."""
        return {
            "first_grad_norm": list(self.first_grad_norm),
            "last_grad_norm": list(self.last_grad_norm),
            "non_finite_grad": list(self.non_finite_grad),
            "zero_grad_share": list(self.zero_grad_share),
            "steps_per_epoch": self.steps_per_epoch,
        }


def _extrema(series: np.ndarray) -> tuple[list[float], list[float]]:
    """Local maxima and minima of ``series`` in time order (interior points; a plateau
    counts once, at its first point)."""
    peaks: list[float] = []
    troughs: list[float] = []
    for t in range(1, series.size - 1):
        a, b, c = series[t - 1], series[t], series[t + 1]
        if b > a and b >= c:
            peaks.append(float(b))
        elif b < a and b <= c:
            troughs.append(float(b))
    return peaks, troughs


def _epoch_losses(losses: Sequence[float], steps_per_epoch: int) -> np.ndarray:
    """The loss before training (the first step's, computed before any update) followed
    by the mean loss of each epoch; with one step an epoch, the losses themselves."""
    vals = np.asarray(losses, dtype=np.float64)
    if vals.size == 0 or steps_per_epoch == 1:
        return vals
    out = [vals[0]]
    for start in range(0, vals.size, steps_per_epoch):
        chunk = vals[start : start + steps_per_epoch]
        chunk = chunk[np.isfinite(chunk)]
        out.append(float(chunk.mean()) if chunk.size else math.nan)
    return np.asarray(out, dtype=np.float64)


def autotrainer_rules(
    losses: Sequence[float],
    trace: Mapping[str, Any],
    *,
    beta_1: float = 1e-3,
    beta_2: float = 1e-4,
    beta_3: float = 70.0,
    gamma: float = 0.7,
    zeta: float = 0.03,
    eta: float = 0.2,
    delta: float = 0.01,
    check_every: int = 3,
) -> list[tuple[str, str]]:
    """``[(finding type, severity)]`` of the AUTOTRAINER rules over one run.

    Each problem is reported once, in the order the monitor would first expose it (the
    paper repairs problems in that order). The check runs every ``check_every``
    iterations; the time windows alpha_1..alpha_3 are 0 (the paper's setting), so a
    gradient symptom needs to hold at one checked step; the accuracy condition
    ``max(Acc) <= Theta`` is always met (Theta is task-dependent and unset here).

    Args:
        losses: training loss per step.
        trace: :meth:`AutotrainerProbe.trace` of the same run; without gradient entries
            only the loss symptoms are checked, and without ``steps_per_epoch`` every step
            is one iteration of the loss series.
        beta_1: vanishing: ``|G_first| / |G_last| <= beta_1`` (default 1e-3) ...
        beta_2: ... and ``|G_first| <= beta_2`` (default 1e-4, an l2 norm).
        beta_3: exploding: ``|G_first| / |G_last| >= beta_3`` (default 70) or a NaN gradient.
        gamma: dying ReLU: share of neurons with zero gradient ``>= gamma`` (default 0.7).
        zeta: oscillating loss: a local maximum exceeds the next local minimum by
            ``>= zeta`` (default 0.03, in loss units) ...
        eta: ... in ``>= eta`` of the iterations so far (default 0.2).
        delta: slow convergence: every change of the per-epoch loss since the start is
            ``<= delta`` (default 0.01; the paper's series is training accuracy).
        check_every: iterations between two checks (default 3).

    >>> autotrainer_rules([0.69] * 12, {"steps_per_epoch": 3})
    [('LEARNING_RATE_TOO_LOW', 'warning')]
    """
    if int(check_every) < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every!r}")
    every = int(check_every)
    found: dict[str, int] = {}

    def hit(problem: str, step: int) -> None:
        found.setdefault(problem, step)

    first = list(trace.get("first_grad_norm") or ())
    last = list(trace.get("last_grad_norm") or ())
    bad = list(trace.get("non_finite_grad") or ())
    zero = list(trace.get("zero_grad_share") or ())
    n_grad = max(len(first), len(bad), len(zero))
    for k in range(every, n_grad + 1, every):  # iteration k = step index k - 1
        i = k - 1
        f = first[i] if i < len(first) else None
        g = last[i] if i < len(last) else None
        if i < len(bad) and bad[i]:
            hit("exploding_gradient_nan", i)
        elif f is not None and g is not None and g > 0 and math.isfinite(f / g):
            ratio = f / g
            if ratio <= beta_1 and f <= beta_2:
                hit("vanishing_gradient", i)
            if ratio >= beta_3:
                hit("exploding_gradient", i)
        share = zero[i] if i < len(zero) else None
        if share is not None and share >= gamma:
            hit("dying_relu", i)
    per_epoch = int(trace.get("steps_per_epoch") or 1)
    series = _epoch_losses(losses, per_epoch)
    for k in range(every, series.size, every):  # series[0]: iteration 0, before training
        upto = series[: k + 1]
        peaks, troughs = _extrema(upto)
        swings = sum(1 for a, b in zip(peaks, troughs) if a - b >= zeta)
        if swings / k >= eta:
            hit("oscillating_loss", k * per_epoch - 1)
        steps = np.abs(np.diff(upto))
        if steps.size and bool(np.all(steps <= delta)):
            hit("slow_convergence", k * per_epoch - 1)
    order = sorted(found, key=lambda p: (found[p], list(AUTOTRAINER_NAMES).index(p)))
    return [(AUTOTRAINER_NAMES[p], "warning") for p in order]
