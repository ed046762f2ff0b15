"""The numba kernels behind :mod:`gradtracer.embedding.row_kernel` (imported lazily).

Kept at module level, apart from their wrappers, so that numba caches their machine code
next to this file (a closure's cache misses in every new process, which then recompiles
for seconds on its first tracked step), and so that importing
:mod:`gradtracer.embedding` does not import numba. See
:mod:`~gradtracer.embedding.row_kernel` for what they compute; call them through its
wrappers, which check that the layout constants below are the packed row state's and the
running sums' (numba freezes them into the cached code).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# packed row layout (gradtracer.embedding.state.RowState) and running-sum indices
# (gradtracer.embedding.sums); row_kernel checks them against their homes at load
W_EXPOSURE, W_SEEN, W_COUNTS, FLOAT_COL, SKETCH_COL = 0, 1, 2, 3, 7
COUNT_MAX = 0xFFFF
VELOCITY, GRAD_NORM, COS, EXPOSED, PAIRED, ZOMBIE = 0, 1, 2, 3, 4, 5
NONFINITE_ROWS, NONFINITE_STEPS, DAMPED = 6, 7, 8

i_exp, i_seen, i_counts = W_EXPOSURE, W_SEEN, W_COUNTS
f0 = FLOAT_COL  # first float column in the packed row
c0 = SKETCH_COL  # first sketch word
seen_mask = np.int32(0x7FFFFFFF)  # last-seen step; bit 31 is the zombie flag
count_max = COUNT_MAX


@numba.njit(cache=True, nogil=True)
def popcount32(x):
    """Set bits of a uint32 (SWAR, no branches; numba widens to 64 bits, hence the mask)."""
    x = x - ((x >> np.uint32(1)) & np.uint32(0x55555555))
    x = (x & np.uint32(0x33333333)) + ((x >> np.uint32(2)) & np.uint32(0x33333333))
    x = (x + (x >> np.uint32(4))) & np.uint32(0x0F0F0F0F)
    return np.int64(((x * np.uint32(0x01010101)) >> np.uint32(24)) & np.uint32(0xFF))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def touch(packed, rows):
    """Read every touched row's state record (the first and last word; with the
    default layout both lie in one cache line): a loop this short keeps many cache
    misses in flight at once, so the main loop finds the rows in cache."""
    seen = 0
    last = packed.shape[1] - 1
    for i in range(rows.shape[0]):
        r = rows[i]
        seen += packed[r, 0] + packed[r, last]
    return seen


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"})
def norms(weight, rows, before, grad, g_out, v_out):
    """Gradient and displacement L2 norms of every row (vectorised sums)."""
    d = grad.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        gs = np.float32(0.0)
        vs = np.float32(0.0)
        for k in range(d):
            x = grad[i, k]
            gs += x * x
            y = weight[r, k] - before[i, k]
            vs += y * y
        g_out[i] = np.float32(math.sqrt(gs))
        v_out[i] = np.float32(math.sqrt(vs))


@numba.njit(cache=True, nogil=True, boundscheck=False)
def kernel(  # one fused kernel, all its inputs
    packed,  # (N, C) int32 row state
    packed_f,  # the same memory viewed as float32
    acc,  # (>= 8,) float64 running table sums
    weight,  # (N, d) float32 table after the optimizer step
    rows,  # (R,) int64 unique touched rows
    before,  # (R, d) float32 rows before the step
    grad,  # (R, d) float32 gradient rows
    proj,  # (R, n_bits) float32 projection grad @ P
    cos_table,  # (n_bits + 1,) float32 cos(pi h / n_bits)
    v_out,  # (R,) float32 displacement norms (written)
    step,
    b,  # float32 EMA decay
    min_pairs,
    z_min,  # float32
    min_disagree_rate,  # float32
    max_cos_ema,  # float32
    min_retained,  # float32
    pressure_ratio,  # float32
    min_grad_norm,  # float32
):
    one = np.float32(1.0)
    one_minus_b = one - b
    n_bits = proj.shape[1]
    n_words = (n_bits + 31) // 32
    mean_gn = acc[GRAD_NORM] / max(acc[EXPOSED], 1.0)
    pressure = max(np.float32(np.float32(mean_gn) * pressure_ratio), min_grad_norm)
    d_vel = 0.0  # float64 sums of the rows' changes
    d_gn = 0.0
    d_cos = 0.0
    n_new = 0
    n_first_pair = 0
    d_zombie = 0
    n_bad = 0
    g_all = np.empty(rows.shape[0], dtype=np.float32)
    seen = touch(packed, rows)
    norms(weight, rows, before, grad, g_all, v_out)
    for i in range(rows.shape[0]):
        r = rows[i]
        g = g_all[i]
        v = v_out[i]
        if not (math.isfinite(g) and math.isfinite(v)):
            n_bad += 1  # left out of every statistic
            continue
        # sketch words and Hamming distance to the row's previous sketch
        hamming = 0
        has_prev = False
        for w in range(n_words):  # branch-free: the sign bits are unpredictable
            code = np.uint32(0)
            hi = min(n_bits, 32 * (w + 1))
            if hi - 32 * w == 32:  # a full word: fixed trip count, unrolled
                base = 32 * w
                c64 = 0
                for j in range(32):
                    c64 |= (proj[i, base + j] > 0) << j
                code = np.uint32(c64)
            else:
                for j in range(32 * w, hi):
                    code |= np.uint32(proj[i, j] > 0) << np.uint32(j - 32 * w)
            old = np.uint32(packed[r, c0 + w])
            has_prev = has_prev or old != 0
            hamming += popcount32(old ^ code)
            packed[r, c0 + w] = np.int32(code)
        exposure = packed[r, i_exp]
        was_zombie = 1 if packed[r, i_seen] < 0 else 0
        counts = np.int64(packed[r, i_counts])
        n_agree = counts & count_max
        n_dis = (counts >> 16) & count_max
        paired = has_prev and g > 0
        is_new = exposure == 0
        first_pair = paired and (n_agree + n_dis) == 0
        if paired:
            if 2 * hamming < n_bits:
                if n_agree == count_max:  # 16-bit counts: halve both, keep the ratio
                    n_agree >>= 1
                    n_dis >>= 1
                n_agree += 1
            elif 2 * hamming > n_bits:
                if n_dis == count_max:
                    n_agree >>= 1
                    n_dis >>= 1
                n_dis += 1
        old_vel = packed_f[r, f0]
        old_gn = packed_f[r, f0 + 1]
        old_cos = packed_f[r, f0 + 2]
        c = one if is_new else one_minus_b
        new_vel = old_vel * b + c * v
        new_gn = old_gn * b + c * g
        if paired:
            cp = one if first_pair else one_minus_b
            new_cos = old_cos * b + cp * cos_table[hamming]
        else:
            new_cos = old_cos
        peak = max(packed_f[r, f0 + 3], new_gn)
        pairs = n_agree + n_dis
        zombie = (
            pairs >= min_pairs
            and np.float32(n_dis - n_agree) >= z_min * np.float32(math.sqrt(np.float32(pairs + 1)))
            and n_dis >= np.float32(pairs) * min_disagree_rate
            and new_cos <= max_cos_ema
            and new_gn >= pressure
            and new_gn >= min_retained * peak
        )
        zi = 1 if zombie else 0
        d_zombie += zi - was_zombie
        packed[r, i_exp] = exposure + 1
        packed[r, i_seen] = (np.int32(step) | np.int32(-(1 << 31))) if zombie else np.int32(step)
        packed[r, i_counts] = np.int32(np.uint32(n_agree | (n_dis << 16)))
        packed_f[r, f0] = new_vel
        packed_f[r, f0 + 1] = new_gn
        packed_f[r, f0 + 2] = new_cos
        packed_f[r, f0 + 3] = peak
        d_vel += np.float64(new_vel) - np.float64(old_vel)
        d_gn += np.float64(new_gn) - np.float64(old_gn)
        d_cos += np.float64(new_cos) - np.float64(old_cos)
        n_new += 1 if is_new else 0
        n_first_pair += 1 if first_pair else 0
    acc[VELOCITY] += d_vel
    acc[GRAD_NORM] += d_gn
    acc[COS] += d_cos
    acc[EXPOSED] += n_new
    acc[PAIRED] += n_first_pair
    acc[ZOMBIE] += d_zombie
    if n_bad:
        acc[NONFINITE_ROWS] += n_bad
        acc[NONFINITE_STEPS] += 1.0
    return seen  # returned so that the touch pass is not optimised away


@numba.njit(cache=True, nogil=True, boundscheck=False)
def damp(packed, packed_f, acc, weight, rows, before, v, table, ever, step, b):
    """Scale the applied update of each touched row by its factor in ``table`` (rows at
    or beyond its end get 1); flag the damped rows in ``ever``."""
    n_table = table.shape[0]
    one = np.float32(1.0)
    d_vel = 0.0
    n_damped = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        f = table[r] if r < n_table else one
        if not f <= one:  # NaN or > 1: leave the row alone
            f = one
        f = max(f, np.float32(0.0))
        if f < one:
            n_damped += 1
            ever[r] = True
            for k in range(weight.shape[1]):
                weight[r, k] = before[i, k] + f * (weight[r, k] - before[i, k])
            # the velocity EMA records the displacement actually applied: f * v
            if (packed[r, i_seen] & seen_mask) == step and math.isfinite(v[i]):
                first_w = one if packed[r, i_exp] == 1 else one - b
                c = first_w * (one - f) * v[i]
                packed_f[r, f0] -= c
                d_vel += c
    acc[VELOCITY] -= d_vel
    acc[DAMPED] += n_damped


@numba.njit(cache=True, nogil=True, boundscheck=False)
def dedupe(rows, mark):
    """Unique ``rows`` in first-seen order, using the all-zero ``mark`` scratch array
    (one flag per table row; left all zero again on return)."""
    out = np.empty(rows.shape[0], dtype=np.int64)
    n = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        if mark[r] == 0:
            mark[r] = 1
            out[n] = r
            n += 1
    for i in range(n):
        mark[out[i]] = 0
    return out[:n]
