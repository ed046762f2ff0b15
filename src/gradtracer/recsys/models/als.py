"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through the optional ``implicit`` library.

``implicit`` is an optional extra (``pip install 'gradtracer[implicit]'``); it is imported
only inside :func:`fit_als`. The model is fitted on a ``(n_users, n_items)`` user_items CSR
whose stored values are confidences: ones (``use_ratings=False``, the default) or the
ratings themselves, scaled by ``alpha`` inside ``implicit``. Its scores are preferences
(around 0..1), not ratings, so rating metrics (RMSE, accuracy) do not apply to it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gradtracer._optional import require
from gradtracer._random import check_random_state
from gradtracer.recsys.models.svd import LatentFactors, clamp_n_factors

__all__ = ["fit_als"]


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
