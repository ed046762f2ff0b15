"""Synthetic generators: shape, determinism, and that the planted structure is learnable."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.sparse.linalg import svds

from gradtracer.recsys.data import (
    leave_one_out,
    make_implicit,
    make_sessions,
    temporal_split,
)


def _hit_rate_at_10(
    scores: np.ndarray, seen: np.ndarray, users: np.ndarray, targets: np.ndarray
) -> float:
    """Leave-one-out HR@10 with already-seen items excluded (full ranking)."""
    s = scores[users].astype(float)  # (n_test, n_items)
    s[seen[users] > 0] = -np.inf
    top = np.argpartition(-s, 10, axis=1)[:, :10]
    return float((top == targets[:, None]).any(axis=1).mean())


def test_make_implicit_defaults_shape_and_order() -> None:
    ix = make_implicit()
    assert (ix.n_users, ix.n_items, len(ix)) == (943, 1682, 55_000)
    f = ix.frame
    assert f.group_by("user").len()["len"].min() >= 5
    assert f.select(["user", "item"]).n_unique() == len(ix)  # no duplicate pairs
    # strictly increasing timestamps within each user, rows grouped by user
    assert (f["user"].diff().drop_nulls() >= 0).all()
    inc = f.select((pl.col("timestamp").diff().over("user") > 0).fill_null(True).all()).item()
    assert inc
    # popularity is skewed (Zipf-like): top 10% of items hold far more than 10% of rows
    counts = np.sort(f.group_by("item").len()["len"].to_numpy())[::-1]
    assert counts[: ix.n_items // 10].sum() > 0.3 * len(ix)


def test_make_implicit_is_deterministic() -> None:
    a = make_implicit(n_users=50, n_items=80, n_interactions=600, random_state=5)
    b = make_implicit(n_users=50, n_items=80, n_interactions=600, random_state=5)
    c = make_implicit(n_users=50, n_items=80, n_interactions=600, random_state=6)
    assert a.frame.equals(b.frame)
    assert not a.frame.equals(c.frame)


def _loo_hit_rates(taste_strength: float) -> tuple[float, float]:
    """(HR@10 of a rank-16 truncated SVD of train, HR@10 of popularity) on leave-one-out."""
    split = leave_one_out(make_implicit(taste_strength=taste_strength, random_state=0))
    train = split.train.user_items().astype(np.float64)  # (n_users, n_items) CSR
    test = split.test.frame.sort("user")
    users, targets = test["user"].to_numpy(), test["item"].to_numpy()
    u, s, vt = svds(train, k=16, random_state=0)
    svd_scores = (u * s) @ vt  # (n_users, n_items)
    seen = train.toarray()
    popularity = np.broadcast_to(seen.sum(axis=0), seen.shape)
    return (
        _hit_rate_at_10(svd_scores, seen, users, targets),
        _hit_rate_at_10(popularity, seen, users, targets),
    )


def test_low_rank_model_beats_popularity_on_make_implicit() -> None:
    hr_svd, hr_pop = _loo_hit_rates(taste_strength=2.0)
    assert hr_svd > hr_pop + 0.05, (hr_svd, hr_pop)
    # with taste switched off there is nothing for the low-rank model to find
    hr_svd_flat, hr_pop_flat = _loo_hit_rates(taste_strength=0.0)
    assert hr_svd_flat <= hr_pop_flat + 0.02, (hr_svd_flat, hr_pop_flat)


def test_make_sessions_shape_and_times() -> None:
    ix = make_sessions()
    f = ix.frame
    lengths = f.group_by("session").len()["len"]
    assert ix.n_items == 1000 and f["session"].n_unique() == 5000
    assert lengths.min() >= 2 and abs(lengths.mean() - 5.0) < 0.2
    starts = f.group_by("session").agg(pl.col("timestamp").min()).sort("session")["timestamp"]
    assert (starts.diff().drop_nulls() > 0).all()
    inc = f.select((pl.col("timestamp").diff().over("session") > 0).fill_null(True).all()).item()
    assert inc
    assert make_sessions(n_sessions=30, random_state=2).frame.equals(
        make_sessions(n_sessions=30, random_state=2).frame
    )


def _next_item_recall(train: pl.DataFrame, test: pl.DataFrame, n_items: int, markov: bool) -> float:
    """Recall@10 of next-click prediction: popularity vs first-order transition counts."""
    pop = np.bincount(train["item"].to_numpy(), minlength=n_items).astype(float)
    trans = np.zeros((n_items, n_items))
    for frame in (train,):
        cur = frame["item"].to_numpy()[:-1]
        nxt = frame["item"].to_numpy()[1:]
        same = frame["session"].to_numpy()[:-1] == frame["session"].to_numpy()[1:]
        np.add.at(trans, (cur[same], nxt[same]), 1.0)
    cur = test["item"].to_numpy()[:-1]
    nxt = test["item"].to_numpy()[1:]
    same = test["session"].to_numpy()[:-1] == test["session"].to_numpy()[1:]
    cur, nxt = cur[same], nxt[same]
    scores = trans[cur] + 1e-6 * pop if markov else np.broadcast_to(pop, (len(cur), n_items))
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    return float((top == nxt[:, None]).any(axis=1).mean())


@pytest.mark.parametrize("follow_prob", [0.7, 0.0], ids=["planted", "no-transitions"])
def test_markov_beats_popularity_only_with_planted_transitions(follow_prob: float) -> None:
    ix = make_sessions(follow_prob=follow_prob, random_state=0)
    split = temporal_split(ix, test_fraction=0.2, by="session")
    train, test = split.train.frame, split.test.frame
    markov = _next_item_recall(train, test, ix.n_items, markov=True)
    pop = _next_item_recall(train, test, ix.n_items, markov=False)
    if follow_prob > 0:
        assert markov > pop + 0.2, (markov, pop)
    else:
        assert markov < pop + 0.05, (markov, pop)


def test_generators_validate_arguments() -> None:
    with pytest.raises(ValueError, match="n_interactions"):
        make_implicit(n_users=10, n_items=20, n_interactions=10)
    with pytest.raises(ValueError, match="mean_length"):
        make_sessions(mean_length=1.0)
