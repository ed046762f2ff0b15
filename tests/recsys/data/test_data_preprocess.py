"""Preprocessing: implicit conversion, k-core, de-duplication, compaction."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.recsys.data import (
    Interactions,
    compact,
    deduplicate,
    k_core,
    make_sessions,
    to_implicit,
)


def _ix(rows: list[tuple[int, int, float, int]]) -> Interactions:
    u, i, r, t = zip(*rows, strict=True)
    return Interactions.from_raw(pl.DataFrame({"user": u, "item": i, "rating": r, "timestamp": t}))


def _naive_k_core(pairs: list[tuple[int, int]], uk: int, ik: int) -> list[tuple[int, int]]:
    """Reference: drop rows of under-supported users/items one pass at a time, until stable."""
    rows = list(pairs)
    while True:
        users = Counter(u for u, _ in rows)
        items = Counter(i for _, i in rows)
        kept = [(u, i) for u, i in rows if users[u] >= uk and items[i] >= ik]
        if len(kept) == len(rows):
            return kept
        rows = kept


def test_to_implicit_keeps_high_ratings_as_ones() -> None:
    ix = _ix([(1, 1, 5.0, 1), (1, 2, 3.0, 2), (2, 1, 4.0, 3)])
    out = to_implicit(ix, threshold=4.0)
    assert out.frame["rating"].to_list() == [1.0, 1.0]
    assert out.item_ids is ix.item_ids  # id maps are shared, not rebuilt
    with pytest.raises(ValueError, match="removed every interaction"):
        to_implicit(ix, threshold=6.0)


def test_k_core_needs_more_than_one_round() -> None:
    # item 3 has 1 row; dropping it leaves user 3 with 1 row, which must go in a 2nd round
    rows = [(1, 1, 1, 0), (1, 2, 1, 0), (2, 1, 1, 0), (2, 2, 1, 0), (3, 3, 1, 0), (3, 1, 1, 0)]
    out = k_core(_ix(rows), k=2)
    got = sorted(
        zip(out.user_ids.raws(out.frame["user"]), out.item_ids.raws(out.frame["item"]), strict=True)
    )
    assert got == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert out.n_users == 3  # id maps kept; compact() drops absent ids


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=80),
    uk=st.integers(1, 4),
    ik=st.integers(1, 4),
)
def test_k_core_matches_naive_reference(pairs: list[tuple[int, int]], uk: int, ik: int) -> None:
    expected = _naive_k_core(pairs, uk, ik)
    ix = _ix([(u, i, 1.0, 0) for u, i in pairs])
    if not expected:
        with pytest.raises(ValueError):
            k_core(ix, user_k=uk, item_k=ik)
        return
    out = k_core(ix, user_k=uk, item_k=ik)
    counts_u = out.frame.group_by("user").len()["len"]
    counts_i = out.frame.group_by("item").len()["len"]
    assert counts_u.min() >= uk and counts_i.min() >= ik
    got = sorted(
        zip(out.user_ids.raws(out.frame["user"]), out.item_ids.raws(out.frame["item"]), strict=True)
    )
    assert got == sorted((str(u), str(i)) for u, i in expected)


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("last", [(1, 1, 2.0, 30), (2, 1, 5.0, 5)]),
        ("first", [(1, 1, 4.0, 10), (2, 1, 5.0, 5)]),
        ("max", [(1, 1, 4.0, 10), (2, 1, 5.0, 5)]),
    ],
)
def test_deduplicate_keep_modes(keep: str, expected: list[tuple]) -> None:
    ix = _ix([(1, 1, 4.0, 10), (2, 1, 5.0, 5), (1, 1, 2.0, 30), (1, 1, 3.0, 20)])
    out = deduplicate(ix, keep=keep)
    got = sorted(
        (int(ix.user_ids.raw(u)), int(ix.item_ids.raw(i)), float(r), int(t))
        for u, i, r, t in out.frame.iter_rows()
    )
    assert got == sorted(expected)
    with pytest.raises(ValueError, match="keep must be one of"):
        deduplicate(ix, keep="random")


def test_deduplicate_ties_on_timestamp_use_row_order() -> None:
    ix = _ix([(1, 1, 1.0, 10), (1, 1, 2.0, 10)])
    assert deduplicate(ix, "last").frame["rating"].to_list() == [2.0]
    assert deduplicate(ix, "first").frame["rating"].to_list() == [1.0]


def test_compact_reindexes_to_present_ids() -> None:
    ix = _ix([(5, 50, 1.0, 1), (7, 70, 1.0, 2), (9, 90, 1.0, 3)])
    dropped = ix.with_frame(ix.frame.filter(pl.col("user") != 1))  # raw user 7 gone
    out = compact(dropped)
    assert out.user_ids.ids == ["5", "9"] and out.item_ids.ids == ["50", "90"]
    assert out.frame["user"].to_list() == [0, 1] and out.frame["item"].to_list() == [0, 1]
    # raw ids of every row are unchanged
    assert out.user_ids.raws(out.frame["user"]) == dropped.user_ids.raws(dropped.frame["user"])


def test_compact_renumbers_sessions() -> None:
    ix = make_sessions(n_sessions=20, n_items=30, random_state=1)
    sub = ix.with_frame(ix.frame.filter(pl.col("session") % 2 == 1))
    out = compact(sub)
    assert np.array_equal(np.unique(out.frame["session"].to_numpy()), np.arange(10))
