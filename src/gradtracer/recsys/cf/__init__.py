"""Model-based collaborative filtering pipeline: matrix, train, artifacts, recommend, evaluate, tune.

One flow for truncated SVD (scikit-learn or SciPy) and implicit ALS (optional ``implicit``):

>>> from gradtracer.recsys.cf import CFConfig, evaluate, train
>>> model = train(split.train, CFConfig(n_factors=50))                  # doctest: +SKIP
>>> model.raw().recommend("A2IBPI20UZIR0U", k=10).to_polars()          # doctest: +SKIP
>>> evaluate(model, split.test, exclude=split.valid).to_dict()         # doctest: +SKIP

Modules: :mod:`~gradtracer.recsys.cf.config` (``CFConfig``), :mod:`~gradtracer.recsys.cf.model`
(``CFModel``, ``train``), :mod:`~gradtracer.recsys.cf.evaluate` (``evaluate`` and the metric
definitions), :mod:`~gradtracer.recsys.cf.tune` (``tune_n_factors``) and
:mod:`~gradtracer.recsys.cf.figures`.
"""

from gradtracer.recsys.cf.config import (
    ALL_SOLVERS,
    DEFAULT_GRID,
    DEFAULT_KS,
    RANKING_METRICS,
    CFConfig,
)
from gradtracer.recsys.cf.evaluate import CFEvaluation, evaluate
from gradtracer.recsys.cf.figures import plot_tuning_curve, plot_valid_vs_test
from gradtracer.recsys.cf.model import CFModel, train
from gradtracer.recsys.cf.tune import TuningResult, select_n_factors, tune_n_factors
from gradtracer.recsys.models.artifact import LEGACY_CF_FORMAT, LEGACY_CF_VERSION
from gradtracer.recsys.models.base import Recommendations
from gradtracer.recsys.models.svd import build_matrix

#: ``format`` and ``version`` of the older five-file layout (``config.json``), still read.
ARTIFACT_FORMAT = LEGACY_CF_FORMAT
ARTIFACT_VERSION = LEGACY_CF_VERSION

__all__ = [
    "ALL_SOLVERS",
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "DEFAULT_GRID",
    "DEFAULT_KS",
    "RANKING_METRICS",
    "CFConfig",
    "CFEvaluation",
    "CFModel",
    "Recommendations",
    "TuningResult",
    "build_matrix",
    "evaluate",
    "plot_tuning_curve",
    "plot_valid_vs_test",
    "select_n_factors",
    "train",
    "tune_n_factors",
]
