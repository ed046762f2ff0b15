"""Top-k next-item recommendations for ongoing sessions from any next-item model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradtracer.recsys.sessions.batching import SessionArrays, iterate_session_parallel

if TYPE_CHECKING:
    from gradtracer.recsys.models.session_popularity import NextItemModel

__all__ = ["recommend_next"]


def recommend_next(
    model: NextItemModel,
    prefixes: Sequence[Sequence[int]],
    k: int = 20,
    *,
    exclude_seen: bool = False,
    batch_size: int = 512,
) -> np.ndarray:
    """Return ``(len(prefixes), k)`` int64 item indices, best first, after each prefix.

    Args:
        model: a fitted popularity, Markov or GRU4Rec model.
        prefixes: each ongoing session as dense item indices in click order (non-empty).
        k: list length (at most the catalog size).
        exclude_seen: drop items already clicked in the prefix (default False, as in the
            evaluation protocol).
        batch_size: sessions run in parallel.

    Ties are broken by the lower item index.
    """
    n_items = model.n_items
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in [1, {n_items}], got {k}")
    for i, p in enumerate(prefixes):
        if len(p) == 0:
            raise ValueError(f"prefix {i} is empty; a session needs at least one click")
        bad = [x for x in p if not 0 <= int(x) < n_items]
        if bad:
            raise ValueError(f"prefix {i} has item index {bad[0]} outside [0, {n_items})")
    if len(prefixes) == 0:
        return np.zeros((0, k), dtype=np.int64)
    # a placeholder click after each prefix makes the batching score exactly that position
    lengths = np.array([len(p) + 1 for p in prefixes], dtype=np.int64)
    items = np.concatenate([np.append(np.asarray(p, dtype=np.int64), 0) for p in prefixes])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = len(prefixes)
    data = SessionArrays(items, offsets, np.arange(n, dtype=np.int64),
                         np.arange(n, dtype=np.int64), n_items)
    last = offsets[1:] - 1  # event index of each placeholder
    out = np.zeros((n, k), dtype=np.int64)
    if hasattr(model, "eval"):
        model.eval()
    state = model.init_state(min(batch_size, n))
    with torch.no_grad():
        for batch in iterate_session_parallel(data, batch_size):
            scores, state = model.advance(state, batch)
            events = batch.target_events.numpy()
            rows = np.flatnonzero(np.isin(events, last))
            if len(rows) == 0:
                continue
            block = scores[torch.from_numpy(rows)].to(torch.float64).cpu().numpy()
            sessions = np.searchsorted(last, events[rows])
            if exclude_seen:
                for r, s in enumerate(sessions):
                    block[r, np.asarray(prefixes[s], dtype=np.int64)] = -np.inf
            # stable sort on -score: ties keep the lower item index first
            out[sessions] = np.argsort(-block, axis=1, kind="stable")[:, :k]
    return out
