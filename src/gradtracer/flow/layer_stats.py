"""Pure statistics and verdicts for per-layer training dynamics (no hooks, no I/O).

Everything here takes plain numbers or numpy arrays and is deterministic, so the
:class:`~gradtracer.flow.tracker.FlowTracker` only gathers numbers and these functions
decide. Thresholds live in :class:`FlowThresholds` with their rationale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradtracer.findings import Finding, FindingType
from gradtracer.report.catalog import make_finding

__all__ = [
    "LAYER_DETECTORS",
    "FlowThresholds",
    "LayerSnapshot",
    "detect_dead_activations",
    "detect_exploding_gradient",
    "detect_high_update_ratio",
    "detect_layer_findings",
    "detect_loss_divergence",
    "detect_loss_findings",
    "detect_loss_plateau",
    "detect_low_gradient_snr",
    "detect_stagnating_layer",
    "detect_vanishing_gradient",
    "layer_health",
    "linear_trend",
]


@dataclass(frozen=True)
class FlowThresholds:
    """Named thresholds of the layer diagnoses (override any of them per tracker).

    Attributes:
        stagnation_ratio: update-to-weight ratio below which a layer counts as not
            learning. 1e-5 is two orders below the ~1e-3 rule of thumb for healthy
            training (Karpathy, "A Recipe for Training Neural Networks").
        high_update_ratio: update-to-weight ratio above which updates are too large
            for the weights (same rule of thumb, one order above).
        vanishing_grad_norm: gradient L2 norm under which the gradient has vanished.
        exploding_factor: a gradient norm this many times the median of the layer's
            earlier norms (recent window) is a spike, i.e. an explosion; also flagged when
            the norm is not finite.
        exploding_abs: gradient norm above which a layer explodes regardless of history.
        low_snr: temporal gradient signal-to-noise ratio (||E g||^2 / sum Var g) under
            which the gradient is mostly noise (batch too small or lr too high).
        dead_fraction: share of units that output zero for a whole batch, above which
            a layer has dead activations.
        min_observations: steps of evidence a verdict needs.
        plateau_rel_slope: |loss slope| per step relative to the mean loss under which
            the loss has plateaued.
    """

    stagnation_ratio: float = 1e-5
    high_update_ratio: float = 1e-2
    vanishing_grad_norm: float = 1e-7
    exploding_factor: float = 10.0
    exploding_abs: float = 1e4
    low_snr: float = 0.01
    dead_fraction: float = 0.5
    min_observations: int = 5
    plateau_rel_slope: float = 1e-4


@dataclass(frozen=True)
class LayerSnapshot:
    """Aggregated statistics of one layer over the tracked steps.

    Attributes:
        name: parameter (layer) name as in ``model.named_parameters()``.
        numel: number of elements.
        n_obs: number of steps observed.
        grad_norm: latest gradient L2 norm.
        grad_norm_median: median gradient norm over the recent window.
        grad_norm_max: maximum finite gradient norm seen.
        weight_norm: latest weight L2 norm.
        velocity: mean per-step displacement L2 norm over the recent window.
        update_ratio: mean of ||dW|| / ||W|| over the recent window.
        snr: temporal gradient signal-to-noise ratio (NaN until enough steps).
        non_finite_steps: steps whose gradient had NaN/Inf.
        spikes: steps whose gradient norm exceeded ``exploding_factor`` times the median
            of the steps before it (early large gradients that then shrink never count).
        dead_fraction: share of dead units (NaN when activations are not tracked).
    """

    name: str
    numel: int
    n_obs: int
    grad_norm: float
    grad_norm_median: float
    grad_norm_max: float
    weight_norm: float
    velocity: float
    update_ratio: float
    snr: float
    non_finite_steps: int
    spikes: int = 0
    dead_fraction: float = math.nan

    def to_dict(self) -> dict[str, float | int | str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def linear_trend(values: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope per step of ``values`` and its two-sided p-value (slope == 0 null).

    Returns ``(nan, nan)`` for fewer than 3 finite points.
    """
    y = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = y.size
    if n < 3:
        return math.nan, math.nan
    x = np.arange(n, dtype=np.float64)
    x -= x.mean()
    sxx = float((x * x).sum())
    slope = float((x * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - slope * x
    dof = n - 2
    s2 = float((resid * resid).sum()) / dof
    if s2 <= 0.0:
        return slope, 0.0 if slope != 0.0 else 1.0
    t = slope / math.sqrt(s2 / sxx)
    from scipy.stats import t as student_t

    return slope, float(2.0 * student_t.sf(abs(t), dof))


def layer_health(snap: LayerSnapshot, th: FlowThresholds = FlowThresholds()) -> float:
    """Health score of a layer in [0, 100]; 100 means no symptom was seen.

    Penalties (subtracted, floor 0): non-finite gradients 60, explosion 40, vanished
    gradient 40, stagnation 30, too-large updates 20, dead activations up to 30
    (proportional to the dead share), gradient mostly noise 10.
    """
    score = 100.0
    if snap.non_finite_steps > 0:
        score -= 60
    if _exploding(snap, th):
        score -= 40
    if snap.n_obs >= th.min_observations:
        if snap.grad_norm_median < th.vanishing_grad_norm:
            score -= 40
        elif snap.update_ratio < th.stagnation_ratio:
            score -= 30
        if snap.update_ratio > th.high_update_ratio:
            score -= 20
        if math.isfinite(snap.snr) and snap.snr < th.low_snr:
            score -= 10
    if math.isfinite(snap.dead_fraction) and snap.dead_fraction > 0:
        score -= 30 * min(1.0, snap.dead_fraction / max(th.dead_fraction, 1e-12))
    return max(0.0, score)


def _exploding(snap: LayerSnapshot, th: FlowThresholds) -> bool:
    if not math.isfinite(snap.grad_norm):
        return True
    if snap.grad_norm > th.exploding_abs:
        return True
    return snap.spikes > 0


def detect_exploding_gradient(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """EXPLODING_GRADIENT: NaN/Inf gradients, a norm above ``exploding_abs``, or spikes
    above ``exploding_factor`` x the running median."""
    if not (snap.non_finite_steps > 0 or _exploding(snap, th)):
        return None
    return make_finding(
        FindingType.EXPLODING_GRADIENT,
        subject=subject,
        premise=(
            f"Layer {snap.name}: gradient norm spiked {snap.spikes} time(s) above "
            f"{th.exploding_factor:g}x its running median (peak {snap.grad_norm_max:.3g}, "
            f"median {snap.grad_norm_median:.3g}); {snap.non_finite_steps} step(s) had NaN/Inf "
            "gradients."
        ),
        confidence=0.95 if snap.non_finite_steps > 0 else 0.8,
        evidence=snap.to_dict(),
        sample_ids=(snap.name,),
    )


def detect_vanishing_gradient(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """VANISHING_GRADIENT: median gradient norm below ``vanishing_grad_norm``."""
    if snap.n_obs < th.min_observations or not snap.grad_norm_median < th.vanishing_grad_norm:
        return None
    return make_finding(
        FindingType.VANISHING_GRADIENT,
        subject=subject,
        premise=(
            f"Layer {snap.name}: median gradient norm {snap.grad_norm_median:.2e} < "
            f"{th.vanishing_grad_norm:.0e}."
        ),
        confidence=0.85,
        evidence=snap.to_dict(),
        sample_ids=(snap.name,),
    )


def detect_stagnating_layer(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """STAGNATING_LAYER: update-to-weight ratio below ``stagnation_ratio`` while the
    gradient has not vanished (a vanished gradient is the finding then)."""
    if snap.n_obs < th.min_observations or snap.grad_norm_median < th.vanishing_grad_norm:
        return None
    if not snap.update_ratio < th.stagnation_ratio:
        return None
    return make_finding(
        FindingType.STAGNATING_LAYER,
        subject=subject,
        premise=(
            f"Layer {snap.name}: update-to-weight ratio {snap.update_ratio:.2e} < "
            f"{th.stagnation_ratio:.0e} over the last {snap.n_obs} tracked steps."
        ),
        confidence=0.8,
        evidence=snap.to_dict(),
        sample_ids=(snap.name,),
    )


def detect_high_update_ratio(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """HIGH_UPDATE_RATIO: update-to-weight ratio above ``high_update_ratio``."""
    if snap.n_obs < th.min_observations or not snap.update_ratio > th.high_update_ratio:
        return None
    return make_finding(
        FindingType.HIGH_UPDATE_RATIO,
        subject=subject,
        premise=(
            f"Layer {snap.name}: update-to-weight ratio {snap.update_ratio:.2e} > "
            f"{th.high_update_ratio:.0e}."
        ),
        confidence=0.75,
        evidence=snap.to_dict(),
        sample_ids=(snap.name,),
    )


def detect_low_gradient_snr(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """LOW_GRADIENT_SNR: temporal gradient signal-to-noise ratio below ``low_snr``."""
    if snap.n_obs < th.min_observations or not (math.isfinite(snap.snr) and snap.snr < th.low_snr):
        return None
    return make_finding(
        FindingType.LOW_GRADIENT_SNR,
        subject=subject,
        premise=f"Layer {snap.name}: gradient signal-to-noise ratio {snap.snr:.3g} < {th.low_snr}.",
        confidence=0.6,
        evidence=snap.to_dict(),
        sample_ids=(snap.name,),
    )


def detect_dead_activations(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """DEAD_ACTIVATIONS: more than ``dead_fraction`` of units output zero for whole batches."""
    if not (math.isfinite(snap.dead_fraction) and snap.dead_fraction > th.dead_fraction):
        return None
    return make_finding(
        FindingType.DEAD_ACTIVATIONS,
        subject=subject,
        premise=(
            f"Layer {snap.name}: {snap.dead_fraction:.0%} of units output zero for whole batches."
        ),
        confidence=0.8,
        evidence=snap.to_dict(),
        sample_ids=(snap.name,),
    )


#: the per-layer detectors, in the order their findings are listed
LAYER_DETECTORS = (
    detect_exploding_gradient,
    detect_vanishing_gradient,
    detect_stagnating_layer,
    detect_high_update_ratio,
    detect_low_gradient_snr,
    detect_dead_activations,
)


def detect_layer_findings(
    snap: LayerSnapshot, subject: str, th: FlowThresholds = FlowThresholds()
) -> list[Finding]:
    """Every per-layer finding of ``snap`` (the :data:`LAYER_DETECTORS` that fire)."""
    found = (detect(snap, subject, th) for detect in LAYER_DETECTORS)
    return [f for f in found if f is not None]


def detect_loss_divergence(
    losses: Sequence[float], subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """LOSS_DIVERGENCE: a NaN/Inf loss, or a significant upward trend (slope > 0, p < 0.01)."""
    finite = _finite_losses(losses)
    if len(losses) > len(finite):
        bad = len(losses) - len(finite)
        return make_finding(
            FindingType.LOSS_DIVERGENCE,
            subject=subject,
            premise=f"{bad} of {len(losses)} reported losses are NaN/Inf.",
            confidence=0.99,
            evidence={"non_finite_losses": bad},
        )
    trend = _loss_trend(finite, th)
    if trend is None:
        return None
    slope, p, ev = trend
    if not (slope > 0 and p < 0.01):
        return None
    return make_finding(
        FindingType.LOSS_DIVERGENCE,
        subject=subject,
        premise=f"Loss rises by {slope:.3g} per tracked step (p={p:.2g}).",
        confidence=min(0.99, 1.0 - p),
        evidence=ev,
    )


def detect_loss_plateau(
    losses: Sequence[float], subject: str, th: FlowThresholds = FlowThresholds()
) -> Finding | None:
    """LOSS_PLATEAU: |slope| per step below ``plateau_rel_slope`` x the mean |loss|, with
    every loss finite and no significant rise (those are LOSS_DIVERGENCE)."""
    finite = _finite_losses(losses)
    if len(losses) > len(finite):
        return None
    trend = _loss_trend(finite, th)
    if trend is None:
        return None
    slope, p, ev = trend
    if (slope > 0 and p < 0.01) or not abs(slope) / ev["loss_mean"] < th.plateau_rel_slope:
        return None
    return make_finding(
        FindingType.LOSS_PLATEAU,
        subject=subject,
        premise=(
            f"Loss slope {slope:.2e} per tracked step is below {th.plateau_rel_slope:.0e} of "
            "its level."
        ),
        confidence=0.6,
        evidence=ev,
    )


def detect_loss_findings(
    losses: Sequence[float], subject: str, th: FlowThresholds = FlowThresholds()
) -> list[Finding]:
    """Findings on the loss curve: :func:`detect_loss_divergence` and
    :func:`detect_loss_plateau` (at most one of them fires)."""
    found = (
        detect(losses, subject, th) for detect in (detect_loss_divergence, detect_loss_plateau)
    )
    return [f for f in found if f is not None]


def _finite_losses(losses: Sequence[float]) -> list[float]:
    return [v for v in losses if v is not None and math.isfinite(v)]


def _loss_trend(
    finite: Sequence[float], th: FlowThresholds
) -> tuple[float, float, dict[str, float]] | None:
    """(slope, p, evidence) of the finite losses; None with fewer than the points a verdict needs."""
    if len(finite) < max(th.min_observations, 3):
        return None
    slope, p = linear_trend(finite)
    level = float(np.mean(np.abs(finite))) or 1.0
    return slope, p, {"loss_slope": slope, "loss_slope_p": p, "loss_mean": level, "n": len(finite)}
