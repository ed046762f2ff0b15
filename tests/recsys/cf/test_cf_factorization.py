"""SVD / ALS factorization: agreement with numpy's SVD, centring, clamping, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from gradtracer.errors import GradTracerWarning
from gradtracer.recsys.models.als import fit_als
from gradtracer.recsys.models.svd import (
    center_by_user,
    clamp_n_factors,
    fit_svd,
    max_n_factors,
)


def _ratings(
    n_users: int = 40, n_items: int = 25, density: float = 0.3, seed: int = 0
) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    values = rng.integers(1, 6, size=(n_users, n_items)).astype(np.float32)
    return sp.csr_matrix(np.where(mask, values, 0.0).astype(np.float32))


@pytest.mark.parametrize("solver", ["sklearn", "scipy"])
def test_singular_values_match_numpy(solver: str) -> None:
    r = _ratings()
    f = fit_svd(r, 5, solver=solver, center=False, n_iter=20, random_state=3)
    expected = np.linalg.svd(r.toarray(), compute_uv=False)[:5]
    np.testing.assert_allclose(f.singular_values, expected, rtol=1e-3)
    assert f.user_factors.shape == (40, 5) and f.item_factors.shape == (25, 5)
    assert f.user_factors.dtype == np.float32
    # U @ V.T is the best rank-5 approximation: same error as numpy's truncation
    u, s, vt = np.linalg.svd(r.toarray())
    best = (u[:, :5] * s[:5]) @ vt[:5]
    np.testing.assert_allclose(f.user_factors @ f.item_factors.T, best, atol=1e-3)


def test_truncate_equals_smaller_exact_fit() -> None:
    r = _ratings(seed=1)
    big = fit_svd(r, 8, solver="scipy", center=False)
    small = fit_svd(r, 3, solver="scipy", center=False)
    np.testing.assert_allclose(
        big.truncate(3).user_factors @ big.truncate(3).item_factors.T,
        small.user_factors @ small.item_factors.T,
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="k must be in"):
        big.truncate(9)


def test_center_by_user_matches_loop() -> None:
    r = _ratings(seed=2).tolil()
    r[5, :] = 0  # a user without ratings
    r = r.tocsr()
    r.eliminate_zeros()
    centred, means = center_by_user(r)
    dense = r.toarray()
    for u in range(r.shape[0]):
        observed = dense[u][dense[u] != 0]
        expected = observed.mean() if observed.size else 0.0
        assert means[u] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(centred.indices, r.indices)  # same pattern, only values move
    np.testing.assert_allclose(
        centred.data, r.data - np.repeat(means, np.diff(r.indptr)), atol=1e-6
    )
    assert means[5] == 0.0


def test_centred_fit_stores_user_means_as_bias() -> None:
    r = _ratings(seed=4)
    f = fit_svd(r, 4, solver="scipy", center=True)
    _, means = center_by_user(r)
    np.testing.assert_allclose(f.user_bias, means, atol=1e-6)


@pytest.mark.parametrize("fit", [fit_svd, fit_als], ids=["svd", "als"])
def test_too_many_factors_is_clamped_with_warning(fit) -> None:
    r = _ratings(n_users=30, n_items=12)
    with pytest.warns(GradTracerWarning, match=r"n_factors=500 requested .* at most 11"):
        f = fit(r, 500)
    assert f.n_factors == 11 == max_n_factors(r.shape)


def test_clamp_within_limit_is_silent_and_bad_values_raise() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clamp_n_factors(5, (10, 20)) == 5
    with pytest.raises(ValueError, match="n_factors must be >= 1, got 0"):
        clamp_n_factors(0, (10, 20))
    with pytest.raises(ValueError, match="too small"):
        clamp_n_factors(1, (1, 20))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="solver must be one of"):
        fit_svd(_ratings(), 2, solver="lapack")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scipy sparse matrix, got ndarray"):
        fit_svd(np.ones((3, 3)), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no entries"):
        fit_svd(sp.csr_matrix((5, 5), dtype=np.float32), 2)
    bad = _ratings()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_svd(bad, 2)


def test_centring_implicit_data_warns_and_is_skipped() -> None:
    r = _ratings()
    r.data[:] = 1.0
    with pytest.warns(GradTracerWarning, match="center=True ignored"):
        f = fit_svd(r, 3)
    assert not f.user_bias.any()
    assert np.abs(f.user_factors).sum() > 0


def test_als_learns_planted_blocks() -> None:
    # two user groups that each consume one half of the catalogue
    n = 20
    dense = np.zeros((2 * n, 2 * n), dtype=np.float32)
    rng = np.random.default_rng(0)
    for u in range(2 * n):
        half = u % 2
        items = rng.choice(np.arange(half * n, (half + 1) * n), 8, replace=False)
        dense[u, items] = 1.0
    f = fit_als(sp.csr_matrix(dense), 4, iterations=10, regularization=0.05)
    scores = f.user_factors @ f.item_factors.T
    own = np.array([scores[u, (u % 2) * n : (u % 2 + 1) * n].mean() for u in range(2 * n)])
    other = np.array([scores[u, (1 - u % 2) * n : (2 - u % 2) * n].mean() for u in range(2 * n)])
    assert (own > other).all()
    assert f.singular_values is None and not f.user_bias.any()
