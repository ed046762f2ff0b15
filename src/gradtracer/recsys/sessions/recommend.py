"""Top-k next-item recommendations for ongoing sessions from any next-item model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gradtracer.recsys.models.next_item import NextItemRecommender

__all__ = ["recommend_next"]


def recommend_next(
    model: NextItemRecommender,
    prefixes: Sequence[Sequence[int]],
    k: int = 20,
    *,
    exclude_seen: bool = False,
    batch_size: int = 512,
) -> np.ndarray:
    """Return ``(len(prefixes), k)`` int64 item indices, best first, after each prefix.

    Shorthand for ``model.recommend(prefixes, k, exclude="seen" if exclude_seen else None)``.

    Args:
        model: a fitted popularity, Markov or GRU4Rec model.
        prefixes: each ongoing session as dense item indices in click order (non-empty).
        k: list length (an int in ``[1, n_items]``; default 20).
        exclude_seen: drop items already clicked in the prefix (default False, as in the
            evaluation protocol).
        batch_size: sessions run in parallel.

    Ties are broken by the lower item index.
    """
    return model.recommend(
        prefixes, k, exclude="seen" if exclude_seen else None, batch_size=batch_size
    )
