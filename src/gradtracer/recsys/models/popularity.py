"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer.recsys.models.base import (
    as_user_index,
    read_artifacts,
    recommend_from_scores,
    write_artifacts,
)
from gradtracer.recsys.models.registry import register_model

__all__ = ["PopularityRecommender"]

_KIND = "popularity"


@register_model("popularity")
class PopularityRecommender:
    """Score of item ``i`` = number of training rows with item ``i`` (same for every user).

    Items with equal counts tie; :func:`~gradtracer.recsys.metrics.evaluate_topk` resolves
    those ties by its ``ties`` policy (conservative by default).
    """

    def __init__(self, n_users: int = 0, n_items: int = 0) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.counts = np.zeros(n_items, dtype=np.float32)  # (n_items,)

    def fit(self, train: Any) -> PopularityRecommender:
        """Count interactions per item in ``train`` (an ``Interactions``); return ``self``."""
        items = train.frame["item"].to_numpy()
        self.n_users, self.n_items = train.n_users, train.n_items
        self.counts = np.bincount(items, minlength=self.n_items).astype(np.float32)
        return self

    def score(self, users: Any) -> np.ndarray:
        """Return ``(B, n_items)`` float32 popularity counts (identical rows)."""
        idx = as_user_index(users, self.n_users)
        return np.broadcast_to(self.counts, (idx.size, self.n_items)).copy()

    def scorer(self) -> Any:
        """Return a callable ``scores(user_idx) -> (B, n_items)`` tensor (a broadcast view)."""
        counts = torch.from_numpy(self.counts)

        def scores(user_idx: torch.Tensor) -> torch.Tensor:
            return counts.expand(int(user_idx.shape[0]), -1)

        return scores

    def recommend(
        self, users: Any, k: int = 10, *, exclude: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Return ``(B, k)`` most popular items per user, skipping each user's ``exclude`` items."""
        idx = as_user_index(users, self.n_users)
        scores = torch.from_numpy(self.counts).expand(idx.size, -1)
        return recommend_from_scores(scores, idx, k, exclude)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` + ``arrays.npz`` (the counts)."""
        meta = {"kind": _KIND, "n_users": self.n_users, "n_items": self.n_items}
        return write_artifacts(directory, meta, {"counts": self.counts})

    @classmethod
    def load(cls, directory: str | Path) -> PopularityRecommender:
        """Read a model written by :meth:`save`."""
        meta, arrays = read_artifacts(directory, _KIND)
        model = cls(int(meta["n_users"]), int(meta["n_items"]))
        model.counts = arrays["counts"].astype(np.float32)
        return model
