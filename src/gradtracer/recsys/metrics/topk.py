"""Batched full-ranking top-K evaluation with explicit tie handling.

For each batch of users the scorer produces ``(B, n_items)`` scores; training items are
masked to ``-inf`` (held-out items never are), ``torch.topk`` takes the ``K + 1`` best, and
the ranked list is made deterministic under the chosen tie policy:

- Items tied *inside* the top-K list are ordered by the policy (conservative: relevant
  items after non-relevant ones; optimistic: before; random: uniformly random order).
- Ties *at the cutoff* (the K-th score is shared with items outside the list) are resolved
  by counting: the ``m`` list slots holding the K-th score are filled from all ``e`` items
  with that score, ``e_rel`` of them relevant. Conservative puts the
  ``min(e_rel, max(0, m - (e - e_rel)))`` relevant ones that still fit at the end of those
  slots; optimistic puts ``min(m, e_rel)`` at the start; random draws the slot contents
  as a uniformly random order of the ``e`` tied items (sequential hypergeometric draws).
  The full count ``e`` costs one extra pass over the row and is made only for rows whose
  ``(K+1)``-th score equals the K-th.

Cost per batch: the scoring itself, one masked write per training item, one ``topk`` and
``O(B * (K + R_max))`` bookkeeping.

:func:`evaluate_topk` skips ``topk`` for batches whose users have few held-out items
(conservative or optimistic ties, no coverage): the positions of the relevant items are
counted directly (:mod:`~gradtracer.recsys.metrics.counting`), which gives the same
ranking and so the same metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from gradtracer._progress import progress as progress_bar
from gradtracer._random import RandomState, torch_generator
from gradtracer.findings import metric_key
from gradtracer.recsys.metrics._inputs import (
    ScoreFn,
    Scorer,
    as_csr,
    as_score_fn,
    flat_positions,
    padded_rows,
    select_users,
    take_rows,
)
from gradtracer.recsys.metrics.counting import (
    BLOCK_ELEMENTS,
    prefers_counting,
    relevant_positions,
)
from gradtracer.recsys.metrics.functional import (
    METRICS,
    check_ks,
    check_metrics,
    metrics_from_hits,
    metrics_from_positions,
)
from gradtracer.recsys.metrics.result import FULL_RANKING, RankingResult
from gradtracer.recsys.metrics.ties import check_ties

__all__ = ["evaluate_topk", "tied_topk_hits"]

_MIN_BLOCK_ROWS = 128  # fewer users per scorer call than this: score the whole batch at once


def tied_topk_hits(
    scores: torch.Tensor,
    relevant: torch.Tensor,
    n_relevant: torch.Tensor,
    k: int,
    ties: str = "conservative",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(hits (B, k) bool, top_items (B, min(k, n_items)) int64)`` under a tie policy.

    Args:
        scores: ``(B, n_items)`` float scores (masked items already ``-inf``).
        relevant: ``(B, R)`` int64 relevant item indices, ascending per row, padded at the
            end with ``n_items``.
        n_relevant: ``(B,)`` number of valid entries of each ``relevant`` row.
        k: list length.
        ties: ``"conservative"``, ``"optimistic"`` or ``"random"``.
        generator: CPU ``torch.Generator`` for ``ties="random"``.
    """
    ties = check_ties(ties)
    bsz, n_items = scores.shape
    device = scores.device
    kk = min(k, n_items)
    take = min(k + 1, n_items)
    vals, idx = scores.topk(take, dim=1)  # (B, take), descending
    if torch.isnan(vals).any():
        raise ValueError("scores contain NaN; the scorer must return finite or -inf values")
    top_idx = idx[:, :kk].contiguous()
    top_vals = vals[:, :kk]
    rel = relevant.to(device)
    pos = torch.searchsorted(rel, top_idx).clamp(max=rel.shape[1] - 1)
    is_rel = rel.gather(1, pos) == top_idx  # (B, kk)

    # order items tied inside the list by the policy
    if kk > 1 and bool((top_vals[:, 1:] == top_vals[:, :-1]).any()):
        if ties == "random":
            key = torch.rand(bsz, kk, generator=generator).to(device)
        elif ties == "conservative":
            key = is_rel.to(torch.float32)
        else:
            key = (~is_rel).to(torch.float32)
        pre = key.argsort(dim=1, stable=True)
        order = top_vals.gather(1, pre).argsort(dim=1, descending=True, stable=True)
        is_rel = is_rel.gather(1, pre).gather(1, order)

    # ties at the cutoff: slots [g, kk) hold the kk-th score
    v_k = top_vals[:, -1:]  # (B, 1)
    g = (top_vals > v_k).sum(1)  # (B,) items strictly above the cutoff score
    m = kk - g  # slots holding the cutoff score
    e_total = m.clone()
    if take > kk:
        spill = vals[:, kk] == v_k[:, 0]
        if bool(spill.any()):
            rows = spill.nonzero().squeeze(1)
            e_total[rows] = (scores[rows] == v_k[rows]).sum(1)
    valid = torch.arange(rel.shape[1], device=device)[None, :] < n_relevant.to(device)[:, None]
    rel_scores = scores.gather(1, rel.clamp(max=n_items - 1))
    e_rel = ((rel_scores == v_k) & valid).sum(1)
    e_non = e_total - e_rel
    slot = torch.arange(kk, device=device)[None, :] - g[:, None]  # (B, kk), >= 0 in slots
    in_slot = slot >= 0
    if ties == "conservative":
        r_in = torch.minimum(e_rel, (m - e_non).clamp(min=0))
        slot_rel = slot >= (m - r_in)[:, None]
    elif ties == "optimistic":
        r_in = torch.minimum(m, e_rel)
        slot_rel = slot < r_in[:, None]
    else:
        slot_rel = torch.zeros(bsz, kk, dtype=torch.bool, device=device)
        rem_rel, rem_tot = e_rel.clone(), e_total.clone()
        draws = torch.rand(bsz, kk, generator=generator, dtype=torch.float64).to(device)
        for t in range(kk):
            active = in_slot[:, t]
            pick = active & (draws[:, t] * rem_tot < rem_rel)
            slot_rel[:, t] = pick
            rem_rel = rem_rel - pick.long()
            rem_tot = rem_tot - active.long()
    hits = torch.where(in_slot, slot_rel, is_rel)
    if kk < k:
        hits = torch.cat([hits, hits.new_zeros(bsz, k - kk)], dim=1)
    return hits, top_idx


