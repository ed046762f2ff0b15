"""VIF, nested F-tests and BH checked against independent statsmodels computations."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from gradtracer.features import (
    benjamini_hochberg,
    compute_vif,
    filter_by_vif,
    rank_interactions,
)


def test_vif_matches_inverse_correlation_diagonal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 5))
    x[:, 3] = x[:, 0] - 0.5 * x[:, 1] + 0.3 * rng.normal(size=300)
    naive = np.diag(np.linalg.inv(np.corrcoef(x, rowvar=False)))
    np.testing.assert_allclose(compute_vif(x), naive, rtol=1e-8)


def test_filter_drops_planted_collinear_column(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 6))
    x[:, 5] = 2.0 * x[:, 2] + 0.01 * rng.normal(size=400)  # planted near-duplicate
    names = [f"c{i}" for i in range(6)]
    result = filter_by_vif(x, names, threshold=10.0)
    assert len(result.dropped) == 1
    drop = result.dropped[0]
    assert {drop.feature, drop.partner} == {"c2", "c5"}
    assert drop.vif > 1000 and drop.correlation > 0.99
    assert np.all(result.vif < 10.0) and len(result.kept) == 5


def test_filter_handles_exact_linear_dependence() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[:, 3] = x[:, 0] + x[:, 1]  # exactly dependent
    result = filter_by_vif(x, ["a", "b", "c", "d"])
    assert len(result.dropped) == 1 and result.dropped[0].feature in {"a", "b", "d"}
    with pytest.raises(ValueError, match="threshold"):
        filter_by_vif(x, ["a", "b", "c", "d"], threshold=1.0)


def test_f_test_matches_statsmodels_nested_models(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(250, 4)) + 1.5  # uncentred on purpose
    y = x[:, 0] + 0.4 * x[:, 1] * x[:, 3] + rng.normal(size=250)
    names = ["a", "b", "c", "d"]
    results = {r.name: r for r in rank_interactions(x, y, names)}
    base = sm.OLS(y, sm.add_constant(x)).fit()
    for i, j in [(1, 3), (0, 2)]:
        full = sm.OLS(y, sm.add_constant(np.column_stack([x, x[:, i] * x[:, j]]))).fit()
        f, p, _ = full.compare_f_test(base)
        got = results[f"{names[i]}*{names[j]}"]
        assert got.f_stat == pytest.approx(f, rel=1e-6)
        assert got.p_value == pytest.approx(p, rel=1e-5, abs=1e-300)
        assert got.delta_adj_r2 == pytest.approx(full.rsquared_adj - base.rsquared_adj, abs=1e-10)
        assert got.adj_r2_base == pytest.approx(base.rsquared_adj, abs=1e-10)


def test_planted_interactions_rank_first(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 8))
    y = x[:, 0] + 0.8 * x[:, 1] * x[:, 2] + 0.6 * x[:, 4] * x[:, 7] + rng.normal(size=600)
    names = [f"x{i}" for i in range(8)]
    ranked = rank_interactions(x, y, names)
    assert len(ranked) == 28
    assert {r.name for r in ranked[:2]} == {"x1*x2", "x4*x7"}
    assert all(r.q_value < 1e-6 for r in ranked[:2])
    assert all(r.f_stat >= s.f_stat for r, s in zip(ranked, ranked[1:], strict=False))


def test_too_few_rows_and_constant_target() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="at least n_features \\+ 3 = 6 rows, got 5"):
        rank_interactions(x, np.arange(5.0), ["a", "b", "c"])
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="constant"):
        rank_interactions(x, np.ones(20), ["a", "b", "c"])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60))
def test_bh_matches_statsmodels(p: list[float]) -> None:
    pv = np.asarray(p)
    q = benjamini_hochberg(pv)
    np.testing.assert_allclose(q, multipletests(pv, method="fdr_bh")[1], atol=1e-12)
    assert np.all(q >= pv - 1e-15) and np.all(q <= 1.0)
