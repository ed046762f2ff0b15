"""The rank-counting fast path against the top-K path: identical hits, positions, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.recsys.metrics import (
    METRICS,
    evaluate_topk,
    metrics_from_hits,
    metrics_from_positions,
    tied_topk_hits,
)
from gradtracer.recsys.metrics._inputs import padded_rows
from gradtracer.recsys.metrics.counting import (
    hits_from_positions,
    prefers_counting,
    relevant_positions,
)


def _tied_case(seed: int, n_users: int, n_items: int, levels: int, density: float):
    """Integer scores (many ties), a test matrix with >= 1 item per row, masked -inf cells."""
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.integers(0, levels, size=(n_users, n_items)).astype(np.float32))
    dense = rng.random((n_users, n_items)) < density
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    masked = (rng.random((n_users, n_items)) < 0.2) & ~dense
    scores[torch.from_numpy(masked)] = -torch.inf
    return scores, sp.csr_matrix(dense.astype(np.float32))


@settings(max_examples=80, deadline=None)
@given(
    n_users=st.integers(1, 9),
    n_items=st.integers(2, 25),
    levels=st.integers(1, 5),
    density=st.sampled_from([0.0, 0.1, 0.3]),
    k=st.integers(1, 25),
    ties=st.sampled_from(["conservative", "optimistic"]),
    seed=st.integers(0, 10_000),
)
def test_counted_hits_equal_topk_hits(n_users, n_items, levels, density, k, ties, seed):
    k = min(k, n_items)
    scores, test = _tied_case(seed, n_users, n_items, levels, density)
    relevant, n_rel = padded_rows(test, fill=n_items)
    positions = relevant_positions(scores, relevant, n_rel, ties)
    assert positions is not None
    expected, _ = tied_topk_hits(scores, relevant, n_rel, k, ties)
    assert torch.equal(hits_from_positions(positions, k), expected)
    # positions are a ranking: distinct, ascending, inside [1, n_items] where valid
    valid = torch.arange(relevant.shape[1])[None, :] < n_rel[:, None]
    assert torch.all(positions[valid] >= 1) and torch.all(positions[valid] <= n_items)
    assert torch.all((positions[:, 1:] > positions[:, :-1]) | ~valid[:, 1:])
    assert torch.all(positions[~valid] == n_items + 1)


@settings(max_examples=40, deadline=None)
@given(
    n_users=st.integers(1, 8),
    width=st.integers(1, 6),
    k=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_metrics_from_positions_equal_metrics_from_hits(n_users, width, k, seed):
    rng = np.random.default_rng(seed)
    n_items = 30
    positions = np.sort(
        np.stack(
            [rng.choice(np.arange(1, n_items + 1), width, replace=False) for _ in range(n_users)]
        ),
        axis=1,
    )
    n_rel = rng.integers(1, width + 1, n_users)
    positions[np.arange(width)[None, :] >= n_rel[:, None]] = n_items + 1
    hits = hits_from_positions(torch.from_numpy(positions), k)
    ks = tuple(sorted({1, k}))
    ref = metrics_from_hits(hits, torch.from_numpy(n_rel), ks)
    got = metrics_from_positions(positions, n_rel, ks)
    assert list(got) == list(ref)
    for key, value in ref.items():
        np.testing.assert_allclose(got[key], value.numpy(), rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("ties", ["conservative", "optimistic"])
@pytest.mark.parametrize("per_user", [1, 3], ids=["one-held-out", "three-held-out"])
def test_evaluate_counting_equals_topk_path(rng, ties, per_user):
    # coverage=True forces the top-K path; the default takes the counting path here
    n_users, n_items = 60, 40
    scores = torch.from_numpy(rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32))
    rows = np.repeat(np.arange(n_users), per_user)
    cols = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    test = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_users, n_items))
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32))
    assert prefers_counting(per_user, n_items, ties, scores.dtype)
    kw = dict(exclude=train, ks=(1, 5, 10), ties=ties, batch_size=17)
    fast = evaluate_topk(lambda idx: scores[idx], test, **kw)
    slow = evaluate_topk(lambda idx: scores[idx], test, coverage=True, **kw)
    assert fast.coverage == {} and set(slow.coverage) == {"coverage@1", "coverage@5", "coverage@10"}
    assert list(fast.per_user) == list(slow.per_user)
    assert len(fast.per_user) == len(METRICS) * 3
    for key in slow.per_user:
        np.testing.assert_allclose(fast.per_user[key], slow.per_user[key], atol=1e-12, err_msg=key)
    assert str(fast).splitlines()[1:] == str(slow).splitlines()[1 : 3 + len(fast.mean)]


def test_infinite_scores_rank_the_same_on_both_paths():
    inf = torch.inf
    scores = torch.tensor(
        [[inf, 1.0, inf, 0.0, -inf], [-inf, -inf, 2.0, 2.0, 1.0], [3.0, -inf, 3.0, 1.0, 0.0]]
    )
    test = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]))
    train = sp.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [1, 0, 0, 0, 0]]))
    for ties in ("conservative", "optimistic"):
        # batch_size=1: rows without +inf take the counting path, row 0 (+inf and -inf) the
        # top-K fallback
        kw = dict(exclude=train, ks=(1, 2, 4), ties=ties, batch_size=1)
        fast = evaluate_topk(lambda idx: scores[idx], test, **kw)
        slow = evaluate_topk(lambda idx: scores[idx], test, coverage=True, **kw)
        for key in slow.per_user:
            np.testing.assert_array_equal(fast.per_user[key], slow.per_user[key], err_msg=key)


def test_nan_scores_are_reported_on_the_counting_path():
    test = sp.csr_matrix(np.eye(3, 6, dtype=np.float32))
    scores = torch.zeros(3, 6)
    scores[1, 4] = torch.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_topk(lambda idx: scores[idx], test, ks=(2,))
    # a NaN on an excluded (masked) item is overwritten and harmless, as on the top-K path
    train = sp.csr_matrix(([1.0], ([1], [4])), shape=(3, 6))
    res = evaluate_topk(lambda idx: scores[idx], test, exclude=train, ks=(2,))
    assert res.n_users == 3


def test_counting_is_not_used_where_it_does_not_pay():
    assert not prefers_counting(1, 100, "random", torch.float32)
    assert not prefers_counting(100, 1000, "conservative", torch.float32)
    assert not prefers_counting(1, 100, "conservative", torch.float16)
    assert prefers_counting(1, 100, "optimistic", torch.float64)


def test_counting_leaves_the_scorer_output_untouched():
    base = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    test = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    res = evaluate_topk(lambda idx: base[idx.tolist()], test, ks=(1, 2))
    assert res.per_user["hr@2"].tolist() == [1.0, 1.0]
    assert res.per_user["mrr@2"].tolist() == [0.5, 1.0]
    seen = []

    def scorer(idx):
        seen.append(base[idx])
        return seen[-1]

    evaluate_topk(scorer, test, ks=(1,))
    assert torch.equal(seen[0], base)


def test_row_blocks_of_a_batch_agree_with_the_top_k_path(rng):
    # 4,000 items: the counting path scores a batch of 300 users in row blocks of 131
    n_users, n_items = 300, 4000
    users = rng.integers(-2, 3, size=(n_users, 3)).astype(np.float32)  # many tied scores
    items = rng.integers(-2, 3, size=(n_items, 3)).astype(np.float32)
    test = sp.csr_matrix(
        (np.ones(n_users), (np.arange(n_users), rng.integers(0, n_items, n_users))),
        shape=(n_users, n_items),
    )
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.01).astype(np.float32))
    calls = []

    def scorer(idx):
        calls.append(len(idx))
        return torch.from_numpy(users)[idx] @ torch.from_numpy(items).T

    for ties in ("conservative", "optimistic"):
        calls.clear()
        fast = evaluate_topk(scorer, test, exclude=train, ks=(5, 50), ties=ties)
        assert calls == [131, 131, 38]
        slow = evaluate_topk(
            (users, items), test, exclude=train, ks=(5, 50), ties=ties, coverage=True
        )
        for key in slow.per_user:
            np.testing.assert_array_equal(fast.per_user[key], slow.per_user[key], err_msg=key)
