"""Row filters and re-indexing: implicit feedback, k-core, de-duplication, compaction.

Each function is pure (returns a new :class:`Interactions`, keeps the input untouched),
keeps the id maps (so dense ids stay comparable with the input) unless it is
:func:`compact`, logs what it removed at INFO level, and raises ``ValueError`` when
nothing is left.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import polars as pl

from gradtracer.recsys.data.interactions import IdMap, Interactions

__all__ = ["compact", "deduplicate", "k_core", "to_implicit"]

logger = logging.getLogger(__name__)

_KEEP = ("last", "first", "max")


def _non_empty(ix: Interactions, frame: pl.DataFrame, what: str) -> Interactions:
    if frame.height == 0:
        raise ValueError(
            f"{ix.source}: {what} removed every interaction ({ix.frame.height:,} rows)"
        )
    return ix.with_frame(frame)


def to_implicit(ix: Interactions, threshold: float = 4.0) -> Interactions:
    """Return the interactions with ``rating >= threshold`` and their rating set to 1.0.

    Args:
        threshold: minimum rating kept (default 4.0, "liked" on a 1-5 scale).

    Rows whose rating is not finite are never kept (loaders refuse them already).
    """
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    # polars orders NaN above every number: without is_finite a NaN rating would be "liked"
    liked = pl.col("rating").is_finite() & (pl.col("rating") >= threshold)
    frame = ix.frame.filter(liked).with_columns(pl.lit(1.0, dtype=pl.Float32).alias("rating"))
    logger.info(
        "to_implicit(threshold=%s): kept %d of %d rows", threshold, frame.height, ix.frame.height
    )
    return _non_empty(ix, frame, f"to_implicit(threshold={threshold})")


def k_core(
    ix: Interactions, k: int = 5, *, user_k: int | None = None, item_k: int | None = None
) -> Interactions:
    """Return the largest sub-table where every user and every item has enough interactions.

    Filters repeatedly (dropping users, then items, below their minimum) until stable.

    Args:
        k: minimum interactions per user and per item (default 5).
        user_k: minimum per user; overrides ``k`` for users.
        item_k: minimum per item; overrides ``k`` for items.
    """
    uk = k if user_k is None else user_k
    ik = k if item_k is None else item_k
    for name, value in (("k", k), ("user_k", uk), ("item_k", ik)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    frame = ix.frame
    rounds = 0
    while True:
        rounds += 1
        before = frame.height
        frame = frame.filter(pl.len().over("user") >= uk)
        frame = frame.filter(pl.len().over("item") >= ik)
        if frame.height == before:
            break
    logger.info(
        "k_core(user_k=%d, item_k=%d): kept %d of %d rows after %d round(s)",
        uk,
        ik,
        frame.height,
        ix.frame.height,
        rounds,
    )
    return _non_empty(ix, frame, f"k_core(user_k={uk}, item_k={ik})")


def deduplicate(ix: Interactions, keep: str = "last") -> Interactions:
    """Return one row per (user, item) pair, in the input's row order.

    Args:
        keep: ``"last"`` (default) the latest timestamp, ``"first"`` the earliest,
            ``"max"`` the highest rating (then the latest). Equal timestamps fall back to
            row order (later row wins for ``"last"``/``"max"``, earlier for ``"first"``).
    """
    if keep not in _KEEP:
        raise ValueError(f"keep must be one of {_KEEP}, got {keep!r}")
    frame = ix.frame.with_row_index("_row")
    if keep == "first":
        order, descending = ["timestamp", "_row"], [False, False]
    elif keep == "last":
        order, descending = ["timestamp", "_row"], [True, True]
    else:
        order, descending = ["rating", "timestamp", "_row"], [True, True, True]
    kept = (
        frame.sort(order, descending=descending)
        .unique(subset=["user", "item"], keep="first", maintain_order=True)
        .sort("_row")
        .drop("_row")
    )
    logger.info("deduplicate(keep=%r): kept %d of %d rows", keep, kept.height, ix.frame.height)
    return _non_empty(ix, kept, f"deduplicate(keep={keep!r})")


def compact(ix: Interactions) -> Interactions:
    """Return the interactions re-indexed to the users and items present in the frame.

    Relative order of the kept ids is preserved; sessions, when present, are renumbered
    the same way. The new id maps are fresh objects (not shared with the input).
    """
    frame = ix.frame
    if frame.height == 0:
        raise ValueError(f"{ix.source}: compact() got an empty interactions table")
    cols = []
    maps: dict[str, IdMap] = {}
    for col, idmap in (("user", ix.user_ids), ("item", ix.item_ids)):
        present = np.unique(frame[col].to_numpy())
        cols.append(pl.Series(col, np.searchsorted(present, frame[col].to_numpy())))
        maps[col] = IdMap([idmap.ids[j] for j in present], idmap.name)
    if ix.has_sessions:
        sess = frame["session"].to_numpy()
        cols.append(pl.Series("session", np.searchsorted(np.unique(sess), sess)))
    out = frame.with_columns(cols)
    return Interactions(out, maps["user"], maps["item"], ix.source)
