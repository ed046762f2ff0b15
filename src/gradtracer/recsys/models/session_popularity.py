"""Session baseline that needs no training loop: item popularity.

>>> from gradtracer.recsys.models.session_popularity import SessionPopularity
>>> from gradtracer.recsys.models.next_item import prefix_arrays
>>> train = prefix_arrays([[0, 1, 1], [1, 2]], n_items=3)  # sessions 0,1,1,0 and 1,2,0
>>> model = SessionPopularity(3).fit(train)
>>> model.recommend([[2]], k=2).tolist()
[[0, 1]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from gradtracer.recsys.models.next_item import (
    NextItemModel,
    NextItemRecommender,
    NextItemScorer,
    TrainingHooks,
    check_item_space,
    item_counts,
)
from gradtracer.recsys.models.registry import register_model
from gradtracer.recsys.sessions.batching import SessionArrays, SessionBatch

__all__ = ["NextItemModel", "PopularityScorer", "SessionPopularity", "item_counts"]


class PopularityScorer:
    """Scores every item by a fixed vector, whatever the session did so far (stateless)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.n_items = int(scores.shape[0])
        self._scores = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))

    def init_state(self, batch_size: int) -> None:
        """Stateless: ``None``."""
        return None

    def advance(self, state: None, batch: SessionBatch) -> tuple[torch.Tensor, None]:
        """Return the fixed scores for every row of ``batch``."""
        return self._scores.expand(batch.size, self.n_items), None


@register_model("session_popularity")
class SessionPopularity(NextItemRecommender):
    """Scores every item by its training event count, whatever the session did so far.

    Args:
        n_items: size of the item index space.
    """

    name = "popularity"
    legacy_arrays_file = "counts.npz"

    def __init__(self, n_items: int) -> None:
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ValueError(f"n_items must be a positive int, got {n_items!r}")
        self.n_items = int(n_items)
        self.counts = np.zeros(self.n_items, dtype=np.float64)

    def fit(self, train: SessionArrays, *, hooks: TrainingHooks | None = None) -> SessionPopularity:
        """Count events per item in ``train``; returns ``self`` (``hooks`` are not called)."""
        check_item_space(train, self.n_items)
        self.counts = item_counts(train)
        return self

    def top_items(self, k: int = 10) -> np.ndarray:
        """Return the ``k`` most frequent item indices, most frequent first (ties by index)."""
        return np.lexsort((np.arange(self.n_items), -self.counts))[:k]

    def scorer(self) -> NextItemScorer:
        """A :class:`PopularityScorer` of the training counts."""
        return PopularityScorer(self.counts)

    # --- persistence ---------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"n_items": self.n_items}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    @classmethod
    def _from_artifact(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], **kwargs: Any
    ) -> SessionPopularity:
        model = cls(int(meta["n_items"]))
        counts = np.asarray(arrays["counts"], dtype=np.float64)
        if counts.shape != (model.n_items,):
            raise ValueError(f"counts has shape {counts.shape}, expected ({model.n_items},)")
        model.counts = counts
        return model
