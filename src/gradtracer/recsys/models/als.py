"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through the optional ``implicit`` library.

``implicit`` is an optional extra (``pip install 'gradtracer[implicit]'``); it is imported
only inside :func:`fit_als`. The model is fitted on a ``(n_users, n_items)`` user_items CSR
whose stored values are confidences: ones (``use_ratings=False``, the default) or the
ratings themselves, scaled by ``alpha`` inside ``implicit``. Its scores are preferences
(around 0..1), not ratings, so rating metrics (RMSE, accuracy) do not apply to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from gradtracer._optional import require
from gradtracer._random import check_random_state
from gradtracer.recsys.models.registry import register_model
from gradtracer.recsys.models.svd import (
    FactorRecommender,
    LatentFactors,
    as_matrix,
    clamp_n_factors,
)

__all__ = ["ALSRecommender", "fit_als"]


def fit_als(
    user_items: sp.csr_matrix,
    n_factors: int = 64,
    *,
    regularization: float = 0.01,
    alpha: float = 1.0,
    iterations: int = 15,
    use_ratings: bool = False,
    num_threads: int = 1,
    random_state: int | np.random.Generator | None = 0,
) -> LatentFactors:
    """Return ALS factors for ``user_items`` (``user_bias`` is zero, ``singular_values`` None).

    Args:
        user_items: ``(n_users, n_items)`` CSR; stored entries are positive interactions.
        n_factors: latent dimensions; clamped (with a warning) to ``min(shape) - 1`` like SVD.
        regularization: L2 penalty on both factor matrices (default 0.01).
        alpha: confidence scale, ``C = alpha * values`` (default 1.0).
        iterations: ALS sweeps (default 15).
        use_ratings: use stored ratings as confidence values instead of ones.
        num_threads: CPU threads for ``implicit`` (default 1; keep small on shared machines).
        random_state: seed of the initial factors.

    Raises:
        MissingExtraError: ``implicit`` is not installed.
    """
    if not sp.issparse(user_items):
        raise TypeError(
            f"user_items must be a scipy sparse matrix, got {type(user_items).__name__}"
        )
    ui = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    if ui.nnz == 0:
        raise ValueError(f"user_items matrix of shape {ui.shape} has no entries")
    if not use_ratings:
        ui.data[:] = 1.0
    elif (ui.data <= 0).any() or not np.isfinite(ui.data).all():
        raise ValueError("use_ratings=True needs positive finite ratings as confidences")
    for name, value in (("regularization", regularization), ("alpha", alpha)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    k = clamp_n_factors(n_factors, ui.shape, stacklevel=3)
    seed = int(check_random_state(random_state).integers(0, 2**31 - 1))

    als_module = require("implicit.cpu.als")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # implicit's own threads do the work
        model = als_module.AlternatingLeastSquares(
            factors=k,
            regularization=float(regularization),
            alpha=float(alpha),
            iterations=int(iterations),
            num_threads=int(num_threads),
            random_state=seed,
        )
        model.fit(ui, show_progress=False)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)[:, :k]
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)[:, :k]
    return LatentFactors(
        np.ascontiguousarray(users),
        np.ascontiguousarray(items),
        np.zeros(ui.shape[0], dtype=np.float32),
        None,
    )


@register_model("als")
class ALSRecommender(FactorRecommender):
    """Implicit-feedback ALS as a user-item recommender (needs the ``implicit`` extra).

    Args:
        n_factors: latent dimensions (default 64); clamped like SVD.
        regularization / alpha / iterations / use_ratings / num_threads: see :func:`fit_als`.
        random_state: seed of the initial factors (default 0).
    """

    format_version = 1

    def __init__(
        self,
        n_factors: int = 64,
        *,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        use_ratings: bool = False,
        num_threads: int = 1,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        if isinstance(n_factors, bool) or not isinstance(n_factors, int) or n_factors < 1:
            raise ValueError(f"n_factors must be a positive int, got {n_factors!r}")
        self.n_factors = n_factors
        self.regularization, self.alpha = float(regularization), float(alpha)
        self.iterations, self.use_ratings = int(iterations), bool(use_ratings)
        self.num_threads, self.random_state = int(num_threads), random_state
        self.factors = None

    def fit(self, train: Any) -> ALSRecommender:
        """Fit on ``train`` (an ``Interactions`` or a sparse user-item matrix); return ``self``."""
        self.factors = fit_als(
            as_matrix(train),
            self.n_factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            use_ratings=self.use_ratings,
            num_threads=self.num_threads,
            random_state=self.random_state,
        )
        return self

    def _to_artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        seed = self.random_state if isinstance(self.random_state, int) else None
        meta = {
            "n_factors": self.n_factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "use_ratings": self.use_ratings,
            "num_threads": self.num_threads,
            "random_state": seed,
        }
        return meta, self._factor_arrays()

    @classmethod
    def _from_artifact(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ALSRecommender:
        model = cls(
            int(meta["n_factors"]),
            regularization=float(meta["regularization"]),
            alpha=float(meta["alpha"]),
            iterations=int(meta["iterations"]),
            use_ratings=bool(meta["use_ratings"]),
            num_threads=int(meta["num_threads"]),
            random_state=meta["random_state"],
        )
        model.factors = cls._factors_from(arrays)
        return model
