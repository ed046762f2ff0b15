"""Feature-matrix diagnostics: missing/constant columns, VIF filtering, interaction suggestions.

``FeatureAnalyzer`` turns them into findings (MISSING_VALUES, CONSTANT_FEATURE,
COLLINEAR_FEATURES, FEATURE_INTERACTION); the statistics are plain functions.
"""

from gradtracer.features.analyzer import FeatureAnalyzer, FeatureAnalyzerConfig
from gradtracer.features.interactions import (
    InteractionTest,
    adjusted_r2,
    benjamini_hochberg,
    rank_interactions,
)
from gradtracer.features.screening import ColumnScreen, screen_columns
from gradtracer.features.vif import CollinearDrop, VifFilterResult, compute_vif, filter_by_vif

__all__ = [
    "CollinearDrop",
    "ColumnScreen",
    "FeatureAnalyzer",
    "FeatureAnalyzerConfig",
    "InteractionTest",
    "VifFilterResult",
    "adjusted_r2",
    "benjamini_hochberg",
    "compute_vif",
    "filter_by_vif",
    "rank_interactions",
    "screen_columns",
]
