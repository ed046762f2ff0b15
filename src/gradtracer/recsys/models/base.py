"""The interface every user-item recommender shares, and helpers its implementations reuse.

A recommender is fitted on an :class:`~gradtracer.recsys.data.Interactions`, scores every
item for a batch of users, recommends the top ``k`` unseen items, exposes ``scorer()`` for
:func:`gradtracer.recsys.metrics.evaluate_topk`, and saves to / loads from a directory of
``model.json`` + ``arrays.npz`` (never pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "Recommender",
    "read_artifacts",
    "recommend_from_scores",
    "write_artifacts",
]

ARRAYS = "arrays.npz"
META = "model.json"


@runtime_checkable
class Recommender(Protocol):
    """fit / score / recommend / scorer / save / load."""

    n_users: int
    n_items: int

    def fit(self, train: Any) -> Recommender:
        """Learn from a training :class:`Interactions`; return ``self``."""

    def score(self, users: Any) -> np.ndarray:
        """Return ``(B, n_items)`` float32 scores of the given user indices (higher = better)."""

    def recommend(
        self, users: Any, k: int = 10, *, exclude: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Return ``(B, k)`` int64 item indices, best first, skipping ``exclude`` rows' items."""

    def scorer(self) -> Any:
        """Return what :func:`~gradtracer.recsys.metrics.evaluate_topk` accepts."""

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``arrays.npz`` into ``directory``; return it."""

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        """Read a directory written by :meth:`save`."""


def as_user_index(users: Any, n_users: int) -> np.ndarray:
    """Return users as a 1-D int64 array; ``ValueError`` naming an out-of-range index."""
    idx = np.atleast_1d(np.asarray(users.cpu() if isinstance(users, torch.Tensor) else users))
    idx = idx.astype(np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n_users):
        raise ValueError(
            f"user indices must be in [0, {n_users}), got min {idx.min()}, max {idx.max()}"
        )
    return idx


def recommend_from_scores(
    scores: torch.Tensor, users: np.ndarray, k: int, exclude: sp.csr_matrix | None
) -> np.ndarray:
    """Return ``(B, k)`` top items of ``scores (B, n_items)``, masking ``exclude[users]`` items.

    Masked items come last (``-inf``); ties are broken by ``torch.topk``.
    """
    n_items = scores.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= n_items:
        raise ValueError(f"k must be an int in [1, {n_items}], got {k!r}")
    if exclude is not None:
        if exclude.shape[1] != n_items:
            raise ValueError(
                f"exclude has {exclude.shape[1]} columns but the model has {n_items} items"
            )
        block = sp.csr_matrix(exclude[users])
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        scores = scores.clone()
        scores[
            torch.from_numpy(rows), torch.from_numpy(block.indices.astype(np.int64))
        ] = -torch.inf
    return scores.topk(k, dim=1).indices.cpu().numpy().astype(np.int64)


def write_artifacts(
    directory: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    """Write ``model.json`` (sorted keys) and ``arrays.npz`` into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    np.savez(d / ARRAYS, **arrays)
    return d


def read_artifacts(
    directory: str | Path, kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``model.json`` + ``arrays.npz``; ``ValueError`` when the saved kind differs."""
    d = Path(directory)
    if not (d / META).is_file() or not (d / ARRAYS).is_file():
        raise FileNotFoundError(f"{d}: expected {META} and {ARRAYS} (a saved model directory)")
    meta = json.loads((d / META).read_text())
    if meta.get("kind") != kind:
        raise ValueError(f"{d / META}: holds a {meta.get('kind')!r} model, not {kind!r}")
    with np.load(d / ARRAYS, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return meta, arrays
