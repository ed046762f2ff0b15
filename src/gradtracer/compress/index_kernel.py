"""Compiled lookups of compressed tables straight from their stored bytes (numba).

A :class:`~gradtracer.compress.table.QuantizedTable` stores each precision's rows in its
own FBGEMM-layout block; with several precisions, a 1-, 2- or 4-bit level code per row
(the index map) and per block of 64 rows the number of earlier rows of each level (the
rank directory) say where a row lives: its slot is ``directory[row // 64, level]`` plus
the rows of that level earlier in its block. The 64 codes of a block are 1, 2 or 4
64-bit words, so the earlier rows are counted with a few XORs and one ``popcount`` per
word (no per-row int32 map is stored).

The kernels walk the requested rows in chunks of 64, software-pipelined:
while chunk ``c`` is decoded, the rows of chunk ``c + 1`` have been located and their
packed bytes prefetched, so the cache misses of a random gather overlap instead of
queuing one behind the other. Decoding is a branch per row (not per value) into tight
loops that LLVM vectorises: ``fma(scale, code, bias)`` in float32 for the integer
precisions (the operation of the FBGEMM kernels, so values are theirs to the bit),
``fpext`` for float16 (exact), a copy for float32 and the fallback row.

- :func:`gather`: ``(B, dim)`` rows, each output row written once, in request order.
- :func:`pool`: bags summed (``F.embedding_bag(mode="sum")`` semantics), each row
  decoded and added to its bag in index order. For ``dim % 8 == 0`` a row is decoded
  eight columns at a time straight into its bag (vector IR emitted by the kernels'
  intrinsics: one load, shift and mask of the packed codes, ``fma(scale, code, bias)``
  and the add, no per-row buffer); other widths go through a chunk buffer.
- :func:`two_scale_gather`: rows of a two-scale table (per-column fp16 scale, per-row
  power-of-two step; see :class:`~gradtracer.compress.methods.TwoScaleTable`), computed
  with the same float32 operations in the same order as its tensor decode (for
  ``dim % 8 == 0`` eight columns at a time, a group of 8 codes read as one ``bits``-byte
  word); :func:`two_scale_pool` sums them over bags in index order.

numba is a core dependency; where it cannot be imported (or with ``GRADTRACER_NO_NUMBA=1``)
:func:`available` is False and the tables use their kernel-per-precision tensor paths
(same values, slower). The first call compiles the kernels (seconds) and caches them
next to this module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "KINDS",
    "available",
    "block_words",
    "gather",
    "kernel_args",
    "pool",
    "two_scale_gather",
    "two_scale_pool",
]

#: Kind code of each stored precision inside the kernels.
KINDS: dict[str, int] = {"fp32": 0, "fp16": 1, "int8": 2, "int4": 3, "int2": 4, "drop": 5}


@functools.lru_cache(maxsize=1)
def _compiled() -> Any | None:
    """The compiled kernels, or None where numba is unavailable or disabled."""
    if os.environ.get("GRADTRACER_NO_NUMBA", "").strip() not in ("", "0"):
        return None
    try:
        from gradtracer.compress import _jit_lookup
    except ImportError:  # pragma: no cover - numba is a core dependency
        return None
    return (
        _jit_lookup.gather_rows,
        _jit_lookup.pool_rows,
        _jit_lookup.two_scale_rows,
        _jit_lookup.pool_rows8,
        _jit_lookup.two_scale_rows8,
        _jit_lookup.bag_sums,
        _jit_lookup.gather_rows8,
    )


def available() -> bool:
    """True when the compiled kernels can be used (numba importable, not disabled)."""
    return _compiled() is not None


def block_words(codes: np.ndarray, n_rows: int, bits: int) -> np.ndarray:
    """The packed index map as ``(blocks of 64 rows, bits)`` uint64 words (zero-padded).

    Four rows at 4 bits (codes 1, 2, 3, 0) fill the low 16 bits of the block's first word:

    >>> block_words(np.array([0x21, 0x03], np.uint8), 4, 4).tolist()
    [[801, 0, 0, 0]]
    """
    if bits == 0:
        return np.zeros((1, 1), np.uint64)
    n_blocks = -(-int(n_rows) // 64)
    padded = np.zeros(n_blocks * 8 * bits, dtype=np.uint8)
    padded[: codes.size] = codes
    return padded.view(np.uint64).reshape(n_blocks, bits)


_EMPTY: dict[str, np.ndarray] = {
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
    words: np.ndarray,
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
        words: the index map as :func:`block_words` (ignored for one level).
        directory: ``(blocks of 64 rows, levels)`` int32 rank directory.
        bits: bits per index-map code (0 for one level).
        fallback: the row dropped rows read, or None.
        decoded: optional per-row ``(level int8, slot int32)`` map read instead of the
            index map.
    """
    kinds = np.asarray([KINDS[p] for p in levels], dtype=np.int64)
    arrays: list[np.ndarray] = []
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
    directory = directory if directory.size else np.zeros((1, len(levels)), np.int32)
    where = np.zeros((len(KINDS), 3), np.int64)  # (address, row stride, row bytes - 1)
    stored: list[np.ndarray] = [*arrays, fb.reshape(1, -1)]
    for k, arr in enumerate(stored):
        where[k] = arr.ctypes.data, arr.strides[0] if k < 5 else 0, max(arr[:1].nbytes - 1, 0)
    return (n_rows, bits, words, directory, kinds, dl, ds, where, tuple(arrays), fb)


