"""Pure diagnoses: embedding summary statistics -> :class:`~gradtracer.findings.Finding` list.

One detector per finding type, each a pure function of an
:meth:`EmbeddingTracker.summary` dict, the thresholds and example row ids, returning the
finding or None. The meaning, action and expected effect of each finding live in
:data:`gradtracer.report.catalog.CATALOG`; a detector only measures and decides.
:func:`diagnose` runs them all. Every threshold is a named, documented field of
:class:`EmbeddingThresholds` (see :mod:`gradtracer.embedding.thresholds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradtracer.embedding.thresholds import (
    EmbeddingThresholds,
    ZombieThresholds,
    pressure_threshold,
    zombie_mask,
)
from gradtracer.findings import Finding, FindingType, Severity
from gradtracer.report.catalog import make_finding

__all__ = [
    "DETECTORS",
    "EmbeddingThresholds",
    "ZombieThresholds",
    "detect_autofix_applied",
    "detect_cold_start",
    "detect_dead_embeddings",
    "detect_frozen_embeddings",
    "detect_low_effective_rank",
    "detect_non_finite_gradient",
    "detect_norm_popularity_skew",
    "detect_popularity_bias",
    "detect_representation_collapse",
    "detect_zombie_embeddings",
    "diagnose",
    "pressure_threshold",
    "zombie_mask",
]

Stats = Mapping[str, Any]
Samples = Mapping[str, Sequence[int]]


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _ids(values: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ())[:32])


def _layer(stats: Stats) -> str:
    return str(stats.get("layer", "embedding"))


def detect_non_finite_gradient(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """NON_FINITE_GRADIENT: some row gradients were NaN/Inf (left out of the statistics)."""
    rows = int(stats.get("non_finite_rows", 0))
    if rows <= 0:
        return None
    steps = int(stats.get("non_finite_steps", 0))
    return make_finding(
        FindingType.NON_FINITE_GRADIENT,
        subject=_layer(stats),
        premise=(
            f"{rows} row-gradients were NaN/Inf in {steps} steps; they were left out of "
            "the statistics."
        ),
        confidence=1.0,
        evidence={"non_finite_rows": rows, "non_finite_steps": steps},
    )


def detect_zombie_embeddings(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """ZOMBIE_EMBEDDINGS: rows under gradient pressure whose gradient direction flips;
    critical from ``zombie.critical_ratio`` of the exposed rows."""
    zr = float(stats.get("zombie_ratio", 0.0))
    zc = int(stats.get("zombie_count", 0))
    zt = th.zombie
    if zc <= 0 or zr <= zt.warning_ratio:
        return None
    posterior = float(stats.get("zombie_mean_posterior", 0.0))
    return make_finding(
        FindingType.ZOMBIE_EMBEDDINGS,
        severity=Severity.CRITICAL if zr >= zt.critical_ratio else Severity.WARNING,
        subject=_layer(stats),
        premise=(
            f"{zc} rows ({_pct(zr)} of exposed) keep a large gradient whose direction flips "
            f"between consecutive exposures (mean P(disagree) {posterior:.2f})."
        ),
        confidence=posterior,
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


def detect_dead_embeddings(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """DEAD_EMBEDDINGS: at least ``dead_ratio`` of the rows never received gradient."""
    n = max(int(stats.get("num_embeddings", 0)), 1)
    unexposed = int(stats.get("unexposed_count", 0))
    if unexposed / n < th.dead_ratio:
        return None
    return make_finding(
        FindingType.DEAD_EMBEDDINGS,
        subject=_layer(stats),
        premise=f"{unexposed} of {n} rows ({_pct(unexposed / n)}) never received a gradient.",
        confidence=min(1.0, unexposed / n),
        evidence={"unexposed_count": unexposed, "dead_ratio": th.dead_ratio},
        sample_ids=_ids(samples.get("dead")),
    )


def detect_frozen_embeddings(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """FROZEN_EMBEDDINGS: at least ``frozen_ratio`` of the exposed rows do not move."""
    n = max(int(stats.get("num_embeddings", 0)), 1)
    exposed = max(n - int(stats.get("unexposed_count", 0)), 1)
    frozen = int(stats.get("frozen_count", 0))
    if frozen <= 0 or frozen / exposed < th.frozen_ratio:
        return None
    return make_finding(
        FindingType.FROZEN_EMBEDDINGS,
        subject=_layer(stats),
        premise=(
            f"{frozen} exposed rows ({_pct(frozen / exposed)}) receive gradients but do not move."
        ),
        confidence=min(1.0, frozen / exposed + 0.5),
        evidence={"frozen_count": frozen, "frozen_rel_velocity": th.frozen_rel_velocity},
        sample_ids=_ids(samples.get("frozen")),
    )


def detect_popularity_bias(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """POPULARITY_BIAS: the exposure Gini coefficient is above ``popularity_gini``."""
    g = stats.get("popularity_gini")
    if g is None or float(g) <= th.popularity_gini:
        return None
    top = float(stats.get("top1pct_share", 0.0))
    return make_finding(
        FindingType.POPULARITY_BIAS,
        subject=_layer(stats),
        premise=(
            f"Exposure distribution is highly skewed (Gini coefficient: {float(g):.2f} > "
            f"{th.popularity_gini}); the top 1% of rows take {_pct(top)}."
        ),
        confidence=min(1.0, 0.5 + float(g) / 2),
        evidence={
            "popularity_gini": float(g),
            "normalized_entropy": stats.get("normalized_entropy"),
            "top1pct_share": stats.get("top1pct_share"),
        },
    )


def detect_low_effective_rank(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """LOW_EFFECTIVE_RANK: effective rank below ``min_effective_rank_ratio`` x dimension."""
    dim = max(int(stats.get("embedding_dim", 1)), 1)
    er = stats.get("effective_rank")
    if er is None or not 0.0 < float(er) < th.min_effective_rank_ratio * dim:
        return None
    return make_finding(
        FindingType.LOW_EFFECTIVE_RANK,
        subject=_layer(stats),
        premise=f"Effective rank {float(er):.1f} of {dim} dimensions.",
        confidence=0.8,
        evidence={"effective_rank": float(er), "embedding_dim": dim},
    )


def detect_representation_collapse(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """REPRESENTATION_COLLAPSE: more than ``collapse_score`` of the energy in one direction."""
    cs = stats.get("collapse_score")
    if cs is None or float(cs) <= th.collapse_score:
        return None
    return make_finding(
        FindingType.REPRESENTATION_COLLAPSE,
        subject=_layer(stats),
        premise=f"{_pct(float(cs))} of the table's energy lies in one direction.",
        confidence=min(1.0, float(cs)),
        evidence={"collapse_score": float(cs)},
    )


def detect_cold_start(stats: Stats, th: EmbeddingThresholds, samples: Samples) -> Finding | None:
    """COLD_START: at least ``cold_start_share`` of the exposed rows are cold."""
    cold = stats.get("cold_start_share")
    if cold is None or float(cold) < th.cold_start_share:
        return None
    return make_finding(
        FindingType.COLD_START,
        subject=_layer(stats),
        premise=(
            f"{_pct(float(cold))} of exposed rows were seen in fewer than "
            f"{th.cold_start_exposure} steps."
        ),
        confidence=min(1.0, float(cold)),
        evidence={"cold_start_share": float(cold), "cold_start_exposure": th.cold_start_exposure},
    )


def detect_norm_popularity_skew(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """NORM_POPULARITY_SKEW: head/tail bucket mean-norm ratio at least ``norm_skew_ratio``."""
    skew = stats.get("norm_popularity_ratio")
    if skew is None or float(skew) < th.norm_skew_ratio:
        return None
    return make_finding(
        FindingType.NORM_POPULARITY_SKEW,
        subject=_layer(stats),
        premise=(
            f"Most exposed rows have {float(skew):.1f}x the mean norm of the least exposed rows."
        ),
        confidence=0.7,
        evidence={"norm_popularity_ratio": float(skew)},
    )


def detect_autofix_applied(
    stats: Stats, th: EmbeddingThresholds, samples: Samples
) -> Finding | None:
    """AUTOFIX_APPLIED: an intervention damped some row updates (the tracker's count)."""
    damped = int(stats.get("autofix_damped_updates", 0))
    if damped <= 0:
        return None
    rows = int(stats.get("autofix_damped_rows", 0))
    return make_finding(
        FindingType.AUTOFIX_APPLIED,
        subject=_layer(stats),
        premise=f"Auto-Fix damped {damped} row updates over {rows} distinct rows.",
        confidence=1.0,
        evidence={"autofix_damped_updates": damped, "autofix_damped_rows": rows},
        sample_ids=_ids(samples.get("autofix")),
    )


Detector = Callable[[Stats, EmbeddingThresholds, Samples], Finding | None]

#: the detectors :func:`diagnose` runs after ``min_steps`` (the non-finite check runs always)
DETECTORS: tuple[Detector, ...] = (
    detect_zombie_embeddings,
    detect_dead_embeddings,
    detect_frozen_embeddings,
    detect_popularity_bias,
    detect_low_effective_rank,
    detect_representation_collapse,
    detect_cold_start,
    detect_norm_popularity_skew,
    detect_autofix_applied,
)


def diagnose(
    stats: Stats,
    thresholds: EmbeddingThresholds | None = None,
    *,
    samples: Samples | None = None,
) -> list[Finding]:
    """Findings for one embedding layer from its ``summary()`` dict.

    Args:
        stats: an :meth:`EmbeddingTracker.summary` dict (keys ``layer``, ``step``,
            ``zombie_ratio`` ...).
        thresholds: the thresholds to judge with (defaults: :class:`EmbeddingThresholds`).
        samples: example row ids per finding kind (``"zombie"``, ``"dead"``, ``"frozen"``,
            ``"autofix"``).
    """
    th = thresholds or EmbeddingThresholds()
    samples = samples or {}
    found = [detect_non_finite_gradient(stats, th, samples)]
    if int(stats.get("step", 0)) >= th.min_steps:
        found.extend(detect(stats, th, samples) for detect in DETECTORS)
    return [f for f in found if f is not None]
