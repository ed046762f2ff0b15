"""Relevant-item positions by counting: the fast path when each user has few relevant items.

Every ranking metric is a function of the positions of the relevant items only, and the
position of a relevant item follows from counts over the user's score row, so no top-K
list is needed. For a user with relevant set ``R`` and (already masked) scores ``s``,
the relevant item ``r`` sits at the 1-based position

- conservative: ``1 + #{j not in R: s_j >= s_r} + #{r' in R: s_r' > s_r} + t_r``
- optimistic:   ``1 + #{j not in R: s_j >  s_r} + #{r' in R: s_r' > s_r} + t_r``

where ``t_r`` numbers the relevant items tied with ``r`` (relevant items are
interchangeable, so their order among themselves does not change any metric). These are
exactly the positions the tie-resolved top-K list of
:func:`~gradtracer.recsys.metrics.topk.tied_topk_hits` gives, including ties at the
cutoff. ``"random"`` ties are not served here (they draw from the top-K path's stream).

Cost per batch: one ``scores.sum()`` (NaN check) and one pass over the ``(B, n_items)``
scores per relevant column, in row blocks small enough to stay in cache (a comparison
written into a float buffer, or over the scores themselves, and a row sum; float sums of
0/1 values are exact below 2**24 items). Metrics then follow from
:func:`~gradtracer.recsys.metrics.functional.metrics_from_positions`.
"""

from __future__ import annotations

import torch

from gradtracer.recsys.metrics.functional import hits_from_positions

__all__ = [
    "BLOCK_ELEMENTS",
    "MAX_COUNTED_RELEVANT",
    "hits_from_positions",
    "prefers_counting",
    "relevant_positions",
]

#: Counting costs one pass per relevant column; ``torch.topk`` costs about 4-15 such
#: passes (more for short rows, measured on CPU); beyond this many relevant items per
#: user in a batch the top-K path is used.
MAX_COUNTED_RELEVANT = 8
_LARGE_CATALOGUE = 65_536  # above this, topk is cheaper per item: allow fewer columns
_MAX_EXACT_COUNT = 1 << 24  # float32 counts of 0/1 values are exact below this
#: Scores per row block of the counting pass (2 MiB of float32: stays in cache).
BLOCK_ELEMENTS = 1 << 19


def prefers_counting(
    n_relevant_max: int, n_items: int, ties: str, dtype: torch.dtype = torch.float32
) -> bool:
    """Whether :func:`relevant_positions` is expected to beat the top-K path for a batch."""
    limit = MAX_COUNTED_RELEVANT if n_items <= _LARGE_CATALOGUE else MAX_COUNTED_RELEVANT // 2
    return (
        ties in ("conservative", "optimistic")
        and dtype in (torch.float32, torch.float64)
        and 1 <= n_relevant_max <= limit
        and n_items < _MAX_EXACT_COUNT
    )


def relevant_positions(
    scores: torch.Tensor,
    relevant: torch.Tensor,
    n_relevant: torch.Tensor,
    ties: str = "conservative",
    *,
    overwrite: bool = False,
) -> torch.Tensor | None:
    """Return ``(B, R)`` int64 1-based positions of the relevant items, ascending, or None.

    Args:
        scores: ``(B, n_items)`` float32/float64 scores, masked items already ``-inf``.
        relevant: ``(B, R)`` int64 relevant item indices, padded with ``n_items``.
        n_relevant: ``(B,)`` number of valid entries of each ``relevant`` row (>= 1).
        ties: ``"conservative"`` or ``"optimistic"``.
        overwrite: ``scores`` may be overwritten (saves a buffer when ``R == 1``).

    Padding entries get position ``n_items + 1`` (past every cutoff). Returns None when
    ``scores`` hold a NaN (or both ``+inf`` and ``-inf``, which a cheap sum cannot tell
    from NaN): the caller then takes the top-K path, which reports NaN.
    """
    if ties not in ("conservative", "optimistic"):
        raise ValueError(f"counting serves ties 'conservative' or 'optimistic', got {ties!r}")
    n_items = scores.shape[1]
    device = scores.device
    width = relevant.shape[1]
    rel = relevant.to(device)
    valid = None
    if width == 1:  # every row has its one relevant item: no padding
        target = scores.gather(1, rel)  # (B, 1)
    else:
        target = scores.gather(1, rel.clamp(max=n_items - 1))  # (B, R)
        valid = torch.arange(width, device=device)[None, :] < n_relevant.to(device)[:, None]
        # padded columns compare against +inf: finite work, ignored through `valid`
        target = target.masked_fill(~valid, torch.inf)
    compare = torch.lt if ties == "conservative" else torch.gt
    counts, total = _count_by_column(scores, target, compare, overwrite and width == 1)
    if bool(torch.isnan(total)):
        return None
    counts = counts.to(torch.int64)  # (B, R)
    if valid is None:  # one relevant item: its rank
        return n_items - counts if ties == "conservative" else 1 + counts
    # relation among the relevant items themselves: (B, R, R), [b, r, r'] about r' vs r
    t_r, t_o = target[:, :, None], target[:, None, :]
    both = valid[:, :, None] & valid[:, None, :]
    rel_above = ((t_o > t_r) & both).sum(2)
    earlier = torch.ones(width, width, dtype=torch.bool, device=device).tril(-1)
    tie_rank = ((t_o == t_r) & both & earlier).sum(2)
    if ties == "conservative":
        # counts = #{j: s_j < s_r}; n_items - counts = #{j: s_j >= s_r}, r itself included
        above_non_rel = n_items - counts - ((t_o >= t_r) & both).sum(2)
    else:
        above_non_rel = counts - rel_above  # counts = #{j: s_j > s_r}
    position = 1 + above_non_rel + rel_above + tie_rank  # (B, R)
    return position.masked_fill(~valid, n_items + 1).sort(dim=1).values


def _count_by_column(
    scores: torch.Tensor, target: torch.Tensor, compare: object, in_place: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``((B, R) #{j: compare(s_j, target_r)}, sum of all scores)``.

    Works in row blocks whose 0/1 buffer stays small (cache-resident, no large allocation);
    ``in_place`` writes the 0/1 values over ``scores`` instead (one column only).
    """
    bsz, n_items = scores.shape
    width = target.shape[1]
    rows = max(1, min(bsz, BLOCK_ELEMENTS // max(n_items, 1)))
    buf = (
        None if in_place else torch.empty(rows * n_items, dtype=scores.dtype, device=scores.device)
    )
    counts = torch.empty(width, bsz, dtype=scores.dtype, device=scores.device)  # (R, B)
    total = scores.sum()  # NaN <=> a NaN score (or +inf together with -inf)
    for lo in range(0, bsz, rows):
        hi = min(lo + rows, bsz)
        block = scores[lo:hi]
        out = block if buf is None else buf[: (hi - lo) * n_items].view(hi - lo, n_items)
        for c in range(width):
            compare(block, target[lo:hi, c : c + 1], out=out)  # type: ignore[operator]
            torch.sum(out, dim=1, out=counts[c, lo:hi])
    return counts.t(), total
