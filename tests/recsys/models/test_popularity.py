"""Popularity baseline: counts, exclusion, ties under evaluation, save/load."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from gradtracer.recsys.data import Interactions
from gradtracer.recsys.metrics import evaluate_topk
from gradtracer.recsys.models import PopularityRecommender, Recommender


@pytest.fixture()
def train() -> Interactions:
    # item c: 3 rows, item b: 2 rows, item a: 1 row, item d: 0 rows (only in the id map)
    frame = pl.DataFrame(
        {
            "user": ["u1", "u2", "u3", "u1", "u2", "u3"],
            "item": ["c", "c", "c", "b", "b", "a"],
            "rating": 1.0,
            "timestamp": 0,
        }
    )
    ix = Interactions.from_raw(frame)
    from gradtracer.recsys.data import IdMap

    items = IdMap(["a", "b", "c", "d"], "item")
    remap = ix.frame.with_columns(
        pl.col("item").map_elements(
            lambda i: items.index(ix.item_ids.raw(i)), return_dtype=pl.Int64
        )
    )
    return Interactions(remap, ix.user_ids, items)


def test_counts_and_recommendations(train):
    model = PopularityRecommender().fit(train)
    assert isinstance(model, Recommender)
    assert model.counts.tolist() == [1.0, 2.0, 3.0, 0.0]
    assert model.recommend([0], k=2).tolist() == [[2, 1]]
    seen = train.user_items()
    # u3 (index 2) has seen c and a: next best are b then d
    assert model.recommend([2], k=2, exclude=seen).tolist() == [[1, 3]]
    assert model.score([0, 1]).shape == (2, 4)


def test_evaluation_with_ties_and_exclusion(train):
    model = PopularityRecommender().fit(train)
    # held-out item d has count 0; alone at the bottom
    test = sp.csr_matrix(np.array([[0, 0, 0, 1]] * 3, dtype=np.float32))
    res = evaluate_topk(model, test, exclude=train.user_items(), ks=(1,))
    # every user has seen two items; d (count 0) comes right after the one left
    assert res.per_user["hr@1"].tolist() == [0.0, 0.0, 0.0]
    res2 = evaluate_topk(model, test, exclude=train.user_items(), ks=(2,))
    assert res2.per_user["hr@2"].tolist() == [1.0, 1.0, 1.0]


def test_save_load(tmp_path, train):
    model = PopularityRecommender().fit(train)
    model.save(tmp_path)
    loaded = PopularityRecommender.load(tmp_path)
    assert loaded.counts.tolist() == model.counts.tolist() and loaded.n_users == 3
    with pytest.raises(FileNotFoundError, match="model.json"):
        PopularityRecommender.load(tmp_path / "missing")
    from gradtracer.recsys.models import ImplicitMF

    with pytest.raises(ValueError, match="'popularity' model, not 'implicit_mf'"):
        ImplicitMF.load(tmp_path)
