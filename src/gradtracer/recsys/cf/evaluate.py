"""Evaluation of a :class:`~gradtracer.recsys.cf.CFModel` on a held-out split.

Definitions:

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

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from gradtracer.errors import GradTracerWarning
from gradtracer.findings import metric_key
from gradtracer.recsys.cf.config import DEFAULT_KS, RANKING_METRICS
from gradtracer.recsys.cf.model import CFModel, require_rows
from gradtracer.recsys.data.interactions import Interactions

__all__ = ["CFEvaluation", "evaluate", "usable_ks"]


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

    require_rows(heldout, f"the {split} split")
    if len(heldout.user_ids) != len(model.user_ids) or len(heldout.item_ids) != len(model.item_ids):
        raise ValueError(
            f"{heldout.source}: {split} split has {heldout.n_users} users x {heldout.n_items} items "
            f"but the model has {len(model.user_ids)} x {len(model.item_ids)}; use a split of the "
            "same Interactions the model was trained on"
        )
    model._fitted()
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
    ks = usable_ks(ks, shape[1])
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


def usable_ks(ks: Sequence[int], n_items: int) -> tuple[int, ...]:
    """Sorted distinct ``ks`` up to ``n_items`` (larger ones dropped with a warning)."""
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
