"""n_factors selection rule (pure), tuning over a grid, and the two plots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.errors import GradTracerWarning
from gradtracer.recsys.cf import (
    CFConfig,
    evaluate,
    plot_tuning_curve,
    plot_valid_vs_test,
    select_n_factors,
    train,
    tune_n_factors,
)


def test_smallest_within_two_percent_of_best() -> None:
    grid = [10, 20, 30, 50, 75, 100]
    curve = [0.100, 0.180, 0.196, 0.199, 0.200, 0.190]
    # best 0.200 -> threshold 0.196: 30 is the smallest that reaches it
    assert select_n_factors(grid, curve) == 30
    assert select_n_factors(grid, curve, tolerance=0.0) == 75
    assert select_n_factors(grid, curve, tolerance=0.5) == 10


def test_grid_order_and_nan_do_not_matter() -> None:
    assert select_n_factors([100, 10, 50], [0.30, 0.295, float("nan")]) == 10
    assert select_n_factors([100, 10], [0.30, 0.29]) == 100  # 0.29 < 0.294


def test_selection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        select_n_factors([10, 20], [0.1])
    with pytest.raises(ValueError, match="at least one"):
        select_n_factors([], [])
    with pytest.raises(ValueError, match="NaN"):
        select_n_factors([10], [float("nan")])
    with pytest.raises(ValueError, match="tolerance"):
        select_n_factors([10], [0.1], tolerance=1.5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 500), st.floats(0.0, 1.0, allow_nan=False)),
        min_size=1,
        max_size=12,
    ),
    st.floats(0.0, 0.5),
)
def test_selection_property(pairs, tolerance) -> None:
    grid = [n for n, _ in pairs]
    vals = [v for _, v in pairs]
    chosen = select_n_factors(grid, vals, tolerance=tolerance)
    best = max(vals)
    threshold = best - tolerance * best
    assert any(n == chosen and v >= threshold for n, v in pairs)
    assert all(v < threshold for n, v in pairs if n < chosen)


def test_tune_drops_oversize_grid_values_and_refits_best(planted) -> None:
    with pytest.warns(GradTracerWarning, match=r"n_factors \[500\] exceed"):
        result = tune_n_factors(planted.train, planted.valid, grid=(2, 4, 8, 500))
    assert result.grid == (2, 4, 8)
    scores = [ev.mean["ndcg@10"] for ev in result.evaluations]
    assert result.chosen == select_n_factors(result.grid, scores)
    frame = result.to_polars()
    assert frame["n_factors"].to_list() == [2, 4, 8]
    assert {"rmse", "accuracy", "ndcg@10", "recall@50", "map@20", "fit_s", "eval_s"} <= set(
        frame.columns
    )
    # the truncated components give the same scores as a model fitted at that size
    direct = evaluate(train(planted.train, CFConfig(n_factors=4, solver="scipy")), planted.valid)
    via_tuning = tune_n_factors(
        planted.train, planted.valid, grid=(4, 8), config=CFConfig(solver="scipy")
    ).evaluations[0]
    assert via_tuning.rmse == pytest.approx(direct.rmse, rel=1e-4)
    assert via_tuning.mean["ndcg@10"] == pytest.approx(direct.mean["ndcg@10"], abs=1e-6)


def test_tune_als_refits_per_value(planted) -> None:
    result = tune_n_factors(
        planted.train, planted.valid, grid=(2, 6), config=CFConfig(solver="als", iterations=3)
    )
    assert len(result.fit_seconds) == 2 and all(np.isfinite(result.fit_seconds))
    assert all(np.isnan(ev.rmse) for ev in result.evaluations)


def test_plots_are_png_files(planted, tmp_path) -> None:
    result = tune_n_factors(planted.train, planted.valid, grid=(2, 4))
    curve = plot_tuning_curve(result, tmp_path / "plots" / "tuning.png")
    model = train(planted.train, CFConfig(n_factors=result.chosen))
    bars = plot_valid_vs_test(
        evaluate(model, planted.valid, split="valid"),
        evaluate(model, planted.test, exclude=planted.valid),
        tmp_path / "valid_vs_test.png",
    )
    for path in (curve, bars):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
