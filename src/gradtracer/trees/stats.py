"""Per-tree and per-round statistics of a boosted ensemble (pure numpy, no library imports).

Every adapter turns one newly grown tree into a :class:`TreeSummary`; a boosting round
(one or more trees: one per class, or a parallel forest) becomes one :class:`RoundStats`.
Concentration measures (Herfindahl, Gini) are plain functions over per-feature totals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "TRAIN_SET_NAMES",
    "pick_eval_keys",
    "split_concentration",
    "RoundStats",
    "TreeSummary",
    "gini",
    "herfindahl",
    "summarize_round",
]


@dataclass(frozen=True)
class TreeSummary:
    """The structure of one tree, as the adapters read it.

    Attributes:
        leaf_values: (n_leaves,) raw leaf outputs (already multiplied by the learning rate).
        split_features: (n_splits,) 0-based feature index of every internal node.
        split_gains: (n_splits,) loss reduction of every split, or ``None`` when the
            library does not expose it (CatBoost).
        depth: number of edges on the longest root-to-leaf path (a stump has depth 1,
            a single-leaf tree depth 0).
    """

    leaf_values: np.ndarray
    split_features: np.ndarray
    split_gains: np.ndarray | None
    depth: int

    @property
    def n_leaves(self) -> int:
        """Number of leaves."""
        return int(self.leaf_values.size)


@dataclass(frozen=True)
class RoundStats:
    """Statistics of the trees added in one boosting round (0-based ``round``).

    ``leaf_std`` is the "leaf velocity": the spread of the values this round adds to the
    prediction; it shrinks towards 0 when boosting stagnates and grows when it explodes.
    A round without trees has spread 0; a round whose leaves are all non-finite has NaN.
    """

    round: int
    n_trees: int
    n_leaves: int
    max_depth: int
    leaf_std: float
    leaf_abs_mean: float
    leaf_abs_max: float
    n_nonfinite_leaves: int
    feature_counts: Mapping[int, int] = field(default_factory=dict)
    feature_gains: Mapping[int, float] | None = None

    def to_dict(self) -> dict[str, object]:
        """Flat JSON-safe row (feature maps summarised by their number of distinct features)."""
        row: dict[str, object] = {
            "round": self.round,
            "n_trees": self.n_trees,
            "n_leaves": self.n_leaves,
            "max_depth": self.max_depth,
            "leaf_std": self.leaf_std,
            "leaf_abs_mean": self.leaf_abs_mean,
            "leaf_abs_max": self.leaf_abs_max,
            "n_nonfinite_leaves": self.n_nonfinite_leaves,
            "n_split_features": len(self.feature_counts),
        }
        return row


def summarize_round(round_: int, trees: Sequence[TreeSummary]) -> RoundStats:
    """Return the :class:`RoundStats` of the ``trees`` grown in round ``round_``."""
    leaves = (
        np.concatenate([t.leaf_values for t in trees]).astype(np.float64) if trees else np.zeros(0)
    )
    finite = leaves[np.isfinite(leaves)]
    # a round that adds no leaves (LightGBM after it runs out of splits) moves nothing
    empty = 0.0 if leaves.size == 0 else math.nan
    counts: dict[int, int] = {}
    gains: dict[int, float] | None = {}  # None: the library exposes no split gains
    if trees:
        feats = np.concatenate([np.asarray(t.split_features, dtype=np.int64) for t in trees])
        if feats.size:
            per_feature = np.bincount(feats)
            used = np.flatnonzero(per_feature)
            counts = dict(zip(used.tolist(), per_feature[used].tolist(), strict=True))
        if any(t.split_gains is None for t in trees):
            gains = None
        elif feats.size:
            gain = np.concatenate([np.asarray(t.split_gains, dtype=np.float64) for t in trees])
            sums = np.bincount(feats, weights=gain)
            gains = {f: float(sums[f]) for f in counts}
    return RoundStats(
        round=int(round_),
        n_trees=len(trees),
        n_leaves=int(leaves.size),
        max_depth=max((t.depth for t in trees), default=0),
        leaf_std=float(finite.std()) if finite.size else empty,
        leaf_abs_mean=float(np.abs(finite).mean()) if finite.size else empty,
        leaf_abs_max=float(np.abs(finite).max()) if finite.size else empty,
        n_nonfinite_leaves=int(leaves.size - finite.size),
        feature_counts=counts,
        feature_gains=gains,
    )


def herfindahl(totals: np.ndarray) -> float:
    """Return the Herfindahl index sum(share^2) of non-negative ``totals`` (1 = one feature).

    Returns NaN when every total is 0. ``1 / herfindahl`` is the effective number of features.
    """
    totals = np.asarray(totals, dtype=np.float64)
    s = totals.sum()
    if s <= 0:
        return math.nan
    shares = totals / s
    return float(np.square(shares).sum())


def gini(totals: np.ndarray) -> float:
    """Return the Gini coefficient of non-negative ``totals`` in [0, 1) (0 = perfectly even).

    Features never used should be included as zeros so that the value reflects the
    whole feature set. Returns NaN for an empty or all-zero input.
    """
    x = np.sort(np.asarray(totals, dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() <= 0:
        return math.nan
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * x).sum()) / (n * x.sum()) - (n + 1.0) / n)


#: eval-set names taken for the training set when none is named
TRAIN_SET_NAMES = ("train", "training", "learn", "dtrain")


def pick_eval_keys(
    keys: Sequence[str],
    *,
    train_set: str | None = None,
    valid_set: str | None = None,
    metric: str | None = None,
) -> tuple[str | None, str | None]:
    """The (train, valid) keys ``"<set>/<metric>"`` among ``keys`` judged for overfitting.

    Without names given, the training set is the first set called like
    :data:`TRAIN_SET_NAMES`, the validation set the last other one, the metric the last
    one recorded for it.

    >>> pick_eval_keys(["train/rmse", "valid/rmse"])
    ('train/rmse', 'valid/rmse')
    """
    if not keys:
        return None, None
    sets = list(dict.fromkeys(k.split("/", 1)[0] for k in keys))
    train = train_set or next((s for s in sets if s.lower() in TRAIN_SET_NAMES), None)
    valid = valid_set or next((s for s in reversed(sets) if s != train), None)
    metrics = [k.split("/", 1)[1] for k in keys if k.startswith(f"{valid or train}/")]
    metric = metric or (metrics[-1] if metrics else None)
    if metric is None:
        return None, None
    tkey = f"{train}/{metric}" if train and f"{train}/{metric}" in keys else None
    vkey = f"{valid}/{metric}" if valid and f"{valid}/{metric}" in keys else None
    return tkey, vkey


def split_concentration(
    counts: np.ndarray, gains: np.ndarray | None, names: Sequence[str], *, k: int = 5
) -> dict[str, Any]:
    """Herfindahl and Gini of the split counts (and gains), and the ``k`` top features by
    gain share (by split share without gains)."""
    counts = np.asarray(counts, dtype=np.float64)
    by_gain = gains is not None and gains.sum() > 0
    order = np.argsort(-(gains if by_gain and gains is not None else counts))
    return {
        "split_herfindahl_count": herfindahl(counts),
        "split_gini_count": gini(counts),
        "split_herfindahl_gain": herfindahl(gains) if gains is not None else None,
        "split_gini_gain": gini(gains) if gains is not None else None,
        "top_features": [
            {
                "feature": names[i],
                "split_share": float(counts[i] / counts.sum()),
                "gain_share": (
                    float(gains[i] / gains.sum()) if by_gain and gains is not None else None
                ),
            }
            for i in order[:k]
            if counts[i] > 0
        ],
    }
