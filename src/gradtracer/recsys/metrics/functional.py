"""Top-K metrics as pure functions of a hit matrix: the single source of every ranking number.

A *hit matrix* ``hits`` is a ``(B, K)`` boolean tensor whose entry ``[b, p]`` says whether
the item at 0-based position ``p`` of user ``b``'s tie-resolved ranked list is relevant.
``n_relevant`` is the ``(B,)`` number of held-out items of each user (>= 1). Every
function returns a ``(B,)`` float64 tensor in ``[0, 1]`` and only reads the first ``k``
columns, so one hit matrix of width ``max(ks)`` serves every cutoff.

Definitions (``R`` = relevant set, ``rel_p`` = ``hits[:, p-1]``, positions 1-based):

- ``hr@k``        1 if any of the top ``k`` is relevant, else 0.
- ``recall@k``    ``#hits in top k / |R|``.
- ``precision@k`` ``#hits in top k / k``.
- ``ndcg@k``      ``sum_p rel_p / log2(p + 1)`` divided by the ideal DCG
                  ``sum_{p=1}^{min(|R|, k)} 1 / log2(p + 1)``.
- ``map@k``       ``sum_p rel_p * precision@p / min(|R|, k)``.
- ``mrr@k``       ``1 / p`` of the first relevant position ``p <= k``, else 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from gradtracer.findings import metric_key

__all__ = [
    "METRICS",
    "average_precision_at_k",
    "check_ks",
    "check_metrics",
    "hit_rate_at_k",
    "hits_from_positions",
    "metrics_from_hits",
    "metrics_from_positions",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
]


def _head(hits: torch.Tensor, k: int) -> torch.Tensor:
    if hits.ndim != 2:
        raise ValueError(f"hits must be a (B, K) tensor, got shape {tuple(hits.shape)}")
    if k <= 0 or k > hits.shape[1]:
        raise ValueError(
            f"k must be in [1, {hits.shape[1]}] for hits of width {hits.shape[1]}, got {k}"
        )
    return hits[:, :k].to(torch.float64)


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def hit_rate_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``(B,)`` HR@k: 1.0 where a relevant item is in the top ``k``."""
    del n_relevant
    return (_head(hits, k).sum(1) > 0).to(torch.float64)


def recall_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``(B,)`` Recall@k: relevant items in the top ``k`` over ``|R|``."""
    return _head(hits, k).sum(1) / n_relevant.to(torch.float64)


def precision_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``(B,)`` Precision@k: relevant items in the top ``k`` over ``k``."""
    del n_relevant
    return _head(hits, k).sum(1) / k


def ndcg_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``(B,)`` NDCG@k with binary gains and ``log2(position + 1)`` discounts."""
    h = _head(hits, k)
    disc = _discounts(k, h.device)
    dcg = h @ disc
    ideal = torch.cumsum(disc, 0)[(n_relevant.clamp(min=1, max=k) - 1).long()]
    return dcg / ideal


def average_precision_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``(B,)`` AP@k: mean of precision@p over relevant positions, over ``min(|R|, k)``."""
    h = _head(hits, k)
    pos = torch.arange(1, k + 1, device=h.device, dtype=torch.float64)
    prec = torch.cumsum(h, 1) / pos
    return (prec * h).sum(1) / n_relevant.clamp(min=1, max=k).to(torch.float64)


def reciprocal_rank_at_k(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Return ``(B,)`` RR@k: ``1 / position`` of the first relevant item within ``k``, else 0."""
    del n_relevant
    h = _head(hits, k)
    pos = torch.arange(1, k + 1, device=h.device, dtype=torch.float64)
    # first hit has the largest h / pos (1/p decreases with p)
    return (h / pos).max(1).values


MetricFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]

#: Metric name -> function; the names used in ``metrics=`` and in result keys (``"ndcg@10"``).
METRICS: dict[str, MetricFn] = {
    "hr": hit_rate_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "mrr": reciprocal_rank_at_k,
}


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
    """Return ``{"ndcg@10": (B,) tensor, ...}`` for every metric and cutoff."""
    return {metric_key(name, k): METRICS[name](hits, n_relevant, k) for name in metrics for k in ks}


def hits_from_positions(positions: torch.Tensor, k: int) -> torch.Tensor:
    """Return the ``(B, k)`` bool hit matrix of 1-based relevant ``positions`` ``(B, R)``.

    Positions above ``k`` (including padding) set no hit.
    """
    column = torch.where(positions <= k, positions - 1, k)
    hits = torch.zeros(positions.shape[0], k + 1, dtype=torch.bool, device=positions.device)
    return hits.scatter_(1, column, True)[:, :k]


#: Rows turned into one hit matrix at a time by :func:`metrics_from_positions`.
_POSITION_CHUNK = 1 << 16


def metrics_from_positions(
    positions: np.ndarray,
    n_relevant: np.ndarray,
    ks: Sequence[int],
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, np.ndarray]:
    """Return ``{"ndcg@10": (B,) float64 array, ...}`` from the positions of relevant items.

    ``positions`` is ``(B, R)`` int 1-based positions of each row's relevant items, padded
    with any value larger than ``max(ks)``; ``n_relevant`` is ``(B,)`` ``|R|``. The values
    come from :data:`METRICS` (through :func:`metrics_from_hits` on the hit matrix of width
    ``max(ks)``, built ``65,536`` rows at a time), so every path computes a metric one way.
    """
    ks = check_ks(ks)
    names = check_metrics(metrics)
    pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))
    if pos.ndim != 2:
        raise ValueError(f"positions must be a (B, R) array, got shape {tuple(pos.shape)}")
    n_rel = torch.as_tensor(np.asarray(n_relevant, dtype=np.int64))
    if n_rel.shape != (pos.shape[0],):
        raise ValueError(f"n_relevant has shape {tuple(n_rel.shape)}, expected ({pos.shape[0]},)")
    if pos.numel() and int(pos.min()) < 1:
        raise ValueError(f"positions are 1-based; got a position of {int(pos.min())}")
    parts: dict[str, list[np.ndarray]] = {metric_key(n, k): [] for n in names for k in ks}
    for lo in range(0, max(pos.shape[0], 1), _POSITION_CHUNK):
        hits = hits_from_positions(pos[lo : lo + _POSITION_CHUNK], ks[-1])
        values = metrics_from_hits(hits, n_rel[lo : lo + _POSITION_CHUNK], ks, names)
        for key, value in values.items():
            parts[key].append(value.numpy())
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}
