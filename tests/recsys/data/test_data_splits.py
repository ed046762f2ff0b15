"""Splits: disjoint parts, union equals input, determinism, and the documented counts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.recsys.data import (
    Interactions,
    Split,
    concat,
    leave_one_out,
    make_implicit,
    make_sessions,
    ratio_split,
    temporal_split,
)


@pytest.fixture(scope="module")
def implicit() -> Interactions:
    return make_implicit(n_users=120, n_items=200, n_interactions=2_400, random_state=3)


@pytest.fixture(scope="module")
def sessions() -> Interactions:
    return make_sessions(n_sessions=600, n_items=150, random_state=4)


def _with_row_ids(ix: Interactions) -> Interactions:
    """Tag rows with a unique id column so set algebra on rows is exact."""
    return ix.with_frame(ix.frame.with_row_index("rid").with_columns(pl.col("rid").cast(pl.Int64)))


def _rids(ix: Interactions | None) -> set[int]:
    return set() if ix is None else set(ix.frame["rid"].to_list())


def _assert_partition(split: Split, ix: Interactions) -> None:
    parts = [_rids(p) for p in split.parts().values()]
    assert sum(len(p) for p in parts) == len(set().union(*parts))  # disjoint
    assert set().union(*parts) == _rids(ix)  # union == input
    for part in split.parts().values():
        assert part.user_ids is ix.user_ids and part.item_ids is ix.item_ids
        rid = part.frame["rid"]
        assert (rid.diff().drop_nulls() > 0).all()  # input row order kept


# --- leave-one-out --------------------------------------------------------------------
@pytest.mark.parametrize("valid", [False, True], ids=["test-only", "with-valid"])
def test_leave_one_out_invariants(implicit: Interactions, valid: bool) -> None:
    ix = _with_row_ids(implicit)
    split = leave_one_out(ix, with_valid=valid)
    _assert_partition(split, ix)
    assert split.test.frame["user"].n_unique() == len(split.test) == ix.frame["user"].n_unique()
    # every test row is at or after every train row of its user
    last_train = split.train.frame.group_by("user").agg(pl.col("timestamp").max().alias("tmax"))
    joined = split.test.frame.join(last_train, on="user")
    assert (joined["timestamp"] >= joined["tmax"]).all()
    if valid:
        assert split.valid is not None and len(split.valid) == len(split.test)
        v = split.valid.frame.join(split.test.frame, on="user", suffix="_t")
        assert (v["timestamp"] <= v["timestamp_t"]).all()
    assert split.info["test_rows"] == len(split.test)
    assert split.info["train_rows"] + split.info["valid_rows"] + split.info["test_rows"] == len(ix)


def test_leave_one_out_tie_break_and_short_users() -> None:
    frame = pl.DataFrame(
        {
            "user": ["a", "a", "a", "b", "c", "c"],
            "item": ["9", "10", "2", "1", "1", "2"],
            "rating": [1.0] * 6,
            "timestamp": [5, 7, 7, 1, 3, 3],
        }
    )
    ix = Interactions.from_raw(frame)
    split = leave_one_out(ix)
    test = dict(
        zip(
            ix.user_ids.raws(split.test.frame["user"]),
            ix.item_ids.raws(split.test.frame["item"]),
            strict=True,
        )
    )
    # a: items 10 and 2 share the last timestamp -> highest item index (raw 10) is test
    assert test == {"a": "10", "c": "2"}
    assert split.info["users_train_only"] == 1  # b has a single interaction
    assert ix.user_ids.raws(split.train.frame["user"].unique().sort()) == ["a", "b", "c"]


def test_leave_one_out_with_valid_counts_users_with_two_rows() -> None:
    frame = pl.DataFrame(
        {
            "user": [1, 1, 2, 2, 2],
            "item": [1, 2, 1, 2, 3],
            "rating": [1.0] * 5,
            "timestamp": [1, 2, 1, 2, 3],
        }
    )
    split = leave_one_out(Interactions.from_raw(frame), with_valid=True)
    assert split.info["users_without_valid"] == 1
    assert (len(split.train), len(split.valid), len(split.test)) == (2, 1, 2)


# --- ratio ----------------------------------------------------------------------------
def test_ratio_split_invariants_and_seeding(implicit: Interactions) -> None:
    ix = _with_row_ids(implicit)
    a = ratio_split(ix, test_fraction=0.2, valid_fraction=0.1, random_state=7)
    _assert_partition(a, ix)
    b = ratio_split(ix, test_fraction=0.2, valid_fraction=0.1, random_state=7)
    c = ratio_split(ix, test_fraction=0.2, valid_fraction=0.1, random_state=8)
    assert _rids(a.test) == _rids(b.test) and _rids(a.valid) == _rids(b.valid)
    assert _rids(a.test) != _rids(c.test)
    # per-user counts: round-half-up of the fraction, train keeps at least one row
    n = ix.frame.group_by("user").len().rename({"len": "n"})
    t = a.test.frame.group_by("user").len().rename({"len": "t"})
    merged = n.join(t, on="user", how="left").fill_null(0)
    expected = ((merged["n"] * 0.2 + 0.5).floor()).cast(pl.Int64)
    assert (merged["t"] == expected.clip(upper_bound=merged["n"] - 1)).all()


def test_ratio_split_single_row_users_stay_in_train() -> None:
    frame = pl.DataFrame(
        {
            "user": [1, 2, 2, 2, 2, 2],
            "item": [1, 1, 2, 3, 4, 5],
            "rating": [1.0] * 6,
            "timestamp": [0] * 6,
        }
    )
    split = ratio_split(Interactions.from_raw(frame), test_fraction=0.5)
    assert split.test.frame["user"].to_list() == [1, 1, 1]  # dense id of raw user 2
    assert split.info["users_without_test"] == 1
    with pytest.raises(ValueError, match="test_fraction must be in"):
        ratio_split(Interactions.from_raw(frame), test_fraction=1.5)


# --- temporal -------------------------------------------------------------------------
def test_temporal_split_by_time(implicit: Interactions) -> None:
    ix = _with_row_ids(implicit)
    split = temporal_split(ix, test_fraction=0.25, valid_fraction=0.1, by="time")
    _assert_partition(split, ix)
    assert split.train.frame["timestamp"].max() <= split.valid.frame["timestamp"].min()
    assert split.valid.frame["timestamp"].max() <= split.test.frame["timestamp"].min()
    assert len(split.test) == round(0.25 * len(ix))
    assert len(split.valid) == round(0.1 * len(ix))


def test_temporal_split_by_session(sessions: Interactions) -> None:
    ix = _with_row_ids(sessions)
    split = temporal_split(ix, test_fraction=0.2, valid_fraction=0.1, by="session")
    info = split.info
    train, valid, test = split.train.frame, split.valid.frame, split.test.frame
    # disjoint sessions, ordered by start time
    starts = ix.frame.group_by("session").agg(pl.col("timestamp").min().alias("start"))
    s_train = starts.filter(pl.col("session").is_in(train["session"].unique().implode()))
    s_test = starts.filter(pl.col("session").is_in(test["session"].unique().implode()))
    assert s_train["start"].max() <= s_test["start"].min()
    assert not set(train["session"]) & set(test["session"])
    assert not set(valid["session"]) & set(test["session"])
    # filtering: no unseen items, no short sessions, removed rows counted exactly
    seen = set(train["item"])
    assert set(test["item"]) <= seen and set(valid["item"]) <= seen
    assert test.group_by("session").len()["len"].min() >= 2
    removed = sum(
        info[f"{p}_rows_{w}"] for p in ("test", "valid") for w in ("unseen_item", "too_short")
    )
    assert len(train) + len(valid) + len(test) + removed == len(ix)
    assert info["test_units"] == round(0.2 * ix.frame["session"].n_unique())
    # kept rows are exactly input rows
    kept = _rids(split.train) | _rids(split.valid) | _rids(split.test)
    assert kept <= _rids(ix) and len(kept) == len(train) + len(valid) + len(test)


def test_temporal_split_session_filter_counts_by_hand() -> None:
    frame = pl.DataFrame(
        {
            "session": [0, 0, 1, 1, 2, 2, 3, 3, 3],
            "item": [1, 2, 2, 3, 1, 9, 1, 2, 9],
            "timestamp": [0, 1, 10, 11, 20, 21, 30, 31, 32],
        }
    ).with_columns(pl.col("session").alias("user"), pl.lit(1.0).alias("rating"))
    ix = Interactions.from_raw(frame, session_col="session")
    split = temporal_split(ix, test_fraction=0.5, by="session")
    # test sessions 2, 3; item 9 unseen in train (2 rows); session 2 left with 1 row
    assert split.info["test_rows_unseen_item"] == 2
    assert split.info["test_sessions_too_short"] == 1
    assert split.info["test_sessions_kept"] == 1
    assert ix.item_ids.raws(split.test.frame["item"]) == ["1", "2"]


def test_temporal_split_needs_sessions_and_valid_fractions(implicit: Interactions) -> None:
    with pytest.raises(ValueError, match="needs a 'session' column"):
        temporal_split(implicit, by="session")
    with pytest.raises(ValueError, match="must be < 1"):
        temporal_split(implicit, test_fraction=0.6, valid_fraction=0.5, by="time")


def test_split_save_load_roundtrip(tmp_path: Path, sessions: Interactions) -> None:
    split = temporal_split(sessions, test_fraction=0.2, valid_fraction=0.1)
    back = Split.load(split.save(tmp_path / "split"))
    assert back.info == split.info
    for name, part in split.parts().items():
        assert back.parts()[name].frame.equals(part.frame)
    assert back.test.item_ids is back.train.item_ids
    whole = concat([back.train, back.valid, back.test])
    original = concat(list(split.parts().values()))
    assert whole.frame.equals(original.frame)


# --- properties on random tables ------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*also occurs in train")  # random tables repeat pairs
@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 5)),
        min_size=2,
        max_size=60,
    ),
    seed=st.integers(0, 2**16),
)
def test_splits_partition_random_tables(rows: list[tuple[int, int, int]], seed: int) -> None:
    u, i, t = zip(*rows, strict=True)
    ix = _with_row_ids(
        Interactions.from_raw(
            pl.DataFrame({"user": u, "item": i, "rating": [1.0] * len(u), "timestamp": t})
        )
    )
    for split in (leave_one_out(ix, with_valid=True), ratio_split(ix, 0.3, 0.2, random_state=seed)):
        _assert_partition(split, ix)
    loo = leave_one_out(ix)
    counts = ix.frame.group_by("user").len()
    assert len(loo.test) == int((counts["len"] >= 2).sum())
    # the held-out row is a latest row of its user
    latest = ix.frame.group_by("user").agg(pl.col("timestamp").max().alias("tmax"))
    joined = loo.test.frame.join(latest, on="user")
    assert (joined["timestamp"] == joined["tmax"]).all()


@pytest.mark.realdata
def test_real_diginetica_session_split(shared_data: Path) -> None:
    from gradtracer.recsys.data import load_sessions

    path = shared_data / "sessions" / "diginetica-sample" / "sample_train-item-views.csv"
    ix = load_sessions(path, "diginetica")
    split = temporal_split(ix, test_fraction=0.2)
    info = split.info
    assert info["units"] == 2_986 and info["test_units"] == 597
    removed = info["test_rows_unseen_item"] + info["test_rows_too_short"]
    test_rows_before = ix.frame.filter(
        pl.col("session").is_in(
            ix.frame.group_by("session")
            .agg(pl.col("timestamp").min().alias("s"))
            .sort(["s", "session"])
            .tail(597)["session"]
            .implode()
        )
    ).height
    assert len(split.test) + removed == test_rows_before
    assert len(split.train) == len(ix) - test_rows_before
