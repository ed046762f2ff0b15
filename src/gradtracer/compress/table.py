"""Compressed embedding tables: mixed row-wise precision, dropped rows, low-rank factors.

:class:`QuantizedTable` keeps every row at one of :data:`~gradtracer.compress.rowwise.PRECISIONS`.
Rows of one precision are packed together, in row order, in that precision's FBGEMM
layout. Which block a row lives in is an index map of ``bits`` bits per row (0 when the
table has a single precision) plus a rank directory: per block of :data:`BLOCK_ROWS`
rows, the number of earlier rows of each precision (int32). A row's slot in its block is
``directory[row // 64, level] + (rows of that level earlier in its 64-row block)``, so no
per-row int32 map is stored. Dropped rows all read one fallback row (float32). Lookups
and pooling run compiled kernels over these arrays as stored
(:mod:`~gradtracer.compress.index_kernel`).

:class:`LowRankTable` stores ``factors (n, r) @ basis (r, d)`` with the factors in a
:class:`QuantizedTable` (any uniform precision) and the basis in float32.

Every byte counts in :meth:`QuantizedTable.nbytes`: codes, per-row scale and bias,
padding columns, the index map, the directory and the fallback row.

One module past 400 lines: the low-rank table stores its factors in a quantized table and
both share the packing helpers and the byte accounting, which must change together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from gradtracer.compress import index_kernel
from gradtracer.compress.rowwise import (
    PRECISIONS,
    check_precision,
    dequantize_rows,
    lookup_rows,
    pack_rows,
    packed_width,
)

__all__ = ["BLOCK_ROWS", "CompressedTable", "LowRankTable", "QuantizedTable", "table_from_arrays"]

#: Rows per rank-directory block.
BLOCK_ROWS = 64
#: Batch size from which a single-precision table's lookup calls its ``torch.ops.quantized``
#: kernel rather than the compiled gather (measured by ``bench/bench_compress.py``).
FBGEMM_MIN_BATCH = 2048


def bag_inputs(
    indices: Any, offsets: Any, mode: str, include_last_offset: bool
) -> tuple[torch.Tensor, np.ndarray]:
    """``F.embedding_bag`` arguments, checked: ``(N,)`` int64 indices and ``(n_bags + 1,)``
    int64 bag boundaries.

    The offsets are checked in NumPy: a few small tensor ops cost more than pooling a few
    hundred bags.

    Raises:
        ValueError: a mode other than ``"sum"`` / ``"mean"``; offsets that do not start
            at 0, end at ``len(indices)`` or never decrease.
    """
    if mode not in ("sum", "mean"):
        raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}")
    idx = torch.as_tensor(indices)
    if idx.dtype != torch.int64 or idx.ndim != 1:
        idx = idx.to(torch.int64).reshape(-1)
    n = idx.numel()
    off_t = torch.as_tensor(offsets)
    if off_t.dtype == torch.int64 and off_t.ndim == 1 and off_t.is_contiguous():
        off_np = off_t.numpy()
    else:
        off_np = np.asarray(off_t.reshape(-1), dtype=np.int64)
    if not include_last_offset:
        ends = np.empty(off_np.size + 1, np.int64)
        ends[:-1] = off_np
        ends[-1] = n
        off_np = ends
    if off_np.size == 0 or off_np[0] != 0 or off_np[-1] != n:
        raise ValueError(
            f"offsets must start at 0 and end at len(indices) = {n}, "
            f"got {off_np.tolist()[:3]}...{off_np.tolist()[-2:]}"
        )
    if off_np.size > 1 and bool((off_np[1:] < off_np[:-1]).any()):
        raise ValueError("offsets must be non-decreasing")
    return idx, off_np


def bag_mean(pooled: torch.Tensor, ends: np.ndarray, mode: str) -> torch.Tensor:
    """``pooled`` sums divided by their bag sizes when ``mode == "mean"`` (an empty bag
    stays zero); unchanged for ``"sum"``."""
    if mode != "mean":
        return pooled
    lengths = torch.from_numpy(np.maximum(np.diff(ends), 1)).to(torch.float32)
    return pooled / lengths[:, None]


class CompressedTable(Protocol):
    """What a compressed table offers: sizes, lookups, a dense copy, bytes, arrays."""

    name: str
    n_rows: int
    dim: int

    def lookup(self, rows: torch.Tensor) -> torch.Tensor: ...

    def dequantize(self) -> torch.Tensor: ...

    def nbytes(self) -> int: ...

    def byte_breakdown(self) -> dict[str, int]: ...

    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...


def _code_bits(n_levels: int) -> int:
    if n_levels <= 1:
        return 0
    if n_levels == 2:
        return 1
    if n_levels <= 4:
        return 2
    return 4


def _pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """``(n,)`` small ints -> uint8 with ``8 // bits`` codes a byte, low bits first."""
    per = 8 // bits
    n = codes.size
    padded = np.zeros(-(-n // per) * per, dtype=np.uint8)
    padded[:n] = codes
    grid = padded.reshape(-1, per).astype(np.uint16)
    shifts = (np.arange(per, dtype=np.uint16) * bits)[None, :]
    return (grid << shifts).sum(axis=1).astype(np.uint8)


def _unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 ``(..., m)`` -> ``(..., m * 8 // bits)`` int64 codes (inverse of :func:`_pack_codes`)."""
    per = 8 // bits
    shifts = torch.arange(per, dtype=torch.int64) * bits
    vals = packed.to(torch.int64).unsqueeze(-1) >> shifts
    return (vals & ((1 << bits) - 1)).flatten(-2)


class QuantizedTable:
    """An embedding table whose rows are stored at per-row precisions.

    Build one with :meth:`from_weight`; read rows with :meth:`lookup` (the row-wise
    kernels of ``torch.ops.quantized``) or the whole table with :meth:`dequantize`.

    Args:
        name: table name (``"item_emb"``).
        n_rows: rows of the original table.
        dim: columns of the original table.
        levels: precisions present, in :data:`PRECISIONS` order.
        blocks: packed rows of each present precision (``drop`` has none).
        codes: packed index map (uint8), empty when there is one level.
        directory: ``(ceil(n_rows / 64), len(levels))`` int32 rank directory.
        fallback: ``(dim,)`` float32 row read by dropped rows (or None without drops).
    """

    def __init__(
        self,
        name: str,
        n_rows: int,
        dim: int,
        levels: Sequence[str],
        blocks: Mapping[str, torch.Tensor],
        codes: np.ndarray,
        directory: np.ndarray,
        fallback: np.ndarray | None,
    ) -> None:
        self.name, self.n_rows, self.dim = name, int(n_rows), int(dim)
        self.levels = tuple(check_precision(p) for p in levels)
        if not self.levels:
            raise ValueError(f"table {name!r}: a table needs at least one precision level")
        order = [PRECISIONS.index(p) for p in self.levels]
        if order != sorted(set(order)):
            raise ValueError(
                f"table {name!r}: levels {self.levels} must be distinct, in {PRECISIONS} order"
            )
        self.bits = _code_bits(len(self.levels))
        self.blocks = {p: blocks[p] for p in self.levels if p != "drop"}
        self.codes = np.ascontiguousarray(codes, dtype=np.uint8)
        self.directory = np.ascontiguousarray(directory, dtype=np.int32)
        self.fallback = None if fallback is None else np.asarray(fallback, np.float32).reshape(dim)
        self._check()
        self._dir_flat = torch.from_numpy(self.directory.copy()).to(torch.int64).reshape(-1)
        self._positions = torch.arange(BLOCK_ROWS)
        self._block_codes = torch.zeros(0, 0, dtype=torch.uint8)
        self._words = np.zeros((1, 1), np.uint64)
        if self.bits:  # the index map as 64-bit words per 64-row block (zero-padded)
            self._words = index_kernel.block_words(self.codes, self.n_rows, self.bits)
            padded = self._words.reshape(-1).view(np.uint8)
            self.codes = padded[: self.codes.size]  # the stored bytes, not a second copy
            self._block_codes = torch.from_numpy(padded.reshape(self._words.shape[0], -1))
        self._fallback_t = None if self.fallback is None else torch.from_numpy(self.fallback.copy())
        self._decoded: tuple[np.ndarray, np.ndarray] | None = None  # see accelerate()
        self._args_cache: tuple[Any, ...] | None = None  # the compiled kernels' arguments

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_weight(
        cls,
        weight: torch.Tensor | np.ndarray,
        precision: str | Sequence[str] | np.ndarray,
        *,
        name: str = "table",
        optimized_qparams: bool = True,
        fallback: np.ndarray | torch.Tensor | None = None,
    ) -> QuantizedTable:
        """Quantize ``weight (n, d)`` with one precision for all rows or one per row.

        Args:
            weight: the float table.
            precision: a precision name, or ``(n,)`` names / indices into :data:`PRECISIONS`.
            name: table name.
            optimized_qparams: int4/int2 search a per-row range that lowers the squared
                error (default True).
            fallback: the row dropped rows read (default: the mean of the dropped rows).
        """
        w = torch.as_tensor(weight).detach().to("cpu", torch.float32)
        if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
            raise ValueError(
                f"table {name!r}: weight must be a non-empty (n, d) matrix, got {tuple(w.shape)}"
            )
        n, d = w.shape
        level_idx = _level_indices(precision, n, name)
        present = sorted(set(level_idx.tolist()))
        levels = [PRECISIONS[i] for i in present]
        local = np.searchsorted(np.asarray(present), level_idx).astype(np.uint8)
        blocks: dict[str, torch.Tensor] = {}
        for j, p in enumerate(levels):
            if p == "drop":
                continue
            rows = torch.from_numpy(np.flatnonzero(local == j))
            blocks[p] = pack_rows(w.index_select(0, rows), p, optimized_qparams=optimized_qparams)
        fb: np.ndarray | None = None
        if "drop" in levels:
            if fallback is None:
                dropped = torch.from_numpy(np.flatnonzero(local == levels.index("drop")))
                fb = w.index_select(0, dropped).mean(0).numpy()
            else:
                fb = torch.as_tensor(fallback).detach().to("cpu", torch.float32).reshape(-1).numpy()
                if fb.shape != (d,):
                    raise ValueError(
                        f"table {name!r}: fallback must have {d} values, got {fb.shape}"
                    )
        bits = _code_bits(len(levels))
        codes = _pack_codes(local, bits) if bits else np.zeros(0, np.uint8)
        directory = _directory(local, len(levels)) if bits else np.zeros((0, len(levels)), np.int32)
        return cls(name, n, d, levels, blocks, codes, directory, fb)

    # --- reading ---------------------------------------------------------------------
    def _check(self) -> None:
        n_blocks = -(-self.n_rows // BLOCK_ROWS)
        where = f"table {self.name!r}"
        if self.bits:
            want = -(-self.n_rows * self.bits // 8)
            if self.codes.size != want:
                raise ValueError(f"{where}: index map has {self.codes.size} bytes, expected {want}")
            if self.directory.shape != (n_blocks, len(self.levels)):
                raise ValueError(
                    f"{where}: rank directory has shape {self.directory.shape}, "
                    f"expected {(n_blocks, len(self.levels))}"
                )
            counts = self.level_counts()
        else:
            counts = {self.levels[0]: self.n_rows}
        if sum(counts.values()) != self.n_rows:
            raise ValueError(
                f"{where}: index map covers {sum(counts.values())} rows, table has {self.n_rows}"
            )
        for p, block in self.blocks.items():
            width = self.dim if p in ("fp32", "fp16") else packed_width(p, self.dim)
            if tuple(block.shape) != (counts.get(p, 0), width):
                raise ValueError(
                    f"{where}: {p} block has shape {tuple(block.shape)}, expected {(counts.get(p, 0), width)}"
                )
        if ("drop" in self.levels) != (self.fallback is not None):
            raise ValueError(f"{where}: a fallback row is needed exactly when rows are dropped")

    def row_levels(self) -> np.ndarray:
        """``(n_rows,)`` precision of every row, as indices into :data:`PRECISIONS`."""
        global_idx = np.asarray([PRECISIONS.index(p) for p in self.levels], dtype=np.int64)
        if not self.bits:
            return np.full(self.n_rows, global_idx[0], dtype=np.int64)
        local = _unpack_codes(torch.from_numpy(self.codes), self.bits)[: self.n_rows].numpy()
        if local.max(initial=0) >= len(self.levels):
            raise ValueError(f"table {self.name!r}: index map names a level that does not exist")
        return global_idx[local]

    def level_counts(self) -> dict[str, int]:
        """Rows stored at each present precision."""
        idx = self.row_levels()
        return {p: int((idx == PRECISIONS.index(p)).sum()) for p in self.levels}

    def _locate(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(level (B,), slot (B,))`` of each row (int64)."""
        if not self.bits:
            return torch.zeros_like(rows), rows
        bits, per = self.bits, 8 // self.bits
        mask = (1 << bits) - 1
        block = rows // BLOCK_ROWS
        grid = self._block_codes.index_select(0, block)  # (B, bytes per block) uint8
        parts = [(grid >> (k * bits)) & mask for k in range(per)]
        in_block = torch.stack(parts, dim=2).reshape(rows.numel(), BLOCK_ROWS)  # (B, 64) uint8
        offset = rows % BLOCK_ROWS
        level = in_block.gather(1, offset[:, None]).squeeze(1)
        before = self._positions[None, :] < offset[:, None]
        earlier = ((in_block == level[:, None]) & before).sum(1)
        level = level.to(torch.int64)
        slot = self._dir_flat.index_select(0, block * len(self.levels) + level) + earlier
        return level, slot

    def accelerate(self, enabled: bool = True) -> QuantizedTable:
        """Keep a decoded per-row level (int8) and slot (int32) map in memory.

        Lookups then read the map instead of the index map and rank directory. With the
        compiled index kernels (:mod:`~gradtracer.compress.index_kernel`, which count a
        row's slot with a popcount) this is no faster; without numba it saves the
        tensor-op slot counting. The map costs 5 bytes a row of
        extra resident memory (:meth:`resident_bytes`); :meth:`nbytes` and the stored
        artifact do not change. Returns ``self``.
        """
        if enabled and self.bits:
            levels = np.empty(self.n_rows, dtype=np.int8)
            slots = np.empty(self.n_rows, dtype=np.int32)
            idx = self.row_levels()
            for j, p in enumerate(self.levels):
                rows = np.flatnonzero(idx == PRECISIONS.index(p))
                levels[rows] = j
                slots[rows] = np.arange(rows.size)
            self._decoded = (levels, slots)
        else:
            self._decoded = None
        self._args_cache = None
        return self

    def resident_bytes(self) -> int:
        """:meth:`nbytes` plus the decoded map of :meth:`accelerate` when it is on."""
        extra = self._decoded
        return self.nbytes() + (0 if extra is None else sum(int(a.nbytes) for a in extra))

    def _check_rows(self, rows: torch.Tensor) -> None:
        if not rows.numel():
            return
        low, high = (int(v) for v in torch.aminmax(rows))  # one pass over the rows
        if low < 0 or high >= self.n_rows:
            raise IndexError(
                f"table {self.name!r} has {self.n_rows} rows; got indices in [{low}, {high}]"
            )

    def _read_level(self, j: int, slots: torch.Tensor) -> torch.Tensor:
        p = self.levels[j]
        if p == "drop":
            assert self._fallback_t is not None
            return self._fallback_t.expand(slots.numel(), self.dim)
        return lookup_rows(self.blocks[p], p, self.dim, slots)

    def _kernel_args(self) -> tuple[Any, ...]:
        args = self._args_cache
        if args is None:
            args = index_kernel.kernel_args(
                self.n_rows,
                self.dim,
                self.levels,
                self.blocks,
                self._words,
                self.directory,
                self.bits,
                self.fallback,
                self._decoded,
            )
            self._args_cache = args
        return args

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        """Dequantized rows ``rows (B,)``: ``(B, dim)`` float32.

        Read straight from the stored index map and blocks by the compiled kernel of
        :mod:`~gradtracer.compress.index_kernel` (rows located and prefetched a chunk
        ahead, every output row written once, in request order). A single-precision
        table of at least :data:`FBGEMM_MIN_BATCH` rows a call uses its
        ``torch.ops.quantized`` kernel instead (faster there; see
        ``bench/bench_compress.py``). Values equal :meth:`lookup_reference` (one
        ``torch.ops.quantized`` kernel per precision, the path without numba) bit for bit.
        """
        if not (isinstance(rows, torch.Tensor) and rows.dtype == torch.int64 and rows.ndim == 1):
            rows = torch.as_tensor(rows).to(torch.int64).reshape(-1)
        if not self.bits and rows.numel() >= FBGEMM_MIN_BATCH:
            self._check_rows(rows)
            return self._read_level(0, rows).contiguous()
        if not index_kernel.available():
            return self.lookup_reference(rows)
        out = torch.empty(rows.numel(), self.dim)
        try:
            index_kernel.gather(rows.contiguous().numpy(), out.numpy(), self._kernel_args())
        except IndexError:
            self._check_rows(rows)
            raise
        return out

    def lookup_reference(self, rows: torch.Tensor) -> torch.Tensor:
        """:meth:`lookup` through tensor ops only (the slow path without numba; for tests)."""
        rows = torch.as_tensor(rows).to(torch.int64).reshape(-1)
        self._check_rows(rows)
        level, slot = self._locate(rows)
        out = torch.empty(rows.numel(), self.dim)
        for j in range(len(self.levels)):
            sel = (level == j).nonzero().squeeze(1)
            if sel.numel():
                out[sel] = self._read_level(j, slot[sel])
        return out

    def embedding_bag(
        self,
        indices: torch.Tensor,
        offsets: torch.Tensor,
        *,
        mode: str = "sum",
        include_last_offset: bool = False,
    ) -> torch.Tensor:
        """Pooled lookups, as ``F.embedding_bag``: ``(n_bags, dim)`` float32.

        Args:
            indices: ``(N,)`` rows of all bags, bag after bag.
            offsets: start of each bag in ``indices`` (``n_bags`` entries, or
                ``n_bags + 1`` with ``include_last_offset=True``).
            mode: ``"sum"`` (default) or ``"mean"`` (an empty bag pools to zeros).
            include_last_offset: ``offsets`` ends with ``N`` (default False).

        A mixed table is pooled by one compiled pass
        (:func:`~gradtracer.compress.index_kernel.pool`: every row decoded and added to its
        bag in index order, in float32); a single-precision table by one ``torch.ops.quantized`` embedding-bag
        call (``F.embedding_bag`` for fp16/fp32). Without numba, each precision present is
        pooled by its own kernel call over the bags' rows of that precision and the
        partial sums are added.
        """
        idx, off_np = bag_inputs(indices, offsets, mode, include_last_offset)
        off = torch.from_numpy(off_np)
        n_bags = off_np.size - 1
        if self.bits and index_kernel.available():  # the kernel checks every row itself
            out = np.zeros((n_bags, self.dim), dtype=np.float32)
            try:
                index_kernel.pool(idx.contiguous().numpy(), off_np, out, self._kernel_args())
            except IndexError:
                self._check_rows(idx)
                raise
            pooled = torch.from_numpy(out)
        elif not self.bits:
            self._check_rows(idx)
            pooled = self._pool_level(0, idx, off)
        else:
            self._check_rows(idx)
            pooled = torch.zeros(n_bags, self.dim)
            for j, (slots, bag_off) in enumerate(self._bag_groups(idx, off)):
                if slots.numel():
                    pooled += self._pool_level(j, slots, bag_off)
        return bag_mean(pooled, off_np, mode)

    def _bag_groups(
        self, idx: torch.Tensor, off: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level: its slots in bag order and its ``(n_bags + 1,)`` bag offsets."""
        level, slot = self._locate(idx)
        bag = torch.repeat_interleave(torch.arange(off.numel() - 1), off[1:] - off[:-1])
        out = []
        for j in range(len(self.levels)):
            keep = level == j
            counts = torch.bincount(bag[keep], minlength=off.numel() - 1)
            out.append(
                (slot[keep], torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))
            )
        return out

    def _pool_level(self, j: int, slots: torch.Tensor, bag_off: torch.Tensor) -> torch.Tensor:
        """Sum-pool the level-``j`` rows ``slots`` over bags ``bag_off`` (``n_bags + 1``)."""
        p = self.levels[j]
        if p == "drop":
            assert self._fallback_t is not None
            counts = (bag_off[1:] - bag_off[:-1]).to(torch.float32)
            return counts[:, None] * self._fallback_t[None, :]
        block = self.blocks[p]
        if p in ("fp32", "fp16"):
            rows = torch.nn.functional.embedding(slots, block).to(torch.float32)
            return torch.nn.functional.embedding_bag(
                torch.arange(slots.numel()), rows, bag_off, mode="sum", include_last_offset=True
            )
        q = torch.ops.quantized
        kernel = {
            "int8": q.embedding_bag_byte_rowwise_offsets,
            "int4": q.embedding_bag_4bit_rowwise_offsets,
            "int2": q.embedding_bag_2bit_rowwise_offsets,
        }[p]
        out = kernel(block, slots, bag_off, mode=0, include_last_offset=True)
        return out[:, : self.dim].to(torch.float32)

    def dequantize(self) -> torch.Tensor:
        """The whole table as ``(n_rows, dim)`` float32."""
        out = torch.empty(self.n_rows, self.dim)
        idx = self.row_levels()
        for p in self.levels:
            rows = torch.from_numpy(np.flatnonzero(idx == PRECISIONS.index(p)))
            if p == "drop":
                assert self._fallback_t is not None
                out[rows] = self._fallback_t
            else:
                out[rows] = dequantize_rows(self.blocks[p], p, self.dim)
        return out

    # --- bytes -----------------------------------------------------------------------
    def byte_breakdown(self) -> dict[str, int]:
        """Bytes by part: ``rows/<precision>`` (codes + scale + bias + padding),
        ``index_map``, ``rank_directory``, ``fallback``."""
        out = {f"rows/{p}": int(b.numel() * b.element_size()) for p, b in self.blocks.items()}
        out["index_map"] = int(self.codes.nbytes)
        out["rank_directory"] = int(self.directory.nbytes)
        out["fallback"] = 0 if self.fallback is None else int(self.fallback.nbytes)
        return out

    def nbytes(self) -> int:
        """Every byte the table holds (see :meth:`byte_breakdown`)."""
        return sum(self.byte_breakdown().values())

    # --- arrays ----------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)`` for an npz artifact; array keys start with ``prefix``."""
        meta = {
            "type": "quantized",
            "name": self.name,
            "n_rows": self.n_rows,
            "dim": self.dim,
            "levels": list(self.levels),
        }
        arrays: dict[str, np.ndarray] = {
            f"{prefix}codes": self.codes,
            f"{prefix}directory": self.directory,
        }
        for p, block in self.blocks.items():
            arrays[f"{prefix}rows_{p}"] = block.numpy()
        if self.fallback is not None:
            arrays[f"{prefix}fallback"] = self.fallback
        return meta, arrays

    @classmethod
    def from_arrays(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str
    ) -> QuantizedTable:
        """Inverse of :meth:`to_arrays` (shapes and levels checked)."""
        levels = [str(p) for p in meta["levels"]]
        blocks: dict[str, torch.Tensor] = {}
        for p in levels:
            if p == "drop":
                continue
            arr = np.asarray(arrays[f"{prefix}rows_{p}"])
            want = {"fp32": np.float32, "fp16": np.float16}.get(p, np.uint8)
            if arr.dtype != want:
                raise ValueError(
                    f"table {meta['name']!r}: {p} rows have dtype {arr.dtype}, expected {np.dtype(want)}"
                )
            blocks[p] = torch.from_numpy(arr.copy())
        fb = arrays.get(f"{prefix}fallback")
        return cls(
            str(meta["name"]),
            int(meta["n_rows"]),
            int(meta["dim"]),
            levels,
            blocks,
            np.asarray(arrays[f"{prefix}codes"]),
            np.asarray(arrays[f"{prefix}directory"]),
            None if fb is None else np.asarray(fb),
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{p}={c}" for p, c in self.level_counts().items())
        return f"QuantizedTable({self.name!r}, {self.n_rows}x{self.dim}, {counts}, {self.nbytes()} bytes)"


class LowRankTable:
    """A table stored as ``factors (n, r) @ basis (r, d)``; the factors are a :class:`QuantizedTable`.

    Args:
        name: table name.
        factors: the quantized ``(n, r)`` factors.
        basis: ``(r, d)`` float32.
    """

    def __init__(self, name: str, factors: QuantizedTable, basis: np.ndarray) -> None:
        self.name = name
        self.factors = factors
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        if self.basis.ndim != 2 or self.basis.shape[0] != factors.dim:
            raise ValueError(
                f"table {name!r}: basis shape {self.basis.shape} does not match rank {factors.dim}"
            )
        self.n_rows, self.dim = factors.n_rows, int(self.basis.shape[1])
        self._basis_t = torch.from_numpy(self.basis.copy())

    @classmethod
    def from_weight(
        cls,
        weight: torch.Tensor | np.ndarray,
        rank: int,
        *,
        name: str = "table",
        precision: str = "fp32",
    ) -> LowRankTable:
        """Truncated SVD of ``weight`` at ``rank``; factors ``U S`` stored at ``precision``."""
        w = torch.as_tensor(weight).detach().to("cpu", torch.float32)
        if w.ndim != 2:
            raise ValueError(f"table {name!r}: weight must be (n, d), got {tuple(w.shape)}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= min(w.shape):
            raise ValueError(
                f"table {name!r}: rank must be an int in [1, {min(w.shape)}], got {rank!r}"
            )
        u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
        factors = (u[:, :rank] * s[:rank]).float()
        return cls.from_factors(name, factors, vh[:rank].float(), precision=precision)

    @classmethod
    def from_factors(
        cls,
        name: str,
        factors: torch.Tensor,
        basis: torch.Tensor | np.ndarray,
        *,
        precision: str = "fp32",
    ) -> LowRankTable:
        """Store given ``factors (n, r)`` at ``precision`` with ``basis (r, d)``."""
        if precision == "drop":
            raise ValueError("low-rank factors cannot be dropped")
        q = QuantizedTable.from_weight(factors, precision, name=f"{name}/factors")
        return cls(name, q, np.asarray(torch.as_tensor(basis).to(torch.float32)))

    @property
    def rank(self) -> int:
        return self.factors.dim

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` float32 rows ``factors[rows] @ basis``."""
        return self.factors.lookup(rows) @ self._basis_t

    def embedding_bag(
        self,
        indices: torch.Tensor,
        offsets: torch.Tensor,
        *,
        mode: str = "sum",
        include_last_offset: bool = False,
    ) -> torch.Tensor:
        """Pooled rows ``(n_bags, dim)``: the factors pooled (see
        :meth:`QuantizedTable.embedding_bag`), then ``@ basis``."""
        pooled = self.factors.embedding_bag(
            indices, offsets, mode=mode, include_last_offset=include_last_offset
        )
        return pooled @ self._basis_t

    def dequantize(self) -> torch.Tensor:
        """The whole table ``(n_rows, dim)`` float32."""
        return self.factors.dequantize() @ self._basis_t

    def byte_breakdown(self) -> dict[str, int]:
        """The factors' bytes (prefixed ``factors/``) and ``basis``."""
        out = {f"factors/{k}": v for k, v in self.factors.byte_breakdown().items()}
        out["basis"] = int(self.basis.nbytes)
        return out

    def nbytes(self) -> int:
        return sum(self.byte_breakdown().values())

    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        fmeta, arrays = self.factors.to_arrays(f"{prefix}factors_")
        arrays[f"{prefix}basis"] = self.basis
        return {"type": "lowrank", "name": self.name, "factors": fmeta}, arrays

    @classmethod
    def from_arrays(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str
    ) -> LowRankTable:
        factors = QuantizedTable.from_arrays(meta["factors"], arrays, f"{prefix}factors_")
        return cls(str(meta["name"]), factors, np.asarray(arrays[f"{prefix}basis"]))

    def __repr__(self) -> str:
        return f"LowRankTable({self.name!r}, {self.n_rows}x{self.dim}, rank {self.rank}, {self.nbytes()} bytes)"


def table_from_arrays(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str
) -> CompressedTable:
    """Rebuild a table written by ``to_arrays`` (``meta["type"]`` picks the class)."""
    kind = meta.get("type")
    if kind == "quantized":
        return QuantizedTable.from_arrays(meta, arrays, prefix)
    if kind == "lowrank":
        return LowRankTable.from_arrays(meta, arrays, prefix)
    from gradtracer.compress import methods as _m

    if kind in _m.EXTRA_TABLES:
        table: CompressedTable = _m.EXTRA_TABLES[str(kind)].from_arrays(meta, arrays, prefix)
        return table
    raise ValueError(f"unknown compressed table type {kind!r} (expected 'quantized' or 'lowrank')")


def _level_indices(precision: str | Sequence[str] | np.ndarray, n: int, name: str) -> np.ndarray:
    if isinstance(precision, str):
        return np.full(n, PRECISIONS.index(check_precision(precision)), dtype=np.int64)
    arr = np.asarray(precision)
    if arr.shape != (n,):
        raise ValueError(f"table {name!r}: need one precision per row ({n}), got shape {arr.shape}")
    if arr.dtype.kind in "US":
        bad = sorted(set(arr.tolist()) - set(PRECISIONS))
        if bad:
            raise ValueError(f"table {name!r}: unknown precisions {bad}; allowed {PRECISIONS}")
        lookup = {p: i for i, p in enumerate(PRECISIONS)}
        return np.asarray([lookup[p] for p in arr.tolist()], dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"table {name!r}: precisions must be names or int indices, got dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= len(PRECISIONS)):
        raise ValueError(f"table {name!r}: precision indices must be in [0, {len(PRECISIONS)})")
    return arr.astype(np.int64)


def _directory(local: np.ndarray, n_levels: int) -> np.ndarray:
    n_blocks = -(-local.size // BLOCK_ROWS)
    flat = (np.arange(local.size) // BLOCK_ROWS) * n_levels + local.astype(np.int64)
    per_block = np.bincount(flat, minlength=n_blocks * n_levels).reshape(n_blocks, n_levels)
    before = np.cumsum(per_block, axis=0) - per_block
    if before.size and before.max() > np.iinfo(np.int32).max:  # pragma: no cover - 2^31 rows
        raise ValueError("table too large for an int32 rank directory")
    return before.astype(np.int32)


def dense_bytes(n_rows: int, dim: int) -> int:
    """Bytes of the float32 table ``(n_rows, dim)``."""
    return int(n_rows) * int(dim) * 4


def ratio(original_bytes: int, compressed_bytes: int) -> float:
    """``original / compressed`` (``inf`` for 0 compressed bytes)."""
    return math.inf if compressed_bytes == 0 else original_bytes / compressed_bytes
