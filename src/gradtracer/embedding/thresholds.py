"""Named, documented thresholds of the embedding diagnoses and the per-row zombie verdict.

Every threshold is a dataclass field with a default; pass your own
:class:`EmbeddingThresholds` (or a modified copy, ``dataclasses.replace``) to the tracker.
:func:`zombie_mask` is the verdict every update path applies (the NumPy and compiled paths
mirror its float32 arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import torch

__all__ = ["EmbeddingThresholds", "ZombieThresholds", "pressure_threshold", "zombie_mask"]


@dataclass(frozen=True)
class ZombieThresholds:
    """When a row counts as a zombie: oscillating under strong gradient pressure.

    A row is a zombie when ALL of these hold (the gradient direction is used, not the
    displacement, so the test is the same under SGD and adaptive optimizers: under Adam an
    oscillating row barely moves, but its gradient keeps flipping and stays large):

    * ``n_agree + n_disagree >= min_pairs`` consecutive-exposure gradient pairs observed;
    * ``P(disagreement rate > 0.5) >= min_posterior`` under a Beta(1, 1) prior, and the
      observed rate ``n_disagree / pairs >= min_disagree_rate`` (a row whose gradient
      direction is merely random, as for most rows of a recommender, has a rate near 0.5);
    * ``cos_ema <= max_cos_ema``: on recent exposures consecutive gradients cancel, so the
      row makes no net progress (for equal-norm steps ``|sum u|^2 = sum |u|^2 + 2 sum cos``);
    * pressure: ``grad_norm_ema >= pressure_ratio * mean(grad_norm_ema of exposed rows)``
      and ``>= min_grad_norm``;
    * pressure has not faded: ``grad_norm_ema >= min_retained_pressure * grad_norm_peak``
      (a converged row that jitters around its optimum under Adam has a tiny gradient
      compared with its own peak and is not a zombie).
    """

    min_pairs: int = 6  # consecutive-exposure gradient pairs needed before judging a row
    min_posterior: float = 0.95  # P(disagree rate > 0.5 | counts) needed
    min_disagree_rate: float = 0.65  # observed share of disagreeing pairs needed
    max_cos_ema: float = -0.2  # EMA of consecutive gradient cosines must be at most this
    pressure_ratio: float = 0.25  # x mean grad-norm EMA of exposed rows
    min_grad_norm: float = 0.0  # absolute floor on the grad-norm EMA (L2, gradient units)
    min_retained_pressure: float = 0.25  # grad-norm EMA / its own running peak
    warning_ratio: float = 0.0  # a finding is emitted when zombie_ratio > this ...
    critical_ratio: float = 0.05  # ... and it is critical from this share of exposed rows


@dataclass(frozen=True)
class EmbeddingThresholds:
    """Every threshold the embedding diagnoses use (defaults in the comments' units)."""

    zombie: ZombieThresholds = field(default_factory=ZombieThresholds)
    dead_ratio: float = 0.5  # DEAD_EMBEDDINGS when this share of rows was never exposed
    frozen_rel_velocity: float = 1e-3  # exposed row is frozen below this x mean velocity
    frozen_abs_velocity: float = 1e-12  # ... or below this absolute velocity (weight units)
    frozen_ratio: float = 0.01  # FROZEN_EMBEDDINGS when this share of exposed rows is frozen
    popularity_gini: float = 0.8  # POPULARITY_BIAS above this exposure Gini (README: 0.8)
    min_effective_rank_ratio: float = 0.1  # LOW_EFFECTIVE_RANK below this x embedding_dim
    collapse_score: float = 0.9  # REPRESENTATION_COLLAPSE above this top-direction energy
    cold_start_exposure: int = 5  # a row seen in fewer steps than this is cold
    cold_start_share: float = 0.5  # COLD_START when this share of exposed rows is cold
    norm_skew_ratio: float = 3.0  # NORM_POPULARITY_SKEW: head/tail bucket mean-norm ratio
    min_steps: int = 1  # no diagnosis before this many optimizer steps were seen


def pressure_threshold(
    mean_grad_norm_ema: torch.Tensor | float, thresholds: ZombieThresholds
) -> torch.Tensor:
    """Grad-norm EMA a row needs to count as under pressure (scalar tensor)."""
    mean = torch.as_tensor(mean_grad_norm_ema, dtype=torch.float32)
    return torch.clamp(mean * thresholds.pressure_ratio, min=thresholds.min_grad_norm)


def zombie_mask(
    n_agree: torch.Tensor,
    n_disagree: torch.Tensor,
    cos_ema: torch.Tensor,
    grad_norm_ema: torch.Tensor,
    grad_norm_peak: torch.Tensor,
    pressure: torch.Tensor,
    thresholds: ZombieThresholds,
) -> torch.Tensor:
    """Boolean per-row zombie verdict (all inputs shape ``(R,)``; see :class:`ZombieThresholds`)."""
    # posterior >= p  <=>  z >= inv_cdf(p), with z = (n_disagree - n_agree) / sqrt(pairs + 1)
    # (the continuity-corrected normal approximation of disagreement_posterior, no erf needed)
    z_min = NormalDist().inv_cdf(min(max(thresholds.min_posterior, 1e-12), 1.0 - 1e-12))
    pairs = n_agree + n_disagree
    margin = (n_disagree - n_agree).to(torch.float32)
    pressure = pressure.to(grad_norm_ema.device, grad_norm_ema.dtype)
    return (
        (pairs >= thresholds.min_pairs)
        & (margin >= z_min * torch.sqrt((pairs + 1).to(torch.float32)))
        & (n_disagree >= thresholds.min_disagree_rate * pairs)
        & (cos_ema <= thresholds.max_cos_ema)
        & (grad_norm_ema >= pressure)
        & (grad_norm_ema >= thresholds.min_retained_pressure * grad_norm_peak)
    )
