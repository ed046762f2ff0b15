"""First-order Markov chain for next-item prediction, blended with popularity.

``score(next | last) = (1 - alpha) * P(next | last) + alpha * P(next)``, where
``P(next | last)`` is the row-normalised count of ``last -> next`` transitions inside
training sessions and ``P(next)`` the normalised item popularity. ``alpha=0`` is the pure
chain, ``alpha=1`` pure popularity. A last item without outgoing transitions scores only
the popularity term (all zeros, one tie over the catalog, when ``alpha=0``).

>>> from gradtracer.recsys.models.markov import MarkovChain
>>> from gradtracer.recsys.models.next_item import prefix_arrays
>>> train = prefix_arrays([[0, 1, 2], [0, 1]], n_items=3)  # sessions 0,1,2,0 and 0,1,0
>>> MarkovChain(3).fit(train).recommend([[0]], k=1).tolist()
[[1]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer.recsys.models.next_item import (
    NextItemRecommender,
    TrainingHooks,
    check_item_space,
    item_counts,
)
from gradtracer.recsys.models.registry import register_model
from gradtracer.recsys.sessions.batching import SessionArrays, SessionBatch

__all__ = ["MarkovChain", "MarkovScorer", "transition_counts"]


def transition_counts(data: SessionArrays) -> sp.csr_matrix:
    """Return ``(n_items, n_items)`` CSR counts of consecutive ``(item, next item)`` pairs.

    Only pairs inside one session count; session boundaries are never crossed.
    """
    n = data.n_items
    if data.n_events < 2:
        return sp.csr_matrix((n, n), dtype=np.float64)
    src = np.arange(data.n_events - 1)
    # the pair (e, e+1) is inside a session unless e+1 starts a new one
    starts = np.zeros(data.n_events, dtype=bool)
    starts[data.offsets[:-1]] = True
    inside = ~starts[src + 1]
    rows = data.items[src[inside]]
    cols = data.items[src[inside] + 1]
    counts = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n, n))
    counts.sum_duplicates()
    return counts


class MarkovScorer:
    """Blended scores from the last item only (stateless): see the module docstring.

    Args:
        probs: ``(n_items, n_items)`` float32 CSR row-normalised transition probabilities.
        popularity: ``(n_items,)`` float32 normalised item popularity.
        alpha: weight of popularity in ``[0, 1]``.
    """

    def __init__(self, probs: sp.csr_matrix, popularity: np.ndarray, alpha: float) -> None:
        self.n_items = int(probs.shape[0])
        self.probs, self.popularity, self.alpha = probs, popularity, float(alpha)

    def scores_after(self, last_items: np.ndarray) -> np.ndarray:
        """Return ``(B, n_items)`` float32 blended scores given the last item of each row."""
        markov = self.probs[np.asarray(last_items)].toarray()
        if self.alpha == 0.0:
            return markov
        return (1.0 - self.alpha) * markov + self.alpha * self.popularity[None, :]

    def init_state(self, batch_size: int) -> None:
        """Stateless: ``None``."""
        return None

    def advance(self, state: None, batch: SessionBatch) -> tuple[torch.Tensor, None]:
        """Return the scores after each row's input item."""
        return torch.from_numpy(self.scores_after(batch.inputs.numpy())), None


@register_model("markov")
class MarkovChain(NextItemRecommender):
    """First-order Markov chain over items with popularity blending.

    Args:
        n_items: size of the item index space.
        alpha: weight of popularity in ``[0, 1]`` (default 0.0: pure Markov chain).
    """

    name = "markov"
    legacy_arrays_file = "markov.npz"

    def __init__(self, n_items: int, alpha: float = 0.0) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ValueError(f"n_items must be a positive int, got {n_items!r}")
        self.n_items = int(n_items)
        self.alpha = float(alpha)
        self.transitions = sp.csr_matrix((self.n_items, self.n_items), dtype=np.float64)
        self.counts = np.zeros(self.n_items, dtype=np.float64)
        self._normalise()

    def fit(self, train: SessionArrays, *, hooks: TrainingHooks | None = None) -> MarkovChain:
        """Count transitions and item events in ``train``; returns ``self`` (no hooks called)."""
        check_item_space(train, self.n_items)
        self.transitions = transition_counts(train)
        self.counts = item_counts(train)
        self._normalise()
        return self

    def _normalise(self) -> None:
        out = np.asarray(self.transitions.sum(axis=1)).ravel()
        inv = np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)
        self._probs = sp.csr_matrix(sp.diags(inv) @ self.transitions, dtype=np.float32)
        total = self.counts.sum()
        self._pop = (self.counts / total if total > 0 else self.counts).astype(np.float32)

    def with_alpha(self, alpha: float) -> MarkovChain:
        """Return a copy sharing the fitted counts with a different ``alpha`` (no refit)."""
        other = MarkovChain(self.n_items, alpha)
        other.transitions, other.counts = self.transitions, self.counts
        other._probs, other._pop = self._probs, self._pop
        return other

    def scorer(self) -> MarkovScorer:
        """A :class:`MarkovScorer` of the fitted probabilities and ``alpha``."""
        return MarkovScorer(self._probs, self._pop, self.alpha)

    def scores_after(self, last_items: np.ndarray) -> np.ndarray:
        """Return ``(B, n_items)`` float32 blended scores given the last item of each row."""
        return self.scorer().scores_after(last_items)

    # --- persistence ---------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "alpha": self.alpha}

    def _arrays(self) -> dict[str, np.ndarray]:
        coo = self.transitions.tocoo()
        return {"row": coo.row, "col": coo.col, "data": coo.data, "counts": self.counts}

    @classmethod
    def _from_artifact(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], **kwargs: Any
    ) -> MarkovChain:
        model = cls(int(meta["n_items"]), float(meta["alpha"]))
        n = model.n_items
        model.transitions = sp.csr_matrix(
            (arrays["data"], (arrays["row"], arrays["col"])), shape=(n, n)
        )
        counts = np.asarray(arrays["counts"], dtype=np.float64)
        if counts.shape != (n,):
            raise ValueError(f"counts has shape {counts.shape}, expected ({n},)")
        model.counts = counts
        model._normalise()
        return model
