"""CatBoost adapter.

CatBoost's Python callbacks (``after_iteration(info)``) see only the iteration number
and the metric history; the model's trees are not readable until ``fit`` returns
(``tree_count_`` is 0 inside the callback). So eval metrics are recorded live and the
trees are read once after training, each exactly once: leaf values from one
``get_leaf_values()`` call split by ``get_tree_leaf_counts()``, split features from
``_get_tree_splits(i, None)`` (a private CatBoost API; checked against catboost 1.2).
CatBoost does not expose per-split gains, so feature concentration uses split counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradtracer.trees.stats import TreeSummary

__all__ = ["catboost_evals", "is_catboost_model", "make_catboost_callback", "read_catboost_trees"]

_LEADING_INT = re.compile(r"^\s*(\d+)\s*,")


def _split_feature(split: str, names: Sequence[str]) -> int:
    match = _LEADING_INT.match(split)
    if match:
        return int(match.group(1))
    head = split.split(",")[0].strip()
    return names.index(head) if head in names else -1


def read_catboost_trees(model: Any, start: int = 0) -> list[TreeSummary]:
    """Return one :class:`TreeSummary` per tree of a fitted CatBoost model, from tree ``start``.

    Raises:
        ValueError: the model is not fitted.
    """
    if not model.is_fitted():
        raise ValueError(f"{type(model).__name__} is not fitted: call fit() before reading trees")
    counts = np.asarray(model.get_tree_leaf_counts(), dtype=np.int64)
    values = np.asarray(model.get_leaf_values(), dtype=np.float64)
    dims = max(1, values.size // max(1, int(counts.sum())))  # multiclass: dims values per leaf
    offsets = np.concatenate([[0], np.cumsum(counts * dims)])
    names = list(model.feature_names_ or [])
    symmetric = str(model.get_all_params().get("grow_policy", "SymmetricTree")) == "SymmetricTree"
    out: list[TreeSummary] = []
    for i in range(start, counts.size):
        splits = model._get_tree_splits(i, None)
        feats = np.asarray([_split_feature(s, names) for s in splits], dtype=np.int64)
        n_leaves = int(counts[i])
        depth = len(splits) if symmetric else math.ceil(math.log2(max(1, n_leaves)))
        out.append(
            TreeSummary(
                leaf_values=values[offsets[i] : offsets[i + 1]],
                split_features=feats[feats >= 0],
                split_gains=None,
                depth=int(depth),
            )
        )
    return out


def catboost_evals(metrics: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, float]:
    """Return ``{"<set>/<metric>": newest value}`` from CatBoost's ``info.metrics``."""
    out: dict[str, float] = {}
    for data, per_metric in metrics.items():
        for metric, values in per_metric.items():
            if len(values):
                out[f"{data}/{metric}"] = float(values[-1])
    return out


def is_catboost_model(model: Any) -> bool:
    """True for a CatBoost model object (``CatBoost``, ``CatBoostRegressor``, ...)."""
    return type(model).__module__.split(".")[0] == "catboost"


class GradTracerCatBoostCallback:
    """CatBoost callback object: records the eval metrics of every iteration."""

    def __init__(self, on_round: Any) -> None:
        self._on_round = on_round

    def after_iteration(self, info: Any) -> bool:
        """Called by CatBoost after each iteration; returns True to keep training."""
        # info.iteration counts finished iterations (1 after the first tree).
        self._on_round(int(info.iteration) - 1, catboost_evals(info.metrics))
        return True


def make_catboost_callback(on_round: Any) -> GradTracerCatBoostCallback:
    """Return a CatBoost callback object calling ``on_round(round, evals)``."""
    return GradTracerCatBoostCallback(on_round)
