"""The Auto-Fix policy: pure functions from posterior inputs to per-row damping factors.

Nothing here touches hooks, files or global state; the controller
(:mod:`gradtracer.embedding.autofix`) and ``gradtracer audit replay`` call the same
functions, so a logged intervention can be re-derived exactly.

Per row, the disagreement rate ``r`` (probability that two consecutive updates of the row
point in opposite directions, cosine < 0) gets a Beta posterior
``Beta(prior_alpha + n_disagree, prior_beta + n_agree)``; the row's oscillation
confidence is ``q = P(r > 1/2 | data)``. Globally, the training loss over the last
``loss_window`` steps is regressed on the step (Bayesian linear trend, reference prior),
giving ``g = P(slope < 0 | losses)``, the probability that the loss is still improving.
The factor applied to a row's update is::

    c = clip((q - min_confidence) / (1 - min_confidence), 0, 1)
    f = 1 - (1 - floor) * c * (1 - loss_relief * g)

and ``f = 1`` (row left alone) during the warm-up (``step < warmup_steps``), for rows
with fewer than ``min_pairs`` observed update pairs, and for dead rows (gradient norm
EMA ``<= dead_grad_norm``), which are reported instead of scaled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "AutoFixPolicy",
    "LossTrend",
    "NEUTRAL_LOSS_TREND",
    "damping_factors",
    "dead_rows",
    "loss_trend_posterior",
    "oscillation_confidence",
]


@dataclass(frozen=True)
class AutoFixPolicy:
    """Parameters of the damping rule (all defaults documented in ``docs/autofix.md``).

    Attributes:
        prior_alpha: Beta prior pseudo-count of disagreeing update pairs (default 2).
        prior_beta: Beta prior pseudo-count of agreeing update pairs (default 2);
            ``Beta(2, 2)`` is centred on 1/2 and needs a few pairs before it is confident.
        min_confidence: ``q`` at which damping starts; below it a row is left alone (0.9).
        min_pairs: observed update pairs a row needs before it can be damped (8).
        warmup_steps: optimizer steps before any damping (100).
        floor: smallest factor ever applied, in (0, 1] (0.3).
        loss_relief: share of the damping removed when the loss is surely improving,
            in [0, 1] (0.5). With ``g = 1`` the strength is halved, with ``g = 0`` it is full.
        loss_window: number of most recent losses the trend is fitted on (50).
        min_loss_points: fewer losses than this give the neutral trend ``g = 1/2`` (10).
        dead_grad_norm: gradient-norm EMA at or below which a row counts as dead (1e-12).
        update_every: the controller re-decides scales every this many steps (20); between
            decisions the current per-row scales apply to every update of the row.
    """

    prior_alpha: float = 2.0
    prior_beta: float = 2.0
    min_confidence: float = 0.9
    min_pairs: int = 8
    warmup_steps: int = 100
    floor: float = 0.3
    loss_relief: float = 0.5
    loss_window: int = 50
    min_loss_points: int = 10
    dead_grad_norm: float = 1e-12
    update_every: int = 20

    def __post_init__(self) -> None:
        _check(
            self.prior_alpha > 0 and self.prior_beta > 0,
            "prior_alpha/prior_beta must be > 0",
            (self.prior_alpha, self.prior_beta),
        )
        _check(
            0.0 <= self.min_confidence < 1.0,
            "min_confidence must be in [0, 1)",
            self.min_confidence,
        )
        _check(0.0 < self.floor <= 1.0, "floor must be in (0, 1]", self.floor)
        _check(0.0 <= self.loss_relief <= 1.0, "loss_relief must be in [0, 1]", self.loss_relief)
        _check(self.min_pairs >= 0, "min_pairs must be >= 0", self.min_pairs)
        _check(self.warmup_steps >= 0, "warmup_steps must be >= 0", self.warmup_steps)
        _check(self.loss_window >= 3, "loss_window must be >= 3", self.loss_window)
        _check(self.min_loss_points >= 3, "min_loss_points must be >= 3", self.min_loss_points)
        _check(self.update_every >= 1, "update_every must be >= 1", self.update_every)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (written into the audit log's ``run_start`` event)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoFixPolicy:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AutoFixPolicy field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _check(ok: bool, message: str, value: object) -> None:
    if not ok:
        raise ValueError(f"AutoFixPolicy: {message}, got {value!r}")


@dataclass(frozen=True)
class LossTrend:
    """Posterior summary of the loss slope over the window (units: loss per step).

    Attributes:
        p_improving: ``P(slope < 0 | losses)``; 0.5 when nothing is known.
        slope_mean: posterior location of the slope (OLS estimate), ``nan`` if unknown.
        slope_sd: posterior scale (standard error of the slope), ``nan`` if unknown.
        dof: Student-t degrees of freedom (``n - 2``), 0 if unknown.
        n: number of losses used.
    """

    p_improving: float
    slope_mean: float
    slope_sd: float
    dof: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite numbers become ``None``)."""
        return {
            k: (v if not (isinstance(v, float) and not math.isfinite(v)) else None)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossTrend:
        """Inverse of :meth:`to_dict` (``None`` reads back as ``nan``)."""

        def num(key: str) -> float:
            return math.nan if data[key] is None else float(data[key])

        return cls(
            p_improving=num("p_improving"),
            slope_mean=num("slope_mean"),
            slope_sd=num("slope_sd"),
            dof=int(data["dof"]),
            n=int(data["n"]),
        )


#: The documented neutral trend used when the loss is unknown or too short: ``g = 1/2``.
NEUTRAL_LOSS_TREND = LossTrend(p_improving=0.5, slope_mean=math.nan, slope_sd=math.nan, dof=0, n=0)


def loss_trend_posterior(
    steps: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    min_points: int = 10,
) -> LossTrend:
    """Return the posterior of the slope of ``loss ~ a + b * step`` (units: loss per step).

    Bayesian linear regression with the reference prior ``p(a, b, sigma^2) ∝ 1/sigma^2``:
    the slope's marginal posterior is Student-t with ``n - 2`` degrees of freedom, located
    at the least-squares slope with scale its standard error. Non-finite losses are dropped;
    with fewer than ``min_points`` finite losses the neutral trend (``g = 1/2``) is returned.
    """
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(
            f"steps and losses must be 1-D of equal length, got {t.shape} and {y.shape}"
        )
    keep = np.isfinite(y) & np.isfinite(t)
    t, y = t[keep], y[keep]
    n = int(t.size)
    if n < max(3, min_points):
        return LossTrend(0.5, math.nan, math.nan, 0, n)
    tc = t - t.mean()
    sxx = float(tc @ tc)
    if sxx <= 0.0:
        return LossTrend(0.5, math.nan, math.nan, 0, n)
    slope = float(tc @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * tc
    dof = n - 2
    s2 = float(resid @ resid) / dof
    sd = math.sqrt(s2 / sxx)
    if sd == 0.0:
        p = 1.0 if slope < 0 else (0.0 if slope > 0 else 0.5)
    else:
        from scipy.special import stdtr

        p = float(stdtr(dof, -slope / sd))
    return LossTrend(p, slope, sd, dof, n)


def oscillation_confidence(
    n_agree: np.ndarray, n_disagree: np.ndarray, policy: AutoFixPolicy
) -> np.ndarray:
    """Return ``q = P(r > 1/2)`` per row under ``Beta(alpha + n_disagree, beta + n_agree)``.

    Args:
        n_agree, n_disagree: cumulative counts of consecutive update pairs with positive /
            negative cosine, shape ``(R,)``.
    """
    from scipy.special import betainc

    a = policy.prior_alpha + np.asarray(n_disagree, dtype=np.float64)
    b = policy.prior_beta + np.asarray(n_agree, dtype=np.float64)
    # P(r > 1/2) = 1 - I_{1/2}(a, b) = I_{1/2}(b, a)
    return np.asarray(betainc(b, a, 0.5), dtype=np.float64)


def dead_rows(grad_norm_ema: np.ndarray, policy: AutoFixPolicy) -> np.ndarray:
    """Return a bool mask, shape ``(R,)``: rows whose gradient-norm EMA is at most the dead level."""
    g = np.asarray(grad_norm_ema, dtype=np.float64)
    return ~(g > policy.dead_grad_norm)  # NaN counts as dead: nothing to scale


def damping_factors(
    n_agree: np.ndarray,
    n_disagree: np.ndarray,
    *,
    p_improving: float,
    step: int,
    policy: AutoFixPolicy,
    dead: np.ndarray | None = None,
) -> np.ndarray:
    """Return per-row factors in ``[floor, 1]`` (float32, shape ``(R,)``) from the posteriors.

    Args:
        n_agree, n_disagree: per-row update-pair counts (the Beta posterior's data).
        p_improving: ``P(loss slope < 0)`` from :func:`loss_trend_posterior` (0.5 if unknown).
        step: the optimizer step the decision is taken at (warm-up applies below
            ``policy.warmup_steps``).
        dead: optional bool mask of dead rows; they always get 1.
    """
    agree = np.asarray(n_agree, dtype=np.float64)
    disagree = np.asarray(n_disagree, dtype=np.float64)
    if agree.shape != disagree.shape:
        raise ValueError(f"n_agree and n_disagree shapes differ: {agree.shape} vs {disagree.shape}")
    g = float(p_improving)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"p_improving must be in [0, 1], got {p_improving!r}")
    out = np.ones(agree.shape, dtype=np.float32)
    if step < policy.warmup_steps or agree.size == 0:
        return out
    eligible = (agree + disagree) >= policy.min_pairs
    if dead is not None:
        eligible &= ~np.asarray(dead, dtype=bool)
    if policy.min_confidence >= 0.5:
        # q <= 1/2 exactly when the posterior's first parameter is the smaller one (its
        # median is then <= 1/2), so c = 0 there: skip the incomplete beta for those rows
        eligible &= (policy.prior_alpha + disagree) >= (policy.prior_beta + agree)
    at = np.flatnonzero(eligible)
    q = oscillation_confidence(agree[at], disagree[at], policy)
    c = np.clip((q - policy.min_confidence) / (1.0 - policy.min_confidence), 0.0, 1.0)
    strength = c * (1.0 - policy.loss_relief * g)
    out[at] = (1.0 - (1.0 - policy.floor) * strength).astype(np.float32)
    return out
