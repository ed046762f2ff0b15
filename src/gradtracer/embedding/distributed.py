"""Aggregation of per-row tracker state across ``torch.distributed`` ranks.

Collectives run only on the tracking schedule (every ``track_interval`` optimizer steps,
and in ``summary()``), never in the per-step hot path, so a rank whose batch touched no
row of the table cannot stall the others: every rank reaches the same collective at the
same optimizer step. ``summary()`` and ``findings()`` are therefore collective calls in a
distributed run: call them on every rank.

Merging rules (row ``i``, ranks ``r``): counts (exposure, agree/disagree pairs, non-finite
events) are summed; ``last_seen`` and the gradient-norm peak take the maximum; EMAs
(velocity, gradient norm, cosine) are exposure-weighted means over the ranks that saw the
row. When the ranks touch disjoint rows (the usual sharding of a batch) the merged state
equals the state one process would have built from the union of the batches.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from gradtracer.embedding.state import FloatCol, IntCol, RowState

__all__ = ["is_distributed", "merge_row_state", "world_size", "all_reduce_sum"]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available, initialised and has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 outside a distributed run)."""
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place SUM all-reduce of ``t`` when distributed; returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def merge_row_state(state: RowState) -> RowState:
    """A new :class:`RowState` merged over all ranks (a copy of ``state`` when not distributed).

    The sketch column is local (sketches cannot be averaged); it is returned unchanged.
    """
    if not is_distributed():
        return RowState(state.ints.clone(), state.floats.clone(), state.sketch)
    ints = state.ints.to(torch.int64)
    exposure = ints[:, IntCol.EXPOSURE].to(torch.float64)
    summed = ints.clone()
    summed[:, IntCol.LAST_SEEN] = 0
    summed[:, IntCol.ZOMBIE] = 0
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    maxed = torch.stack(
        [ints[:, IntCol.LAST_SEEN].to(torch.float64), state.floats[:, FloatCol.GRAD_PEAK].double()],
        1,
    )
    dist.all_reduce(maxed, op=dist.ReduceOp.MAX)
    # exposure-weighted EMAs: sum_r w_r * x_r / sum_r w_r
    cols = [FloatCol.VELOCITY, FloatCol.GRAD_NORM]
    weighted = state.floats[:, cols].double() * exposure[:, None]
    pair_w = (ints[:, IntCol.N_AGREE] + ints[:, IntCol.N_DISAGREE]).to(torch.float64)
    cos_w = state.floats[:, FloatCol.COS].double() * pair_w
    packed = torch.cat([weighted, cos_w[:, None]], 1)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    tot_exp = summed[:, IntCol.EXPOSURE].to(torch.float64).clamp_min(1.0)
    tot_pairs = (
        (summed[:, IntCol.N_AGREE] + summed[:, IntCol.N_DISAGREE]).to(torch.float64).clamp_min(1.0)
    )
    floats = torch.zeros_like(state.floats)
    floats[:, FloatCol.VELOCITY] = (packed[:, 0] / tot_exp).float()
    floats[:, FloatCol.GRAD_NORM] = (packed[:, 1] / tot_exp).float()
    floats[:, FloatCol.COS] = (packed[:, 2] / tot_pairs).float()
    floats[:, FloatCol.GRAD_PEAK] = maxed[:, 1].float()
    summed[:, IntCol.LAST_SEEN] = maxed[:, 0].to(torch.int64)
    return RowState(summed.to(torch.int32), floats, state.sketch)
