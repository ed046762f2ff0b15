"""Sampled-negatives evaluation: labelled, seeded, distinct unseen negatives."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from eval_reference import random_csr

from gradtracer.recsys.metrics import evaluate_sampled, evaluate_topk
from gradtracer.recsys.metrics.sampled import _sample_negatives


def test_labelled_and_seeded(rng):
    users = rng.normal(size=(40, 6)).astype(np.float32)
    items = rng.normal(size=(300, 6)).astype(np.float32)
    test = random_csr(rng, (40, 300), 0.01)
    train = random_csr(rng, (40, 300), 0.1)
    a = evaluate_sampled((users, items), test, exclude=train, n_negatives=50, random_state=1)
    b = evaluate_sampled((users, items), test, exclude=train, n_negatives=50, random_state=1)
    assert a.protocol == "sampled (50 negatives)"
    assert "sampled (50 negatives)" in str(a)
    assert a.to_dict()["protocol"] == "sampled (50 negatives)"
    for key in a.per_user:
        np.testing.assert_array_equal(a.per_user[key], b.per_user[key])
    full = evaluate_topk((users, items), test, exclude=train)
    # fewer competitors can only move held-out items up
    assert np.all(a.per_user["hr@10"] >= full.per_user["hr@10"])


def test_negatives_are_distinct_and_unseen():
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=np.float32))
    gen = torch.Generator().manual_seed(0)
    neg = _sample_negatives(seen, 6, 4, gen)
    assert sorted(neg[0].tolist()) == [2, 3, 4, 5]
    assert sorted(neg[1].tolist()) == [0, 1, 2, 3]


def test_perfect_model_scores_one():
    n = 20
    test = sp.csr_matrix(np.eye(n, dtype=np.float32))
    scores = torch.eye(n)
    res = evaluate_sampled(lambda idx: scores[idx], test, n_negatives=10, ks=(1, 5))
    assert res.mean["ndcg@1"] == 1.0 and res.mean["mrr@5"] == 1.0


def test_errors():
    test = sp.csr_matrix(np.eye(5, dtype=np.float32))
    factors = (np.ones((5, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="fewer than n_negatives=10"):
        evaluate_sampled(factors, test, n_negatives=10, ks=(1,))
    with pytest.raises(ValueError, match="K=10"):
        evaluate_sampled(factors, test, n_negatives=3, ks=(10,))
    with pytest.raises(ValueError, match="n_negatives"):
        evaluate_sampled(factors, test, n_negatives=0)
