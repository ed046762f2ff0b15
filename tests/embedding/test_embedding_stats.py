"""Pure statistics against naive / independent references, and the direction sketch's error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from gradtracer.embedding import stats
from gradtracer.embedding.state import SignSketch

counts_strategy = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60)


def _naive_gini(x: list[int]) -> float:
    n, total = len(x), sum(x)
    if total == 0:
        return 0.0
    diff = sum(abs(a - b) for a in x for b in x)
    return diff / (2 * n * total)


@settings(max_examples=60, deadline=None)
@given(counts_strategy)
def test_gini_matches_mean_absolute_difference(x):
    assert stats.gini(torch.tensor(x)) == pytest.approx(_naive_gini(x), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(counts_strategy)
def test_entropy_coverage_top_share_and_lorenz(x):
    t = torch.tensor(x)
    total = sum(x)
    h = stats.normalized_entropy(t)
    if total > 0 and len(x) > 1:
        p = np.array([v for v in x if v > 0], dtype=float) / total
        assert h == pytest.approx(float(-(p * np.log(p)).sum() / math.log(len(x))), abs=1e-9)
    assert 0.0 <= h <= 1.0 + 1e-12
    assert stats.coverage(t) == pytest.approx(sum(v > 0 for v in x) / len(x))
    share = stats.top_share(t, 0.1)
    k = max(1, math.ceil(0.1 * len(x)))
    assert share == pytest.approx(sum(sorted(x)[-k:]) / total if total else 0.0)
    lx, ly = stats.lorenz_curve(t, n_points=11)
    assert (
        lx[0] == 0.0
        and lx[-1] == 1.0
        and ly[0] == pytest.approx(0.0)
        and ly[-1] == pytest.approx(1.0)
    )
    assert all(b >= a - 1e-12 for a, b in zip(ly, ly[1:]))
    assert all(y <= xx + 1e-9 for xx, y in zip(lx, ly))  # below the diagonal


def test_gini_extremes_and_bad_input():
    assert stats.gini(torch.ones(100)) == pytest.approx(0.0)
    one_hot = torch.zeros(100)
    one_hot[3] = 5
    assert stats.gini(one_hot) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="non-negative"):
        stats.gini(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="1-D"):
        stats.gini(torch.ones(2, 2))


def test_effective_rank_and_collapse_on_planted_matrices():
    gen = torch.Generator().manual_seed(0)
    rank3 = torch.randn(500, 3, generator=gen) @ torch.randn(3, 32, generator=gen)
    assert 1.5 < stats.effective_rank(rank3) <= 3.0 + 1e-6
    iso = torch.randn(4000, 16, generator=gen)
    assert stats.effective_rank(iso) > 15.0
    collapsed = torch.randn(200, 1, generator=gen).abs() @ torch.randn(1, 16, generator=gen)
    assert stats.collapse_score(collapsed) == pytest.approx(1.0)
    assert stats.collapse_score(iso) < 0.2
    assert stats.effective_rank(torch.zeros(5, 4)) == 0.0


def test_saliency_cold_start_and_norm_buckets():
    vel = torch.tensor([0.0, 1.0, 1.0, 0.5])
    exposure = torch.tensor([0, 1, 100, 3])
    sal = stats.frequency_aware_saliency(vel, exposure)
    assert sal[0] == 0.0 and sal[1] > sal[2]
    assert stats.cold_start_share(exposure, threshold=5) == pytest.approx(2 / 3)
    norms = torch.tensor([1.0, 1.0, 4.0, 4.0])
    buckets = stats.norm_by_popularity_bucket(norms, torch.tensor([1, 2, 50, 60]), n_buckets=2)
    assert [b["mean_norm"] for b in buckets] == [1.0, 4.0]
    assert buckets[1]["min_exposure"] == 50


def test_disagreement_posterior_close_to_exact_beta():
    pairs, d = np.meshgrid(np.arange(200), np.arange(200), indexing="ij")
    ok = d <= pairs
    pairs, d = pairs[ok], d[ok]
    exact = binom.cdf(d, pairs + 1, 0.5)  # P(rate > 1/2 | Beta(1 + d, 1 + a)), exact
    approx = (
        stats.disagreement_posterior(torch.from_numpy(pairs - d), torch.from_numpy(d))
        .double()
        .numpy()
    )
    err = np.abs(exact - approx)
    assert err.max() < 0.011 and err[pairs >= 6].max() < 0.004


@pytest.mark.parametrize(("n_bits", "bound"), [(32, 0.28), (64, 0.20)])
def test_sign_sketch_cosine_error_is_as_documented(n_bits, bound):
    gen = torch.Generator().manual_seed(3)
    sk = SignSketch(64, n_bits, seed=0)
    a = torch.randn(4000, 64, generator=gen)
    target = torch.rand(4000, generator=gen) * 2 - 1  # true cosines in [-1, 1]
    noise = torch.randn(4000, 64, generator=gen)
    noise = noise - (noise * a).sum(1, keepdim=True) / (a * a).sum(1, keepdim=True) * a
    b = target[:, None] * a / a.norm(dim=1, keepdim=True) + torch.sqrt(1 - target**2)[
        :, None
    ] * noise / noise.norm(dim=1, keepdim=True)
    true = torch.nn.functional.cosine_similarity(a, b)
    est = sk.cosine(sk.encode(a), sk.encode(b))
    angle_err = (torch.acos(est.clamp(-1, 1)) - torch.acos(true.clamp(-1, 1))).abs()
    assert float(angle_err.pow(2).mean().sqrt()) < bound  # documented standard error bound
    assert float((est - true).abs().mean()) < bound
    strong = true.abs() > 0.5
    assert float((torch.sign(est[strong]) == torch.sign(true[strong])).float().mean()) > 0.97
    # exact reversal and identity are exact
    assert torch.equal(sk.cosine(sk.encode(a), sk.encode(-a)), torch.full((4000,), -1.0))
    assert torch.equal(sk.cosine(sk.encode(a), sk.encode(a)), torch.ones(4000))


def test_sign_sketch_rejects_bad_bits():
    with pytest.raises(ValueError, match="multiple of 8"):
        SignSketch(8, 12)
