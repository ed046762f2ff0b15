"""CF pipeline: matrix build, recommend, artifacts round trip, evaluation definitions."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from gradtracer.recsys.cf import (
    CFConfig,
    CFModel,
    Recommendations,
    build_matrix,
    evaluate,
    train,
    tune_n_factors,
)
from gradtracer.recsys.data.interactions import Interactions


def test_build_matrix_keeps_latest_rating_and_map_shape() -> None:
    df = pl.DataFrame(
        {
            "user": ["a", "a", "b", "c"],
            "item": ["x", "x", "y", "z"],
            "rating": [1.0, 4.0, 3.0, 2.0],
            "timestamp": [20, 10, 5, 5],
        }
    )
    ix = Interactions.from_raw(df)
    sub = ix.with_frame(ix.frame.filter(pl.col("user") < 2))  # user "c" has no rows
    m = build_matrix(sub)
    assert m.shape == (3, 3)  # follows the id maps, not the rows present
    assert m[ix.user_ids.index("a"), ix.item_ids.index("x")] == 1.0  # timestamp 20 wins
    assert m.nnz == 2 and m[ix.user_ids.index("c")].nnz == 0


def test_empty_split_error_names_source(planted) -> None:
    empty = planted.full.with_frame(planted.full.frame.head(0), source="data/ratings.csv")
    with pytest.raises(ValueError, match=r"data/ratings.csv: the train split is empty .*'user'"):
        train(empty)
    model = train(planted.train, CFConfig(n_factors=4))
    with pytest.raises(ValueError, match=r"data/ratings.csv: the test split is empty"):
        evaluate(model, empty)
    with pytest.raises(ValueError, match=r"data/ratings.csv: the valid split is empty"):
        tune_n_factors(planted.train, empty, grid=(2,))
    with pytest.raises(TypeError, match="must be an Interactions, got DataFrame"):
        train(planted.train.frame)  # type: ignore[arg-type]


def test_config_rejects_unknown_solver_and_fields() -> None:
    with pytest.raises(ValueError, match="solver must be one of"):
        CFConfig(solver="nmf")
    with pytest.raises(ValueError, match=r"unknown CFConfig field\(s\) \['factors'\]"):
        CFConfig.from_dict({"factors": 3})


@pytest.mark.parametrize("solver", ["sklearn", "scipy", "als"])
def test_recommend_excludes_seen_items_and_sorts(planted, solver: str) -> None:
    model = train(planted.train, CFConfig(n_factors=4, solver=solver))
    train_m = build_matrix(planted.train)
    for raw in planted.train.user_ids.ids[:20]:
        u = planted.train.user_ids.index(raw)
        recs = model.raw().recommend(raw, k=10)
        assert isinstance(recs, Recommendations) and len(recs) == 10
        seen = set(planted.train.item_ids.raws(train_m[u].indices))
        assert not seen & set(recs.item_ids)
        assert np.all(np.diff(recs.scores) <= 0)
    # asking for more than the unseen candidates returns just those
    raw = planted.train.user_ids.ids[0]
    n_seen = train_m[0].nnz
    recs = model.raw().recommend(raw, k=10_000)
    assert len(recs) == planted.train.n_items - n_seen
    assert len(model.raw().recommend(raw, k=5, exclude_seen=False)) == 5
    frame = recs.to_polars()
    assert frame.columns == ["item_id", "score"] and frame.height == len(recs)


def test_recommend_follows_planted_taste(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=2, solver="scipy"))
    for raw, group in list(planted.user_group.items())[:20]:
        recs = model.raw().recommend(raw, k=5)
        assert all(planted.item_group[i] == group for i in recs.item_ids), raw


def test_unknown_user_is_a_clear_error(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=4))
    with pytest.raises(ValueError, match=r"unknown user id 'nobody'.*training users of planted"):
        model.raw().recommend("nobody")
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        model.raw().recommend(planted.train.user_ids.ids[0], k=0)


def test_old_raw_id_recommend_call_still_works_with_a_warning(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=4))
    raw = planted.train.user_ids.ids[2]
    with pytest.warns(DeprecationWarning, match=r"use CFModel.raw\(\).recommend"):
        old = model.recommend(raw, n=6, exclude_seen=True)
    new = model.raw().recommend(raw, k=6)
    assert old.item_ids == new.item_ids
    # the dense form is the shared interface: indices of the same items, best first
    u = planted.train.user_ids.index(raw)
    dense = model.recommend([u], k=6, exclude=model.train_matrix)
    assert model.item_ids.raws(dense[0]) == list(new.item_ids)


@pytest.mark.parametrize("solver", ["sklearn", "als"])
def test_artifacts_round_trip(planted, tmp_path, solver: str) -> None:
    model = train(planted.train, CFConfig(n_factors=3, solver=solver, random_state=5))
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["arrays.npz", "model.json"]
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert (meta["kind"], meta["format_version"]) == ("cf", 2)
    loaded = CFModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.factors.user_factors, model.factors.user_factors)
    np.testing.assert_array_equal(loaded.factors.item_factors, model.factors.item_factors)
    np.testing.assert_array_equal(loaded.factors.user_bias, model.factors.user_bias)
    assert (loaded.train_matrix != model.train_matrix).nnz == 0
    assert loaded.user_ids.ids == model.user_ids.ids and loaded.item_ids.ids == model.item_ids.ids
    assert loaded.config == model.config and loaded.rating_scale == model.rating_scale
    raw = planted.train.user_ids.ids[3]
    a, b = model.raw().recommend(raw, 7), loaded.raw().recommend(raw, 7)
    assert a.item_ids == b.item_ids
    np.testing.assert_array_equal(a.scores, b.scores)


def _save_five_file_layout(model: CFModel, d) -> None:
    """The layout CFModel.save wrote before model.json + arrays.npz (format version 1)."""
    import scipy.sparse as sp

    d.mkdir(parents=True)
    f = model.factors
    np.savez(
        d / "factors.npz",
        user_factors=f.user_factors,
        item_factors=f.item_factors,
        user_bias=f.user_bias,
    )
    sp.save_npz(d / "train_matrix.npz", model.train_matrix, compressed=True)
    (d / "user_ids.json").write_text(json.dumps({"name": "user", "ids": model.user_ids.ids}))
    (d / "item_ids.json").write_text(json.dumps({"name": "item", "ids": model.item_ids.ids}))
    meta = {
        "format": "gradtracer.cf",
        "version": 1,
        "config": model.config.to_dict(),
        "n_factors": model.n_factors,
        "rating_scale": list(model.rating_scale),
        "source": model.source,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "nnz": int(model.train_matrix.nnz),
        "fit_seconds": model.fit_seconds,
    }
    (d / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def test_older_five_file_layout_still_loads(planted, tmp_path) -> None:
    from gradtracer.recsys.models import load_model

    model = train(planted.train, CFConfig(n_factors=3, solver="scipy"))
    _save_five_file_layout(model, tmp_path / "old")
    for loaded in (CFModel.load(tmp_path / "old"), load_model(tmp_path / "old")):
        assert isinstance(loaded, CFModel)
        np.testing.assert_array_equal(loaded.score([0, 7]), model.score([0, 7]))
        assert (loaded.train_matrix != model.train_matrix).nnz == 0
        assert loaded.user_ids.ids == model.user_ids.ids and loaded.config == model.config


def test_load_rejects_missing_or_foreign_artifacts(planted, tmp_path) -> None:
    from gradtracer.recsys.models import ArtifactError, PopularityRecommender

    model = train(planted.train, CFConfig(n_factors=3))
    _save_five_file_layout(model, tmp_path / "m")
    d = tmp_path / "m"
    (d / "factors.npz").unlink()
    with pytest.raises(FileNotFoundError, match="factors.npz: missing"):
        CFModel.load(d)
    _save_five_file_layout(model, tmp_path / "m2")
    d = tmp_path / "m2"
    meta = json.loads((d / "config.json").read_text())
    meta["format"] = "something.else"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="config.json: format 'something.else'"):
        CFModel.load(d)
    meta.update(format="gradtracer.cf", version=2)
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="config.json: artifact version 2 is not supported"):
        CFModel.load(d)
    d = model.save(tmp_path / "m3")
    with pytest.raises(ArtifactError, match=r"model.json: holds a 'cf' model, not 'popularity'"):
        PopularityRecommender.load(d)
    meta = json.loads((d / "model.json").read_text())
    meta["format_version"] = 3
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cf format_version 3 is newer than this release"):
        CFModel.load(d)


def test_rating_metrics_match_definition(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=3, solver="scipy"))
    result = evaluate(model, planted.test, split="test")
    f = planted.test.frame
    lo, hi = model.rating_scale
    errors = []
    for u, i, r in zip(f["user"], f["item"], f["rating"], strict=True):
        pred = (
            model.factors.user_bias[u]
            + model.factors.user_factors[u] @ model.factors.item_factors[i]
        )
        errors.append(min(max(pred, lo), hi) - r)
    errors = np.asarray(errors)
    assert result.rmse == pytest.approx(float(np.sqrt(np.mean(errors**2))), rel=1e-5)
    assert result.accuracy == pytest.approx(float(np.mean(np.abs(errors) <= 0.5)))
    assert result.n_ratings == f.height
    for key in ("recall@10", "ndcg@20", "map@50"):
        assert 0.0 <= result.mean[key] <= 1.0
        assert result.per_user[key].shape == result.users.shape
    assert json.loads(json.dumps(result.to_dict()))["split"] == "test"


def test_planted_structure_gives_high_ranking_scores(planted) -> None:
    # ranking targets: the liked (rating 5, own-group) held-out items
    liked = planted.test.with_frame(planted.test.frame.filter(pl.col("rating") == 5.0))
    good = train(planted.train, CFConfig(n_factors=2, solver="scipy"))
    good_eval = evaluate(good, liked)
    # the same model with item factors shuffled across items has no taste signal
    shuffled = train(planted.train, CFConfig(n_factors=2, solver="scipy"))
    perm = np.random.default_rng(0).permutation(shuffled.factors.item_factors.shape[0])
    shuffled.factors.item_factors = shuffled.factors.item_factors[perm]
    bad_eval = evaluate(shuffled, liked)
    assert good_eval.mean["recall@20"] > bad_eval.mean["recall@20"] + 0.2
    # rating error on every held-out row: the taste signal lowers it
    assert evaluate(good, planted.test).rmse < evaluate(shuffled, planted.test).rmse


def test_cold_rows_are_dropped_and_counted(planted) -> None:
    f = planted.full.frame
    cold_user = planted.full.user_ids.ids[0]
    cold_item = planted.full.item_ids.ids[0]
    u0, i0 = planted.full.user_ids.index(cold_user), planted.full.item_ids.index(cold_item)
    tr = planted.full.with_frame(
        f.filter((pl.col("timestamp") < 12) & (pl.col("user") != u0) & (pl.col("item") != i0))
    )
    te = planted.full.with_frame(f.filter(pl.col("timestamp") >= 12))
    model = train(tr, CFConfig(n_factors=3))
    result = evaluate(model, te)
    frame = te.frame
    assert result.info["cold_user_rows"] == int((frame["user"] == u0).sum())
    assert result.info["cold_item_rows"] == int(
        ((frame["item"] == i0) & (frame["user"] != u0)).sum()
    )
    assert (
        result.n_ratings
        == frame.height - result.info["cold_user_rows"] - result.info["cold_item_rows"]
    )
    assert u0 not in set(result.users.tolist())


def test_exclude_masks_extra_rows_and_seen_targets(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=3))
    # evaluating on the training rows: every target is already seen, nothing is left to rank
    with pytest.raises(ValueError, match="no held-out"):
        evaluate(model, planted.train)
    plain = evaluate(model, planted.test)
    masked = evaluate(model, planted.test, exclude=planted.valid)
    assert masked.info["seen_target_pairs"] == plain.info["seen_target_pairs"] == 0
    # masking the validation items frees top-list slots, so recall@50 cannot drop
    assert masked.mean["recall@50"] >= plain.mean["recall@50"] - 1e-12


def test_als_has_no_rating_metrics(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=3, solver="als"))
    result = evaluate(model, planted.test)
    assert np.isnan(result.rmse) and np.isnan(result.accuracy)
    assert result.to_dict()["rmse"] is None


def test_heldout_from_other_interactions_is_rejected(planted, planted_factory) -> None:
    other = planted_factory(n_users=10, n_items=12, per_user=6, seed=1)
    model = train(planted.train, CFConfig(n_factors=3))
    with pytest.raises(ValueError, match="same Interactions"):
        evaluate(model, other.test)


def test_cutoffs_above_catalogue_are_dropped_with_warning(planted) -> None:
    from gradtracer.errors import GradTracerWarning

    model = train(planted.train, CFConfig(n_factors=3))
    with pytest.warns(GradTracerWarning, match=r"cutoffs \[100\] exceed the 60 items"):
        result = evaluate(model, planted.test, ks=(10, 100))
    assert set(result.mean) == {"recall@10", "ndcg@10", "map@10"}


def test_score_matrix_agrees_with_pairwise_predict_and_recommend(planted) -> None:
    model = train(planted.train, CFConfig(n_factors=3))
    scores = model.score([0, 5])
    assert scores.shape == (2, planted.train.n_items) and scores.dtype == np.float32
    items = np.arange(planted.train.n_items)
    np.testing.assert_allclose(
        scores[1], model.predict(np.full(items.size, 5), items, clip=False), rtol=1e-5
    )
    recs = model.raw().recommend(model.user_ids.raw(5), k=3)
    np.testing.assert_allclose(
        recs.scores, scores[1][model.item_ids.indices(recs.item_ids)], rtol=1e-6
    )
    with pytest.raises(ValueError, match=r"user indices must be in \[0, 60\)"):
        model.score([60])


def test_user_who_has_seen_everything_gets_an_empty_list() -> None:
    df = pl.DataFrame(
        {
            "user": ["a", "a", "a", "b", "c"],
            "item": ["x", "y", "z", "x", "y"],
            "rating": [5.0, 3.0, 1.0, 4.0, 2.0],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    model = train(Interactions.from_raw(df), CFConfig(n_factors=1))
    recs = model.raw().recommend("a", k=5)
    assert len(recs) == 0 and recs.scores.shape == (0,) and recs.to_polars().height == 0
    assert len(model.raw().recommend("b", k=5)) == 2


def test_config_to_json_is_text_and_round_trips():
    config = CFConfig(rating_scale=(1.0, 5.0))
    text = config.to_json()
    assert isinstance(text, str) and json.loads(text) == config.to_dict()
    assert CFConfig.from_json(text) == CFConfig.from_dict(config.to_dict()) == config
