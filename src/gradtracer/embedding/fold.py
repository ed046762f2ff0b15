"""Folding recorded optimizer steps into the per-row state, vectorised over all of them.

The tracker's hot path only records, per step, the touched rows with their gradient norm,
applied-displacement norm and gradient sign sketch (:class:`StepRecord`). :func:`fold_steps`
applies a batch of such records at once; the result equals applying them one by one
(integer state bit-identical, floats to rounding), at a fraction of the per-step cost of
many small tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradtracer.embedding.diagnose import ZombieThresholds, pressure_threshold, zombie_mask
from gradtracer.embedding.state import IntCol, RowState, SignSketch

__all__ = ["N_ACC", "StepRecord", "fold_steps", "sketch_words"]

# running sums over the table, kept on the device so the snapshot is O(1)
ACC_VEL, ACC_GN, ACC_COS, ACC_EXPOSED, ACC_PAIRED, ACC_ZOMBIE = range(6)
ACC_NONFINITE_ROWS, ACC_NONFINITE_STEPS, ACC_DAMPED = range(6, 9)
N_ACC = 9


@dataclass
class StepRecord:
    """One recorded optimizer step of one table, waiting to be folded into the row state."""

    rows: torch.Tensor  # (R,) int64 unique touched rows
    gn: torch.Tensor  # (R,) gradient L2 norms
    v: torch.Tensor  # (R,) applied displacement L2 norms
    code: torch.Tensor  # (R, w) packed sign sketch of the gradients, as w int32/int64 words
    step: int


def sketch_words(packed: torch.Tensor, sketch: SignSketch) -> torch.Tensor:
    """View ``(R, n_bytes)`` uint8 sketches as ``(R, w)`` machine words (no copy)."""
    nb = sketch.n_bytes
    dtype = torch.int64 if nb % 8 == 0 else torch.int32 if nb % 4 == 0 else torch.uint8
    return packed.contiguous().view(dtype)


def fold_steps(
    state: RowState,
    acc: torch.Tensor,
    buf: list[StepRecord],
    *,
    sketch: SignSketch,
    ema_decay: float,
    zombie: ZombieThresholds,
) -> torch.Tensor:
    """Apply recorded steps to ``state`` and the running sums ``acc`` (both in place).

    Equivalent to applying the steps one by one: entries are grouped by row with a stable
    sort, consecutive exposures are paired inside each group (the first one pairs with the
    stored sketch), and each EMA is evaluated in closed form,
    ``E_j = b^n_j (E_old + sum_{i<=j} c_i b^-n_i x_i)`` with ``n_i`` the number of
    observations up to entry ``i`` and ``c_i`` = 1 for a row's very first observation,
    else ``1 - b``.

    Returns:
        ``(len(buf), 7)`` float64: the running sums (velocity, grad norm, cos, exposed,
        paired, zombie, non-finite rows) as they stood after each recorded step.
    """
    st, b = state, ema_decay
    rows = torch.cat([s.rows for s in buf])  # (M,)
    gn = torch.cat([s.gn for s in buf])  # (M,)
    v = torch.cat([s.v for s in buf])  # (M,)
    code = torch.cat([s.code for s in buf])  # (M, w) packed sketch words
    slot = torch.cat([torch.full_like(s.rows, i) for i, s in enumerate(buf)])  # step slot
    n_slots = len(buf)
    # per-slot changes of the running table sums (7 columns: the 6 sums + non-finite rows)
    per_slot = torch.zeros(n_slots, 7, dtype=torch.float64, device=rows.device)
    finite = torch.isfinite(gn + v)
    if not bool(finite.all()):  # leave rows with NaN/Inf out of every statistic
        bad = ~finite
        per_slot[:, 6].index_add_(0, slot, bad.to(torch.float64))
        acc[ACC_NONFINITE_STEPS] += float(torch.unique(slot[bad]).numel())
        rows, gn, v, code, slot = (
            rows[finite],
            gn[finite],
            v[finite],
            code[finite],
            slot[finite],
        )
    order = torch.argsort(rows, stable=True)  # by row, then by step
    rows, gn, v, code, slot = (t.index_select(0, order) for t in (rows, gn, v, code, slot))
    uniq, inverse, counts = torch.unique_consecutive(rows, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1  # (G,) last entry of each row
    starts = ends - counts + 1
    first = torch.zeros_like(rows, dtype=torch.bool)
    first[starts] = True
    ints = st.ints.index_select(0, uniq)  # (G, 5) int32
    fl = st.floats.index_select(0, uniq)  # (G, 4) float32
    old_sk = st.sketch.index_select(0, uniq)  # (G, n_bytes) uint8

    def per_entry(x: torch.Tensor) -> torch.Tensor:  # (G, ...) -> (M, ...)
        return x.index_select(0, inverse)

    def group_cumsum(x: torch.Tensor) -> torch.Tensor:  # running sum inside each row group
        cs = torch.cumsum(x, 0)
        return cs - per_entry(cs.index_select(0, starts) - x.index_select(0, starts))

    def at_end(x: torch.Tensor) -> torch.Tensor:  # (M, ...) -> (G, ...) last entry per row
        return x.index_select(0, ends)

    def before_entry(x: torch.Tensor, old_x: torch.Tensor) -> torch.Tensor:
        """Value of the entry's row just before the entry: (M, ...)."""
        mask = first.view(-1, *([1] * (x.ndim - 1)))
        return torch.where(mask, old_x, torch.roll(x, 1, 0))

    # one gather of every old per-row value the entries need: (G, 9) -> (M, 9) float64
    old_pairs = ints[:, IntCol.N_AGREE] + ints[:, IntCol.N_DISAGREE]
    old_e = per_entry(
        torch.cat(
            [
                fl.to(torch.float64),  # 0-3: velocity, grad norm, cos, peak
                ints[:, IntCol.N_AGREE : IntCol.ZOMBIE + 1].to(torch.float64),  # 4-6
                torch.stack([ints[:, IntCol.EXPOSURE] == 0, old_pairs == 0], dim=1).to(
                    torch.float64
                ),  # 7: never exposed, 8: never paired
            ],
            dim=1,
        )
    )
    prev_code = before_entry(code, per_entry(sketch_words(old_sk, sketch)))
    cos = sketch.cosine(prev_code, code)  # (M,) cosine to the row's last gradient
    # an all-zero sketch means "no previous direction"
    paired = (prev_code != 0).any(dim=1) & (gn > 0)
    agree = paired & (cos > 0)
    disagree = paired & (cos < 0)
    # running counts inside each row group: observations, pairs, agree, disagree
    run1 = group_cumsum(
        torch.stack([torch.ones_like(paired), paired, agree, disagree], dim=1).to(torch.float64)
    )
    n_obs, n_pair = run1[:, 0], run1[:, 1]
    is_new = first & (old_e[:, 7] > 0)  # the row's very first observation
    is_first_pair = paired & (n_pair == 1) & (old_e[:, 8] > 0)
    # EMAs in closed form: E_j = b^n_j (E_old + sum_i c_i b^-n_i x_i)
    c = torch.where(is_new, 1.0, 1.0 - b).to(torch.float64) * torch.pow(b, -n_obs)
    cp = torch.where(is_first_pair, 1.0, 1.0 - b).to(torch.float64) * paired
    cp = cp * torch.pow(b, -n_pair)
    terms = torch.stack([c * v, c * gn, cp * cos], dim=1)  # float64 (M, 3)
    scale = torch.stack([torch.pow(b, n_obs), torch.pow(b, n_obs), torch.pow(b, n_pair)], dim=1)
    cur = scale * (old_e[:, :3] + group_cumsum(terms))  # (M, 3) velocity, grad norm, cos
    # running peak of the grad-norm EMA inside each group (offset trick: segmented cummax)
    span = float(cur[:, 1].max()) + 1.0 if cur.numel() else 1.0
    offset = inverse.to(torch.float64) * span
    run_peak = torch.cummax(cur[:, 1] + offset, dim=0).values - offset
    run_peak = torch.maximum(run_peak, old_e[:, 3])
    # per-entry counts and zombie verdicts (as the row stood after that entry)
    counts_ad = (old_e[:, 4:6] + run1[:, 2:4]).to(torch.int32)
    zt = zombie
    zombie = zombie_mask(
        counts_ad[:, 0],
        counts_ad[:, 1],
        cur[:, 2].to(torch.float32),
        cur[:, 1].to(torch.float32),
        run_peak.to(torch.float32),
        pressure_threshold(acc[ACC_GN] / acc[ACC_EXPOSED].clamp_min(1.0), zt),
        zt,
    ).to(torch.int32)
    # per-step changes of the table sums, from each entry's change of its row's values
    prev_vals = before_entry(cur, old_e[:, :3])
    prev_z = before_entry(zombie, old_e[:, 6].to(torch.int32))
    entry_delta = torch.cat(
        [
            cur - prev_vals,
            is_new[:, None].to(torch.float64),
            is_first_pair[:, None].to(torch.float64),
            (zombie - prev_z)[:, None].to(torch.float64),
        ],
        dim=1,
    )
    per_slot[:, :6].index_add_(0, slot, entry_delta)
    start = torch.cat([acc[:6], acc[ACC_NONFINITE_ROWS : ACC_NONFINITE_ROWS + 1]])
    trajectory = start + torch.cumsum(per_slot, 0)  # (n_slots, 7) sums after each step
    acc[:6] = trajectory[-1, :6]
    acc[ACC_NONFINITE_ROWS] = trajectory[-1, 6]
    # write the rows' final state
    new_ints = torch.stack(
        [
            ints[:, IntCol.EXPOSURE] + counts.to(torch.int32),
            at_end(torch.tensor([s.step for s in buf], device=slot.device)[slot]).to(torch.int32),
            at_end(counts_ad[:, 0]),
            at_end(counts_ad[:, 1]),
            at_end(zombie),
        ],
        dim=1,
    )
    new_fl = torch.cat([at_end(cur), at_end(run_peak)[:, None]], dim=1).to(torch.float32)
    st.ints.index_copy_(0, uniq, new_ints)
    st.floats.index_copy_(0, uniq, new_fl)
    st.sketch.index_copy_(0, uniq, at_end(code).view(torch.uint8).reshape(-1, sketch.n_bytes))
    return trajectory
