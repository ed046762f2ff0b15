"""LightGBM adapter: ``Booster.dump_model(start_iteration=i, num_iteration=1)`` dumps one round.

The dump holds only round ``i``'s trees (plus per-feature header fields), so the
per-round cost does not grow with the number of trees already built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradtracer.trees.stats import TreeSummary

__all__ = ["is_lightgbm_model", "lightgbm_evals", "make_lightgbm_callback", "read_lightgbm_round"]


def _tree_from_structure(root: Mapping[str, Any]) -> TreeSummary:
    leaves: list[float] = []
    feats: list[int] = []
    gains: list[float] = []
    depth = 0
    stack: list[tuple[Mapping[str, Any], int]] = [(root, 0)]
    while stack:  # iterative walk: deep lossguide trees must not hit the recursion limit
        node, d = stack.pop()
        if "leaf_value" in node:
            leaves.append(float(node["leaf_value"]))
            depth = max(depth, d)
            continue
        feats.append(int(node["split_feature"]))
        gains.append(float(node["split_gain"]))
        stack.append((node["left_child"], d + 1))
        stack.append((node["right_child"], d + 1))
    return TreeSummary(
        leaf_values=np.asarray(leaves, dtype=np.float64),
        split_features=np.asarray(feats, dtype=np.int64),
        split_gains=np.asarray(gains, dtype=np.float64),
        depth=depth,
    )


def read_lightgbm_round(booster: Any, round_: int) -> list[TreeSummary]:
    """Return the trees grown in 0-based boosting round ``round_`` of a ``lightgbm.Booster``."""
    dump = booster.dump_model(start_iteration=round_, num_iteration=1)
    return [_tree_from_structure(t["tree_structure"]) for t in dump["tree_info"]]


def lightgbm_evals(results: Sequence[Sequence[Any]]) -> tuple[dict[str, float], dict[str, bool]]:
    """Return ``({"<set>/<metric>": value}, {"<set>/<metric>": higher_is_better})``."""
    values: dict[str, float] = {}
    higher: dict[str, bool] = {}
    for item in results:
        key = f"{item[0]}/{item[1]}"
        values[key] = float(item[2])
        higher[key] = bool(item[3])
    return values, higher


def is_lightgbm_model(model: Any) -> bool:
    """True for a ``lightgbm.Booster`` or a lightgbm scikit-learn estimator."""
    return type(model).__module__.split(".")[0] == "lightgbm"


def make_lightgbm_callback(on_round: Any) -> Any:
    """Return a LightGBM callback calling ``on_round(booster, round, evals, higher_is_better)``."""

    def gradtracer_lightgbm_callback(env: Any) -> None:
        values, higher = lightgbm_evals(env.evaluation_result_list or [])
        on_round(env.model, int(env.iteration), values, higher)

    gradtracer_lightgbm_callback.order = 100  # type: ignore[attr-defined]  # after built-ins
    return gradtracer_lightgbm_callback
