"""Row-wise quantization of embedding rows in the FBGEMM / TorchRec layouts.

Each precision stores a row as packed codes followed by its own range, exactly as the
CPU kernels of ``torch.ops.quantized`` expect:

========= ======================================== =====================
precision row bytes for dimension ``d``            kernel
========= ======================================== =====================
fp32      ``4 d``                                  ``F.embedding``
fp16      ``2 d``                                  ``F.embedding`` (half)
int8      ``d`` codes + fp32 scale + fp32 bias     ``embedding_bag_byte_rowwise_offsets``
int4      ``ceil(d / 2)`` + fp16 scale + fp16 bias ``embedding_bag_4bit_rowwise_offsets``
int2      ``ceil(d / 4)`` + fp16 scale + fp16 bias ``embedding_bag_2bit_rowwise_offsets``
drop      0 (the row reads a shared fallback row)  --
========= ======================================== =====================

A row ``x`` quantized at ``b`` bits stores ``codes = round((x - bias) / scale)`` with
``bias = min(x)`` and ``scale = (max(x) - min(x)) / (2**b - 1)``; the 4- and 2-bit packers
can instead search a narrower range that lowers the row's squared error
(``optimized_qparams``). The 4-bit kernel needs an even number of columns and the 2-bit
one a multiple of four: other dimensions are padded with zero columns, and the padding is
counted in the bytes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "BITS",
    "PRECISIONS",
    "check_precision",
    "dequantize_rows",
    "lookup_rows",
    "pack_rows",
    "packed_width",
    "row_bytes",
]

#: Every storage precision of a row, most to least precise.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int4", "int2", "drop")
#: Bits per stored value of each precision (``drop`` stores none).
BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4, "int2": 2, "drop": 0}
_PAD = {"int4": 2, "int2": 4}  # column multiple the kernels need
_QPARAM_BYTES = {"int8": 8, "int4": 4, "int2": 4}  # scale + bias per row


def check_precision(precision: str) -> str:
    """Return ``precision`` or raise ``ValueError`` naming the allowed values."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _padded_dim(precision: str, dim: int) -> int:
    m = _PAD.get(precision, 1)
    return -(-dim // m) * m


def packed_width(precision: str, dim: int) -> int:
    """Bytes of one stored row at ``precision`` for an embedding of ``dim`` columns."""
    check_precision(precision)
    if precision == "drop":
        return 0
    if precision in ("fp32", "fp16"):
        return dim * BITS[precision] // 8
    pd = _padded_dim(precision, dim)
    return math.ceil(pd * BITS[precision] / 8) + _QPARAM_BYTES[precision]


def row_bytes(precision: str, dim: int) -> int:
    """Alias of :func:`packed_width` (bytes per row, codes plus scale and bias).

    >>> [row_bytes(p, 64) for p in ("fp32", "fp16", "int8", "int4", "int2", "drop")]
    [256, 128, 72, 36, 20, 0]
    """
    return packed_width(precision, dim)


def pack_rows(
    weight: torch.Tensor, precision: str, *, optimized_qparams: bool = True
) -> torch.Tensor:
    """Pack ``(R, d)`` float rows into the storage of ``precision``.

    Returns ``(R, d)`` float32 / float16 for ``fp32`` / ``fp16`` and ``(R,
    packed_width(precision, d))`` uint8 for the integer precisions.

    Args:
        weight: rows to pack (any float dtype; moved to CPU float32).
        precision: one of :data:`PRECISIONS` except ``drop``.
        optimized_qparams: for int4/int2, search the range per row that minimises its
            squared error instead of min/max (default True).
    """
    check_precision(precision)
    if precision == "drop":
        raise ValueError("rows at precision 'drop' are not stored; they read the fallback row")
    if weight.ndim != 2:
        raise ValueError(f"rows must be a 2-D (R, d) tensor, got shape {tuple(weight.shape)}")
    w = weight.detach().to("cpu", torch.float32).contiguous()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("rows to pack contain NaN or infinite values")
    if precision == "fp32":
        return w.clone()
    if precision == "fp16":
        return w.to(torch.float16)
    dim = w.shape[1]
    if w.shape[0] == 0:
        return torch.zeros(0, packed_width(precision, dim), dtype=torch.uint8)
    pd = _padded_dim(precision, dim)
    if pd != dim:
        w = F.pad(w, (0, pd - dim))
    q = torch.ops.quantized
    if precision == "int8":
        return q.embedding_bag_byte_prepack(w)
    if precision == "int4":
        return q.embedding_bag_4bit_prepack(w, optimized_qparams=optimized_qparams)
    return q.embedding_bag_2bit_prepack(w, optimized_qparams=optimized_qparams)


def dequantize_rows(packed: torch.Tensor, precision: str, dim: int) -> torch.Tensor:
    """Inverse of :func:`pack_rows`: ``(R, dim)`` float32 rows."""
    check_precision(precision)
    if precision in ("fp32", "fp16"):
        return packed.to(torch.float32)
    if packed.shape[0] == 0:
        return torch.zeros(0, dim)
    q = torch.ops.quantized
    if precision == "int8":
        out = q.embedding_bag_byte_unpack(packed)
    elif precision == "int4":
        out = q.embedding_bag_4bit_unpack(packed)
    elif precision == "int2":
        out = q.embedding_bag_2bit_unpack(packed)
    else:
        raise ValueError("rows at precision 'drop' are not stored")
    return out[:, :dim].to(torch.float32)


def lookup_rows(
    packed: torch.Tensor, precision: str, dim: int, slots: torch.Tensor
) -> torch.Tensor:
    """Rows ``slots`` of a packed block, dequantized: ``(B, dim)`` float32.

    Integer precisions go through the ``torch.ops.quantized`` row-wise embedding-bag
    kernels (one index per bag, sum mode), the float ones through ``F.embedding``.
    """
    slots = slots.to(torch.int64)
    if precision in ("fp32", "fp16"):
        return F.embedding(slots, packed).to(torch.float32)
    if slots.numel() == 0:
        return torch.zeros(0, dim)
    offsets = torch.arange(slots.numel(), dtype=torch.int64)
    q = torch.ops.quantized
    if precision == "int8":
        out = q.embedding_bag_byte_rowwise_offsets(packed, slots, offsets, mode=0)
    elif precision == "int4":
        out = q.embedding_bag_4bit_rowwise_offsets(packed, slots, offsets, mode=0)
    elif precision == "int2":
        out = q.embedding_bag_2bit_rowwise_offsets(packed, slots, offsets, mode=0)
    else:
        raise ValueError("rows at precision 'drop' are not stored")
    return out[:, :dim].to(torch.float32)
