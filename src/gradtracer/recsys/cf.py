"""Model-based collaborative filtering pipeline: matrix, train, artifacts, recommend, evaluate, tune.

One flow for truncated SVD (scikit-learn or SciPy) and implicit ALS (optional ``implicit``):

>>> from gradtracer.recsys.cf import CFConfig, evaluate, train
>>> model = train(split.train, CFConfig(n_factors=50))            # doctest: +SKIP
>>> model.recommend("A2IBPI20UZIR0U", n=10).to_polars()          # doctest: +SKIP
>>> evaluate(model, split.test, exclude=split.valid).to_dict()   # doctest: +SKIP

Definitions used by :func:`evaluate`:

- Only held-out rows whose user *and* item occur in the training matrix are scored
  (cold users/items have no factors); the dropped counts are reported in ``info``.
- ``rmse``: root mean squared error of the predicted rating ``clip(user_bias[u] +
  U[u] @ V[i], *rating_scale)`` over the held-out ratings (micro average over ratings).
- ``accuracy``: share of held-out ratings whose clipped prediction is within 0.5 of the
  true rating (``|r_hat - r| <= 0.5``; for integer scales this is "rounds to the true
  star", ties at .5 counted as correct).
- Both are ``nan`` for ALS, whose scores are preferences, not ratings, and for implicit
  data (a single rating value, so the rating scale is one point).
- Ranking metrics (``recall@k``, ``ndcg@k``, ``map@k``) come from
  :func:`gradtracer.recsys.metrics.evaluate_topk` over the full catalogue with the
  user's training items (and ``exclude`` rows) masked; a held-out item the user already
  has in the masked set is not a target.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from gradtracer.errors import GradTracerWarning
from gradtracer.findings import metric_key
from gradtracer.recsys.data.interactions import IdMap, Interactions
from gradtracer.recsys.models.svd import SOLVERS, LatentFactors, fit_svd, max_n_factors

__all__ = [
    "ARTIFACT_FORMAT",
    "DEFAULT_GRID",
    "DEFAULT_KS",
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

logger = logging.getLogger(__name__)

#: ``format`` field of ``config.json`` in a model directory, with its version.
ARTIFACT_FORMAT = "gradtracer.cf"
ARTIFACT_VERSION = 1
#: Cutoffs of the ranking metrics.
DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
#: ``n_factors`` grid of :func:`tune_n_factors` (the reference notebook's grid).
DEFAULT_GRID: tuple[int, ...] = (10, 20, 30, 50, 75, 100)
RANKING_METRICS: tuple[str, ...] = ("recall", "ndcg", "map")
ALL_SOLVERS: tuple[str, ...] = (*SOLVERS, "als")

_FILES = {
    "config": "config.json",
    "factors": "factors.npz",
    "matrix": "train_matrix.npz",
    "users": "user_ids.json",
    "items": "item_ids.json",
}


@dataclass
class CFConfig:
    """Settings of one model-based CF fit (the CLI fills the same fields)."""

    n_factors: int = 50  # latent dimensions; clamped with a warning to min(n_users, n_items) - 1
    solver: str = "sklearn"  # "sklearn" TruncatedSVD | "scipy" svds | "als" implicit ALS
    center: bool = True  # SVD: subtract each user's observed mean rating (added back to predict)
    n_iter: int = 5  # SVD "sklearn": randomized power iterations
    regularization: float = 0.01  # ALS: L2 penalty
    alpha: float = 1.0  # ALS: confidence scale
    iterations: int = 15  # ALS: sweeps
    use_ratings: bool = False  # ALS: ratings as confidences instead of ones
    num_threads: int = 1  # ALS: implicit's CPU threads
    rating_scale: tuple[float, float] | None = (
        None  # clip range of predictions; None = train min/max
    )
    random_state: int = 0  # seed of the randomized solvers

    def __post_init__(self) -> None:
        if self.solver not in ALL_SOLVERS:
            raise ValueError(f"solver must be one of {ALL_SOLVERS}, got {self.solver!r}")
        if int(self.n_factors) < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if self.rating_scale is not None:
            lo, hi = (float(x) for x in self.rating_scale)
            if not lo <= hi:
                raise ValueError(
                    f"rating_scale must be (low, high) with low <= high, got {self.rating_scale}"
                )
            self.rating_scale = (lo, hi)

    @property
    def is_rating_model(self) -> bool:
        """True for SVD (predicts ratings); False for ALS (predicts preferences)."""
        return self.solver != "als"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rating_scale"] = None if self.rating_scale is None else list(self.rating_scale)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CFConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CFConfig field(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(data)
        if kwargs.get("rating_scale") is not None:
            kwargs["rating_scale"] = tuple(kwargs["rating_scale"])
        return cls(**kwargs)


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Top-N list of one user: raw item ids, best first, with their scores.

    For SVD a score is the predicted rating (not clipped); for ALS a preference.
    """

    user_id: str
    item_ids: tuple[str, ...]
    scores: np.ndarray  # (n,) float32, descending

    def __len__(self) -> int:
        return len(self.item_ids)

    def to_polars(self) -> pl.DataFrame:
        """Frame with columns ``item_id`` (Utf8) and ``score`` (Float32)."""
        return pl.DataFrame(
            {
                "item_id": pl.Series(list(self.item_ids), dtype=pl.Utf8),
                "score": pl.Series(self.scores, dtype=pl.Float32),
            }
        )


