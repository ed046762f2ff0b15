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

__all__ = ["SessionSplit", "drop_short_sessions", "split_pair", "split_sessions"]

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
    info: dict[str, Any] = {
        "n_events": ix.frame.height,
        "n_sessions": ix.frame["session"].n_unique(),
    }
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
    info.update(
        short_sessions_dropped=n_short,
        short_session_events_dropped=n_short_ev,
        rare_item_events_dropped=rare_events,
    )
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


def _drop_rare_items(ix: Interactions, min_item_support: int) -> tuple[Interactions, int]:
    if min_item_support <= 1:
        return ix, 0
    support = ix.frame.group_by("item").agg(pl.len().alias("_n"))
    keep = support.filter(pl.col("_n") >= min_item_support).select("item")
    kept = ix.frame.join(keep, on="item", how="semi", maintain_order="left")
    return ix.with_frame(kept), ix.frame.height - kept.height


def split_pair(
    train: Interactions,
    test: Interactions,
    *,
    min_length: int = 2,
    min_item_support: int = 1,
) -> SessionSplit:
    """Return the :class:`SessionSplit` of an existing train/test pair (no re-splitting).

    The same protocol as :func:`split_sessions` without the time split: sessions shorter
    than ``min_length`` are dropped from both parts (``min_item_support`` applies to the
    training part, counted there), test events of items not in the (filtered) training
    part are removed, and test sessions left too short are dropped. Both parts get one id
    map: items are those of the training part, users (sessions) those of both files.
    ``info["test_sessions_starting_before_train_end"]`` counts test sessions that start
    before the last training event (0 for a clean temporal hold-out).

    Raises:
        ValueError: no session column, or an empty part after filtering (naming the file).
    """
    _require_sessions(train)
    _require_sessions(test)
    info: dict[str, Any] = {
        "n_events": train.frame.height + test.frame.height,
        "n_sessions": train.frame["session"].n_unique() + test.frame["session"].n_unique(),
        "train_source": train.source,
        "test_source": test.source,
        "pre_split": True,
    }
    cur, n_short, n_short_ev = drop_short_sessions(train, min_length)
    cur, rare_events = _drop_rare_items(cur, min_item_support)
    if rare_events:
        cur, more, more_ev = drop_short_sessions(cur, min_length)
        n_short, n_short_ev = n_short + more, n_short_ev + more_ev
    if cur.frame.height == 0:
        raise ValueError(
            f"{train.source}: no training session has {min_length} or more events; nothing to train on"
        )
    held, t_short, t_short_ev = drop_short_sessions(test, min_length)
    present = np.unique(cur.frame["item"].to_numpy())
    item_ids = IdMap([cur.item_ids.ids[j] for j in present], cur.item_ids.name)
    # test items by raw id into the training catalog; -1 = unseen in training
    lookup = {raw: i for i, raw in enumerate(item_ids.ids)}
    test_raw = held.item_ids.ids
    code = np.array([lookup.get(test_raw[j], -1) for j in range(len(test_raw))], dtype=np.int64)
    test_items = code[held.frame["item"].to_numpy()] if held.frame.height else np.zeros(0, np.int64)
    seen = test_items >= 0
    # one user map: training users, then test users not among them
    train_users = cur.user_ids.ids
    user_lookup = {raw: i for i, raw in enumerate(train_users)}
    extra = [raw for raw in held.user_ids.ids if raw not in user_lookup]
    for raw in extra:
        user_lookup[raw] = len(user_lookup)
    user_ids = IdMap(list(train_users) + extra, cur.user_ids.name)
    test_user_code = np.array([user_lookup[raw] for raw in held.user_ids.ids], dtype=np.int64)
    offset = int(np.max(cur.frame["session"].to_numpy())) + 1  # keep session ids of the parts apart
    test_frame = held.frame.with_columns(
        pl.Series("item", test_items, dtype=pl.Int64),
        pl.Series(
            "user",
            test_user_code[held.frame["user"].to_numpy()]
            if held.frame.height
            else np.zeros(0, np.int64),
            dtype=pl.Int64,
        ),
        (pl.col("session") + offset).alias("session"),
    ).filter(pl.Series(seen))
    lengths = _session_lengths(test_frame)
    too_short = lengths.filter(pl.col("_len") < min_length)
    test_frame = test_frame.join(
        too_short.select("session"), on="session", how="anti", maintain_order="left"
    )
    train_items = np.searchsorted(present, cur.frame["item"].to_numpy())
    train_frame = cur.frame.with_columns(pl.Series("item", train_items, dtype=pl.Int64))
    train_out = Interactions(train_frame, user_ids, item_ids, train.source)
    test_out = Interactions(test_frame, user_ids, item_ids, test.source)
    if test_out.frame.height == 0:
        raise ValueError(
            f"{test.source}: no test session keeps {min_length} or more events of items seen "
            f"in {train.source}; nothing to evaluate"
        )
    train_end = int(np.max(train_out.frame["timestamp"].to_numpy()))
    starts = test_out.frame.group_by("session").agg(pl.col("timestamp").min().alias("_t"))
    info.update(
        short_sessions_dropped=n_short + t_short,
        short_session_events_dropped=n_short_ev + t_short_ev,
        rare_item_events_dropped=rare_events,
        catalog_items=len(item_ids),
        train_sessions=train_out.frame["session"].n_unique(),
        test_sessions=test_out.frame["session"].n_unique(),
        unseen_test_events_dropped=int((~seen).sum()),
        test_sessions_too_short_after_filter=(
            held.frame["session"].n_unique() - test_out.frame["session"].n_unique()
        ),
        train_events=train_out.frame.height,
        test_events=test_out.frame.height,
        test_sessions_starting_before_train_end=int((starts["_t"] < train_end).sum()),
    )
    logger.info("session split of %s + %s: %s", train.source, test.source, info)
    return SessionSplit(train_out, test_out, info)


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