def evaluate_topk(
    scorer: Scorer,
    test_user_items: object,
    *,
    exclude: object | None = None,
    ks: int | Sequence[int] = (10,),
    metrics: Sequence[str] = tuple(METRICS),
    batch_size: int = 1024,
    ties: str = "conservative",
    users: Sequence[int] | np.ndarray | None = None,
    random_state: RandomState = 0,
    progress: bool | None = None,
    coverage: bool = False,
) -> RankingResult:
    """Return full-ranking top-K metrics of ``scorer`` on held-out items, per user and mean.

    Every item in the catalogue is ranked for every evaluated user (no sampling).

    Args:
        scorer: ``(user_factors (n_users, d), item_factors (n_items, d))`` (numpy or
            torch), a callable ``scores(user_idx: LongTensor) -> (B, n_items) Tensor``, or a
            model with a ``scorer()`` method.
        test_user_items: ``(n_users, n_items)`` CSR; stored non-zeros are the held-out
            (relevant) items. Users with none are skipped and counted in ``n_skipped``.
        exclude: optional ``(n_users, n_items)`` CSR of items never recommended (usually
            the training matrix); an item both excluded and held out stays rankable.
        ks: cutoffs (default ``(10,)``); each must be in ``[1, n_items]``.
        metrics: names from ``hr``, ``recall``, ``precision``, ``ndcg``, ``map``, ``mrr``.
        batch_size: users scored at once (memory ~ ``batch_size * n_items * 4`` bytes).
        ties: tie policy, see :mod:`gradtracer.recsys.metrics.ties` (default conservative).
        users: optional subset of user indices to evaluate.
        random_state: seed for ``ties="random"``.
        progress: progress bar (None: only on a terminal).
        coverage: also report item coverage@K (``result.coverage``), which needs every
            user's top-K list; default False (``result.coverage`` is then empty).

    Users with few held-out items (up to
    :data:`~gradtracer.recsys.metrics.counting.MAX_COUNTED_RELEVANT`) are ranked by
    counting (:mod:`~gradtracer.recsys.metrics.counting`) instead of ``torch.topk``
    when ``ties`` is conservative or optimistic and coverage is not requested; both paths
    give identical metrics.
    """
    test = as_csr(test_user_items, "test_user_items")
    n_users, n_items = test.shape
    ks = check_ks(ks)
    names = check_metrics(metrics)
    ties = check_ties(ties)
    if ks[-1] > n_items:
        raise ValueError(f"K={ks[-1]} exceeds the number of items ({n_items})")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    excl = None if exclude is None else as_csr(exclude, "exclude", test.shape)
    score_fn, owns = as_score_fn(scorer, n_users, n_items)
    eval_users, n_skipped = select_users(test, users)
    if eval_users.size == 0:
        raise ValueError("no user has a held-out item in test_user_items; nothing to evaluate")
    gen = torch_generator(random_state) if ties == "random" else None
    kmax = ks[-1]
    parts: dict[str, list[np.ndarray]] = {}
    covered = {k: np.zeros(n_items, dtype=bool) for k in ks} if coverage else {}
    batch_starts = range(0, eval_users.size, batch_size)
    starts: Iterable[int] = batch_starts
    if len(batch_starts) > 1:
        starts = progress_bar(
            batch_starts, total=len(batch_starts), desc="evaluate", enabled=progress
        )
    for start in starts:
        batch = eval_users[start : start + batch_size]
        with torch.no_grad():
            block = take_rows(test, batch)
            relevant, n_rel = padded_rows(block, fill=n_items)  # (B, R), (B,)
            held_at = flat_positions(block)  # (nnz,) row * n_items + item within the batch
            excl_block = None if excl is None else take_rows(excl, batch)
            excl_at = None if excl_block is None else flat_positions(excl_block)
            positions = None
            if not coverage and prefers_counting(relevant.shape[1], n_items, ties):
                excl_ptr = None if excl_block is None else excl_block.indptr
                positions = _counted_positions(
                    score_fn, owns, batch, n_items, (block.indptr, held_at), (excl_ptr, excl_at),
                    relevant, n_rel, ties,
                )  # fmt: skip
            if positions is not None:
                values = metrics_from_positions(positions.cpu().numpy(), n_rel.numpy(), ks, names)
            else:
                scores = _scores(score_fn, owns, batch, held_at, excl_at)  # (B, n_items)
                hits, top = tied_topk_hits(scores, relevant, n_rel, kmax, ties, gen)
                hits_metrics = metrics_from_hits(hits, n_rel.to(hits.device), ks, names)
                values = {key: v.cpu().numpy() for key, v in hits_metrics.items()}
                if coverage:
                    top_np = top.cpu().numpy()
                    for k in ks:
                        covered[k][top_np[:, :k].ravel()] = True
            for key, value in values.items():
                parts.setdefault(key, []).append(value)
    per_user = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    return RankingResult(
        mean={key: float(v.mean()) for key, v in per_user.items()},
        per_user=per_user,
        users=eval_users,
        n_skipped=n_skipped,
        coverage={metric_key("coverage", k): float(c.mean()) for k, c in covered.items()},
        ks=ks,
        ties=ties,
        protocol=FULL_RANKING,
        n_items=n_items,
    )


