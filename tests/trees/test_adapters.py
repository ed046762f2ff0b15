"""Per-round parsing checked against each library's own whole-model dump."""

from __future__ import annotations

import numpy as np
import pytest

from gradtracer.trees import _catboost, _lightgbm, _xgboost

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
catboost = pytest.importorskip("catboost")


def test_xgboost_round_matches_trees_to_dataframe(regression_data) -> None:
    x, y, _, _ = regression_data
    booster = xgb.train({"max_depth": 4, "eta": 0.3, "nthread": 1}, xgb.DMatrix(x, label=y), 5)
    frame = booster.trees_to_dataframe()
    for r in range(5):
        (tree,) = _xgboost.read_xgboost_round(booster, r)
        rows = frame[frame["Tree"] == r]
        leaves = rows[rows["Feature"] == "Leaf"]
        splits = rows[rows["Feature"] != "Leaf"]
        np.testing.assert_allclose(np.sort(tree.leaf_values), np.sort(leaves["Gain"]), rtol=1e-5)
        feats = splits["Feature"].str.slice(1).astype(int).to_numpy()
        assert sorted(tree.split_features.tolist()) == sorted(feats.tolist())
        np.testing.assert_allclose(np.sort(tree.split_gains), np.sort(splits["Gain"]), rtol=1e-5)
        assert tree.depth <= 4


def test_xgboost_multiclass_round_has_one_tree_per_class() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
        xgb.DMatrix(x, label=y),
        3,
    )
    assert len(_xgboost.read_xgboost_round(booster, 2)) == 3


def test_lightgbm_round_matches_trees_to_dataframe(regression_data) -> None:
    x, y, _, _ = regression_data
    booster = lgb.train({"num_leaves": 7, "verbose": -1, "num_threads": 1}, lgb.Dataset(x, y), 5)
    frame = booster.trees_to_dataframe()
    for r in range(5):
        (tree,) = _lightgbm.read_lightgbm_round(booster, r)
        rows = frame[frame["tree_index"] == r]
        leaves = rows[rows["split_feature"].isna()]
        splits = rows[rows["split_feature"].notna()]
        np.testing.assert_allclose(np.sort(tree.leaf_values), np.sort(leaves["value"]), rtol=1e-6)
        names = booster.feature_name()
        feats = sorted(names.index(f) for f in splits["split_feature"])
        assert sorted(tree.split_features.tolist()) == feats
        np.testing.assert_allclose(
            np.sort(tree.split_gains), np.sort(splits["split_gain"]), rtol=1e-5
        )
        assert tree.depth == int(rows["node_depth"].max()) - 1


def test_catboost_trees_match_leaf_dump(regression_data) -> None:
    x, y, _, _ = regression_data
    model = catboost.CatBoostRegressor(
        iterations=4, depth=3, verbose=0, thread_count=1, allow_writing_files=False
    )
    model.fit(x, y)
    trees = _catboost.read_catboost_trees(model)
    assert len(trees) == 4
    for i, tree in enumerate(trees):
        assert tree.n_leaves == 8 and tree.depth == 3 and tree.split_gains is None
        printed = [float(v.split("=")[1]) for v in model._get_tree_leaf_values(i)]
        np.testing.assert_allclose(tree.leaf_values, printed, atol=1e-3)  # printed with 3 dp
        assert set(tree.split_features.tolist()) <= set(range(8))
        assert tree.split_features.size == 3
    assert len(_catboost.read_catboost_trees(model, start=3)) == 1


def test_catboost_unfitted_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        _catboost.read_catboost_trees(catboost.CatBoostRegressor())


def test_lightgbm_multiclass_round_has_one_tree_per_class() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    booster = lgb.train(
        {
            "objective": "multiclass",
            "num_class": 3,
            "num_leaves": 4,
            "verbose": -1,
            "num_threads": 1,
        },
        lgb.Dataset(x, y),
        3,
    )
    trees = _lightgbm.read_lightgbm_round(booster, 2)
    assert len(trees) == 3 and all(t.n_leaves == 4 for t in trees)
