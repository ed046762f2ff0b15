"""Sampled-negatives evaluation, for comparison with papers that use it (e.g. NCF).

Each evaluated user's held-out items are ranked against ``n_negatives`` items drawn
uniformly *without replacement* from the items the user has neither held out nor in
``exclude``. Sampled metrics are inflated and can even reorder models compared with full
ranking (Krichene & Rendle, KDD 2020); every result is therefore labelled
``"sampled (N negatives)"``. Prefer :func:`gradtracer.recsys.metrics.evaluate_topk`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer._progress import progress as progress_bar
from gradtracer._random import RandomState, torch_generator
from gradtracer.recsys.metrics._inputs import (
    Scorer,
    as_csr,
    as_score_fn,
    padded_rows,
    row_coords,
    select_users,
    take_rows,
)
from gradtracer.recsys.metrics.functional import METRICS, check_ks, check_metrics, metrics_from_hits
from gradtracer.recsys.metrics.result import RankingResult, sampled_protocol
from gradtracer.recsys.metrics.ties import check_ties
from gradtracer.recsys.metrics.topk import tied_topk_hits

__all__ = ["evaluate_sampled"]


def evaluate_sampled(
    scorer: Scorer,
    test_user_items: object,
    *,
    exclude: object | None = None,
    n_negatives: int = 100,
    ks: int | Sequence[int] = (10,),
    metrics: Sequence[str] = tuple(METRICS),
    batch_size: int = 1024,
    ties: str = "conservative",
    users: Sequence[int] | np.ndarray | None = None,
    random_state: RandomState = 0,
    progress: bool | None = None,
) -> RankingResult:
    """Return top-K metrics over held-out items plus ``n_negatives`` sampled items per user.

    Arguments are those of :func:`~gradtracer.recsys.metrics.evaluate_topk`, plus
    ``n_negatives`` (default 100) and ``random_state`` (seeds the negatives and random
    ties). ``result.protocol`` is ``"sampled (N negatives)"``; ``coverage`` is empty (it is
    not meaningful over sampled candidates). ``ValueError`` when a user has fewer than
    ``n_negatives`` eligible items or ``max(ks) > n_negatives + 1``.
    """
    test = as_csr(test_user_items, "test_user_items")
    n_users, n_items = test.shape
    ks = check_ks(ks)
    names = check_metrics(metrics)
    ties = check_ties(ties)
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, int) or n_negatives <= 0:
        raise ValueError(f"n_negatives must be a positive int, got {n_negatives!r}")
    if ks[-1] > n_negatives + 1:
        raise ValueError(
            f"K={ks[-1]} exceeds the smallest candidate list (n_negatives + 1 = {n_negatives + 1})"
        )
    seen = test if exclude is None else (test + as_csr(exclude, "exclude", test.shape)).tocsr()
    seen = as_csr(seen, "seen")
    score_fn, _ = as_score_fn(scorer, n_users, n_items)
    eval_users, n_skipped = select_users(test, users)
    if eval_users.size == 0:
        raise ValueError("no user has a held-out item in test_user_items; nothing to evaluate")
    eligible = n_items - np.diff(seen.indptr)[eval_users]
    if eligible.min() < n_negatives:
        bad = int(eval_users[int(np.argmin(eligible))])
        raise ValueError(
            f"user {bad} has only {int(eligible.min())} items to sample from, fewer than "
            f"n_negatives={n_negatives}"
        )
    gen = torch_generator(random_state)
    parts: dict[str, list[np.ndarray]] = {}
    starts = range(0, eval_users.size, batch_size)
    batches = progress_bar(starts, total=len(starts), desc="evaluate (sampled)", enabled=progress)
    for start in batches if len(starts) > 1 else starts:
        batch = eval_users[start : start + batch_size]
        with torch.no_grad():
            negatives = _sample_negatives(
                take_rows(seen, batch), n_items, n_negatives, gen
            )  # (B, N)
            scores = score_fn(torch.from_numpy(batch))  # (B, n_items)
            relevant, n_rel = padded_rows(take_rows(test, batch), fill=n_items)  # (B, R)
            width = relevant.shape[1]
            pad = torch.arange(width)[None, :] >= n_rel[:, None]
            dev = scores.device
            rel_scores = scores.gather(1, relevant.clamp(max=n_items - 1).to(dev))
            rel_scores = rel_scores.masked_fill(pad.to(dev), -torch.inf)
            cand = torch.cat([rel_scores, scores.gather(1, negatives.to(dev))], dim=1)
            # in candidate space the relevant items are positions 0..n_rel-1
            positions = torch.arange(width).expand(len(batch), width)
            positions = positions.masked_fill(pad, cand.shape[1])
            hits, _ = tied_topk_hits(cand, positions, n_rel, ks[-1], ties, gen)
            for key, values in metrics_from_hits(hits, n_rel.to(hits.device), ks, names).items():
                parts.setdefault(key, []).append(values.cpu().numpy())
    per_user = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    return RankingResult(
        mean={key: float(v.mean()) for key, v in per_user.items()},
        per_user=per_user,
        users=eval_users,
        n_skipped=n_skipped,
        coverage={},
        ks=ks,
        ties=ties,
        protocol=sampled_protocol(n_negatives),
        n_items=n_items,
        metadata={"n_negatives": n_negatives},
    )


def _sample_negatives(
    seen_block: sp.csr_matrix, n_items: int, n_negatives: int, gen: torch.Generator
) -> torch.Tensor:
    """``(B, n_negatives)`` distinct unseen items per row: the smallest of uniform keys."""
    keys = torch.rand(seen_block.shape[0], n_items, generator=gen)
    rows, cols = row_coords(seen_block)
    keys[rows, cols] = torch.inf
    return keys.topk(n_negatives, dim=1, largest=False).indices
