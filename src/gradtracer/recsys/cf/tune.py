"""Choosing ``n_factors`` on a validation split."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from gradtracer.errors import GradTracerWarning
from gradtracer.recsys.cf.config import DEFAULT_GRID, DEFAULT_KS, CFConfig
from gradtracer.recsys.cf.evaluate import CFEvaluation, evaluate
from gradtracer.recsys.cf.model import (
    CFModel,
    default_rating_scale,
    fit_factors,
    import_backend,
    require_rows,
)
from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.models.svd import LatentFactors, build_matrix, max_n_factors

__all__ = ["TuningResult", "select_n_factors", "tune_n_factors"]

logger = logging.getLogger(__name__)


def select_n_factors(
    n_factors: Sequence[int], scores: Sequence[float], *, tolerance: float = 0.02
) -> int:
    """Return the smallest ``n_factors`` whose score is within ``tolerance`` of the best.

    "Within" is relative: ``score >= best * (1 - tolerance)`` (scores such as NDCG are
    non-negative). NaN scores are ignored. With ``tolerance=0`` this is the arg-max
    (smallest on ties).

    Raises:
        ValueError: lengths differ, nothing to choose from, all scores NaN, or a bad tolerance.
    """
    grid = [int(n) for n in n_factors]
    vals = np.asarray(list(scores), dtype=np.float64)
    if len(grid) != vals.size:
        raise ValueError(f"n_factors ({len(grid)}) and scores ({vals.size}) differ in length")
    if not grid:
        raise ValueError("select_n_factors needs at least one candidate")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    finite = np.isfinite(vals)
    if not finite.any():
        raise ValueError(f"every score is NaN/inf: {vals.tolist()}")
    best = float(vals[finite].max())
    threshold = best - tolerance * abs(best)
    return min(n for n, v, ok in zip(grid, vals, finite, strict=True) if ok and v >= threshold)


@dataclass(eq=False)
class TuningResult:
    """Validation scores over an ``n_factors`` grid and the chosen value.

    Attributes:
        grid: evaluated ``n_factors`` values (after dropping those above the matrix limit).
        evaluations: one :class:`CFEvaluation` per grid value.
        fit_seconds: fit time per grid value (SVD: the single fit at the largest value,
            repeated, since smaller values are its leading components).
        chosen: the selected ``n_factors``.
        metric / tolerance: the selection rule (:func:`select_n_factors`).
    """

    grid: tuple[int, ...]
    evaluations: list[CFEvaluation]
    fit_seconds: list[float]
    chosen: int
    metric: str
    tolerance: float

    def to_polars(self) -> pl.DataFrame:
        """One row per grid value: n_factors, rmse, accuracy, ranking means, fit_s, eval_s."""
        rows = []
        for n, ev, fs in zip(self.grid, self.evaluations, self.fit_seconds, strict=True):
            rows.append(
                {
                    "n_factors": n,
                    "rmse": ev.rmse,
                    "accuracy": ev.accuracy,
                    **ev.mean,
                    "fit_s": fs,
                    "eval_s": ev.seconds,
                }
            )
        return pl.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "grid": list(self.grid),
            "rows": [ev.to_dict() for ev in self.evaluations],
            "fit_seconds": list(self.fit_seconds),
        }


def tune_n_factors(
    train: Interactions,
    valid: Interactions,
    *,
    grid: Sequence[int] = DEFAULT_GRID,
    config: CFConfig | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "ndcg@10",
    tolerance: float = 0.02,
) -> TuningResult:
    """Evaluate each ``n_factors`` of ``grid`` on ``valid``; choose with :func:`select_n_factors`.

    SVD is fitted once at the largest grid value and each smaller value uses its leading
    components (the rank-k truncation of an SVD is the rank-k SVD). ALS is refitted per
    value. Grid values above ``min(n_users, n_items) - 1`` are dropped with a warning; if
    none is left, the limit itself is used.
    """
    config = config or CFConfig()
    require_rows(train, "the train split")
    require_rows(valid, "the valid split")
    matrix = build_matrix(train)
    allowed = max_n_factors(matrix.shape)
    if allowed < 1:
        raise ValueError(
            f"{train.source}: matrix of shape {matrix.shape} is too small to factorize"
        )
    values = sorted({int(n) for n in grid})
    if not values or values[0] < 1:
        raise ValueError(f"grid must hold positive n_factors values, got {list(grid)}")
    kept = [n for n in values if n <= allowed]
    if len(kept) < len(values):
        dropped = [n for n in values if n > allowed]
        kept = kept or [allowed]
        warnings.warn(
            f"n_factors {dropped} exceed the {matrix.shape[0]}x{matrix.shape[1]} matrix limit of "
            f"{allowed}; tuning over {kept}",
            GradTracerWarning,
            stacklevel=2,
        )
    scale = default_rating_scale(matrix, config)
    import_backend(config.solver)
    evaluations: list[CFEvaluation] = []
    fit_seconds: list[float] = []
    full: LatentFactors | None = None
    full_seconds = float("nan")
    for n in kept:
        if config.solver == "als":
            start = time.perf_counter()
            factors = fit_factors(matrix, config, n)
            seconds = time.perf_counter() - start
        else:
            if full is None:
                start = time.perf_counter()
                full = fit_factors(matrix, config, kept[-1])
                full_seconds = time.perf_counter() - start
            factors, seconds = full.truncate(n), full_seconds
        model = CFModel(
            factors, matrix, train.user_ids, train.item_ids, config, scale, train.source, seconds
        )
        evaluations.append(evaluate(model, valid, ks=ks, split="valid"))
        fit_seconds.append(seconds)
        logger.info(
            "n_factors=%d: %s=%.4f", n, metric, evaluations[-1].mean.get(metric, float("nan"))
        )
    if metric not in evaluations[0].mean:
        raise ValueError(
            f"metric {metric!r} not computed; available: {sorted(evaluations[0].mean)}"
        )
    chosen = select_n_factors(kept, [ev.mean[metric] for ev in evaluations], tolerance=tolerance)
    return TuningResult(tuple(kept), evaluations, fit_seconds, chosen, metric, tolerance)
