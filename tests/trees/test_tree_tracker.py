"""TreeDynamicsTracker against the real XGBoost, LightGBM and CatBoost training loops."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from gradtracer.errors import GradTracerWarning
from gradtracer.findings import FindingType, Report
from gradtracer.trees import BoostingTracker, TreeDynamicsTracker

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
catboost = pytest.importorskip("catboost")

LIBRARIES = ["xgboost", "lightgbm", "catboost"]


def train(
    library: str,
    tracker: TreeDynamicsTracker,
    data,
    *,
    rounds: int,
    lr: float,
    depth: int = 4,
    evals: bool = True,
):
    """Train ``library`` on ``data`` with the tracker's native callback; return the model."""
    xt, yt, xv, yv = data
    if library == "xgboost":
        dt, dv = xgb.DMatrix(xt, label=yt), xgb.DMatrix(xv, label=yv)
        return xgb.train(
            {"max_depth": depth, "eta": lr, "nthread": 1, "lambda": 0.0, "min_child_weight": 0},
            dt,
            rounds,
            evals=[(dt, "train"), (dv, "valid")] if evals else [],
            verbose_eval=False,
            callbacks=[tracker.xgboost_callback()],
        )
    if library == "lightgbm":
        dt = lgb.Dataset(xt, yt)
        sets = (
            {
                "valid_sets": [dt, lgb.Dataset(xv, yv, reference=dt)],
                "valid_names": ["training", "valid"],
            }
            if evals
            else {}
        )
        return lgb.train(
            {
                "num_leaves": 2**depth,
                "learning_rate": lr,
                "verbose": -1,
                "num_threads": 1,
                "min_data_in_leaf": 5,
                "lambda_l2": 0.0,
            },
            dt,
            rounds,
            callbacks=[tracker.lightgbm_callback()],
            **sets,
        )
    model = catboost.CatBoostRegressor(
        iterations=rounds,
        depth=depth,
        learning_rate=lr,
        verbose=0,
        thread_count=1,
        use_best_model=False,
        allow_writing_files=False,
        random_seed=0,
        l2_leaf_reg=1e-3,
        random_strength=0,
        bootstrap_type="No",
    )
    model.fit(xt, yt, eval_set=(xv, yv) if evals else None, callbacks=[tracker.catboost_callback()])
    tracker.collect(model)
    return model


@pytest.mark.parametrize("library", LIBRARIES)
def test_dominant_feature_is_named(library: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 6))
    y = 4.0 * x[:, 3] + 0.1 * rng.normal(size=500)  # only feature 3 matters
    tracker = TreeDynamicsTracker(name=library)
    train(library, tracker, (x[:400], y[:400], x[400:], y[400:]), rounds=25, lr=0.3, depth=3)
    kinds = {f.type: f for f in tracker.findings()}
    found = kinds[FindingType.FEATURE_DOMINANCE.value]
    assert found.evidence["feature_index"] == 3
    assert found.evidence["share_by"] == ("count" if library == "catboost" else "gain")
    summary = tracker.summary()
    assert summary["library"] == library and summary["n_rounds"] == 25
    assert summary["rounds_parsed"] == 25 and summary["n_features"] == 6


@pytest.mark.parametrize("library", LIBRARIES)
def test_overfitting_onset_matches_best_validation_round(library: str, noisy_data) -> None:
    tracker = TreeDynamicsTracker(name=library)
    train(library, tracker, noisy_data, rounds=60, lr=0.5, depth=6)
    (found,) = [f for f in tracker.findings() if f.type == FindingType.OVERFITTING_ONSET.value]
    valid = np.asarray([row[tracker.summary()["eval_valid"]] for row in tracker.history])
    assert found.evidence["best_round"] == int(np.argmin(valid))
    assert found.evidence["onset_round"] == int(np.argmin(valid)) + 1
    assert found.evidence["gap_last"] > 0  # valid worse than train at the end
    assert tracker.summary()["eval_train"] is not None


@pytest.mark.parametrize("library", LIBRARIES)
def test_stagnation_after_exact_fit(library: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 3))
    y = np.where(x[:, 0] > 0, 2.0, -1.0)  # one split fits it exactly
    tracker = TreeDynamicsTracker(name=library)
    train(library, tracker, (x[:300], y[:300], x[300:], y[300:]), rounds=40, lr=0.9, depth=2)
    types = {f.type for f in tracker.findings()}
    assert FindingType.TREE_STAGNATION.value in types
    assert FindingType.TREE_EXPLOSION.value not in types


def test_explosion_with_overshooting_objective(regression_data) -> None:
    xt, yt, _, _ = regression_data

    def overshoot(pred: np.ndarray, dtrain) -> tuple[np.ndarray, np.ndarray]:
        # Newton step with a hessian 10x too small: every round overshoots the residual 10x
        return pred - dtrain.get_label(), np.full_like(pred, 0.1)

    tracker = TreeDynamicsTracker()
    with np.errstate(all="ignore"), pytest.warns(GradTracerWarning, match="no evaluation"):
        xgb.train(
            {"max_depth": 2, "eta": 1.0, "nthread": 1, "lambda": 0.0, "min_child_weight": 0},
            xgb.DMatrix(xt, label=yt),
            25,
            obj=overshoot,
            callbacks=[tracker.xgboost_callback()],
        )
    types = {f.type for f in tracker.findings()}
    assert FindingType.TREE_EXPLOSION.value in types


