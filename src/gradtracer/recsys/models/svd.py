"""Truncated SVD of a user-item rating matrix (PureSVD-style model-based CF).

The rating matrix ``R`` (``(n_users, n_items)`` CSR, unobserved entries 0) is factorized as
``R ~= U @ V.T`` with ``U = left singular vectors * singular values`` (``(n_users, k)``) and
``V = right singular vectors`` (``(n_items, k)``), the convention of scikit-learn's
``TruncatedSVD.fit_transform`` / ``components_``.

Mean-centring (``center=True``): each user's mean over *observed* entries is subtracted from
that user's observed entries only (unobserved entries stay 0, i.e. "at the user's mean");
the mean is stored as ``user_bias`` and added back when predicting a rating:
``r_hat(u, i) = user_bias[u] + U[u] @ V[i]``. Adding a per-user constant does not change a
user's ranking, so top-N lists come from ``U @ V.T`` alone. Users without observed entries
get mean 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from gradtracer._random import check_random_state
from gradtracer.errors import GradTracerWarning

__all__ = [
    "SOLVERS",
    "LatentFactors",
    "SVDSolver",
    "center_by_user",
    "clamp_n_factors",
    "fit_svd",
    "max_n_factors",
]

SVDSolver = Literal["sklearn", "scipy"]
#: ``"sklearn"``: ``sklearn.decomposition.TruncatedSVD`` (randomized);
#: ``"scipy"``: ``scipy.sparse.linalg.svds`` (ARPACK, exact leading triplets).
SOLVERS: tuple[str, ...] = ("sklearn", "scipy")


@dataclass(eq=False)
class LatentFactors:
    """A fitted factor model: ``score(u, i) = user_bias[u] + user_factors[u] @ item_factors[i]``.

    Attributes:
        user_factors: ``(n_users, k)`` float32.
        item_factors: ``(n_items, k)`` float32.
        user_bias: ``(n_users,)`` float32, the user mean removed by centring (zeros otherwise).
        singular_values: ``(k,)`` float32 in descending order (SVD), ``None`` for ALS.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    singular_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.user_factors.ndim != 2 or self.item_factors.ndim != 2:
            raise ValueError(
                "user_factors and item_factors must be 2-D, got shapes "
                f"{self.user_factors.shape} and {self.item_factors.shape}"
            )
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ValueError(
                f"factor widths differ: user_factors {self.user_factors.shape}, "
                f"item_factors {self.item_factors.shape}"
            )
        if self.user_bias.shape != (self.user_factors.shape[0],):
            raise ValueError(
                f"user_bias has shape {self.user_bias.shape}, expected "
                f"({self.user_factors.shape[0]},)"
            )

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])

    def truncate(self, k: int) -> LatentFactors:
        """The leading ``k`` components (the rank-``k`` truncated SVD when fitted by SVD)."""
        if not 1 <= k <= self.n_factors:
            raise ValueError(f"k must be in [1, {self.n_factors}], got {k}")
        sv = None if self.singular_values is None else self.singular_values[:k].copy()
        return LatentFactors(
            np.ascontiguousarray(self.user_factors[:, :k]),
            np.ascontiguousarray(self.item_factors[:, :k]),
            self.user_bias,
            sv,
        )


def max_n_factors(shape: tuple[int, int]) -> int:
    """Largest number of factors both solvers accept for a matrix of ``shape``: ``min(shape) - 1``."""
    return int(min(shape)) - 1


