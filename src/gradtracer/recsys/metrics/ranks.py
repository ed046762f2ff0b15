"""Single-target ranking: the 1-based rank of one held-out item per row, and metrics from it.

Used where each evaluation case has exactly one target (leave-one-out, next-item
prediction in sessions). For several relevant items per user use
:func:`gradtracer.recsys.metrics.evaluate_topk`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gradtracer._random import RandomState, torch_generator
from gradtracer.findings import metric_key
from gradtracer.recsys.metrics.functional import check_ks, metrics_from_positions
from gradtracer.recsys.metrics.ties import check_ties

__all__ = ["metrics_from_ranks", "target_ranks"]


def target_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ties: str = "conservative",
    exclude_mask: torch.Tensor | None = None,
    *,
    random_state: RandomState = 0,
) -> torch.Tensor:
    """Return the ``(B,)`` int64 1-based rank of each row's target among all items.

    Args:
        scores: ``(B, n_items)`` float scores, higher is better.
        targets: ``(B,)`` item index of each row's target.
        ties: ``"conservative"`` -> ``1 + #{j != t: s_j >= s_t}``; ``"optimistic"`` ->
            ``1 + #{j: s_j > s_t}``; ``"random"`` -> ``1 + #{s_j > s_t}`` plus a uniform
            draw from ``0..#{j != t: s_j == s_t}`` (seeded by ``random_state``).
        exclude_mask: optional ``(B, n_items)`` bool, True for items that cannot be
            recommended (for example already seen); they never outrank the target.
            The target itself is never excluded.
        random_state: seed for ``ties="random"`` (default 0).
    """
    ties = check_ties(ties)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, n_items), got shape {tuple(scores.shape)}")
    targets = torch.as_tensor(targets, device=scores.device).long().reshape(-1)
    if targets.shape[0] != scores.shape[0]:
        raise ValueError(
            f"targets has {targets.shape[0]} rows but scores has {scores.shape[0]} (shape "
            f"{tuple(scores.shape)})"
        )
    if targets.numel() and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(
            f"target item index out of range [0, {scores.shape[1]}): "
            f"min {int(targets.min())}, max {int(targets.max())}"
        )
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    if torch.isnan(target_scores).any():
        raise ValueError("scores contain NaN at a target item")
    greater = scores > target_scores
    equal = scores == target_scores
    if exclude_mask is not None:
        if exclude_mask.shape != scores.shape:
            raise ValueError(
                f"exclude_mask shape {tuple(exclude_mask.shape)} != scores shape "
                f"{tuple(scores.shape)}"
            )
        keep = ~exclude_mask.to(torch.bool)
        greater &= keep
        equal &= keep
    n_greater = greater.sum(1)
    # the target ties with itself; never count it (also when it was marked excluded)
    n_equal = equal.sum(1) - equal.gather(1, targets[:, None]).squeeze(1).long()
    if ties == "conservative":
        extra = n_equal
    elif ties == "optimistic":
        extra = torch.zeros_like(n_equal)
    else:
        gen = torch_generator(random_state)
        u = torch.rand(n_equal.shape, generator=gen, dtype=torch.float64)
        extra = torch.floor(u * (n_equal.cpu() + 1).to(torch.float64)).long().to(n_equal.device)
    return (1 + n_greater + extra).long()


def metrics_from_ranks(
    ranks: torch.Tensor | np.ndarray | Sequence[int], ks: int | Sequence[int] = (10,)
) -> dict[str, np.ndarray]:
    """Return per-row ``hr@k``, ``recall@k``, ``mrr@k`` and ``ndcg@k`` from 1-based target ranks.

    One target per row: the values are those of
    :func:`~gradtracer.recsys.metrics.functional.metrics_from_positions` with one relevant
    item at position ``rank`` (so HR@k equals Recall@k, ``ndcg@k = 1 / log2(rank + 1)`` and
    ``mrr@k = 1 / rank`` when ``rank <= k``, else 0). Arrays are float64.

    Raises:
        ValueError: a rank below 1 or not a whole number, or a bad cutoff.
    """
    ks = check_ks(ks)
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.float64)
    r = r.ravel()
    if r.size and r.min() < 1:
        raise ValueError(f"ranks are 1-based; got a rank of {r.min():g}")
    if not np.array_equal(r, np.floor(r)):
        raise ValueError("ranks must be whole numbers (1-based positions)")
    # positions above max(ks) never hit: clip them so that any catalogue size fits in int64
    positions = np.minimum(r, ks[-1] + 1).astype(np.int64)[:, None]
    values = metrics_from_positions(
        positions, np.ones(r.size, dtype=np.int64), ks, ("hr", "recall", "mrr", "ndcg")
    )
    return {
        metric_key(m, k): values[metric_key(m, k)]
        for k in ks
        for m in ("hr", "recall", "mrr", "ndcg")
    }