def test_no_eval_set_warns_and_skips_overfitting(regression_data) -> None:
    tracker = TreeDynamicsTracker()
    with pytest.warns(GradTracerWarning, match="reports no evaluation set"):
        train("xgboost", tracker, regression_data, rounds=12, lr=0.3, evals=False)
    summary = tracker.summary()
    assert summary["eval_valid"] is None and summary["rounds_parsed"] == 12
    text = tracker.report()  # the rendered report shows the missing metric as n/a
    assert re.search(r"^\s+eval_valid\s+n/a$", text, re.M), text
    assert all(f.type != FindingType.OVERFITTING_ONSET.value for f in tracker.findings())


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_callback_equals_post_hoc_parse(library: str, regression_data) -> None:
    live = TreeDynamicsTracker()
    model = train(library, live, regression_data, rounds=15, lr=0.3)
    post = TreeDynamicsTracker.from_model(model)
    assert live.summary()["split_herfindahl_gain"] == pytest.approx(
        post.summary()["split_herfindahl_gain"]
    )
    np.testing.assert_allclose(
        [r["leaf_std"] for r in live.history], [r["leaf_std"] for r in post.history]
    )
    before = live.summary()["n_trees_parsed"]
    live.collect(model)  # nothing new to parse: every tree is read once
    assert live.summary()["n_trees_parsed"] == before


def test_track_interval_samples_rounds(regression_data) -> None:
    tracker = TreeDynamicsTracker(track_interval=4)
    train("lightgbm", tracker, regression_data, rounds=10, lr=0.3)
    assert [r["round"] for r in tracker.history if "leaf_std" in r] == [0, 4, 8]
    assert len(tracker.history) == 10  # eval metrics every round
    with pytest.raises(ValueError, match="track_interval"):
        TreeDynamicsTracker(track_interval=0)


def test_sklearn_estimators_work(regression_data) -> None:
    xt, yt, xv, yv = regression_data
    tracker = TreeDynamicsTracker()
    model = xgb.XGBRegressor(
        n_estimators=8, max_depth=3, n_jobs=1, callbacks=[tracker.xgboost_callback()]
    )
    model.fit(xt, yt, eval_set=[(xv, yv)], verbose=False)
    assert tracker.summary()["rounds_parsed"] == 8
    assert tracker.summary()["eval_valid"] == "validation_0/rmse"
    tracker = TreeDynamicsTracker()
    model = lgb.LGBMRegressor(n_estimators=8, num_leaves=7, verbose=-1, n_jobs=1)
    model.fit(xt, yt, eval_X=(xv,), eval_y=(yv,), callbacks=[tracker.lightgbm_callback()])
    assert tracker.summary()["rounds_parsed"] == 8
    assert TreeDynamicsTracker.from_model(model).summary()["rounds_parsed"] == 8


def test_wrong_model_types_are_rejected(regression_data) -> None:
    from sklearn.linear_model import LinearRegression

    with pytest.raises(TypeError, match="sklearn.linear_model._base.LinearRegression"):
        TreeDynamicsTracker().collect(LinearRegression())
    tracker = TreeDynamicsTracker()
    model = train("xgboost", tracker, regression_data, rounds=3, lr=0.3)
    lgb_model = lgb.train(
        {"verbose": -1, "num_threads": 1}, lgb.Dataset(regression_data[0], regression_data[1]), 2
    )
    with pytest.raises(ValueError, match="already tracks a xgboost model"):
        tracker.collect(lgb_model)
    assert model.num_boosted_rounds() == 3


def test_report_is_json_and_round_trips(noisy_data) -> None:
    tracker = BoostingTracker(name="gbm")
    train("xgboost", tracker, noisy_data, rounds=30, lr=0.5, depth=6)
    report = tracker.to_report()
    assert report.kind == "trees" and report.subject == "gbm"
    data = json.loads(json.dumps(report.to_dict()))
    back = Report.from_dict(data)
    assert [f.type for f in back.findings] == [f.type for f in report.sorted_findings()]
    assert data["stats"]["tracking_seconds"] >= 0
    text = tracker.report()
    assert "gbm" in text and "OVERFITTING_ONSET" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TreeDynamicsTracker().summary()["n_rounds"] == 0
        assert TreeDynamicsTracker().findings() == []


def test_training_metric_only_warns(regression_data) -> None:
    tracker = TreeDynamicsTracker()
    with pytest.warns(GradTracerWarning, match=r"reports only \['learn'\]"):
        train("catboost", tracker, regression_data, rounds=5, lr=0.3, evals=False)
    assert tracker.summary()["eval_valid"] is None
    assert tracker.summary()["eval_train"] == "learn/RMSE"


def test_lightgbm_cv_is_rejected(regression_data) -> None:
    tracker = TreeDynamicsTracker()
    with pytest.raises(TypeError, match="lightgbm.cv is not supported"):
        lgb.cv(
            {"verbose": -1, "num_threads": 1},
            lgb.Dataset(regression_data[0], regression_data[1]),
            2,
            nfold=2,
            stratified=False,
            callbacks=[tracker.lightgbm_callback()],
        )