def _kernels() -> Any:
    fns = _compiled()
    if fns is None:
        raise RuntimeError(
            "the compiled lookup kernels are unavailable (numba missing or disabled)"
        )
    return fns


def _eight_wide_out(out: np.ndarray) -> bool:
    """Whether the eight-column kernels can write ``out`` (float32, C-contiguous, dim % 8 == 0)."""
    return out.shape[1] % 8 == 0 and out.dtype == np.float32 and out.flags.c_contiguous


def _qparam_offsets(args: tuple[Any, ...]) -> np.ndarray:
    """Byte offset of each kind's scale and bias in its stored row (:func:`kernel_args`)."""
    _, _, i8, i4, i2 = args[8]
    return np.asarray([0, 0, i8.shape[1] - 8, i4.shape[1] - 4, i2.shape[1] - 4, 0], np.int64)


def gather(rows: np.ndarray, out: np.ndarray, args: tuple[Any, ...]) -> None:
    """Write the dequantized rows ``rows (B,)`` into ``out (B, dim)`` float32.

    ``args`` is :func:`kernel_args` of the table.

    Raises:
        IndexError: a row outside the table (the first one is named).
        RuntimeError: the compiled kernels are unavailable (see :func:`available`).
    """
    if rows.dtype != np.int64 or not rows.flags.c_contiguous:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
    kernels = _kernels()
    if _eight_wide_out(out):
        bad = kernels[6](rows, *args, out, _qparam_offsets(args))
    else:
        bad = kernels[0](rows, *args, out)
    if bad >= 0:
        raise IndexError(f"row {int(rows[bad])} is outside [0, {args[0]})")


def pool(indices: np.ndarray, offsets: np.ndarray, out: np.ndarray, args: tuple[Any, ...]) -> None:
    """Add the rows of every bag into ``out (n_bags, dim)`` (zeros on entry).

    Bag ``k`` is ``indices[offsets[k]:offsets[k + 1]]`` (``offsets`` has ``n_bags + 1``
    non-decreasing entries from 0 to ``len(indices)``); its rows are added in index order
    in float32, as ``F.embedding_bag(mode="sum")`` over the dequantized table does.

    Raises:
        IndexError: an index outside the table.
        RuntimeError: the compiled kernels are unavailable.
    """
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    kernels = _kernels()
    if _eight_wide_out(out):
        bad = kernels[3](indices, offsets, *args, out, _qparam_offsets(args))
    else:
        bad = kernels[1](indices, offsets, *args, out)
    if bad >= 0:
        raise IndexError(f"index {int(indices[bad])} is outside [0, {args[0]})")


