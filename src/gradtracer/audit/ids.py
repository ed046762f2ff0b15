"""Compact row-id lists for audit events: sorted ids as ``[gap, length]`` runs.

>>> encode_ids([3, 4, 5, 9])
[3, 3, 3, 1]
>>> decode_ids([3, 3, 3, 1]).tolist()
[3, 4, 5, 9]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_DECODED_IDS", "decode_ids", "encode_ids"]

#: Most ids one run list may decode to (2**28: a table of 268M rows); more is refused as
#: corrupt input rather than allocated.
MAX_DECODED_IDS = 1 << 28


def encode_ids(ids: Sequence[int] | np.ndarray) -> list[int]:
    """Return sorted unique ``ids`` as flat ``[gap0, len0, gap1, len1, ...]`` runs.

    Each run of consecutive ids is a pair: the gap from the end of the previous run (from
    0 for the first run) and the run length. ``[3, 4, 5, 9]`` -> ``[3, 3, 3, 1]``.
    """
    arr = np.unique(np.asarray(ids, dtype=np.int64))
    if arr.size == 0:
        return []
    if arr[0] < 0:
        raise ValueError(f"row ids must be >= 0, got {int(arr[0])}")
    breaks = np.flatnonzero(np.diff(arr) != 1) + 1
    starts = arr[np.concatenate(([0], breaks))]
    ends = arr[np.concatenate((breaks - 1, [arr.size - 1]))] + 1  # exclusive
    prev_end = np.concatenate(([0], ends[:-1]))
    out = np.empty(2 * starts.size, dtype=np.int64)
    out[0::2] = starts - prev_end
    out[1::2] = ends - starts
    return out.tolist()


def decode_ids(runs: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`encode_ids`: the sorted ids as an int64 array.

    Raises:
        ValueError: ``runs`` is not a flat list of ``[gap >= 0, length >= 1]`` integer pairs.
    """
    try:
        arr = np.asarray(runs, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("row runs must be a flat list of integers") from None
    if (
        arr.ndim != 1
        or arr.size % 2
        or (arr.size and (arr[1::2] < 1).any())
        or (arr.size and (arr[0::2] < 0).any())
    ):
        raise ValueError("row runs must be [gap, length] pairs with gap >= 0 and length >= 1")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    gaps, lengths = arr[0::2], arr[1::2]
    if (
        int(lengths.sum(dtype=np.float64)) > MAX_DECODED_IDS
        or float(arr.sum(dtype=np.float64)) >= 2.0**62
    ):
        raise ValueError(
            f"row runs decode to more than {MAX_DECODED_IDS} ids or beyond 2**62 (corrupt?)"
        )
    starts = np.cumsum(gaps + np.concatenate(([0], lengths[:-1])))
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets
