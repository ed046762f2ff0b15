"""Session split: short sessions dropped and counted, split by start, unseen items filtered."""

from __future__ import annotations

import polars as pl
import pytest

from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.sessions import split_sessions


def _ix(rows: list[tuple[int, str, int]]) -> Interactions:
    frame = pl.DataFrame(rows, schema=["session", "item", "timestamp"], orient="row")
    return Interactions.from_raw(
        frame.with_columns(pl.col("session").alias("user")),
        rating_col=None,
        timestamp_col="timestamp",
        session_col="session",
        source="clicks.tsv",
    )


def test_split_counts_what_it_removes_and_ranks_only_training_items():
    rows = [
        (1, "a", 0),
        (1, "b", 1),
        (1, "c", 2),  # train
        (2, "b", 10),
        (2, "c", 11),  # train
        (3, "z", 15),  # single event: dropped
        (4, "a", 20),
        (4, "b", 21),  # train
        (5, "c", 30),
        (5, "new", 31),
        (5, "a", 32),  # test; "new" unseen
        (6, "new", 40),
        (6, "b", 41),  # test; left with one event -> dropped
    ]
    split = split_sessions(_ix(rows), test_fraction=0.4)
    info = split.info
    assert info["short_sessions_dropped"] == 1 and info["short_session_events_dropped"] == 1
    assert info["unseen_test_events_dropped"] == 2
    assert info["test_sessions_too_short_after_filter"] == 1
    assert info["train_sessions"] == 3 and info["test_sessions"] == 1
    # the catalog is exactly the training items, shared by both parts
    assert split.train.item_ids is split.test.item_ids
    assert (
        sorted(split.train.item_ids.ids)
        == ["a", "b", "c"]
        == sorted(split.train.item_ids.raws(split.train.frame["item"].unique()))
    )
    assert split.test.item_ids.raws(split.test.frame["item"]) == ["c", "a"]


def test_no_test_session_starts_before_a_training_session(synthetic_split):
    train, test = synthetic_split.train.frame, synthetic_split.test.frame
    last_train_start = train.group_by("session").agg(pl.col("timestamp").min())["timestamp"].max()
    first_test_start = test.group_by("session").agg(pl.col("timestamp").min())["timestamp"].min()
    assert last_train_start <= first_test_start
    assert set(train["session"]).isdisjoint(set(test["session"]))


def test_min_item_support_drops_rare_items_before_splitting():
    rows = [(s, "hot" if j % 2 == 0 else "warm", 10 * s + j) for s in range(10) for j in range(3)]
    rows += [(3, "rare", 35)]
    split = split_sessions(_ix(rows), test_fraction=0.2, min_item_support=2)
    assert split.info["rare_item_events_dropped"] == 1
    assert "rare" not in split.train.item_ids


def test_errors_name_the_source():
    with pytest.raises(ValueError, match=r"clicks\.tsv.*2 or more events"):
        split_sessions(_ix([(1, "a", 0), (2, "b", 1)]))
    no_sessions = Interactions.from_raw(
        pl.DataFrame({"user": [1, 1], "item": [1, 2]}),
        rating_col=None,
        timestamp_col=None,
        source="ratings.csv",
    )
    with pytest.raises(ValueError, match=r"ratings\.csv.*'session' column"):
        split_sessions(no_sessions)
    with pytest.raises(ValueError, match="test_fraction"):
        split_sessions(_ix([(1, "a", 0), (1, "b", 1)]), test_fraction=1.5)
    # every test item unseen in training: the test split is empty after filtering
    with pytest.raises(ValueError, match=r"clicks\.tsv"):
        split_sessions(_ix([(1, "a", 0), (1, "b", 1), (2, "x", 5), (2, "y", 6)]), test_fraction=0.5)