def _scores(
    score_fn: ScoreFn,
    owns: bool,
    batch: np.ndarray,
    held_at: torch.Tensor,
    excluded_at: torch.Tensor | None,
) -> torch.Tensor:
    """``(B, n_items)`` scores of ``batch`` with excluded items at ``-inf`` (a copy if masked)."""
    scores = score_fn(torch.from_numpy(batch))
    if excluded_at is not None:
        scores = _mask_excluded(scores, owns, held_at, excluded_at)
    return scores


def _counted_positions(
    score_fn: ScoreFn,
    owns: bool,
    batch: np.ndarray,
    n_items: int,
    held: tuple[np.ndarray, torch.Tensor],
    excluded: tuple[np.ndarray | None, torch.Tensor | None],
    relevant: torch.Tensor,
    n_relevant: torch.Tensor,
    ties: str,
) -> torch.Tensor | None:
    """``(B, R)`` relevant positions by counting, or None (then the top-K path is taken).

    Small catalogues are scored in row blocks of about ``BLOCK_ELEMENTS`` scores (at least
    ``_MIN_BLOCK_ROWS`` users per scorer call): each block is scored, masked and counted
    while it is in cache, and no allocation grows with ``batch_size`` (fresh multi-MB
    allocations cost page faults on every call). One user's scores always come from one
    scorer call.
    """
    rows = BLOCK_ELEMENTS // n_items
    if rows < _MIN_BLOCK_ROWS:
        rows = batch.size
    held_ptr, held_at = held
    excl_ptr, excl_at = excluded
    out = []
    for lo in range(0, batch.size, rows):
        hi = min(lo + rows, batch.size)
        shift = lo * n_items  # flat positions relative to this block
        h_at = held_at[held_ptr[lo] : held_ptr[hi]] - shift
        e_at = None
        if excl_ptr is not None and excl_at is not None:
            e_at = excl_at[excl_ptr[lo] : excl_ptr[hi]] - shift
        scores = _scores(score_fn, owns, batch[lo:hi], h_at, e_at)  # (b, n_items)
        if scores.dtype not in (torch.float32, torch.float64):
            return None
        own = owns or e_at is not None  # masking made a copy
        positions = relevant_positions(
            scores, relevant[lo:hi], n_relevant[lo:hi], ties, overwrite=own
        )
        if positions is None:  # NaN, or +inf with -inf: the top-K path sorts it out
            return None
        out.append(positions)
    return out[0] if len(out) == 1 else torch.cat(out)


def _mask_excluded(
    scores: torch.Tensor, owns: bool, held_at: torch.Tensor, excluded_at: torch.Tensor
) -> torch.Tensor:
    """Set flat positions ``excluded_at`` of ``scores`` to ``-inf``, keeping ``held_at`` ones.

    Positions are ``row * n_items + item`` (held-out items stay rankable even if excluded).
    """
    if not owns:
        scores = scores.clone()
    scores = scores.contiguous()
    flat = scores.view(-1)  # (B * n_items,) view
    held_at = held_at.to(scores.device)
    kept = flat.take(held_at)
    flat.index_fill_(0, excluded_at.to(scores.device), -torch.inf)
    flat.index_copy_(0, held_at, kept)
    return scores
