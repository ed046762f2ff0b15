"""Fixtures of the model-based CF tests: a planted two-group rating table and its split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from gradtracer.recsys.data.interactions import Interactions


@dataclass
class PlantedSplit:
    """Two taste groups: group-0 users rate group-0 items 5 and group-1 items 1 (and vice versa)."""

    full: Interactions
    train: Interactions
    valid: Interactions
    test: Interactions
    user_group: dict[str, int]
    item_group: dict[str, int]


def make_planted(
    n_users: int = 60, n_items: int = 60, per_user: int = 16, seed: int = 7
) -> PlantedSplit:
    rng = np.random.default_rng(seed)
    user_group = {f"u{u:03d}": u % 2 for u in range(n_users)}
    item_group = {f"i{i:03d}": i % 2 for i in range(n_items)}
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        for t, i in enumerate(items):
            rating = 5.0 if u % 2 == i % 2 else 1.0
            rows.append((f"u{u:03d}", f"i{i:03d}", rating, int(t)))
    df = pl.DataFrame(rows, schema=["user", "item", "rating", "timestamp"], orient="row")
    full = Interactions.from_raw(df, source="planted")
    f = full.frame
    train = full.with_frame(f.filter(pl.col("timestamp") < per_user - 4))
    valid = full.with_frame(f.filter(pl.col("timestamp").is_between(per_user - 4, per_user - 3)))
    test = full.with_frame(f.filter(pl.col("timestamp") >= per_user - 2))
    return PlantedSplit(full, train, valid, test, user_group, item_group)


@pytest.fixture(scope="module")
def planted() -> PlantedSplit:
    return make_planted()


@pytest.fixture(scope="module")
def planted_factory():
    """The generator itself, for tests that need a second, differently shaped table."""
    return make_planted
