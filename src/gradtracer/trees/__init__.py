"""Boosted-tree dynamics for XGBoost, LightGBM and CatBoost.

``TreeDynamicsTracker`` (alias ``BoostingTracker``) plugs into each library's native
callback, parses only the newest round's trees, and turns leaf-value spread, split
concentration and the eval-metric trend into findings (TREE_STAGNATION, TREE_EXPLOSION,
FEATURE_DOMINANCE, OVERFITTING_ONSET). The libraries are imported only when used.
"""

from gradtracer.trees.diagnose import (
    TreeThresholds,
    detect_feature_dominance,
    detect_overfitting_onset,
    detect_tree_explosion,
    detect_tree_stagnation,
)
from gradtracer.trees.stats import RoundStats, TreeSummary, gini, herfindahl, summarize_round
from gradtracer.trees.tracker import BoostingTracker, TreeDynamicsTracker

__all__ = [
    "BoostingTracker",
    "RoundStats",
    "TreeDynamicsTracker",
    "TreeSummary",
    "TreeThresholds",
    "detect_feature_dominance",
    "detect_overfitting_onset",
    "detect_tree_explosion",
    "detect_tree_stagnation",
    "gini",
    "herfindahl",
    "summarize_round",
]
