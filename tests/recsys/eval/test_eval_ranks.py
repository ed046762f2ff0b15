"""Single-target ranks and the metrics derived from them; rating errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.recsys.metrics import mae, metrics_from_ranks, rmse, target_ranks


def test_ranks_by_policy():
    scores = torch.tensor([[3.0, 5.0, 3.0, 3.0, 1.0]])
    target = torch.tensor([0])
    assert target_ranks(scores, target, ties="conservative").item() == 4
    assert target_ranks(scores, target, ties="optimistic").item() == 2
    draws = {int(target_ranks(scores, target, ties="random", random_state=s)) for s in range(60)}
    assert draws == {2, 3, 4}


def test_excluded_items_never_outrank_target():
    scores = torch.tensor([[1.0, 9.0, 8.0, 1.0]])
    mask = torch.tensor([[False, True, True, True]])
    assert target_ranks(scores, torch.tensor([0]), exclude_mask=mask).item() == 1
    # the target itself is never excluded
    mask[0, 0] = True
    assert target_ranks(scores, torch.tensor([0]), exclude_mask=mask).item() == 1


def test_target_rank_errors():
    scores = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="targets has 3 rows"):
        target_ranks(scores, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="max 4"):
        target_ranks(scores, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="ties"):
        target_ranks(scores, torch.tensor([0, 1]), ties="average")
    with pytest.raises(ValueError, match="exclude_mask shape"):
        target_ranks(scores, torch.tensor([0, 1]), exclude_mask=torch.zeros(1, 4, dtype=bool))


def test_metrics_from_ranks_values():
    out = metrics_from_ranks(np.array([1, 2, 11]), ks=10)
    assert out["hr@10"].tolist() == [1.0, 1.0, 0.0]
    assert out["recall@10"].tolist() == [1.0, 1.0, 0.0]
    assert out["mrr@10"].tolist() == [1.0, 0.5, 0.0]
    np.testing.assert_allclose(out["ndcg@10"], [1.0, 1 / math.log2(3), 0.0])
    with pytest.raises(ValueError, match="1-based"):
        metrics_from_ranks([0, 1])
    with pytest.raises(ValueError, match="got 0"):
        metrics_from_ranks([1], ks=(0,))


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 6),
    n_items=st.integers(1, 12),
    levels=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_rank_properties(rows, n_items, levels, seed):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.integers(0, levels, size=(rows, n_items)).astype(np.float32))
    targets = torch.from_numpy(rng.integers(0, n_items, size=rows))
    cons = target_ranks(scores, targets, "conservative")
    opt = target_ranks(scores, targets, "optimistic")
    rnd = target_ranks(scores, targets, "random", random_state=seed)
    assert torch.all((opt >= 1) & (opt <= rnd) & (rnd <= cons) & (cons <= n_items))
    best = scores.max(1).values == scores.gather(1, targets[:, None]).squeeze(1)
    unique_best = best & ((scores == scores.max(1, keepdim=True).values).sum(1) == 1)
    m = metrics_from_ranks(cons, ks=(1, n_items))
    assert np.all(m["ndcg@1"][unique_best.numpy()] == 1.0)
    assert np.all(m[f"hr@{n_items}"] == 1.0)
    for v in m.values():
        assert np.all((v >= 0) & (v <= 1))


def test_rmse_mae():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae(torch.tensor([1.0, 2.0]), np.array([2.0, 2.0])) == 0.5
    with pytest.raises(ValueError, match=r"\(2,\)"):
        rmse([1, 2], [1, 2, 3])


def test_metrics_from_ranks_are_the_functional_definitions():
    from gradtracer.recsys.metrics import functional as F

    ranks = np.array([1, 3, 7, 10, 11, 5000])
    out = metrics_from_ranks(ranks, ks=(5, 10))
    hits = F.hits_from_positions(torch.from_numpy(ranks[:, None]), 10)
    ones = np.ones(ranks.size, dtype=np.int64)
    hit_form = {"hr": F.hit_rate_at_k, "recall": F.recall_at_k, "mrr": F.reciprocal_rank_at_k}
    hit_form["ndcg"] = F.ndcg_at_k
    for name in ("hr", "recall", "mrr", "ndcg"):
        for k in (5, 10):
            expected = F.METRICS[name](ranks[:, None], ones, k)
            np.testing.assert_array_equal(out[f"{name}@{k}"], expected)
            on_hits = hit_form[name](hits, torch.from_numpy(ones), k).numpy()
            np.testing.assert_array_equal(on_hits, expected)
    assert out["ndcg@10"][2] == 1.0 / np.log2(8.0) and out["mrr@5"][2] == 0.0
    with pytest.raises(ValueError, match="whole numbers"):
        metrics_from_ranks([1.5])
