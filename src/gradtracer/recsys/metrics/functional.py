"""Top-K metrics as pure functions: the single source of every ranking number.

Each metric is defined once, in :data:`METRICS`, as a function of the *positions* of a
user's relevant items: ``positions`` is ``(B, R)`` int, the 1-based positions of each row's
relevant items in its tie-resolved ranked list, ascending, padded at the end with any value
larger than ``k``; ``n_relevant`` is the ``(B,)`` number of held-out items (>= 1). Every
function returns ``(B,)`` float64 values in ``[0, 1]`` and works on numpy arrays and on
torch tensors alike (on the tensors' device).

The hit-matrix form (``hits`` ``(B, K)`` bool, ``[b, p]`` = the item at 0-based position
``p`` is relevant) used by the top-K path goes through the same functions:
:func:`metrics_from_hits` and ``ndcg_at_k(hits, n_relevant, k)`` & co. turn the hits into
positions with :func:`positions_from_hits` first. :func:`metrics_from_positions` (the
counting path) and :func:`~gradtracer.recsys.metrics.ranks.metrics_from_ranks` (one target
per row) call :data:`METRICS` directly.

Definitions (``R`` = relevant set, ``rel_p`` = 1 if position ``p`` is relevant):

- ``hr@k``        1 if any of the top ``k`` is relevant, else 0.
- ``recall@k``    ``#hits in top k / |R|``.
- ``precision@k`` ``#hits in top k / k``.
- ``ndcg@k``      ``sum_p rel_p / log2(p + 1)`` divided by the ideal DCG
                  ``sum_{p=1}^{min(|R|, k)} 1 / log2(p + 1)``.
- ``map@k``       ``sum_p rel_p * precision@p / min(|R|, k)``.
- ``mrr@k``       ``1 / p`` of the first relevant position ``p <= k``, else 0.

Examples:
    >>> import numpy as np
    >>> out = metrics_from_positions(np.array([[1, 3], [2, 99]]), np.array([2, 1]), ks=(2,))
    >>> out["hr@2"].tolist(), out["recall@2"].tolist(), out["mrr@2"].tolist()
    ([1.0, 1.0], [0.5, 1.0], [1.0, 0.5])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradtracer.findings import metric_key

__all__ = [
    "METRICS",
    "average_precision_at_k",
    "average_precision_from_positions",
    "check_ks",
    "check_metrics",
    "hit_rate_at_k",
    "hit_rate_from_positions",
    "hits_from_positions",
    "metrics_from_hits",
    "metrics_from_positions",
    "ndcg_at_k",
    "ndcg_from_positions",
    "positions_from_hits",
    "precision_at_k",
    "precision_from_positions",
    "recall_at_k",
    "recall_from_positions",
    "reciprocal_rank_at_k",
    "reciprocal_rank_from_positions",
]


#: A positions matrix, hit matrix or count vector: a torch tensor or a numpy array. The
#: metric functions use only operations both libraries spell alike, so one definition
#: serves the numpy path (:func:`metrics_from_positions`) and the torch path
#: (:func:`metrics_from_hits`, on the scorer's device).
Array = Any


def _is_numpy(x: Array) -> bool:
    return isinstance(x, np.ndarray)


def _lib(x: Array) -> Any:
    return np if _is_numpy(x) else torch


def _float(x: Array) -> Array:
    if _is_numpy(x):
        return np.asarray(x).astype(np.float64, copy=False)
    return x.to(torch.float64)


def _arange(start: int, stop: int, like: Array) -> Array:
    """``float64 [start, stop)`` in the library (and on the device) of ``like``."""
    if _is_numpy(like):
        return np.arange(start, stop, dtype=np.float64)
    return torch.arange(start, stop, device=like.device, dtype=torch.float64)


def _inside(positions: Array, k: int) -> Array:
    """``(B, R)`` bool: which positions are in the top ``k``."""
    if positions.ndim != 2:
        raise ValueError(f"positions must be a (B, R) array, got shape {tuple(positions.shape)}")
    if k <= 0:
        raise ValueError(f"k must be a positive int, got {k}")
    return positions <= k


def _at(positions: Array, inside: Array) -> Array:
    """The positions where ``inside``, 1 elsewhere (so that indexing with them is valid)."""
    return _lib(positions).where(inside, positions, 1)


def _discounts(k: int, like: Array) -> Array:
    """``(k,)`` float64 ``1 / log2(p + 1)`` for ``p = 1..k``."""
    return 1.0 / _lib(like).log2(_arange(2, k + 2, like))


# --- the definitions: metrics of the 1-based positions of each row's relevant items --------


def hit_rate_from_positions(positions: Array, n_relevant: Array, k: int) -> Array:
    """Return ``(B,)`` HR@k: 1.0 where a relevant item is in the top ``k``."""
    del n_relevant
    inside = _inside(positions, k)
    return _float(inside.sum(1) > 0)


def recall_from_positions(positions: Array, n_relevant: Array, k: int) -> Array:
    """Return ``(B,)`` Recall@k: relevant items in the top ``k`` over ``|R|``."""
    inside = _inside(positions, k)
    return _float(inside.sum(1)) / _float(n_relevant)


def precision_from_positions(positions: Array, n_relevant: Array, k: int) -> Array:
    """Return ``(B,)`` Precision@k: relevant items in the top ``k`` over ``k``."""
    del n_relevant
    inside = _inside(positions, k)
    return _float(inside.sum(1)) / k


def ndcg_from_positions(positions: Array, n_relevant: Array, k: int) -> Array:
    """Return ``(B,)`` NDCG@k with binary gains and ``log2(position + 1)`` discounts."""
    inside = _inside(positions, k)
    at = _at(positions, inside)
    lib = _lib(positions)
    disc = _discounts(k, positions)
    dcg = lib.where(inside, disc[at - 1], 0.0).sum(1)
    cut = _float(lib.clip(n_relevant, 1, k)) - 1
    ideal = lib.cumsum(disc, 0)[cut.astype(np.int64) if _is_numpy(cut) else cut.long()]
    return dcg / ideal


def average_precision_from_positions(positions: Array, n_relevant: Array, k: int) -> Array:
    """Return ``(B,)`` AP@k: mean of precision@p over relevant positions, over ``min(|R|, k)``.

    ``positions`` must be ascending in each row (padding last): the ``j``-th relevant item
    of a row is then at precision ``j / position``.
    """
    inside = _inside(positions, k)
    at = _at(positions, inside)
    lib = _lib(positions)
    order = _arange(1, positions.shape[1] + 1, positions)  # relevant items up to each one
    return lib.where(inside, order / at, 0.0).sum(1) / _float(lib.clip(n_relevant, 1, k))


def reciprocal_rank_from_positions(positions: Array, n_relevant: Array, k: int) -> Array:
    """Return ``(B,)`` RR@k: ``1 / position`` of the first relevant item within ``k``, else 0.

    ``positions`` must be ascending in each row (the first column is the best position).
    """
    del n_relevant
    inside = _inside(positions, k)
    at = _at(positions, inside)
    return _lib(positions).where(inside[:, 0], 1.0 / _float(at[:, 0]), 0.0)


PositionMetricFn = Callable[[Array, Array, int], Array]

#: Metric name -> its definition, a function of ``(positions (B, R), n_relevant (B,), k)``
#: returning ``(B,)`` float64 values; the names used in ``metrics=`` and in result keys
#: (``"ndcg@10"``). Every evaluation path computes its numbers through these functions.
METRICS: dict[str, PositionMetricFn] = {
    "hr": hit_rate_from_positions,
    "recall": recall_from_positions,
    "precision": precision_from_positions,
    "ndcg": ndcg_from_positions,
    "map": average_precision_from_positions,
    "mrr": reciprocal_rank_from_positions,
}


# --- the hit-matrix form: the same definitions, for a (B, K) hit matrix ----------------------


def positions_from_hits(hits: Array) -> Array:
    """Return ``(B, K)`` int64 1-based positions of the hits of ``hits (B, K)``, ascending,
    padded with ``K + 1``."""
    if hits.ndim != 2:
        raise ValueError(f"hits must be a (B, K) tensor, got shape {tuple(hits.shape)}")
    width = hits.shape[1]
    if _is_numpy(hits):
        columns = np.arange(1, width + 1, dtype=np.int64)
        return np.sort(np.where(hits.astype(bool, copy=False), columns, width + 1), axis=1)
    cols = torch.arange(1, width + 1, device=hits.device, dtype=torch.int64)
    return torch.where(hits.bool(), cols, width + 1).sort(dim=1).values


def _check_width(hits: Array, k: int) -> None:
    if hits.ndim != 2:
        raise ValueError(f"hits must be a (B, K) tensor, got shape {tuple(hits.shape)}")
    if k <= 0 or k > hits.shape[1]:
        raise ValueError(
            f"k must be in [1, {hits.shape[1]}] for hits of width {hits.shape[1]}, got {k}"
        )


def _on_hits(name: str) -> Callable[[Array, Array, int], Array]:
    truth = METRICS[name]

    def metric(hits: Array, n_relevant: Array, k: int) -> Array:
        _check_width(hits, k)
        return truth(positions_from_hits(hits[:, :k]), n_relevant, k)

    metric.__name__ = f"{name}_at_k"
    metric.__doc__ = (
        f"Return ``(B,)`` {name}@k of a ``(B, K)`` hit matrix (see :data:`METRICS`); ``k <= K``."
    )
    return metric


hit_rate_at_k = _on_hits("hr")
recall_at_k = _on_hits("recall")
precision_at_k = _on_hits("precision")
ndcg_at_k = _on_hits("ndcg")
average_precision_at_k = _on_hits("map")
reciprocal_rank_at_k = _on_hits("mrr")


def check_ks(ks: int | Sequence[int]) -> tuple[int, ...]:
    """Return ``ks`` as a sorted tuple of distinct positive ints; ``ValueError`` naming a bad one."""
    values = (ks,) if isinstance(ks, int) else tuple(ks)
    if not values:
        raise ValueError("ks must name at least one cutoff, got an empty sequence")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"every cutoff K must be a positive int, got {k!r}")
    return tuple(sorted(set(values)))


def check_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Return ``metrics`` as a tuple of known names; ``ValueError`` naming an unknown one."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or names}; choose from {sorted(METRICS)}")
    return names


def metrics_from_hits(
    hits: torch.Tensor,
    n_relevant: torch.Tensor,
    ks: Sequence[int],
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, torch.Tensor]:
    """Return ``{"ndcg@10": (B,) tensor, ...}`` for every metric and cutoff of a hit matrix.

    ``hits`` is ``(B, K)`` with ``K >= max(ks)``; the values come from :data:`METRICS`.
    """
    for k in ks:
        _check_width(hits, k)
    positions = positions_from_hits(hits[:, : max(ks)])
    return {
        metric_key(name, k): METRICS[name](positions, n_relevant, k) for name in metrics for k in ks
    }


def hits_from_positions(positions: torch.Tensor, k: int) -> torch.Tensor:
    """Return the ``(B, k)`` bool hit matrix of 1-based relevant ``positions`` ``(B, R)``.

    Positions above ``k`` (including padding) set no hit.
    """
    column = torch.where(positions <= k, positions - 1, k)
    hits = torch.zeros(positions.shape[0], k + 1, dtype=torch.bool, device=positions.device)
    return hits.scatter_(1, column, True)[:, :k]


def metrics_from_positions(
    positions: np.ndarray,
    n_relevant: np.ndarray,
    ks: Sequence[int],
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, np.ndarray]:
    """Return ``{"ndcg@10": (B,) float64 array, ...}`` from the positions of relevant items.

    ``positions`` is ``(B, R)`` int 1-based positions of each row's relevant items,
    ascending, padded at the end with any value larger than ``max(ks)``; ``n_relevant`` is
    ``(B,)`` ``|R|``. The values are those of :data:`METRICS` (the same functions
    :func:`metrics_from_hits` uses), in the same key order.
    """
    ks = check_ks(ks)
    names = check_metrics(metrics)
    pos = np.asarray(positions, dtype=np.int64)
    if pos.ndim != 2:
        raise ValueError(f"positions must be a (B, R) array, got shape {pos.shape}")
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    if n_rel.shape != (pos.shape[0],):
        raise ValueError(f"n_relevant has shape {n_rel.shape}, expected ({pos.shape[0]},)")
    if pos.size and int(pos.min()) < 1:
        raise ValueError(f"positions are 1-based; got a position of {int(pos.min())}")
    return {metric_key(name, k): METRICS[name](pos, n_rel, k) for name in names for k in ks}
