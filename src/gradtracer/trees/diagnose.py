"""Pure detectors for boosted-tree dynamics: per-round arrays in, ``Finding | None`` out.

Each detector judges one statistic; the tracker computes the statistics and calls these.
All thresholds live in :class:`TreeThresholds` with their defaults and rationale.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradtracer.findings import Finding, FindingType, Severity
from gradtracer.report.catalog import make_finding
from gradtracer.trees.stats import gini, herfindahl

__all__ = [
    "TreeThresholds",
    "detect_feature_dominance",
    "detect_overfitting_onset",
    "detect_tree_explosion",
    "detect_tree_stagnation",
    "is_higher_better",
]

# Metric names (lower-cased, prefix before "@") for which a larger value is better.
_HIGHER_IS_BETTER = frozenset(
    {
        "auc",
        "aucpr",
        "pr_auc",
        "prauc",
        "map",
        "ndcg",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "r2",
        "average_precision",
        "mcc",
        "pre",
        "totalf1",
        "queryauc",
        "pfound",
        "balancedaccuracy",
        "kappa",
        "wkappa",
    }
)


def is_higher_better(metric: str) -> bool:
    """True when a larger value of eval metric ``metric`` (e.g. ``"auc"``, ``"ndcg@5"``) is better."""
    base = metric.lower().split("@")[0].split(":")[0].replace("-", "_")
    return base in _HIGHER_IS_BETTER


@dataclass(frozen=True)
class TreeThresholds:
    """Thresholds of the tree detectors (defaults in comments).

    Attributes:
        window: rounds averaged at the start and at the end of training when comparing
            leaf spreads (10). Detectors need at least ``2 * window`` rounds.
        stagnation_ratio: stagnation when the median leaf spread of the last window is
            below this fraction of the first window's (0.01: new trees move predictions
            by under 1% of what the early trees did).
        explosion_ratio: explosion when the leaf spread's rolling median (over ``window``
            rounds) at its peak exceeds this multiple of the first window's median (10.0);
            any non-finite leaf is critical.
        dominance_share: one feature dominates when it holds more than this share of
            all split gain (split count when gain is unavailable) (0.5).
        overfit_patience: rounds the validation metric must stay past its best before
            overfitting is reported (5), as in early-stopping patience.
        overfit_min_degradation: validation must have lost at least this fraction of the
            improvement it had made up to its best round, or of its best value when the
            first round was the best (0.02).
    """

    window: int = 10
    stagnation_ratio: float = 0.01
    explosion_ratio: float = 10.0
    dominance_share: float = 0.5
    overfit_patience: int = 5
    overfit_min_degradation: float = 0.02


def _window_medians(values: np.ndarray, window: int) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size < 2 * window or window < 1:
        return None
    return float(np.median(finite[:window])), float(np.median(finite[-window:]))


def detect_tree_stagnation(
    leaf_std: np.ndarray,
    rounds: np.ndarray,
    *,
    subject: str,
    thresholds: TreeThresholds = TreeThresholds(),
) -> Finding | None:
    """TREE_STAGNATION when late trees' leaf spread collapsed relative to the early trees'.

    Args:
        leaf_std: (n_rounds,) leaf-value standard deviation per round ("leaf velocity").
        rounds: (n_rounds,) 0-based round numbers aligned with ``leaf_std``.
    """
    w = thresholds.window
    medians = _window_medians(leaf_std, w)
    if medians is None:
        return None
    early, late = medians
    if not early > 0:
        return None
    ratio = late / early
    if ratio >= thresholds.stagnation_ratio:
        return None
    rolling = np.convolve(np.nan_to_num(leaf_std, nan=np.inf), np.ones(w) / w, mode="valid")
    below = np.flatnonzero(rolling < thresholds.stagnation_ratio * early)
    start = int(rounds[below[0] + w - 1]) if below.size else int(rounds[-1])
    wasted = int(rounds[-1]) - start
    return make_finding(
        FindingType.TREE_STAGNATION,
        subject=subject,
        premise=(
            f"Leaf-value spread of new trees fell to {ratio:.2%} of the first {w} rounds' "
            f"(median {late:.3g} vs {early:.3g}) from round {start} on."
        ),
        confidence=float(min(0.99, 0.6 + 0.4 * (1.0 - ratio / thresholds.stagnation_ratio))),
        evidence={
            "leaf_std_early": early,
            "leaf_std_late": late,
            "leaf_std_ratio": ratio,
            "stagnation_round": start,
            "rounds_after_stagnation": wasted,
        },
        wasted=wasted,
    )


def detect_tree_explosion(
    leaf_std: np.ndarray,
    n_nonfinite: np.ndarray,
    rounds: np.ndarray,
    *,
    subject: str,
    thresholds: TreeThresholds = TreeThresholds(),
) -> Finding | None:
    """TREE_EXPLOSION on non-finite leaves or late leaf spread far above the early spread.

    Args:
        leaf_std: (n_rounds,) leaf-value standard deviation per round.
        n_nonfinite: (n_rounds,) number of NaN/inf leaves per round.
        rounds: (n_rounds,) 0-based round numbers.
    """
    bad = np.flatnonzero(np.asarray(n_nonfinite) > 0)
    if bad.size:
        first = int(rounds[bad[0]])
        return make_finding(
            FindingType.TREE_EXPLOSION,
            severity=Severity.CRITICAL,
            subject=subject,
            premise=f"{int(np.sum(n_nonfinite))} non-finite leaf values, first in round {first}.",
            confidence=0.99,
            evidence={"nonfinite_leaves": int(np.sum(n_nonfinite)), "first_round": first},
        )
    w = thresholds.window
    medians = _window_medians(leaf_std, w)
    if medians is None:
        return None
    early, _ = medians
    if not early > 0:
        return None
    # peak of the rolling median: a run that explodes and then overflows to zero leaves
    # still counts, while a single noisy round does not
    finite = np.where(np.isfinite(leaf_std), leaf_std, np.nan)
    with warnings.catch_warnings():  # windows of only NaN give NaN, which nanargmax skips
        warnings.simplefilter("ignore", RuntimeWarning)
        rolling = np.array([np.nanmedian(finite[i : i + w]) for i in range(finite.size - w + 1)])
    peak_at = int(np.nanargmax(rolling))
    late = float(rolling[peak_at])
    ratio = late / early
    if ratio <= thresholds.explosion_ratio:
        return None
    peak = int(rounds[peak_at + int(np.nanargmax(finite[peak_at : peak_at + w]))])
    return make_finding(
        FindingType.TREE_EXPLOSION,
        severity=Severity.CRITICAL if ratio > 10 * thresholds.explosion_ratio else Severity.WARNING,
        subject=subject,
        premise=(
            f"Leaf-value spread grew to {ratio:.3g}x the first {w} rounds' "
            f"(rolling median {late:.3g} vs {early:.3g}), peaking in round {peak}."
        ),
        confidence=float(min(0.99, 0.6 + 0.1 * math.log10(ratio))),
        evidence={
            "leaf_std_early": early,
            "leaf_std_peak": late,
            "leaf_std_ratio": ratio,
            "peak_round": peak,
        },
    )


def detect_feature_dominance(
    counts: np.ndarray,
    gains: np.ndarray | None,
    feature_names: Sequence[str],
    *,
    subject: str,
    thresholds: TreeThresholds = TreeThresholds(),
) -> Finding | None:
    """FEATURE_DOMINANCE when one feature holds most of the split gain (or splits).

    Args:
        counts: (n_features,) number of splits on each feature over the tracked rounds.
        gains: (n_features,) total split gain per feature, or ``None`` (count is used).
        feature_names: (n_features,) names used in the message.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size < 2 or counts.sum() <= 0:
        return None
    by = "gain" if gains is not None and np.sum(gains) > 0 else "count"
    totals = np.asarray(gains, dtype=np.float64) if by == "gain" else counts
    top = int(np.argmax(totals))
    share = float(totals[top] / totals.sum())
    if share <= thresholds.dominance_share:
        return None
    count_share = float(counts[top] / counts.sum())
    name = feature_names[top]
    return make_finding(
        FindingType.FEATURE_DOMINANCE,
        severity=Severity.CRITICAL if share > 0.9 else Severity.WARNING,
        subject=subject,
        premise=(
            f"Feature {name!r} holds {share:.1%} of all split {by} "
            f"({count_share:.1%} of splits) across {counts.size} features."
        ),
        confidence=float(min(0.99, 0.5 + share / 2)),
        evidence={
            "feature": name,
            "feature_index": top,
            "share_by": by,
            "share": share,
            "count_share": count_share,
            "herfindahl": herfindahl(totals),
            "gini": gini(totals),
        },
        sample_ids=(name,),
    )


