"""Full-ranking evaluator against a naive per-user Python reference, ties, errors, coverage."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from eval_reference import naive_user_metrics, random_csr
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.recsys.metrics import (
    METRICS,
    RankingResult,
    evaluate_topk,
    metrics_from_ranks,
    target_ranks,
)


def _reference(scores, test, train, k, ties):
    out: dict[str, list[float]] = {}
    for u in range(test.shape[0]):
        rel = set(test[u].indices.tolist())
        if not rel:
            continue
        excl = set() if train is None else set(train[u].indices.tolist())
        for key, v in naive_user_metrics(scores[u], rel, excl, k, ties).items():
            out.setdefault(key, []).append(v)
    return {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("ties", ["conservative", "optimistic"])
@pytest.mark.parametrize("integer_scores", [False, True], ids=["distinct", "many-ties"])
def test_matches_naive_reference(rng, ties, integer_scores):
    n_users, n_items, k = 40, 60, 7
    if integer_scores:
        scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32)
    else:
        scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    test = random_csr(rng, (n_users, n_items), 0.05)
    train = random_csr(rng, (n_users, n_items), 0.3)
    table = torch.from_numpy(scores)
    res = evaluate_topk(
        lambda idx: table[idx], test, exclude=train, ks=(3, k), ties=ties, batch_size=9
    )
    ref = _reference(scores, test, train, k, ties)
    ref3 = _reference(scores, test, train, 3, ties)
    assert res.n_users == len(ref[f"hr@{k}"])
    for key in ref:
        np.testing.assert_allclose(res.per_user[key], ref[key], atol=1e-12, err_msg=key)
    for key in ref3:
        np.testing.assert_allclose(res.per_user[key], ref3[key], atol=1e-12, err_msg=key)


def test_factor_scorer_equals_callable(rng):
    users = rng.normal(size=(30, 5)).astype(np.float32)
    items = rng.normal(size=(80, 5)).astype(np.float32)
    test = random_csr(rng, (30, 80), 0.05)
    a = evaluate_topk((users, items), test, ks=(10,))
    b = evaluate_topk((torch.from_numpy(users), torch.from_numpy(items)), test, ks=10)
    full = torch.from_numpy(users @ items.T)
    c = evaluate_topk(lambda idx: full[idx], test, ks=[10])
    for key in a.mean:
        assert a.mean[key] == pytest.approx(b.mean[key])
        assert a.mean[key] == pytest.approx(c.mean[key])


@pytest.mark.parametrize("coverage", [False, True], ids=["counting", "topk"])
def test_factor_scorer_reuses_its_buffer_across_uneven_batches(rng, coverage):
    """Batches of 7 users (the last one shorter) and masked items: the scores written into
    one reused buffer give per-user metrics equal to the naive reference; float32 user
    factors with float64 item factors are scored in float64."""
    users = rng.normal(size=(30, 4)).astype(np.float32)
    items = rng.normal(size=(50, 4))
    test = random_csr(rng, (30, 50), 0.06)
    train = random_csr(rng, (30, 50), 0.3)
    res = evaluate_topk(
        (users, items), test, exclude=train, ks=(5,), batch_size=7, coverage=coverage
    )
    ref = _reference(users.astype(np.float64) @ items.T, test, train, 5, "conservative")
    for key in ref:
        np.testing.assert_allclose(res.per_user[key], ref[key], atol=1e-12, err_msg=key)


def test_skipped_users_are_counted_not_averaged(rng):
    test = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    scores = torch.tensor([[4.0, 3, 2, 1], [1, 2, 3, 4], [4.0, 3, 2, 1]])
    res = evaluate_topk(lambda idx: scores[idx], test, ks=(1,))
    assert res.n_skipped == 1
    assert res.users.tolist() == [0, 2]
    assert res.per_user["hr@1"].tolist() == [1.0, 0.0]
    assert res.mean["hr@1"] == 0.5


def test_all_equal_scores_conservative_vs_optimistic():
    # one relevant item, every item scores the same: conservative ranks it last
    test = sp.csr_matrix(np.eye(5, dtype=np.float32))
    scores = torch.zeros(5, 5)
    cons = evaluate_topk(lambda idx: scores[idx], test, ks=(4,), ties="conservative")
    opt = evaluate_topk(lambda idx: scores[idx], test, ks=(4,), ties="optimistic")
    assert cons.mean["hr@4"] == 0.0
    assert opt.mean["hr@4"] == 1.0
    assert opt.mean["ndcg@4"] == 1.0


def test_random_ties_are_seeded_and_average_to_expectation():
    n = 2000
    test = sp.csr_matrix((np.ones(n), (np.arange(n), np.zeros(n))), shape=(n, 10))
    scores = torch.zeros(n, 10)
    a = evaluate_topk(lambda idx: scores[idx], test, ks=(5,), ties="random", random_state=3)
    b = evaluate_topk(lambda idx: scores[idx], test, ks=(5,), ties="random", random_state=3)
    np.testing.assert_array_equal(a.per_user["hr@5"], b.per_user["hr@5"])
    # target uniformly placed among 10 tied items: P(in top 5) = 0.5
    assert abs(a.mean["hr@5"] - 0.5) < 0.05
    assert abs(a.mean["mrr@5"] - np.mean(1 / np.arange(1, 6)) / 2) < 0.03


def test_excluded_and_held_out_item_stays_rankable():
    test = sp.csr_matrix(np.array([[0, 1, 0]], dtype=np.float32))
    train = sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32))
    scores = torch.tensor([[5.0, 4.0, 1.0]])
    res = evaluate_topk(lambda idx: scores[idx], test, exclude=train, ks=(1,))
    assert res.mean["hr@1"] == 1.0


def test_single_target_agrees_with_target_ranks(rng):
    n_users, n_items = 50, 30
    scores = torch.from_numpy(rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32))
    targets = rng.integers(0, n_items, size=n_users)
    test = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), targets)), shape=scores.shape)
    for ties in ("conservative", "optimistic"):
        res = evaluate_topk(lambda idx: scores[idx], test, ks=(1, 5, 10), ties=ties)
        ranks = target_ranks(scores, torch.from_numpy(targets), ties=ties)
        ref = metrics_from_ranks(ranks, ks=(1, 5, 10))
        for key, values in ref.items():
            np.testing.assert_allclose(res.per_user[key], values, atol=1e-12, err_msg=key)


def test_coverage_counts_distinct_recommended_items():
    test = sp.csr_matrix(np.ones((3, 4), dtype=np.float32))
    scores = torch.tensor([[4.0, 3, 2, 1]] * 3)  # everyone gets item 0 first
    res = evaluate_topk(lambda idx: scores[idx], test, ks=(1, 2), coverage=True)
    assert res.coverage == {"coverage@1": 0.25, "coverage@2": 0.5}


def test_result_table_and_dict():
    test = sp.csr_matrix(np.eye(4, dtype=np.float32))
    res = evaluate_topk((np.eye(4), np.eye(4)), test, ks=(2,), metrics=("hr", "ndcg"))
    assert isinstance(res, RankingResult)
    text = str(res)
    assert "full ranking" in text and "ndcg@2" in text and "1.0000" in text
    d = res.to_dict(per_user=True)
    assert d["mean"] == {"hr@2": 1.0, "ndcg@2": 1.0}
    assert d["protocol"] == "full ranking" and d["per_user"]["hr@2"] == [1.0] * 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ks": (0,)}, "positive int, got 0"),
        ({"ks": (-3, 5)}, "got -3"),
        ({"ks": (11,)}, "K=11 exceeds the number of items"),
        ({"metrics": ("ndcg", "auc")}, "auc"),
        ({"ties": "first"}, "'first'"),
        ({"exclude": sp.csr_matrix((4, 10))}, r"shape \(4, 10\)"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, match):
    test = sp.csr_matrix(np.eye(5, 10, dtype=np.float32))
    with pytest.raises(ValueError, match=match):
        evaluate_topk((np.ones((5, 2)), np.ones((10, 2))), test, **kwargs)


def test_factor_shape_mismatch_names_shapes():
    test = sp.csr_matrix(np.eye(5, 10, dtype=np.float32))
    with pytest.raises(ValueError, match="7 items"):
        evaluate_topk((np.ones((5, 2)), np.ones((7, 2))), test)
    with pytest.raises(ValueError, match=r"\(3, 10\)"):
        evaluate_topk(lambda idx: torch.zeros(3, 10), test)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_topk(lambda idx: torch.full((len(idx), 10), float("nan")), test)


@settings(max_examples=40, deadline=None)
@given(
    n_users=st.integers(1, 8),
    n_items=st.integers(2, 15),
    levels=st.integers(1, 4),
    k=st.integers(1, 15),
    seed=st.integers(0, 10_000),
)
def test_properties(n_users, n_items, levels, k, seed):
    k = min(k, n_items)
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.integers(0, levels, size=(n_users, n_items)).astype(np.float32))
    dense = rng.random((n_users, n_items)) < 0.3
    dense[0, 0] = True
    test = sp.csr_matrix(dense.astype(np.float32))
    cons = evaluate_topk(lambda idx: scores[idx], test, ks=(k,), ties="conservative")
    opt = evaluate_topk(lambda idx: scores[idx], test, ks=(k,), ties="optimistic")
    rnd = evaluate_topk(lambda idx: scores[idx], test, ks=(k,), ties="random", random_state=seed)
    for name in METRICS:
        key = f"{name}@{k}"
        for res in (cons, opt, rnd):
            assert np.all((res.per_user[key] >= 0) & (res.per_user[key] <= 1 + 1e-12))
        assert np.all(cons.per_user[key] <= opt.per_user[key] + 1e-12)
        assert np.all(cons.per_user[key] <= rnd.per_user[key] + 1e-12)
        assert np.all(rnd.per_user[key] <= opt.per_user[key] + 1e-12)


def test_callable_output_is_not_modified_and_may_be_a_view():
    base = torch.tensor([3.0, 2.0, 1.0, 0.0])
    test = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32))
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    table = torch.tensor([[3.0, 2.0], [1.0, 0.0]]).t()  # non-contiguous
    res = evaluate_topk(lambda idx: base.expand(len(idx), -1), test, exclude=train, ks=(1,))
    assert res.per_user["hr@1"].tolist() == [1.0, 0.0]
    assert base.tolist() == [3.0, 2.0, 1.0, 0.0]
    res = evaluate_topk(
        lambda idx: table[idx],
        sp.csr_matrix(np.eye(2)),
        exclude=sp.csr_matrix(np.eye(2)[::-1]),
        ks=(1,),
    )
    assert res.per_user["hr@1"].tolist() == [1.0, 1.0]
    assert table.tolist() == [[3.0, 1.0], [2.0, 0.0]]
