"""XGBoost adapter: parse the trees of one boosting round from a one-round slice of the booster.

``booster[i:i + 1]`` copies only round ``i``'s trees and ``save_raw("json")`` serialises
just that slice, so the per-round cost does not grow with the model (unlike ``get_dump``
or ``trees_to_dataframe``, which walk every tree).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradtracer._optional import require
from gradtracer.trees.stats import TreeSummary

__all__ = ["is_xgboost_model", "make_xgboost_callback", "read_xgboost_round", "xgboost_evals"]


def _tree_from_json(tree: Mapping[str, Any]) -> TreeSummary:
    left = np.asarray(tree["left_children"], dtype=np.int64)
    parents = np.asarray(tree["parents"], dtype=np.int64)
    is_leaf = left == -1
    values = np.asarray(tree["split_conditions"], dtype=np.float64)  # leaf value on leaves
    depth = np.zeros(left.size, dtype=np.int64)
    for node in range(1, left.size):  # xgboost numbers a child after its parent
        depth[node] = depth[parents[node]] + 1
    internal = ~is_leaf
    return TreeSummary(
        leaf_values=values[is_leaf],
        split_features=np.asarray(tree["split_indices"], dtype=np.int64)[internal],
        split_gains=np.asarray(tree["loss_changes"], dtype=np.float64)[internal],
        depth=int(depth.max(initial=0)),
    )


def read_xgboost_round(booster: Any, round_: int) -> list[TreeSummary]:
    """Return the trees grown in 0-based boosting round ``round_`` of an ``xgboost.Booster``."""
    raw = booster[round_ : round_ + 1].save_raw("json")
    model = json.loads(bytes(raw))["learner"]["gradient_booster"]
    if "model" not in model:  # dart wraps the gbtree
        model = model["gbtree"]
    return [_tree_from_json(t) for t in model["model"]["trees"]]


def xgboost_evals(evals_log: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Return ``{"<set>/<metric>": newest value}`` from xgboost's ``evals_log``."""
    out: dict[str, float] = {}
    for data, metrics in evals_log.items():
        for metric, values in metrics.items():
            if len(values):
                last = values[-1]
                out[f"{data}/{metric}"] = float(last[0] if isinstance(last, tuple) else last)
    return out


def is_xgboost_model(model: Any) -> bool:
    """True for an ``xgboost.Booster`` or an xgboost scikit-learn estimator."""
    return type(model).__module__.split(".")[0] == "xgboost"


def make_xgboost_callback(on_round: Any) -> Any:
    """Return an ``xgboost.callback.TrainingCallback`` calling ``on_round(booster, evals)``."""
    base: Any = require("xgboost").callback.TrainingCallback

    class GradTracerXGBoostCallback(base):
        """Feeds every finished round to a :class:`TreeDynamicsTracker`."""

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            on_round(model, xgboost_evals(evals_log))
            return False  # never stops training

    return GradTracerXGBoostCallback()