def detect_overfitting_onset(
    valid: np.ndarray,
    rounds: np.ndarray,
    *,
    subject: str,
    metric: str,
    higher_is_better: bool,
    train: np.ndarray | None = None,
    thresholds: TreeThresholds = TreeThresholds(),
) -> Finding | None:
    """OVERFITTING_ONSET: validation metric worsens after its best round (onset = best + 1).

    Args:
        valid: (n_rounds,) validation metric per round.
        rounds: (n_rounds,) 0-based round numbers.
        metric: key of the metric, e.g. ``"valid/rmse"`` (for the message).
        higher_is_better: direction of the metric.
        train: (n_rounds,) training metric per round, used for the train/valid gap.
    """
    v = np.asarray(valid, dtype=np.float64)
    if v.size < thresholds.overfit_patience + 2 or not np.all(np.isfinite(v)):
        return None
    sign = -1.0 if higher_is_better else 1.0
    loss = sign * v  # lower is better
    best = int(np.argmin(loss))
    since = v.size - 1 - best
    improvement = loss[0] - loss[best]
    degradation = loss[-1] - loss[best]
    if since < thresholds.overfit_patience or degradation <= 0:
        return None
    # share of the gain made up to the best round that was lost since; when the first
    # round was already the best, relative to the best value itself
    reference = improvement if improvement > 0 else abs(loss[best])
    lost = degradation / reference if reference > 0 else float("inf")
    if lost < thresholds.overfit_min_degradation:
        return None
    onset = int(rounds[best]) + 1
    evidence: dict[str, float | int | str] = {
        "metric": metric,
        "onset_round": onset,
        "best_round": int(rounds[best]),
        "best_valid": float(v[best]),
        "last_valid": float(v[-1]),
        "improvement_lost": float(lost),
    }
    confidence = 0.6 + 0.3 * min(1.0, lost)
    if train is not None and np.size(train) == v.size and np.all(np.isfinite(train)):
        t = sign * np.asarray(train, dtype=np.float64)
        gap_best = float(sign * (loss[best] - t[best]))
        gap_last = float(sign * (loss[-1] - t[-1]))
        evidence.update({"gap_at_best": gap_best, "gap_last": gap_last})
        if t[-1] < t[best]:  # train still improving while valid got worse
            confidence += 0.09
    return make_finding(
        FindingType.OVERFITTING_ONSET,
        severity=Severity.CRITICAL if lost > 0.25 else Severity.WARNING,
        subject=subject,
        premise=(
            f"{metric} was best at round {int(rounds[best])} ({v[best]:.4g}) and has been "
            f"worse for {since} rounds since (now {v[-1]:.4g}; degradation {lost:.1%} of "
            f"{'the gain made' if improvement > 0 else 'the best value'})."
        ),
        confidence=float(min(0.99, confidence)),
        evidence=evidence,
        onset=onset,
    )
