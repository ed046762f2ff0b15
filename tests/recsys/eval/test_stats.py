"""Paired tests, effect size, bootstrap CIs and seed aggregation against scipy and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from gradtracer.recsys.stats import (
    aggregate_seeds,
    bootstrap_ci,
    cohens_d_paired,
    paired_ttest,
    wilcoxon,
)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_ttest_matches_scipy(rng, alternative):
    a, b = rng.normal(0.1, 1, 80), rng.normal(0, 1, 80)
    ours = paired_ttest(a, b, alternative=alternative)
    ref = sps.ttest_rel(a, b, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert ours.n == 80


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_wilcoxon_matches_scipy(rng, alternative):
    a, b = rng.normal(0.2, 1, 60), rng.normal(0, 1, 60)
    ours = wilcoxon(a, b, alternative=alternative)
    ref = sps.wilcoxon(a, b, alternative=alternative)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    if alternative != "two-sided":  # scipy reports W+ for one-sided tests
        assert ours.statistic == pytest.approx(ref.statistic)


def test_verdicts_and_degenerate_cases():
    a = np.array([0.5, 0.6, 0.7, 0.8])
    assert paired_ttest(a, a).verdict == "not significant at alpha=0.05"
    assert paired_ttest(a, a).p_value == 1.0
    shifted = paired_ttest(a + 1, a)
    assert shifted.p_value == 0.0 and shifted.significant
    assert "significant at alpha=0.01" in paired_ttest(a + 1, a, alpha=0.01).verdict
    assert wilcoxon(a, a).n == 0 and wilcoxon(a, a).p_value == 1.0
    text = str(paired_ttest(a + 1, a))
    assert "paired t-test" in text and "verdict" in text


def test_input_errors():
    with pytest.raises(ValueError, match="equal lengths, got 3 and 2"):
        paired_ttest([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        wilcoxon([1], [2])
    with pytest.raises(ValueError, match="alternative"):
        paired_ttest([1, 2], [2, 3], alternative="bigger")
    with pytest.raises(ValueError, match="NaN"):
        paired_ttest([1, np.nan], [2, 3])
    with pytest.raises(ValueError, match="method"):
        bootstrap_ci([1, 2, 3], method="studentized")


def test_cohens_d(rng):
    a, b = rng.normal(size=50), rng.normal(size=50)
    d = a - b
    es = cohens_d_paired(a, b)
    assert es.d == pytest.approx(d.mean() / d.std(ddof=1))
    assert cohens_d_paired(a + 10, a).d == np.inf
    diffs = np.tile([1.0, -1.0], 25) + 0.3  # d_z = 0.3 / sqrt(50 / 49)
    small = cohens_d_paired(a + diffs, a)
    assert small.d == pytest.approx(0.3 / np.sqrt(50 / 49))
    assert small.magnitude == "small"
    assert cohens_d_paired(a + 0.1 * diffs - 0.025, a).magnitude == "negligible"


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_close_to_scipy(rng, method):
    x = rng.exponential(size=150)
    ours = bootstrap_ci(x, method=method, n_resamples=20_000, random_state=1)
    ref = sps.bootstrap(
        (x,),
        np.mean,
        method="BCa" if method == "bca" else "percentile",
        n_resamples=20_000,
        random_state=2,
    ).confidence_interval
    width = ref.high - ref.low
    assert abs(ours.low - ref.low) < 0.05 * width
    assert abs(ours.high - ref.high) < 0.05 * width
    assert ours.low < x.mean() < ours.high


def test_bootstrap_seeded_and_median_jackknife(rng):
    x = rng.normal(size=40)
    a = bootstrap_ci(x, statistic=np.median, random_state=5)
    b = bootstrap_ci(x, statistic=np.median, random_state=5)
    assert a == b
    assert a.estimate == pytest.approx(np.median(x))
    assert "bootstrap (bca)" in str(a)


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=30),
    shift=st.floats(-5, 5),
)
def test_invariants(values, shift):
    a = np.asarray(values)
    b = a[::-1] + shift
    t_ab, t_ba = paired_ttest(a, b), paired_ttest(b, a)
    assert t_ab.p_value == pytest.approx(t_ba.p_value, rel=1e-9, abs=1e-12)
    assert 0.0 <= t_ab.p_value <= 1.0
    w_ab, w_ba = wilcoxon(a, b), wilcoxon(b, a)
    assert w_ab.p_value == pytest.approx(w_ba.p_value, rel=1e-9, abs=1e-12)
    assert -1.0 <= w_ab.effect_size <= 1.0
    ci = bootstrap_ci(a, n_resamples=200, method="percentile")
    assert ci.low <= ci.high
    assert a.min() - 1e-9 <= ci.low and ci.high <= a.max() + 1e-9


def test_aggregate_seeds():
    t = [0.31, 0.33, 0.32, 0.34, 0.30]
    b = [0.30, 0.31, 0.30, 0.31, 0.29]
    agg = aggregate_seeds(t, b, names=("autofix", "baseline"))
    assert agg.treatment.mean == pytest.approx(np.mean(t))
    assert agg.treatment.std == pytest.approx(np.std(t, ddof=1))
    ref_ci = sps.t.interval(0.95, df=4, loc=np.mean(t), scale=sps.sem(t))
    assert (agg.treatment.ci_low, agg.treatment.ci_high) == pytest.approx(ref_ci)
    assert agg.test is not None
    assert agg.test.p_value == pytest.approx(sps.ttest_rel(t, b).pvalue)
    assert "autofix - baseline" in str(agg)
    assert aggregate_seeds([0.3]).test is None
    with pytest.raises(ValueError, match="pair them by seed"):
        aggregate_seeds([1, 2], [1])
