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


def metrics_from_positions(
    positions: np.ndarray,
    n_relevant: np.ndarray,
    ks: Sequence[int],
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, np.ndarray]:
    """Return ``{"ndcg@10": (B,) float64 array, ...}`` from the positions of relevant items.

    The same definitions as :func:`metrics_from_hits`, for a ranking given as
    ``positions``: ``(B, R)`` int 1-based positions of each row's relevant items,
    ascending, padded at the end with any value larger than ``max(ks)``; ``n_relevant``
    is ``(B,)`` ``|R|``. Cheaper than building a hit matrix when ``R`` is small.
    """
    pos = np.asarray(positions, dtype=np.int64)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    order = np.arange(1, pos.shape[1] + 1, dtype=np.float64)  # relevant items up to p
    out: dict[str, np.ndarray] = {}
    for k in ks:
        inside = pos <= k  # (B, R)
        n_hit = inside.sum(1).astype(np.float64)
        at = np.where(inside, pos, 1)  # in-list positions, 1 elsewhere (masked below)
        disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
        cut = np.minimum(n_rel, k)
        for name in metrics:
            if name == "hr":
                value = (n_hit > 0).astype(np.float64)
            elif name == "recall":
                value = n_hit / n_rel
            elif name == "precision":
                value = n_hit / k
            elif name == "ndcg":
                value = (
                    np.where(inside, disc[at - 1], 0.0).sum(1)
                    / np.cumsum(disc)[cut.astype(np.int64) - 1]
                )
            elif name == "map":
                value = np.where(inside, order / at, 0.0).sum(1) / cut
            elif name == "mrr":
                value = np.where(inside[:, 0], 1.0 / at[:, 0], 0.0)
            else:
                raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
            out[metric_key(name, k)] = value
    # same key order as metrics_from_hits: metric-major, then cutoff
    return {metric_key(name, k): out[metric_key(name, k)] for name in metrics for k in ks}
