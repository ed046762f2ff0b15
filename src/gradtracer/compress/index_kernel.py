"""Compiled lookups of a mixed-precision table straight from its stored bytes (numba).

A :class:`~gradtracer.compress.table.QuantizedTable` stores each precision's rows in its
own FBGEMM-layout block; with several precisions, a 1-, 2- or 4-bit level code per row
(the index map) and per block of 64 rows the number of earlier rows of each level (the
rank directory) say where a row lives: its slot is ``directory[row // 64, level]`` plus
the rows of that level earlier in its block, counted a byte of codes at a time through a
``(levels, 256)`` table of matches per byte.

:func:`gather` serves plain lookups in two passes over the requested rows: where each
row lives, then one tight loop per precision that decodes its rows straight into the
output (every output row is written once; splitting the batch and scattering the
results of one ``torch.ops.quantized`` call per precision back writes it twice).
:func:`group_bags` serves pooled lookups: it sorts the indices of every bag by level,
keeping bags, so the table makes one ``torch.ops.quantized`` row-wise embedding-bag call
per precision and adds the partial sums. Both read the stored arrays as they are, so
the table's byte count does not change. Counting a row's earlier codes costs 10-45 ns a
row (more with 4-bit codes), which is most of what keeps mixed lookups slower than a
float32 gather (``bench/bench_compress.py``).

Values are the kernels' to the bit: an integer row decodes as
``float32(scale * code + bias)`` evaluated in float64, which equals the fused
multiply-add of the FBGEMM kernels (scale and bias are float32 or float16, codes at most
8 bits, so the product is exact in float64); an int4 or int2 row's 16 or 4 possible
values are computed once per row and looked up by code; float16 values convert
exactly through a 65,536-entry table. The tests compare every path with the kernels'.

numba is a core dependency; where it cannot be imported (or with ``GRADTRACER_NO_NUMBA=1``)
:func:`available` is False and the table uses its kernel-per-precision path (same
values, slower). The first call compiles the kernels (a few seconds) and caches them next
to this module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["KINDS", "available", "gather", "group_bags", "kernel_args", "match_table"]

#: Kind code of each stored precision inside the kernels.
KINDS: dict[str, int] = {"fp32": 0, "fp16": 1, "int8": 2, "int4": 3, "int2": 4, "drop": 5}


@functools.lru_cache(maxsize=1)
def _compiled() -> Any | None:
    """The compiled lookup kernel, or None where numba is unavailable or disabled."""
    if os.environ.get("GRADTRACER_NO_NUMBA", "").strip() not in ("", "0"):
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a core dependency
        return None

    jit = numba.njit(cache=True, nogil=True, boundscheck=False)

    @jit
    def _gather(
        rows,
        n_rows,
        codes,
        directory,
        bits,
        tab,
        kinds,
        dl,
        ds,
        f32,
        f16,
        i8,
        i4,
        i2,
        fb,
        half,
        out,
    ):
        """Plain lookups in two passes: where every row lives, then one tight loop per
        precision writing its rows straight into ``out``."""
        n = rows.size
        d = out.shape[1]
        kind_of = np.empty(n, np.int8)
        slot_of = np.empty(n, np.int64)
        shift = 3 if bits == 1 else (2 if bits == 2 else 1)
        mask = (1 << bits) - 1
        counts = np.zeros(6, np.int64)
        for i in range(n):
            r = rows[i]
            if r < 0 or r >= n_rows:
                return i
            if bits == 0:
                kind, slot = kinds[0], r
            elif dl.size:
                kind, slot = kinds[np.int64(dl[r])], np.int64(ds[r])
            else:
                byte = r >> shift
                within = r & ((1 << shift) - 1)
                cb = np.int64(codes[byte])
                lev = (cb >> (within * bits)) & mask
                cnt = 0
                for b in range((r >> 6) * 8 * bits, byte):
                    cnt += tab[lev, codes[b]]
                for w in range(within):
                    if ((cb >> (w * bits)) & mask) == lev:
                        cnt += 1
                kind, slot = kinds[lev], np.int64(directory[r >> 6, lev]) + cnt
            kind_of[i] = kind
            slot_of[i] = slot
            counts[kind] += 1
        starts = np.zeros(7, np.int64)
        for j in range(6):
            starts[j + 1] = starts[j] + counts[j]
        order = np.empty(n, np.int64)
        pos = starts[:6].copy()
        for i in range(n):
            order[pos[kind_of[i]]] = i
            pos[kind_of[i]] += 1
        for t in range(starts[0], starts[1]):  # fp32
            i = order[t]
            s = slot_of[i]
            for c in range(d):
                out[i, c] = f32[s, c]
        for t in range(starts[1], starts[2]):  # fp16
            i = order[t]
            s = slot_of[i]
            for c in range(d):
                out[i, c] = half[f16[s, c]]
        raw = np.empty(8, np.uint8)
        qparams = raw.view(np.float32)
        w8 = i8.shape[1] - 8
        for t in range(starts[2], starts[3]):  # int8
            i = order[t]
            s = slot_of[i]
            for b in range(8):
                raw[b] = i8[s, w8 + b]
            scale, bias = np.float64(qparams[0]), np.float64(qparams[1])
            for c in range(d):
                out[i, c] = np.float32(scale * np.float64(i8[s, c]) + bias)
        values = np.empty(16, np.float32)
        w4 = i4.shape[1] - 4
        for t in range(starts[3], starts[4]):  # int4
            i = order[t]
            s = slot_of[i]
            scale = np.float64(half[np.int64(i4[s, w4]) | (np.int64(i4[s, w4 + 1]) << 8)])
            bias = np.float64(half[np.int64(i4[s, w4 + 2]) | (np.int64(i4[s, w4 + 3]) << 8)])
            for q in range(16):
                values[q] = np.float32(scale * np.float64(q) + bias)
            for j in range(d >> 1):
                byte8 = np.int64(i4[s, j])
                out[i, 2 * j] = values[byte8 & 15]
                out[i, 2 * j + 1] = values[byte8 >> 4]
            if d & 1:
                out[i, d - 1] = values[np.int64(i4[s, d >> 1]) & 15]
        w2 = i2.shape[1] - 4
        for t in range(starts[4], starts[5]):  # int2
            i = order[t]
            s = slot_of[i]
            scale = np.float64(half[np.int64(i2[s, w2]) | (np.int64(i2[s, w2 + 1]) << 8)])
            bias = np.float64(half[np.int64(i2[s, w2 + 2]) | (np.int64(i2[s, w2 + 3]) << 8)])
            for q in range(4):
                values[q] = np.float32(scale * np.float64(q) + bias)
            for j in range(d >> 2):
                byte8 = np.int64(i2[s, j])
                out[i, 4 * j] = values[byte8 & 3]
                out[i, 4 * j + 1] = values[(byte8 >> 2) & 3]
                out[i, 4 * j + 2] = values[(byte8 >> 4) & 3]
                out[i, 4 * j + 3] = values[byte8 >> 6]
            for c in range(d - d % 4, d):
                out[i, c] = values[(np.int64(i2[s, c >> 2]) >> ((c & 3) * 2)) & 3]
        for t in range(starts[5], starts[6]):  # dropped
            i = order[t]
            for c in range(d):
                out[i, c] = fb[c]
        return -1

    @jit
    def _group_bags(indices, offsets, n_rows, codes, directory, bits, tab, slots, bag_offsets):
        """Sort pooled ``indices`` by level, keeping bag order: level ``j``'s slots are
        ``slots[bag_offsets[j, 0]:bag_offsets[j, -1]]``, its bag ``k`` between
        ``bag_offsets[j, k]`` and ``bag_offsets[j, k + 1]``."""
        n_levels = directory.shape[1]
        n_bags = offsets.size - 1
        n = indices.size
        shift = 3 if bits == 1 else (2 if bits == 2 else 1)
        mask = (1 << bits) - 1
        level_of = np.empty(n, np.int8)
        slot_of = np.empty(n, np.int64)
        for i in range(n):
            r = indices[i]
            if r < 0 or r >= n_rows:
                return i
            byte = r >> shift
            within = r & ((1 << shift) - 1)
            cb = np.int64(codes[byte])
            lev = (cb >> (within * bits)) & mask
            cnt = 0
            for b in range((r >> 6) * 8 * bits, byte):
                cnt += tab[lev, codes[b]]
            for w in range(within):
                if ((cb >> (w * bits)) & mask) == lev:
                    cnt += 1
            level_of[i] = lev
            slot_of[i] = np.int64(directory[r >> 6, lev]) + cnt
        counts = np.zeros((n_levels, n_bags), np.int64)
        for k in range(n_bags):
            for i in range(offsets[k], offsets[k + 1]):
                counts[level_of[i], k] += 1
        acc = 0
        for j in range(n_levels):
            for k in range(n_bags):
                bag_offsets[j, k] = acc
                acc += counts[j, k]
            bag_offsets[j, n_bags] = acc
        pos = bag_offsets[:, :n_bags].copy()
        for k in range(n_bags):
            for i in range(offsets[k], offsets[k + 1]):
                lev = level_of[i]
                slots[pos[lev, k]] = slot_of[i]
                pos[lev, k] += 1
        return -1

    return _gather, _group_bags


@functools.lru_cache(maxsize=1)
def _half_table() -> np.ndarray:
    """Every float16 bit pattern's value as float32 (65,536 entries, exact)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def available() -> bool:
    """True when the compiled kernels can be used (numba importable, not disabled)."""
    return _compiled() is not None


