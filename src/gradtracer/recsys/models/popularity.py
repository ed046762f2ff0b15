"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gradtracer.recsys.models.base import UserItemRecommender, as_user_index
from gradtracer.recsys.models.registry import register_model

__all__ = ["PopularityRecommender"]


@register_model("popularity")
class PopularityRecommender(UserItemRecommender):
    """Score of item ``i`` = number of training rows with item ``i`` (same for every user).

    Items with equal counts tie; :func:`~gradtracer.recsys.metrics.evaluate_topk` resolves
    those ties by its ``ties`` policy (conservative by default).

    Args:
        n_users / n_items: index spaces (default 0: taken from the data by :meth:`fit`).
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

    def score_tensor(self, users: np.ndarray) -> torch.Tensor:
        """The counts broadcast to ``(B, n_items)`` without a copy."""
        return torch.from_numpy(self.counts).expand(int(np.asarray(users).size), -1)

    def scorer(self) -> Any:
        """Return a callable ``scores(user_idx) -> (B, n_items)`` tensor (a broadcast view)."""
        counts = torch.from_numpy(self.counts)

        def scores(user_idx: torch.Tensor) -> torch.Tensor:
            return counts.expand(int(user_idx.shape[0]), -1)

        return scores

    def _to_artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"n_users": self.n_users, "n_items": self.n_items}, {"counts": self.counts}

    @classmethod
    def _from_artifact(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> PopularityRecommender:
        model = cls(int(meta["n_users"]), int(meta["n_items"]))
        counts = arrays["counts"].astype(np.float32)
        if counts.shape != (model.n_items,):
            raise ValueError(f"counts has shape {counts.shape}, expected ({model.n_items},)")
        model.counts = counts
        return model
