"""Pure diagnoses: embedding summary statistics -> :class:`~gradtracer.findings.Finding` list.

Every threshold is a named, documented dataclass field with a default; pass your own
:class:`EmbeddingThresholds` (or a modified copy, ``dataclasses.replace``) to the tracker.
Nothing here touches hooks, files or global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import torch

from gradtracer.findings import Finding, FindingType, Severity

__all__ = [
    "EmbeddingThresholds",
    "ZombieThresholds",
    "diagnose",
    "pressure_threshold",
    "zombie_mask",
]


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


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _ids(values: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ())[:32])


def diagnose(
    stats: Mapping[str, Any],
    thresholds: EmbeddingThresholds | None = None,
    *,
    samples: Mapping[str, Sequence[int]] | None = None,
) -> list[Finding]:
    """Findings for one embedding layer from its ``summary()`` dict.

    Args:
        stats: an :meth:`EmbeddingTracker.summary` dict (keys ``layer``, ``step``,
            ``zombie_ratio`` ...).
        thresholds: the thresholds to judge with (defaults: :class:`EmbeddingThresholds`).
        samples: example row ids per finding kind (``"zombie"``, ``"dead"``, ``"frozen"``).
    """
    th = thresholds or EmbeddingThresholds()
    samples = samples or {}
    layer = str(stats.get("layer", "embedding"))
    out: list[Finding] = []

    non_finite = int(stats.get("non_finite_rows", 0))
    if non_finite > 0:
        out.append(
            Finding(
                type=FindingType.NON_FINITE_GRADIENT,
                severity=Severity.CRITICAL,
                subject=layer,
                premise=(
                    f"{non_finite} row-gradients were NaN/Inf in "
                    f"{int(stats.get('non_finite_steps', 0))} steps; they were left out of the statistics."
                ),
                implies="Training is numerically unstable; the affected rows may already hold NaN weights.",
                action="LOWER_LR_OR_CLIP_GRADIENTS",
                expected_effect="Finite gradients and weights; statistics cover every step again.",
                confidence=1.0,
                evidence={
                    "non_finite_rows": non_finite,
                    "non_finite_steps": int(stats.get("non_finite_steps", 0)),
                },
            )
        )

    if int(stats.get("step", 0)) < th.min_steps:
        return out

    zr = float(stats.get("zombie_ratio", 0.0))
    zc = int(stats.get("zombie_count", 0))
    zt = th.zombie
    if zc > 0 and zr > zt.warning_ratio:
        out.append(
            Finding(
                type=FindingType.ZOMBIE_EMBEDDINGS,
                severity=Severity.CRITICAL if zr >= zt.critical_ratio else Severity.WARNING,
                subject=layer,
                premise=(
                    f"{zc} rows ({_pct(zr)} of exposed) keep a large gradient whose direction flips "
                    f"between consecutive exposures (mean P(disagree) "
                    f"{float(stats.get('zombie_mean_posterior', 0.0)):.2f})."
                ),
                implies="These rows oscillate instead of converging: their updates cancel out.",
                action="DAMP_OSCILLATING_ROWS_OR_LOWER_EMBEDDING_LR",
                expected_effect="Oscillating rows settle; ranking quality of affected items improves.",
                confidence=float(stats.get("zombie_mean_posterior", 0.0)),
                evidence={
                    "zombie_count": zc,
                    "zombie_ratio": zr,
                    "oscillation_mean": stats.get("oscillation_mean"),
                    "min_pairs": zt.min_pairs,
                    "min_posterior": zt.min_posterior,
                    "pressure_threshold": stats.get("zombie_pressure_threshold"),
                },
                sample_ids=_ids(samples.get("zombie")),
            )
        )

    n = max(int(stats.get("num_embeddings", 0)), 1)
    unexposed = int(stats.get("unexposed_count", 0))
    if unexposed / n >= th.dead_ratio:
        out.append(
            Finding(
                type=FindingType.DEAD_EMBEDDINGS,
                severity=Severity.WARNING,
                subject=layer,
                premise=f"{unexposed} of {n} rows ({_pct(unexposed / n)}) never received a gradient.",
                implies="Those rows keep their initial values: cold-start items or broken negative sampling.",
                action="CHECK_NEGATIVE_SAMPLING_OR_PRUNE_UNUSED_ROWS",
                expected_effect="Every row is trained or removed; memory is not spent on noise.",
                confidence=min(1.0, unexposed / n),
                evidence={"unexposed_count": unexposed, "dead_ratio": th.dead_ratio},
                sample_ids=_ids(samples.get("dead")),
            )
        )

    exposed = max(n - unexposed, 1)
    frozen = int(stats.get("frozen_count", 0))
    if frozen > 0 and frozen / exposed >= th.frozen_ratio:
        out.append(
            Finding(
                type=FindingType.FROZEN_EMBEDDINGS,
                severity=Severity.WARNING,
                subject=layer,
                premise=f"{frozen} exposed rows ({_pct(frozen / exposed)}) receive gradients but do not move.",
                implies="Their updates vanish (zero learning rate, saturated optimizer state or frozen weights).",
                action="CHECK_OPTIMIZER_PARAM_GROUPS_AND_LR",
                expected_effect="Exposed rows move and learn.",
                confidence=min(1.0, frozen / exposed + 0.5),
                evidence={"frozen_count": frozen, "frozen_rel_velocity": th.frozen_rel_velocity},
                sample_ids=_ids(samples.get("frozen")),
            )
        )

    g = stats.get("popularity_gini")
    if g is not None and float(g) > th.popularity_gini:
        out.append(
            Finding(
                type=FindingType.POPULARITY_BIAS,
                severity=Severity.WARNING,
                subject=layer,
                premise=(
                    f"Exposure distribution is highly skewed (Gini coefficient: {float(g):.2f} > "
                    f"{th.popularity_gini}); the top 1% of rows take {_pct(float(stats.get('top1pct_share', 0.0)))}."
                ),
                implies="Training optimises mostly for popular rows; long-tail rows learn little.",
                action="APPLY_LOG_Q_CORRECTION_OR_INVERSE_FREQUENCY_SAMPLING",
                expected_effect="Debiased logits and better long-tail coverage.",
                confidence=min(1.0, 0.5 + float(g) / 2),
                evidence={
                    "popularity_gini": float(g),
                    "normalized_entropy": stats.get("normalized_entropy"),
                    "top1pct_share": stats.get("top1pct_share"),
                },
            )
        )

    dim = max(int(stats.get("embedding_dim", 1)), 1)
    er = stats.get("effective_rank")
    if er is not None and 0.0 < float(er) < th.min_effective_rank_ratio * dim:
        out.append(
            Finding(
                type=FindingType.LOW_EFFECTIVE_RANK,
                severity=Severity.WARNING,
                subject=layer,
                premise=f"Effective rank {float(er):.1f} of {dim} dimensions.",
                implies="Most embedding dimensions are unused: capacity is wasted.",
                action="REDUCE_EMBEDDING_DIM_OR_ADD_DECORRELATION",
                expected_effect="Same quality with a smaller table, or better use of the dimensions.",
                confidence=0.8,
                evidence={"effective_rank": float(er), "embedding_dim": dim},
            )
        )

    cs = stats.get("collapse_score")
    if cs is not None and float(cs) > th.collapse_score:
        out.append(
            Finding(
                type=FindingType.REPRESENTATION_COLLAPSE,
                severity=Severity.CRITICAL,
                subject=layer,
                premise=f"{_pct(float(cs))} of the table's energy lies in one direction.",
                implies="Rows point the same way, so scores barely separate items.",
                action="LOWER_LR_OR_ADD_UNIFORMITY_REGULARISATION",
                expected_effect="Rows spread out; ranking metrics recover.",
                confidence=min(1.0, float(cs)),
                evidence={"collapse_score": float(cs)},
            )
        )

    cold = stats.get("cold_start_share")
    if cold is not None and float(cold) >= th.cold_start_share:
        out.append(
            Finding(
                type=FindingType.COLD_START,
                severity=Severity.INFO,
                subject=layer,
                premise=(
                    f"{_pct(float(cold))} of exposed rows were seen in fewer than "
                    f"{th.cold_start_exposure} steps."
                ),
                implies="Many rows are cold: their embeddings are barely trained.",
                action="ADD_CONTENT_FEATURES_OR_SHARE_EMBEDDINGS_FOR_RARE_ROWS",
                expected_effect="Rare rows get useful representations.",
                confidence=min(1.0, float(cold)),
                evidence={
                    "cold_start_share": float(cold),
                    "cold_start_exposure": th.cold_start_exposure,
                },
            )
        )

    skew = stats.get("norm_popularity_ratio")
    if skew is not None and float(skew) >= th.norm_skew_ratio:
        out.append(
            Finding(
                type=FindingType.NORM_POPULARITY_SKEW,
                severity=Severity.INFO,
                subject=layer,
                premise=f"Most exposed rows have {float(skew):.1f}x the mean norm of the least exposed rows.",
                implies="Dot-product scores favour popular rows through their norm alone.",
                action="NORMALISE_EMBEDDINGS_OR_ADD_NORM_PENALTY",
                expected_effect="Scores depend on direction rather than popularity-driven norm.",
                confidence=0.7,
                evidence={"norm_popularity_ratio": float(skew)},
            )
        )

    damped = int(stats.get("autofix_damped_updates", 0))
    if damped > 0:
        out.append(
            Finding(
                type=FindingType.AUTOFIX_APPLIED,
                severity=Severity.INFO,
                subject=layer,
                premise=(
                    f"Auto-Fix damped {damped} row updates over "
                    f"{int(stats.get('autofix_damped_rows', 0))} distinct rows."
                ),
                implies="Oscillating rows were slowed down during training.",
                action="REVIEW_AUTOFIX_AUDIT_LOG",
                expected_effect="Confirm the damping with a paired evaluation against a baseline run.",
                confidence=1.0,
                evidence={
                    "autofix_damped_updates": damped,
                    "autofix_damped_rows": int(stats.get("autofix_damped_rows", 0)),
                },
                sample_ids=_ids(samples.get("autofix")),
            )
        )
    return out