def clamp_n_factors(requested: int, shape: tuple[int, int], *, stacklevel: int = 2) -> int:
    """``requested`` clamped to :func:`max_n_factors`; warns (``GradTracerWarning``) when clamped.

    ``stacklevel`` is passed to :func:`warnings.warn` (callers that wrap this raise it).

    Raises:
        ValueError: ``requested < 1`` or the matrix is too small for even one factor.
    """
    if int(requested) < 1:
        raise ValueError(f"n_factors must be >= 1, got {requested}")
    allowed = max_n_factors(shape)
    if allowed < 1:
        raise ValueError(
            f"matrix of shape {shape} is too small to factorize (needs at least 2 users and 2 items)"
        )
    if requested > allowed:
        warnings.warn(
            f"n_factors={requested} requested but a {shape[0]}x{shape[1]} matrix allows at most "
            f"{allowed}; using n_factors={allowed}",
            GradTracerWarning,
            stacklevel=stacklevel,
        )
        return allowed
    return int(requested)


def center_by_user(ratings: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return ``(centred copy, user_means)``: each user's observed-entry mean subtracted.

    Only stored entries change (they may become explicit zeros, which stay stored);
    ``user_means`` is ``(n_users,)`` float32, 0 for users without entries.
    """
    r = sp.csr_matrix(ratings, dtype=np.float32, copy=True)
    counts = np.diff(r.indptr)
    sums = np.asarray(r.sum(axis=1), dtype=np.float64).ravel()
    means = np.divide(sums, counts, out=np.zeros(r.shape[0]), where=counts > 0).astype(np.float32)
    r.data -= np.repeat(means, counts)
    return r, means


def fit_svd(
    ratings: sp.csr_matrix,
    n_factors: int = 50,
    *,
    solver: SVDSolver = "sklearn",
    center: bool = True,
    n_iter: int = 5,
    random_state: int | np.random.Generator | None = 0,
) -> LatentFactors:
    """Return the rank-``n_factors`` truncated SVD of ``ratings`` as :class:`LatentFactors`.

    Args:
        ratings: ``(n_users, n_items)`` CSR of ratings, unobserved entries absent.
        n_factors: number of components; clamped (with a warning) to ``min(shape) - 1``.
        solver: ``"sklearn"`` (TruncatedSVD, randomized) or ``"scipy"`` (svds, ARPACK).
        center: subtract each user's observed mean first (see the module docstring).
            Ignored with a warning when every stored rating has the same value (implicit
            data), because centring would leave an all-zero matrix.
        n_iter: power iterations of the randomized solver (sklearn only; default 5).
        random_state: seed of the randomized solver / ARPACK start vector.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not sp.issparse(ratings):
        raise TypeError(f"ratings must be a scipy sparse matrix, got {type(ratings).__name__}")
    r = sp.csr_matrix(ratings, dtype=np.float32)
    if r.nnz == 0:
        raise ValueError(f"ratings matrix of shape {r.shape} has no entries")
    if not np.isfinite(r.data).all():
        raise ValueError("ratings matrix contains NaN or infinite values")
    k = clamp_n_factors(n_factors, r.shape, stacklevel=3)
    if center and np.ptp(r.data) == 0:
        warnings.warn(
            f"center=True ignored: every rating equals {float(r.data[0])} (implicit data); "
            "centring would leave an all-zero matrix",
            GradTracerWarning,
            stacklevel=2,
        )
        center = False
    if center:
        r, bias = center_by_user(r)
    else:
        bias = np.zeros(r.shape[0], dtype=np.float32)
    rng = check_random_state(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    if solver == "sklearn":
        from sklearn.decomposition import TruncatedSVD

        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=n_iter, random_state=seed)
        users = svd.fit_transform(r)  # (n_users, k) = U * sigma
        items = svd.components_.T  # (n_items, k)
        sigma = svd.singular_values_
    else:
        from scipy.sparse.linalg import svds

        v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, size=min(r.shape))
        u, sigma, vt = svds(r.astype(np.float64), k=k, v0=v0)
        order = np.argsort(-sigma)  # svds returns ascending singular values
        sigma = sigma[order]
        users = u[:, order] * sigma
        items = vt[order].T
    return LatentFactors(
        np.ascontiguousarray(users, dtype=np.float32),
        np.ascontiguousarray(items, dtype=np.float32),
        bias.astype(np.float32),
        np.asarray(sigma, dtype=np.float32),
    )