def two_scale_gather(
    rows: np.ndarray,
    codes: np.ndarray,
    step: np.ndarray,
    col: np.ndarray,
    bits: int,
    out: np.ndarray,
) -> None:
    """Rows of a two-scale table into ``out (B, dim)`` float32.

    Args:
        rows: ``(B,)`` row indices.
        codes: ``(n_rows, ceil(dim * bits / 8))`` uint8: each row one little-endian bit
            stream of ``dim`` codes, low bits first.
        step: ``(n_rows,)`` float32 per-row step ``2 ** (e / 8) / 2 ** (bits - 1)``.
        col: ``(dim,)`` float32 column scales.
        bits: 2 to 8.
        out: ``(B, dim)`` float32, written.

    Values are ``((code - 2**(bits-1) + 0.5) * step[row]) * col`` in float32, the
    operations (and order) of the table's tensor decode, so both agree bit for bit.

    Raises:
        IndexError: a row outside the table.
        RuntimeError: the compiled kernels are unavailable.
    """
    half = _code_half(bits)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if _eight_wide(out, codes, col):
        bad = _kernels()[4](rows, _NO_BAGS, codes.shape[0], int(bits), codes, step, col, half, out)
    else:
        bad = _kernels()[2](rows, codes.shape[0], int(bits), codes, step, col, half, out)
    if bad >= 0:
        raise IndexError(f"row {int(rows[bad])} is outside [0, {codes.shape[0]})")


_NO_BAGS = np.zeros(0, np.int64)


def _code_half(bits: int) -> float:
    """``2 ** (bits - 1)``, the code offset of a two-scale table of ``bits`` (2 to 8)."""
    if not 2 <= int(bits) <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits!r}")
    return float(1 << (int(bits) - 1))


def _eight_wide(out: np.ndarray, codes: np.ndarray, col: np.ndarray) -> bool:
    """The eight-columns-at-a-time two-scale kernel applies (contiguous float32, dim % 8 == 0)."""
    return (
        out.shape[1] % 8 == 0
        and out.dtype == np.float32
        and out.flags.c_contiguous
        and codes.dtype == np.uint8
        and codes.flags.c_contiguous
        and col.dtype == np.float32
        and col.flags.c_contiguous
    )


def two_scale_pool(
    indices: np.ndarray,
    offsets: np.ndarray,
    codes: np.ndarray,
    step: np.ndarray,
    col: np.ndarray,
    bits: int,
    out: np.ndarray,
) -> None:
    """Bags of two-scale rows summed into ``out (n_bags, dim)`` float32 (zeros on entry).

    Bag ``k`` is ``indices[offsets[k]:offsets[k + 1]]`` (``n_bags + 1`` non-decreasing
    offsets from 0 to ``len(indices)``); its rows (the values of :func:`two_scale_gather`)
    are added in index order in float32, as ``F.embedding_bag(mode="sum")`` over the
    decoded table does. Arguments otherwise as :func:`two_scale_gather`.

    Raises:
        IndexError: an index outside the table.
        RuntimeError: the compiled kernels are unavailable.
    """
    half = _code_half(bits)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.size != out.shape[0] + 1 or offsets[0] != 0 or offsets[-1] != indices.size:
        raise ValueError(
            f"offsets must be n_bags + 1 = {out.shape[0] + 1} entries from 0 to {indices.size}"
        )
    kernels = _kernels()
    if _eight_wide(out, codes, col):
        bad = kernels[4](indices, offsets, codes.shape[0], int(bits), codes, step, col, half, out)
    else:
        rows = np.empty((indices.size, out.shape[1]), np.float32)
        bad = kernels[2](indices, codes.shape[0], int(bits), codes, step, col, half, rows)
        if bad < 0:
            kernels[5](rows, offsets, out)
    if bad >= 0:
        raise IndexError(f"index {int(indices[bad])} is outside [0, {codes.shape[0]})")
