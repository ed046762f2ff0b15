"""Session baselines that need no training loop: item popularity.

Every next-item model in :mod:`gradtracer.recsys.sessions` follows one small interface
(:class:`NextItemModel`): ``init_state(batch_size)`` and ``advance(state, batch)``, which
applies the batch's slot changes, consumes ``batch.inputs`` and returns ``(B, n_items)``
scores for the next item together with the new state. Stateless models ignore the state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from gradtracer.recsys.sessions.batching import SessionArrays, SessionBatch

__all__ = ["NextItemModel", "SessionPopularity", "item_counts"]


@runtime_checkable
class NextItemModel(Protocol):
    """What next-item evaluation needs from a session model."""

    n_items: int

    def init_state(self, batch_size: int) -> Any:
        """Return the recurrent state for ``batch_size`` slots (``None`` when stateless)."""
        ...

    def advance(self, state: Any, batch: SessionBatch) -> tuple[torch.Tensor, Any]:
        """Return ``(scores (B, n_items) float, new_state)`` after feeding ``batch.inputs``."""
        ...


def item_counts(data: SessionArrays) -> np.ndarray:
    """Return ``(n_items,)`` float64 event counts per item in ``data``."""
    return np.bincount(data.items, minlength=data.n_items).astype(np.float64)


class SessionPopularity:
    """Scores every item by its training event count, whatever the session did so far.

    Args:
        n_items: size of the item index space.
    """

    name = "popularity"

    def __init__(self, n_items: int) -> None:
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        self.n_items = int(n_items)
        self.counts = np.zeros(self.n_items, dtype=np.float64)

    def fit(self, train: SessionArrays) -> SessionPopularity:
        """Count events per item in ``train``; returns ``self``."""
        _check_space(train, self.n_items)
        self.counts = item_counts(train)
        return self

    def top_items(self, k: int = 10) -> np.ndarray:
        """Return the ``k`` most frequent item indices, most frequent first (ties by index)."""
        return np.lexsort((np.arange(self.n_items), -self.counts))[:k]

    def init_state(self, batch_size: int) -> None:
        return None

    def advance(self, state: None, batch: SessionBatch) -> tuple[torch.Tensor, None]:
        scores = torch.from_numpy(self.counts.astype(np.float32))
        return scores.expand(batch.size, self.n_items), None

    # --- persistence ---------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``counts.npz`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.json").write_text(json.dumps({"model": self.name, "n_items": self.n_items}))
        np.savez(d / "counts.npz", counts=self.counts)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> SessionPopularity:
        """Read a model written by :meth:`save`."""
        d = Path(directory)
        meta = _read_meta(d, cls.name)
        model = cls(meta["n_items"])
        with np.load(d / "counts.npz", allow_pickle=False) as z:
            model.counts = z["counts"].astype(np.float64)
        return model


def _check_space(data: SessionArrays, n_items: int) -> None:
    if data.n_items != n_items:
        raise ValueError(
            f"session data has an item space of {data.n_items} items, model has {n_items}"
        )
    if data.n_events == 0:
        raise ValueError("cannot fit on empty session data (0 events)")


def _read_meta(d: Path, expected: str) -> dict[str, Any]:
    path = d / "model.json"
    if not path.exists():
        raise FileNotFoundError(f"{d}: no model.json (not a saved session model)")
    meta = json.loads(path.read_text())
    if meta.get("model") != expected:
        raise ValueError(f"{path}: holds a {meta.get('model')!r} model, expected {expected!r}")
    return meta