# --- matrix -----------------------------------------------------------------------------


def _require_rows(ix: Interactions, what: str) -> None:
    if not isinstance(ix, Interactions):
        raise TypeError(f"{what} must be an Interactions, got {type(ix).__name__}")
    if ix.frame.height == 0:
        raise ValueError(f"{ix.source}: {what} is empty (no rows in column 'user')")


def build_matrix(ix: Interactions) -> sp.csr_matrix:
    """Return the ``(n_users, n_items)`` CSR of ratings (float32) of ``ix``.

    Shape follows the id maps, so users/items without rows are empty rows/columns.
    Repeated (user, item) pairs keep the latest rating (largest ``timestamp``, then last row).

    Raises:
        ValueError: no rows, or a non-finite value in column ``rating`` (naming the source).
    """
    _require_rows(ix, "interactions")
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


# --- model ------------------------------------------------------------------------------


@dataclass(eq=False)
class CFModel:
    """A trained factor model with everything needed to recommend and to evaluate.

    Attributes:
        factors: the fitted :class:`LatentFactors` (``(n_users, k)``, ``(n_items, k)``).
        train_matrix: ``(n_users, n_items)`` CSR of the training ratings (seen items).
        user_ids / item_ids: raw id maps (dense index order).
        config: the :class:`CFConfig` used; ``n_factors`` there is the request.
        rating_scale: ``(low, high)`` clip range of predicted ratings.
        source: where the training data came from.
        fit_seconds: wall seconds of the factorization (library import excluded; nan if unknown).
    """

    factors: LatentFactors
    train_matrix: sp.csr_matrix
    user_ids: IdMap
    item_ids: IdMap
    config: CFConfig
    rating_scale: tuple[float, float]
    source: str = "<memory>"
    fit_seconds: float = float("nan")
    _seen_users: np.ndarray = field(init=False, repr=False)
    _seen_items: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = (len(self.user_ids), len(self.item_ids))
        if self.train_matrix.shape != shape:
            raise ValueError(f"train_matrix shape {self.train_matrix.shape} != id maps {shape}")
        if (
            self.factors.user_factors.shape[0] != shape[0]
            or self.factors.item_factors.shape[0] != shape[1]
        ):
            raise ValueError(
                f"factor shapes {self.factors.user_factors.shape}/{self.factors.item_factors.shape} "
                f"do not match {shape[0]} users x {shape[1]} items"
            )
        self._seen_users = np.diff(self.train_matrix.indptr) > 0
        self._seen_items = np.bincount(self.train_matrix.indices, minlength=shape[1]) > 0

    @property
    def n_factors(self) -> int:
        """Number of factors actually fitted (after clamping)."""
        return self.factors.n_factors

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def score(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        """Return ``(B, n_items)`` float32 scores (SVD: predicted ratings, unclipped) of dense users."""
        idx = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_users):
            raise ValueError(
                f"user indices must be in [0, {self.n_users}), got {idx.min()}..{idx.max()}"
            )
        f = self.factors
        return (f.user_factors[idx] @ f.item_factors.T + f.user_bias[idx, None]).astype(np.float32)

    def scorer(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(user_factors, item_factors)`` for ``evaluate_topk`` (the bias never changes a ranking)."""
        return self.factors.user_factors, self.factors.item_factors

    def predict(self, users: np.ndarray, items: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Return predicted ratings ``(n,)`` float32 for dense index pairs; clipped to the scale.

        For ALS the values are preferences and ``clip`` should be False.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError(f"users and items differ in shape: {users.shape} vs {items.shape}")
        f = self.factors
        pred = np.einsum("nk,nk->n", f.user_factors[users], f.item_factors[items])
        pred = pred + f.user_bias[users]
        if clip:
            pred = np.clip(pred, *self.rating_scale)
        return pred.astype(np.float32)

    def recommend(
        self, user_id: object, n: int = 10, *, exclude_seen: bool = True
    ) -> Recommendations:
        """Return the top-``n`` items for raw ``user_id``, training items excluded by default.

        Fewer than ``n`` come back when fewer candidates remain. Ties keep the lower item index.

        Raises:
            ValueError: ``user_id`` is not a training user (names the id and the data source);
                no empty list is returned for an unknown user.
        """
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if user_id not in self.user_ids or not self._seen_users[self.user_ids.index(user_id)]:
            raise ValueError(
                f"unknown user id {str(user_id)!r}: not among the {int(self._seen_users.sum()):,} "
                f"training users of {self.source}"
            )
        u = self.user_ids.index(user_id)
        f = self.factors
        scores = f.item_factors @ f.user_factors[u] + f.user_bias[u]  # (n_items,)
        candidates = np.ones(scores.shape[0], dtype=bool)
        if exclude_seen:
            lo, hi = self.train_matrix.indptr[u], self.train_matrix.indptr[u + 1]
            candidates[self.train_matrix.indices[lo:hi]] = False
        idx = np.flatnonzero(candidates)
        take = min(int(n), idx.size)
        if take == 0:
            return Recommendations(str(user_id), (), np.zeros(0, dtype=np.float32))
        cand_scores = scores[idx]
        top = (
            np.argpartition(-cand_scores, take - 1)[:take]
            if take < idx.size
            else np.arange(idx.size)
        )
        top = top[np.lexsort((idx[top], -cand_scores[top]))]
        return Recommendations(
            str(user_id),
            tuple(self.item_ids.raws(idx[top])),
            cand_scores[top].astype(np.float32),
        )

    # --- artifacts (npz + json, never pickle) ------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``factors.npz``, ``train_matrix.npz`` and the id maps."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        f = self.factors
        arrays = {
            "user_factors": f.user_factors,
            "item_factors": f.item_factors,
            "user_bias": f.user_bias,
        }
        if f.singular_values is not None:
            arrays["singular_values"] = f.singular_values
        np.savez(d / _FILES["factors"], **arrays)
        sp.save_npz(d / _FILES["matrix"], self.train_matrix, compressed=True)
        self.user_ids.save(d / _FILES["users"])
        self.item_ids.save(d / _FILES["items"])
        meta = {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "config": self.config.to_json(),
            "n_factors": self.n_factors,
            "rating_scale": list(self.rating_scale),
            "source": self.source,
            "n_users": len(self.user_ids),
            "n_items": len(self.item_ids),
            "nnz": int(self.train_matrix.nnz),
            "fit_seconds": None if math.isnan(self.fit_seconds) else self.fit_seconds,
        }
        (d / _FILES["config"]).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> CFModel:
        """Read a directory written by :meth:`save` (no pickle; ``allow_pickle=False``)."""
        d = Path(directory)
        for name in _FILES.values():
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: missing (not a saved CF model directory)")
        meta = json.loads((d / _FILES["config"]).read_text())
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(
                f"{d / _FILES['config']}: format {meta.get('format')!r}, expected {ARTIFACT_FORMAT!r}"
            )
        if int(meta.get("version", -1)) > ARTIFACT_VERSION:
            raise ValueError(
                f"{d / _FILES['config']}: artifact version {meta['version']} is newer than "
                f"supported version {ARTIFACT_VERSION}"
            )
        with np.load(d / _FILES["factors"], allow_pickle=False) as z:
            factors = LatentFactors(
                z["user_factors"],
                z["item_factors"],
                z["user_bias"],
                z["singular_values"] if "singular_values" in z.files else None,
            )
        matrix = sp.load_npz(d / _FILES["matrix"]).tocsr()
        try:
            return cls(
                factors=factors,
                train_matrix=matrix,
                user_ids=IdMap.load(d / _FILES["users"]),
                item_ids=IdMap.load(d / _FILES["items"]),
                config=CFConfig.from_json(meta["config"]),
                rating_scale=(float(meta["rating_scale"][0]), float(meta["rating_scale"][1])),
                source=str(meta.get("source", d)),
                fit_seconds=float("nan")
                if meta.get("fit_seconds") is None
                else meta["fit_seconds"],
            )
        except ValueError as exc:
            raise ValueError(f"{d}: inconsistent artifacts: {exc}") from None


def _import_backend(solver: str) -> None:
    """Import the solver's library up front so that fit timings exclude the import."""
    import importlib

    from gradtracer._optional import require

    if solver == "als":
        require("implicit.cpu.als")
    else:
        importlib.import_module(
            "sklearn.decomposition" if solver == "sklearn" else "scipy.sparse.linalg"
        )


def _fit_factors(matrix: sp.csr_matrix, config: CFConfig, n_factors: int) -> LatentFactors:
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


def _rating_scale(matrix: sp.csr_matrix, config: CFConfig) -> tuple[float, float]:
    if config.rating_scale is not None:
        return config.rating_scale
    return float(matrix.data.min()), float(matrix.data.max())


def train(train: Interactions, config: CFConfig | None = None) -> CFModel:
    """Return a :class:`CFModel` fitted on ``train`` with ``config`` (default :class:`CFConfig`).

    Raises:
        ValueError: empty split, non-finite ratings, or a matrix too small to factorize.
    """
    config = config or CFConfig()
    _require_rows(train, "the train split")
    matrix = build_matrix(train)
    _import_backend(config.solver)
    start = time.perf_counter()
    factors = _fit_factors(matrix, config, config.n_factors)
    seconds = time.perf_counter() - start
    logger.info(
        "fitted %s with %d factors on %s in %.2fs",
        config.solver,
        factors.n_factors,
        matrix.shape,
        seconds,
    )
    return CFModel(
        factors,
        matrix,
        train.user_ids,
        train.item_ids,
        config,
        _rating_scale(matrix, config),
        train.source,
        seconds,
    )


# --- evaluation -------------------------------------------------------------------------


@dataclass(eq=False)
class CFEvaluation:
    """Scores of a model on one held-out split.

    Attributes:
        split: label of the split (``"valid"``, ``"test"``...).
        n_factors: factors of the evaluated model.
        rmse / accuracy: rating metrics (``nan`` for ALS and implicit data); see the module
            docstring.
        n_ratings: held-out ratings scored by ``rmse``/``accuracy``.
        mean: ranking metric means, keys like ``"ndcg@10"``.
        per_user: ranking metric per evaluated user, aligned with ``users``.
        users: dense indices of the users with at least one ranking target.
        info: counts of rows dropped (cold users, cold items, already-seen targets).
        seconds: wall time of the evaluation.
    """

    split: str
    n_factors: int
    rmse: float
    accuracy: float
    n_ratings: int
    mean: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    info: dict[str, int]
    seconds: float = float("nan")

    @property
    def n_users(self) -> int:
        return int(self.users.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (means and counts; no per-user arrays); NaN becomes None."""

        def clean(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "split": self.split,
            "n_factors": self.n_factors,
            "rmse": clean(self.rmse),
            "accuracy": clean(self.accuracy),
            "n_ratings": self.n_ratings,
            "n_users": self.n_users,
            **{k: clean(v) for k, v in sorted(self.mean.items())},
            "info": dict(sorted(self.info.items())),
            "seconds": clean(self.seconds),
        }


def evaluate(
    model: CFModel,
    heldout: Interactions,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    exclude: Interactions | None = None,
    split: str = "test",
    batch_size: int = 1024,
) -> CFEvaluation:
    """Return rating and full-ranking scores of ``model`` on ``heldout``.

    Args:
        model: a trained :class:`CFModel`.
        heldout: validation or test rows sharing the model's id maps.
        ks: cutoffs of recall/ndcg/map (default 10, 20, 50); those above the number of
            items are dropped with a warning.
        exclude: further rows masked from the ranking besides the training rows (e.g. the
            validation rows when scoring the test split of a model trained on train only).
        split: label stored in the result.
        batch_size: users scored per batch by ``evaluate_topk``.
    """
    from gradtracer.recsys.metrics.topk import evaluate_topk

    _require_rows(heldout, f"the {split} split")
    if len(heldout.user_ids) != len(model.user_ids) or len(heldout.item_ids) != len(model.item_ids):
        raise ValueError(
            f"{heldout.source}: {split} split has {heldout.n_users} users x {heldout.n_items} items "
            f"but the model has {len(model.user_ids)} x {len(model.item_ids)}; use a split of the "
            "same Interactions the model was trained on"
        )
    start = time.perf_counter()
    frame = heldout.frame
    users = frame["user"].to_numpy()
    items = frame["item"].to_numpy()
    ratings = frame["rating"].to_numpy().astype(np.float32)
    warm_user = model._seen_users[users]
    warm_item = model._seen_items[items]
    keep = warm_user & warm_item
    info = {
        "heldout_rows": int(frame.height),
        "cold_user_rows": int((~warm_user).sum()),
        "cold_item_rows": int((warm_user & ~warm_item).sum()),
    }
    u, i, r = users[keep], items[keep], ratings[keep]

    lo, hi = model.rating_scale
    if model.config.is_rating_model and lo < hi and u.size:
        pred = model.predict(u, i, clip=True)
        err = pred.astype(np.float64) - r
        rmse = float(np.sqrt(np.mean(err**2)))
        accuracy = float(np.mean(np.abs(err) <= 0.5 + 1e-6))
    else:
        rmse = accuracy = float("nan")

    shape = model.train_matrix.shape
    target = sp.csr_matrix((np.ones(u.size, np.float32), (u, i)), shape=shape)
    target.data[:] = 1.0
    mask = model.train_matrix.copy()
    mask.data[:] = 1.0
    if exclude is not None and exclude.frame.height:
        extra = exclude.user_items()
        if extra.shape != shape:
            raise ValueError(
                f"{exclude.source}: exclude matrix shape {extra.shape} != model {shape}"
            )
        mask = ((mask + extra) > 0).astype(np.float32).tocsr()
    seen = target.multiply(mask).tocsr()
    info["seen_target_pairs"] = int(seen.nnz)
    target = (target - seen).tocsr()
    target.eliminate_zeros()

    if target.nnz == 0:
        raise ValueError(
            f"{heldout.source}: no held-out row of the {split} split has a training user and item "
            f"that is not already seen ({info}); nothing to rank"
        )
    ks = _usable_ks(ks, shape[1])
    result = evaluate_topk(
        model.scorer(),
        target,
        exclude=mask,
        ks=ks,
        metrics=RANKING_METRICS,
        batch_size=batch_size,
    )
    keys = [metric_key(m, k) for m in RANKING_METRICS for k in ks]
    return CFEvaluation(
        split=split,
        n_factors=model.n_factors,
        rmse=rmse,
        accuracy=accuracy,
        n_ratings=int(u.size),
        mean={k: float(result.mean[k]) for k in keys},
        per_user={k: np.asarray(result.per_user[k]) for k in keys},
        users=np.asarray(result.users),
        info=info,
        seconds=time.perf_counter() - start,
    )


def _usable_ks(ks: Sequence[int], n_items: int) -> tuple[int, ...]:
    wanted = sorted({int(k) for k in ks})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"ks must be positive cutoffs, got {list(ks)}")
    usable = tuple(k for k in wanted if k <= n_items)
    if len(usable) < len(wanted):
        dropped = [k for k in wanted if k > n_items]
        if not usable:
            raise ValueError(f"every cutoff {dropped} exceeds the {n_items} items of the catalogue")
        warnings.warn(
            f"cutoffs {dropped} exceed the {n_items} items of the catalogue; reporting {list(usable)}",
            GradTracerWarning,
            stacklevel=3,
        )
    return usable


# --- tuning -----------------------------------------------------------------------------


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
    _require_rows(train, "the train split")
    _require_rows(valid, "the valid split")
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
    scale = _rating_scale(matrix, config)
    _import_backend(config.solver)
    evaluations: list[CFEvaluation] = []
    fit_seconds: list[float] = []
    full: LatentFactors | None = None
    full_seconds = float("nan")
    for n in kept:
        if config.solver == "als":
            start = time.perf_counter()
            factors = _fit_factors(matrix, config, n)
            seconds = time.perf_counter() - start
        else:
            if full is None:
                start = time.perf_counter()
                full = _fit_factors(matrix, config, kept[-1])
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


# --- plots (matplotlib Figure + Agg canvas; no pyplot global state) ------------------------


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_tuning_curve(
    result: TuningResult, path: str | Path, *, metrics: Sequence[str] | None = None
) -> Path:
    """Write a PNG of validation metrics against ``n_factors``, marking the chosen value."""
    metrics = list(
        metrics
        or [m for m in ("ndcg@10", "recall@10", "map@10") if m in result.evaluations[0].mean]
    )
    fig = _new_figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for m in metrics:
        ax.plot(result.grid, [ev.mean[m] for ev in result.evaluations], marker="o", label=m)
    best = max(ev.mean[result.metric] for ev in result.evaluations)
    ax.axhline(
        best * (1 - result.tolerance),
        color="grey",
        ls=":",
        lw=1,
        label=f"{result.metric} within {result.tolerance:.0%} of best",
    )
    ax.axvline(
        result.chosen, color="black", ls="--", lw=1, label=f"chosen n_factors={result.chosen}"
    )
    ax.set_xlabel("n_factors")
    ax.set_ylabel("validation score")
    ax.set_title("n_factors tuning (validation)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_valid_vs_test(valid: CFEvaluation, test: CFEvaluation, path: str | Path) -> Path:
    """Write a PNG of grouped bars: each ranking metric on validation vs test."""
    keys = [k for k in valid.mean if k in test.mean]
    x = np.arange(len(keys))
    fig = _new_figure(max(6.4, 0.6 * len(keys) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(
        x - 0.2,
        [valid.mean[k] for k in keys],
        width=0.4,
        label=f"{valid.split} (n={valid.n_users})",
    )
    ax.bar(
        x + 0.2, [test.mean[k] for k in keys], width=0.4, label=f"{test.split} (n={test.n_users})"
    )
    ax.set_xticks(x, keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean over users")
    ax.set_title(f"validation vs test (n_factors={test.n_factors})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
