"""Unit tests of the pure Auto-Fix policy on constructed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gradtracer.embedding.autofix_policy import (
    AutoFixPolicy,
    damping_factors,
    dead_rows,
    loss_trend_posterior,
    oscillation_confidence,
)

POLICY = AutoFixPolicy()


def test_oscillating_row_is_damped_and_steady_row_untouched() -> None:
    # row 0 flips direction 18 of 20 pairs, row 1 agrees 20 of 20, row 2 is a coin flip
    agree = np.array([2, 20, 10])
    disagree = np.array([18, 0, 10])
    f = damping_factors(agree, disagree, p_improving=0.5, step=1000, policy=POLICY)
    assert f[0] < 0.8
    assert f[0] >= POLICY.floor
    assert f[1] == 1.0
    assert f[2] == 1.0  # not confident: left alone


def test_improving_loss_reduces_intervention() -> None:
    agree, disagree = np.array([1]), np.array([30])
    flat = damping_factors(agree, disagree, p_improving=0.0, step=1000, policy=POLICY)
    unknown = damping_factors(agree, disagree, p_improving=0.5, step=1000, policy=POLICY)
    improving = damping_factors(agree, disagree, p_improving=1.0, step=1000, policy=POLICY)
    assert flat[0] < unknown[0] < improving[0] < 1.0
    # with certainty of oscillation, flat loss reaches the floor exactly
    assert flat[0] == pytest.approx(POLICY.floor, abs=1e-3)
    assert improving[0] == pytest.approx(
        1 - (1 - POLICY.floor) * (1 - POLICY.loss_relief), abs=1e-3
    )


def test_warmup_min_pairs_and_dead_rows_leave_rows_alone() -> None:
    agree, disagree = np.array([0, 0, 0]), np.array([40, 5, 40])
    early = damping_factors(
        agree, disagree, p_improving=0.0, step=POLICY.warmup_steps - 1, policy=POLICY
    )
    assert (early == 1.0).all()
    dead = dead_rows(np.array([1.0, 1.0, 0.0]), POLICY)
    assert dead.tolist() == [False, False, True]
    f = damping_factors(
        agree, disagree, p_improving=0.0, step=POLICY.warmup_steps, policy=POLICY, dead=dead
    )
    assert f[0] < 1.0
    assert f[1] == 1.0  # 5 pairs < min_pairs
    assert f[2] == 1.0  # dead: reported, not scaled


def test_oscillation_confidence_matches_scipy_beta() -> None:
    agree, disagree = np.array([3, 10, 0]), np.array([7, 2, 0])
    q = oscillation_confidence(agree, disagree, POLICY)
    ref = stats.beta(POLICY.prior_alpha + disagree, POLICY.prior_beta + agree).sf(0.5)
    np.testing.assert_allclose(q, ref, rtol=1e-10)
    assert q[2] == pytest.approx(0.5)  # the prior alone is symmetric


def test_loss_trend_posterior_detects_improvement_and_matches_ols() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(50, dtype=float)
    down = 1.0 - 0.01 * t + rng.normal(0, 0.02, t.size)
    flat = 1.0 + rng.normal(0, 0.02, t.size)
    tr = loss_trend_posterior(t, down)
    fit = stats.linregress(t, down)
    assert tr.slope_mean == pytest.approx(fit.slope)
    assert tr.slope_sd == pytest.approx(fit.stderr)
    assert tr.p_improving > 0.999
    assert 0.01 < loss_trend_posterior(t, flat).p_improving < 0.99
    assert loss_trend_posterior(t, 1.0 + 0.01 * t + rng.normal(0, 0.02, t.size)).p_improving < 1e-3


def test_loss_unknown_or_short_is_neutral() -> None:
    tr = loss_trend_posterior([1, 2, 3], [1.0, 0.5, 0.2])
    assert tr.p_improving == 0.5 and tr.dof == 0
    tr = loss_trend_posterior(np.arange(20), np.full(20, np.nan))
    assert tr.p_improving == 0.5 and math.isnan(tr.slope_mean)


def test_policy_validation_and_roundtrip() -> None:
    with pytest.raises(ValueError, match="floor"):
        AutoFixPolicy(floor=0.0)
    with pytest.raises(ValueError, match="min_confidence"):
        AutoFixPolicy(min_confidence=1.0)
    with pytest.raises(ValueError, match="unknown AutoFixPolicy"):
        AutoFixPolicy.from_dict({"flor": 0.2})
    p = AutoFixPolicy(floor=0.5, warmup_steps=3)
    assert AutoFixPolicy.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="p_improving"):
        damping_factors(np.array([1]), np.array([1]), p_improving=1.5, step=0, policy=p)


@settings(max_examples=60, deadline=None)
@given(
    agree=st.lists(st.integers(0, 200), min_size=1, max_size=20),
    extra=st.integers(0, 50),
    g=st.floats(0, 1),
)
def test_factors_bounded_and_monotone_in_disagreement(
    agree: list[int], extra: int, g: float
) -> None:
    a = np.array(agree)
    d = np.array(agree[::-1])
    f = damping_factors(a, d, p_improving=g, step=10_000, policy=POLICY)
    assert ((f >= np.float32(POLICY.floor)) & (f <= 1.0)).all()
    f_more = damping_factors(a, d + extra, p_improving=g, step=10_000, policy=POLICY)
    assert (f_more <= f).all()


@settings(max_examples=80, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=30),
    g=st.floats(0, 1),
    prior=st.tuples(st.floats(0.5, 5), st.floats(0.5, 5)),
    min_conf=st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.99]),
)
def test_factors_equal_the_documented_formula(
    pairs: list[tuple[int, int]], g: float, prior: tuple[float, float], min_conf: float
) -> None:
    """The skipped rows (posterior median below 1/2) get exactly what the formula gives."""
    policy = AutoFixPolicy(
        prior_alpha=prior[0], prior_beta=prior[1], min_confidence=min_conf, min_pairs=4
    )
    a = np.array([p[0] for p in pairs])
    d = np.array([p[1] for p in pairs])
    q = stats.beta.sf(0.5, policy.prior_alpha + d, policy.prior_beta + a)
    c = np.clip((q - min_conf) / (1 - min_conf), 0, 1)
    ref = 1 - (1 - policy.floor) * c * (1 - policy.loss_relief * g)
    ref = np.where(a + d >= policy.min_pairs, ref, 1.0).astype(np.float32)
    got = damping_factors(a, d, p_improving=g, step=10_000, policy=policy)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-7)