@functools.lru_cache(maxsize=8)
def match_table(bits: int, n_levels: int) -> np.ndarray:
    """``(n_levels, 256)`` int64: how many of a byte's ``8 // bits`` codes equal each level."""
    if bits == 0:
        return np.zeros((1, 256), np.int64)
    per, mask = 8 // bits, (1 << bits) - 1
    values = np.arange(256)[:, None] >> (np.arange(per)[None, :] * bits) & mask  # (256, per)
    return np.stack([(values == lev).sum(1) for lev in range(n_levels)]).astype(np.int64)


_EMPTY = {
    "fp32": np.zeros((0, 1), np.float32),
    "fp16": np.zeros((0, 1), np.uint16),
    "int8": np.zeros((0, 9), np.uint8),
    "int4": np.zeros((0, 5), np.uint8),
    "int2": np.zeros((0, 5), np.uint8),
}


def kernel_args(
    n_rows: int,
    dim: int,
    levels: tuple[str, ...],
    blocks: Mapping[str, torch.Tensor],
    codes: np.ndarray,
    directory: np.ndarray,
    bits: int,
    fallback: np.ndarray | None,
    decoded: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[Any, ...]:
    """The stored arrays of a table as the kernels take them (no copies of row data).

    Args:
        n_rows: rows of the table.
        dim: columns of the table.
        levels: precisions present, in storage order.
        blocks: packed rows of each stored precision.
        codes: packed index map (uint8; empty for one level).
        directory: ``(blocks of 64 rows, levels)`` int32 rank directory.
        bits: bits per index-map code (0 for one level).
        fallback: the row dropped rows read, or None.
        decoded: optional per-row ``(level int8, slot int32)`` map read instead of the
            index map.
    """
    kinds = np.asarray([KINDS[p] for p in levels], dtype=np.int64)
    arrays = []
    for p, empty in _EMPTY.items():
        block = blocks.get(p)
        if block is None:
            arrays.append(empty)
        elif p == "fp16":
            arrays.append(block.numpy().view(np.uint16))
        else:
            arrays.append(block.numpy())
    fb = np.zeros(dim, np.float32) if fallback is None else fallback
    dl, ds = decoded if decoded is not None else (np.zeros(0, np.int8), np.zeros(0, np.int32))
    directory = directory if directory.size else np.zeros((0, len(levels)), np.int32)
    return (
        n_rows,
        codes if codes.size else np.zeros(1, np.uint8),
        directory,
        bits,
        match_table(bits, len(levels)),
        kinds,
        dl,
        ds,
        *arrays,
        fb,
        _half_table(),
    )


def gather(rows: np.ndarray, out: np.ndarray, args: tuple[Any, ...]) -> None:
    """Write the dequantized rows ``rows (B,)`` into ``out (B, dim)`` float32.

    ``args`` is :func:`kernel_args` of the table.

    Raises:
        IndexError: a row outside the table (the first one is named).
        RuntimeError: the compiled kernels are unavailable (see :func:`available`).
    """
    fns = _compiled()
    if fns is None:
        raise RuntimeError(
            "the compiled lookup kernels are unavailable (numba missing or disabled)"
        )
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    bad = fns[0](rows, *args, out)
    if bad >= 0:
        raise IndexError(f"row {int(rows[bad])} is outside [0, {args[0]})")


def group_bags(
    indices: np.ndarray,
    offsets: np.ndarray,
    n_rows: int,
    codes: np.ndarray,
    directory: np.ndarray,
    bits: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Group pooled ``indices`` of a mixed table by level, keeping bags.

    Returns ``(slots (N,), bag_offsets (levels, n_bags + 1))``: level ``j``'s slots are
    ``slots[bag_offsets[j, 0]:bag_offsets[j, -1]]`` and its bag ``k`` the part between
    ``bag_offsets[j, k]`` and ``bag_offsets[j, k + 1]``, so one ``torch.ops.quantized``
    kernel call per level pools its rows. ``offsets`` has ``n_bags + 1`` entries.

    Raises:
        IndexError: an index outside ``[0, n_rows)``.
        RuntimeError: the compiled kernels are unavailable.
    """
    fns = _compiled()
    if fns is None:
        raise RuntimeError(
            "the compiled lookup kernels are unavailable (numba missing or disabled)"
        )
    if bits == 0:
        raise ValueError("group_bags is for tables of several precisions (bits > 0)")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    slots = np.empty(indices.size, np.int64)
    bag_offsets = np.empty((directory.shape[1], offsets.size), np.int64)
    tab = match_table(bits, int(directory.shape[1]))
    bad = fns[1](indices, offsets, n_rows, codes, directory, bits, tab, slots, bag_offsets)
    if bad >= 0:
        raise IndexError(f"index {int(indices[bad])} is outside [0, {n_rows})")
    return slots, bag_offsets
