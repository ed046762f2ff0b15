from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.trees import TreeSummary, gini, herfindahl, summarize_round

totals = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=40).filter(
    lambda xs: sum(xs) > 1e-6
)


@settings(max_examples=60, deadline=None)
@given(totals)
def test_herfindahl_bounds(xs: list[float]) -> None:
    h = herfindahl(np.asarray(xs))
    assert 1.0 / len(xs) - 1e-9 <= h <= 1.0 + 1e-9


@settings(max_examples=60, deadline=None)
@given(totals)
def test_gini_matches_mean_absolute_difference(xs: list[float]) -> None:
    x = np.asarray(xs)
    naive = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(naive, abs=1e-9)


def test_concentration_extremes() -> None:
    assert herfindahl(np.array([0, 5, 0, 0])) == 1.0
    assert herfindahl(np.ones(4)) == pytest.approx(0.25)
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 7.0])) == pytest.approx(0.75)
    assert math.isnan(herfindahl(np.zeros(3)))
    assert math.isnan(gini(np.zeros(0)))


def test_summarize_round_pools_trees() -> None:
    a = TreeSummary(np.array([1.0, -1.0]), np.array([2]), np.array([4.0]), depth=1)
    b = TreeSummary(np.array([0.5, 0.5, np.nan]), np.array([2, 0]), np.array([1.0, 3.0]), 2)
    s = summarize_round(3, [a, b])
    assert (s.round, s.n_trees, s.n_leaves, s.max_depth) == (3, 2, 5, 2)
    assert s.n_nonfinite_leaves == 1
    assert s.leaf_std == pytest.approx(np.std([1.0, -1.0, 0.5, 0.5]))
    assert s.leaf_abs_max == 1.0
    assert dict(s.feature_counts) == {2: 2, 0: 1}
    assert dict(s.feature_gains or {}) == {2: 5.0, 0: 3.0}


def test_summarize_round_without_gains() -> None:
    a = TreeSummary(np.array([1.0, 2.0]), np.array([1]), None, depth=1)
    s = summarize_round(0, [a])
    assert s.feature_gains is None
    assert dict(s.feature_counts) == {1: 1}


def test_round_without_trees_moves_nothing() -> None:
    s = summarize_round(5, [])
    assert (s.n_trees, s.n_leaves, s.leaf_std, s.leaf_abs_max) == (0, 0, 0.0, 0.0)
    assert s.feature_gains == {}  # no trees is not "gains unavailable"
    bad = TreeSummary(np.array([np.inf, np.nan]), np.array([0]), np.array([1.0]), 1)
    assert math.isnan(summarize_round(0, [bad]).leaf_std)
