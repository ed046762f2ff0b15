"""First-order Markov chain for next-item prediction, blended with popularity.

``score(next | last) = (1 - alpha) * P(next | last) + alpha * P(next)``, where
``P(next | last)`` is the row-normalised count of ``last -> next`` transitions inside
training sessions and ``P(next)`` the normalised item popularity. ``alpha=0`` is the pure
chain, ``alpha=1`` pure popularity. A last item without outgoing transitions scores only
the popularity term (all zeros, one tie over the catalog, when ``alpha=0``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer.recsys.models.session_popularity import _check_space, _read_meta, item_counts
from gradtracer.recsys.sessions.batching import SessionArrays, SessionBatch

__all__ = ["MarkovChain", "transition_counts"]


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
    counts = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n, n)
    )
    counts.sum_duplicates()
    return counts


class MarkovChain:
    """First-order Markov chain over items with popularity blending.

    Args:
        n_items: size of the item index space.
        alpha: weight of popularity in ``[0, 1]`` (default 0.0: pure Markov chain).
    """

    name = "markov"

    def __init__(self, n_items: int, alpha: float = 0.0) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        self.n_items = int(n_items)
        self.alpha = float(alpha)
        self.transitions = sp.csr_matrix((self.n_items, self.n_items), dtype=np.float64)
        self.counts = np.zeros(self.n_items, dtype=np.float64)
        self._normalise()

    def fit(self, train: SessionArrays) -> MarkovChain:
        """Count transitions and item events in ``train``; returns ``self``."""
        _check_space(train, self.n_items)
        self.transitions = transition_counts(train)
        self.counts = item_counts(train)
        self._normalise()
        return self

    def _normalise(self) -> None:
        out = np.asarray(self.transitions.sum(axis=1)).ravel()
        inv = np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)
        self._probs = sp.diags(inv) @ self.transitions
        self._probs = sp.csr_matrix(self._probs, dtype=np.float32)
        total = self.counts.sum()
        self._pop = (self.counts / total if total > 0 else self.counts).astype(np.float32)

    def with_alpha(self, alpha: float) -> MarkovChain:
        """Return a copy sharing the fitted counts with a different ``alpha`` (no refit)."""
        other = MarkovChain(self.n_items, alpha)
        other.transitions, other.counts = self.transitions, self.counts
        other._probs, other._pop = self._probs, self._pop
        return other

    def scores_after(self, last_items: np.ndarray) -> np.ndarray:
        """Return ``(B, n_items)`` float32 blended scores given the last item of each row."""
        markov = self._probs[np.asarray(last_items)].toarray()
        if self.alpha == 0.0:
            return markov
        return (1.0 - self.alpha) * markov + self.alpha * self._pop[None, :]

    def init_state(self, batch_size: int) -> None:
        return None

    def advance(self, state: None, batch: SessionBatch) -> tuple[torch.Tensor, None]:
        return torch.from_numpy(self.scores_after(batch.inputs.numpy())), None

    # --- persistence ---------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``markov.npz`` (COO transition counts) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "n_items": self.n_items, "alpha": self.alpha}
        (d / "model.json").write_text(json.dumps(meta))
        coo = self.transitions.tocoo()
        np.savez(d / "markov.npz", row=coo.row, col=coo.col, data=coo.data, counts=self.counts)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> MarkovChain:
        """Read a model written by :meth:`save`."""
        d = Path(directory)
        meta = _read_meta(d, cls.name)
        model = cls(meta["n_items"], meta["alpha"])
        n = model.n_items
        with np.load(d / "markov.npz", allow_pickle=False) as z:
            model.transitions = sp.csr_matrix((z["data"], (z["row"], z["col"])), shape=(n, n))
            model.counts = z["counts"]
        model._normalise()
        return model
