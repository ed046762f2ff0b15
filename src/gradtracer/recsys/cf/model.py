"""The trained CF model: factors + training matrix + id maps + config, and :func:`train`.

:class:`CFModel` is a :class:`~gradtracer.recsys.models.svd.FactorRecommender` (dense
``score`` / ``recommend`` / ``scorer`` / ``save`` / ``load``) that also keeps what the CF
pipeline needs around the factors: the training matrix (seen items), the raw id maps, the
rating scale for clipped rating predictions and the :class:`CFConfig` it was fitted with.
``model.raw()`` recommends raw item ids for raw user ids.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from gradtracer.recsys.cf.config import CFConfig
from gradtracer.recsys.data.interactions import IdMap, Interactions
from gradtracer.recsys.models.base import RawIdRecommender
from gradtracer.recsys.models.registry import register_model
from gradtracer.recsys.models.svd import FactorRecommender, LatentFactors, build_matrix, fit_svd

__all__ = [
    "CFModel",
    "default_rating_scale",
    "fit_factors",
    "import_backend",
    "require_rows",
    "train",
]

logger = logging.getLogger(__name__)


def require_rows(ix: Any, what: str) -> None:
    """``TypeError`` unless ``ix`` is an ``Interactions``; ``ValueError`` when it has no rows."""
    if not isinstance(ix, Interactions):
        raise TypeError(f"{what} must be an Interactions, got {type(ix).__name__}")
    if ix.frame.height == 0:
        raise ValueError(f"{ix.source}: {what} is empty (no rows in column 'user')")


@register_model("cf")
class CFModel(FactorRecommender):
    """A trained factor model with everything needed to recommend and to evaluate.

    ``CFModel(config=CFConfig(...)).fit(train)`` fits one; :func:`train` does the same.

    Attributes:
        factors: the fitted :class:`LatentFactors` (``(n_users, k)``, ``(n_items, k)``).
        train_matrix: ``(n_users, n_items)`` CSR of the training ratings (seen items).
        user_ids / item_ids: raw id maps (dense index order).
        config: the :class:`CFConfig` used; ``n_factors`` there is the request.
        rating_scale: ``(low, high)`` clip range of predicted ratings.
        source: where the training data came from.
        fit_seconds: wall seconds of the factorization (library import excluded; nan if unknown).
    """

    #: 1: the five-file layout (config.json, factors.npz, ...); 2: model.json + arrays.npz.
    format_version = 2

    train_matrix: sp.csr_matrix
    user_ids: IdMap
    item_ids: IdMap
    rating_scale: tuple[float, float]

    def __init__(
        self,
        factors: LatentFactors | None = None,
        train_matrix: sp.csr_matrix | None = None,
        user_ids: IdMap | None = None,
        item_ids: IdMap | None = None,
        config: CFConfig | None = None,
        rating_scale: tuple[float, float] | None = None,
        source: str = "<memory>",
        fit_seconds: float = float("nan"),
    ) -> None:
        self.config = config or CFConfig()
        self.factors = None
        self.source, self.fit_seconds = source, fit_seconds
        if factors is not None:
            if train_matrix is None or user_ids is None or item_ids is None:
                raise ValueError("a fitted CFModel needs train_matrix, user_ids and item_ids")
            self._set(factors, train_matrix, user_ids, item_ids, rating_scale)

    def _set(
        self,
        factors: LatentFactors,
        train_matrix: sp.csr_matrix,
        user_ids: IdMap,
        item_ids: IdMap,
        rating_scale: tuple[float, float] | None,
    ) -> None:
        shape = (len(user_ids), len(item_ids))
        if train_matrix.shape != shape:
            raise ValueError(f"train_matrix shape {train_matrix.shape} != id maps {shape}")
        if factors.user_factors.shape[0] != shape[0] or factors.item_factors.shape[0] != shape[1]:
            raise ValueError(
                f"factor shapes {factors.user_factors.shape}/{factors.item_factors.shape} "
                f"do not match {shape[0]} users x {shape[1]} items"
            )
        self.factors, self.train_matrix = factors, train_matrix
        self.user_ids, self.item_ids = user_ids, item_ids
        self.rating_scale = rating_scale or default_rating_scale(train_matrix, self.config)
        self._seen_users = np.diff(train_matrix.indptr) > 0
        self._seen_items = np.bincount(train_matrix.indices, minlength=shape[1]) > 0

    def __repr__(self) -> str:
        if self.factors is None:
            return f"CFModel(unfitted, config={self.config})"
        return (
            f"CFModel({self.config.solver}, n_factors={self.n_factors}, "
            f"{self.n_users} users x {self.n_items} items, source={self.source!r})"
        )

    @property
    def n_factors(self) -> int:
        """Number of factors actually fitted (after clamping)."""
        return self._fitted().n_factors

    def fit(self, train: Interactions) -> CFModel:
        """Fit on ``train`` with ``self.config`` (replacing any previous fit); return ``self``.

        Raises:
            ValueError: empty split, non-finite ratings, or a matrix too small to factorize.
        """
        config = self.config
        require_rows(train, "the train split")
        matrix = build_matrix(train)
        import_backend(config.solver)
        start = time.perf_counter()
        factors = fit_factors(matrix, config, config.n_factors)
        seconds = time.perf_counter() - start
        logger.info(
            "fitted %s with %d factors on %s in %.2fs",
            config.solver,
            factors.n_factors,
            matrix.shape,
            seconds,
        )
        self.source, self.fit_seconds = train.source, seconds
        self._set(factors, matrix, train.user_ids, train.item_ids, None)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Return predicted ratings ``(n,)`` float32 for dense index pairs; clipped to the scale.

        For ALS the values are preferences and ``clip`` should be False.
        """
        pred = super().predict(users, items)
        if clip:
            pred = np.clip(pred, *self.rating_scale)
        return pred.astype(np.float32)

    def raw(self) -> RawIdRecommender:
        """This model over raw ids: ``model.raw().recommend(user_id, k)`` -> :class:`Recommendations`.

        Users without training rows are unknown; their training items are excluded by default.
        """
        self._fitted()
        return RawIdRecommender(
            self, self.user_ids, self.item_ids, seen=self.train_matrix, source=self.source
        )

    def recommend(
        self,
        users: Any,
        k: int = 10,
        *,
        exclude: sp.csr_matrix | None = None,
        n: int | None = None,
        exclude_seen: bool | None = None,
    ) -> Any:
        """Return ``(B, k)`` int64 top items of dense ``users`` (see the base class).

        The older call ``recommend(raw_user_id, n=10, exclude_seen=True)`` still works and
        returns :class:`Recommendations`, with a ``DeprecationWarning``; use
        ``model.raw().recommend(raw_user_id, k=10)``.
        """
        if isinstance(users, str) or n is not None or exclude_seen is not None:
            warnings.warn(
                "CFModel.recommend(user_id, n=..., exclude_seen=...) is deprecated; use "
                "CFModel.raw().recommend(user_id, k=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.raw().recommend(
                users, n if n is not None else k, exclude_seen=exclude_seen is not False
            )
        return super().recommend(users, k, exclude=exclude)

    # --- artifacts ---------------------------------------------------------------------
    def _to_artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._fitted()
        m = self.train_matrix
        meta = {
            "config": self.config.to_dict(),
            "n_factors": self.n_factors,
            "rating_scale": list(self.rating_scale),
            "source": self.source,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "nnz": int(m.nnz),
            "fit_seconds": None if math.isnan(self.fit_seconds) else self.fit_seconds,
        }
        arrays = {
            **self._factor_arrays(),
            "train_indptr": m.indptr.astype(np.int64),
            "train_indices": m.indices.astype(np.int64),
            "train_data": m.data.astype(np.float32),
            "train_shape": np.asarray(m.shape, dtype=np.int64),
            "user_ids": np.asarray(self.user_ids.ids, dtype=np.str_),
            "item_ids": np.asarray(self.item_ids.ids, dtype=np.str_),
        }
        return meta, arrays

    @classmethod
    def _from_artifact(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> CFModel:
        shape = tuple(int(x) for x in arrays["train_shape"])
        matrix = sp.csr_matrix(
            (arrays["train_data"], arrays["train_indices"], arrays["train_indptr"]), shape=shape
        )
        fit_seconds = meta.get("fit_seconds")
        return cls(
            factors=cls._factors_from(arrays),
            train_matrix=matrix,
            user_ids=IdMap(arrays["user_ids"].tolist(), "user"),
            item_ids=IdMap(arrays["item_ids"].tolist(), "item"),
            config=CFConfig.from_dict(meta["config"]),
            rating_scale=(float(meta["rating_scale"][0]), float(meta["rating_scale"][1])),
            source=str(meta.get("source", "<memory>")),
            fit_seconds=float("nan") if fit_seconds is None else float(fit_seconds),
        )


def import_backend(solver: str) -> None:
    """Import the solver's library up front so that fit timings exclude the import."""
    import importlib

    from gradtracer._optional import require

    if solver == "als":
        require("implicit.cpu.als")
    else:
        importlib.import_module(
            "sklearn.decomposition" if solver == "sklearn" else "scipy.sparse.linalg"
        )


def fit_factors(matrix: sp.csr_matrix, config: CFConfig, n_factors: int) -> LatentFactors:
    """Fit ``n_factors`` factors of ``matrix`` with the solver and options of ``config``."""
    if config.solver == "als":
        from gradtracer.recsys.models.als import fit_als

        return fit_als(
            matrix,
            n_factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            use_ratings=config.use_ratings,
            num_threads=config.num_threads,
            random_state=config.random_state,
        )
    return fit_svd(
        matrix,
        n_factors,
        solver=config.solver,  # type: ignore[arg-type]
        center=config.center,
        n_iter=config.n_iter,
        random_state=config.random_state,
    )


def default_rating_scale(matrix: sp.csr_matrix, config: CFConfig) -> tuple[float, float]:
    """``config.rating_scale``, or the training matrix's ``(min, max)`` when it is None."""
    if config.rating_scale is not None:
        return config.rating_scale
    return float(matrix.data.min()), float(matrix.data.max())


def train(train: Interactions, config: CFConfig | None = None) -> CFModel:
    """Return a :class:`CFModel` fitted on ``train`` with ``config`` (default :class:`CFConfig`).

    Raises:
        ValueError: empty split, non-finite ratings, or a matrix too small to factorize.
    """
    return CFModel(config=config).fit(train)
