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
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer._random import check_random_state
from gradtracer.errors import GradTracerWarning
from gradtracer.recsys.models.base import UserItemRecommender, as_user_index
from gradtracer.recsys.models.registry import register_model

__all__ = [
    "SOLVERS",
    "FactorRecommender",
    "LatentFactors",
    "SVDRecommender",
    "SVDSolver",
    "build_matrix",
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


# --- recommenders over LatentFactors ------------------------------------------------------


def build_matrix(ix: Any) -> sp.csr_matrix:
    """Return the ``(n_users, n_items)`` CSR of ratings (float32) of an ``Interactions``.

    Shape follows the id maps, so users/items without rows are empty rows/columns.
    Repeated (user, item) pairs keep the latest rating (largest ``timestamp``, then last row).

    Raises:
        TypeError: ``ix`` is not an ``Interactions``.
        ValueError: no rows, or a non-finite value in column ``rating`` (naming the source).
    """
    from gradtracer.recsys.data.interactions import Interactions

    if not isinstance(ix, Interactions):
        raise TypeError(f"interactions must be an Interactions, got {type(ix).__name__}")
    if ix.frame.height == 0:
        raise ValueError(f"{ix.source}: interactions is empty (no rows in column 'user')")
    frame = (
        ix.frame.select("user", "item", "rating", "timestamp")
        .with_row_index("_row")
        .sort(["timestamp", "_row"])
        .unique(subset=["user", "item"], keep="last", maintain_order=True)
    )
    rating = frame["rating"].to_numpy().astype(np.float32)
    if not np.isfinite(rating).all():
        bad = int(np.flatnonzero(~np.isfinite(rating))[0])
        raise ValueError(
            f"{ix.source}: column 'rating' has a non-finite value ({rating[bad]}) for user "
            f"{ix.user_ids.raw(frame['user'][bad])!r}"
        )
    mat = sp.csr_matrix(
        (rating, (frame["user"].to_numpy(), frame["item"].to_numpy())),
        shape=(ix.n_users, ix.n_items),
        dtype=np.float32,
    )
    mat.sort_indices()
    return mat


def as_matrix(train: Any) -> sp.csr_matrix:
    """``train`` as a float32 CSR: an ``Interactions`` (via :func:`build_matrix`) or sparse."""
    if sp.issparse(train):
        return sp.csr_matrix(train, dtype=np.float32)
    return build_matrix(train)


class FactorRecommender(UserItemRecommender):
    """A recommender scored by :class:`LatentFactors`: ``user_bias[u] + U[u] @ V[i]``.

    Subclasses set ``self.factors`` in :meth:`fit`; scoring reads it on every call.
    """

    factors: LatentFactors | None = None

    def _fitted(self) -> LatentFactors:
        if self.factors is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(train) first")
        return self.factors

    @property
    def n_users(self) -> int:  # type: ignore[override]
        """Users of the fitted factors."""
        return int(self._fitted().user_factors.shape[0])

    @property
    def n_items(self) -> int:  # type: ignore[override]
        """Items of the fitted factors."""
        return int(self._fitted().item_factors.shape[0])

    def score(self, users: Any) -> np.ndarray:
        """Return ``(B, n_items)`` float32 scores (SVD: predicted ratings, unclipped)."""
        f = self._fitted()
        idx = as_user_index(users, self.n_users)
        out = f.user_factors[idx] @ f.item_factors.T
        out += f.user_bias[idx, None]
        return out.astype(np.float32, copy=False)

    def score_tensor(self, users: np.ndarray) -> torch.Tensor:
        """:meth:`score` as a tensor (no copy)."""
        return torch.from_numpy(self.score(users))

    def scorer(self) -> tuple[np.ndarray, np.ndarray]:
        """``(user_factors, item_factors)`` for ``evaluate_topk`` (the bias never changes a ranking)."""
        f = self._fitted()
        return f.user_factors, f.item_factors

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` float32 scores of dense ``(user, item)`` index pairs (unclipped)."""
        f = self._fitted()
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError(f"users and items differ in shape: {users.shape} vs {items.shape}")
        pred = np.einsum("nk,nk->n", f.user_factors[users], f.item_factors[items])
        return (pred + f.user_bias[users]).astype(np.float32)

    def _factor_arrays(self) -> dict[str, np.ndarray]:
        f = self._fitted()
        arrays = {
            "user_factors": f.user_factors,
            "item_factors": f.item_factors,
            "user_bias": f.user_bias,
        }
        if f.singular_values is not None:
            arrays["singular_values"] = f.singular_values
        return arrays

    @staticmethod
    def _factors_from(arrays: dict[str, np.ndarray]) -> LatentFactors:
        return LatentFactors(
            np.ascontiguousarray(arrays["user_factors"], dtype=np.float32),
            np.ascontiguousarray(arrays["item_factors"], dtype=np.float32),
            np.ascontiguousarray(arrays["user_bias"], dtype=np.float32),
            arrays.get("singular_values"),
        )


@register_model("svd")
class SVDRecommender(FactorRecommender):
    """Truncated SVD of the training rating matrix as a user-item recommender.

    Args:
        n_factors: number of components (default 50); clamped with a warning to
            ``min(n_users, n_items) - 1``.
        solver: ``"sklearn"`` (randomized TruncatedSVD, default) or ``"scipy"`` (svds).
        center: subtract each user's observed mean rating (default True; see the module
            docstring).
        n_iter: randomized power iterations (sklearn only; default 5).
        random_state: seed of the solver (default 0).
    """

    format_version = 1

    def __init__(
        self,
        n_factors: int = 50,
        *,
        solver: SVDSolver = "sklearn",
        center: bool = True,
        n_iter: int = 5,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if isinstance(n_factors, bool) or not isinstance(n_factors, int) or n_factors < 1:
            raise ValueError(f"n_factors must be a positive int, got {n_factors!r}")
        self.n_factors, self.solver, self.center = n_factors, solver, bool(center)
        self.n_iter, self.random_state = int(n_iter), random_state
        self.factors = None

    def fit(self, train: Any) -> SVDRecommender:
        """Factorize ``train`` (an ``Interactions`` or a sparse rating matrix); return ``self``."""
        self.factors = fit_svd(
            as_matrix(train),
            self.n_factors,
            solver=self.solver,
            center=self.center,
            n_iter=self.n_iter,
            random_state=self.random_state,
        )
        return self

    def _to_artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        seed = self.random_state if isinstance(self.random_state, int) else None
        meta = {
            "n_factors": self.n_factors,
            "solver": self.solver,
            "center": self.center,
            "n_iter": self.n_iter,
            "random_state": seed,
        }
        return meta, self._factor_arrays()

    @classmethod
    def _from_artifact(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SVDRecommender:
        model = cls(
            int(meta["n_factors"]),
            solver=meta["solver"],
            center=bool(meta["center"]),
            n_iter=int(meta["n_iter"]),
            random_state=meta["random_state"],
        )
        model.factors = cls._factors_from(arrays)
        return model
