"""Session data preparation: short-session removal, temporal split, unseen-item filtering.

The protocol of GRU4Rec's evaluation: sessions with fewer than ``min_length`` events are
dropped, optionally items with fewer than ``min_item_support`` events too; sessions are
split by their *start* time (the latest ``test_fraction`` of sessions are the test set, so
no test session starts before a training session); test events of items never seen in
training are removed, and test sessions left with fewer than two events are dropped.
Every removal is counted in :attr:`SessionSplit.info`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from gradtracer.recsys.data.interactions import IdMap, Interactions
from gradtracer.recsys.data.splits import temporal_split

__all__ = ["SessionSplit", "drop_short_sessions", "split_sessions"]

logger = logging.getLogger(__name__)


@dataclass
class SessionSplit:
    """Train and test session data sharing one id map, with counts of what was removed.

    ``info`` keys: ``n_events``, ``n_sessions`` (input), ``short_sessions_dropped``,
    ``short_session_events_dropped``, ``rare_item_events_dropped``, ``train_sessions``,
    ``test_sessions``, ``catalog_items`` (items of the shared map: exactly the items seen
    in training), ``unseen_test_events_dropped``,
    ``test_sessions_too_short_after_filter``, ``train_events``, ``test_events``, plus the
    ``info`` of :func:`gradtracer.recsys.data.splits.temporal_split`.
    """

    train: Interactions
    test: Interactions
    info: dict[str, Any] = field(default_factory=dict)


def _session_lengths(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.group_by("session").agg(pl.len().alias("_len"))


def drop_short_sessions(ix: Interactions, min_length: int = 2) -> tuple[Interactions, int, int]:
    """Return ``(ix without sessions shorter than min_length, n_sessions, n_events dropped)``."""
    _require_sessions(ix)
    lengths = _session_lengths(ix.frame)
    short = lengths.filter(pl.col("_len") < min_length)
    kept = ix.frame.join(short.select("session"), on="session", how="anti", maintain_order="left")
    return ix.with_frame(kept), short.height, int(short["_len"].sum() or 0)


def _require_sessions(ix: Interactions) -> None:
    if not ix.has_sessions:
        raise ValueError(
            f"{ix.source}: interactions have no 'session' column (columns: {ix.frame.columns}); "
            "load them with load_sessions(path, fmt=...) or make_sessions(...)"
        )


def split_sessions(
    ix: Interactions,
    test_fraction: float = 0.2,
    *,
    min_length: int = 2,
    min_item_support: int = 1,
) -> SessionSplit:
    """Return the temporal :class:`SessionSplit` of session data ``ix``.

    Args:
        test_fraction: share of sessions (latest by start time) in the test set (default 0.2).
        min_length: sessions with fewer events are dropped first (default 2).
        min_item_support: events of items with fewer events are dropped before the
            split, then short sessions again (default 1 = keep all; GRU4Rec's
            preprocessing uses 5).

    Raises:
        ValueError: no session column, an empty train or test split, naming the source.
    """
    _require_sessions(ix)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    info: dict[str, Any] = {"n_events": ix.frame.height,
                            "n_sessions": ix.frame["session"].n_unique()}
    cur, n_short, n_short_ev = drop_short_sessions(ix, min_length)
    rare_events = 0
    if min_item_support > 1:
        support = cur.frame.group_by("item").agg(pl.len().alias("_n"))
        keep = support.filter(pl.col("_n") >= min_item_support).select("item")
        before = cur.frame.height
        cur = cur.with_frame(cur.frame.join(keep, on="item", how="semi", maintain_order="left"))
        rare_events = before - cur.frame.height
        cur, more, more_ev = drop_short_sessions(cur, min_length)
        n_short, n_short_ev = n_short + more, n_short_ev + more_ev
    info.update(short_sessions_dropped=n_short, short_session_events_dropped=n_short_ev,
                rare_item_events_dropped=rare_events)
    if cur.frame.height == 0:
        raise ValueError(
            f"{ix.source}: no session has {min_length} or more events; nothing to split"
        )
    split = temporal_split(cur, test_fraction=test_fraction, by="session")
    train, test = _training_catalog(split.train, split.test)
    info.update(split.info)
    info.update(
        catalog_items=train.n_items,
        train_sessions=train.frame["session"].n_unique(),
        test_sessions=test.frame["session"].n_unique(),
        unseen_test_events_dropped=split.info.get("test_rows_unseen_item", 0),
        test_sessions_too_short_after_filter=split.info.get("test_sessions_too_short", 0),
        train_events=train.frame.height,
        test_events=test.frame.height,
    )
    if train.frame.height == 0:
        raise ValueError(f"{ix.source}: the train split is empty ({info})")
    logger.info("session split of %s: %s", ix.source, info)
    return SessionSplit(train, test, info)


def _training_catalog(train: Interactions, test: Interactions) -> tuple[Interactions, Interactions]:
    """Re-index items to those present in ``train`` (test items are a subset after filtering).

    Models then rank exactly the items they could learn, as GRU4Rec's own item map does;
    items met only in dropped or test rows would otherwise compete with untrained scores.
    """
    present = np.unique(train.frame["item"].to_numpy())
    item_ids = IdMap([train.item_ids.ids[j] for j in present], train.item_ids.name)

    def remap(part: Interactions) -> Interactions:
        items = np.searchsorted(present, part.frame["item"].to_numpy())
        frame = part.frame.with_columns(pl.Series("item", items, dtype=pl.Int64))
        return Interactions(frame, part.user_ids, item_ids, part.source)

    return remap(train), remap(test)
