"""Next-item evaluation: every position, against a naive one-session-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtracer.recsys.models.gru4rec import GRU4Rec, GRU4RecConfig, train_gru4rec
from gradtracer.recsys.models.markov import MarkovChain
from gradtracer.recsys.models.session_popularity import SessionPopularity
from gradtracer.recsys.sessions import compare_next_item, evaluate_next_item
from gradtracer.recsys.sessions.evaluate import NextItemResult


def _conservative_rank(scores: np.ndarray, target: int) -> int:
    others = np.delete(scores, target)
    return 1 + int((others >= scores[target]).sum())


def _naive_ranks(test, score_session) -> list[int]:
    """Loop over sessions and positions; ``score_session(items[:t+1])`` scores the next item."""
    ranks = []
    for s in range(test.n_sessions):
        items = test.items[test.offsets[s] : test.offsets[s + 1]]
        for t in range(len(items) - 1):
            ranks.append(_conservative_rank(score_session(items[: t + 1]), int(items[t + 1])))
    return ranks


def test_markov_ranks_equal_the_naive_loop_over_every_position(train_arrays, test_arrays):
    chain = MarkovChain(train_arrays.n_items, alpha=0.3).fit(train_arrays)
    result = evaluate_next_item(chain, test_arrays, batch_size=7)
    naive = _naive_ranks(test_arrays, lambda prefix: chain.scores_after(prefix[-1:])[0])
    assert result.n_predictions == test_arrays.n_predictions == len(naive)
    assert np.array_equal(result.ranks, naive)
    # positions count from 1 inside each session
    lengths = test_arrays.lengths
    assert np.array_equal(
        np.bincount(result.positions)[1:], [(lengths > p).sum() for p in range(1, lengths.max())]
    )


def test_gru4rec_session_parallel_ranks_equal_sequential_replay(train_arrays, test_arrays):
    cfg = GRU4RecConfig(
        layers=(16, 8), batch_size=16, n_sample=32, n_epochs=1, dropout_p_hidden=0.2, random_state=5
    )
    model = GRU4Rec(train_arrays.n_items, cfg)
    train_gru4rec(model, train_arrays)
    batched = evaluate_next_item(model, test_arrays, batch_size=9)

    def replay(prefix: np.ndarray) -> np.ndarray:
        state = model.init_state(1)
        with torch.no_grad():
            for item in prefix:
                scores = model(torch.tensor([int(item)]), state, None)
        return scores[0].numpy()

    few = test_arrays.offsets[40]  # the first 40 sessions keep the loop short
    naive = _naive_ranks(_head(test_arrays, 40), replay)
    assert np.array_equal(batched.ranks[batched.target_events < few], naive)


def _head(data, n):
    from gradtracer.recsys.sessions.batching import SessionArrays

    end = data.offsets[n]
    return SessionArrays(
        data.items[:end], data.offsets[: n + 1], np.arange(n), data.session_ids[:n], data.n_items
    )


def test_ties_are_conservative(train_arrays, test_arrays):
    flat = SessionPopularity(train_arrays.n_items)  # unfitted: every item scores 0
    result = evaluate_next_item(flat, test_arrays)
    assert (result.ranks == train_arrays.n_items).all()
    assert result.mean["recall@20"] == 0.0


def test_metric_values_follow_from_the_ranks(train_arrays, test_arrays):
    result = evaluate_next_item(
        SessionPopularity(train_arrays.n_items).fit(train_arrays), test_arrays, ks=(5, 20)
    )
    r = result.ranks.astype(float)
    assert np.isclose(result.mean["recall@5"], np.mean(r <= 5))
    assert np.isclose(result.mean["mrr@20"], np.mean(np.where(r <= 20, 1 / r, 0)))
    assert np.isclose(result.mean["ndcg@20"], np.mean(np.where(r <= 20, 1 / np.log2(r + 1), 0)))


def test_results_round_trip_and_paired_comparison(tmp_path, train_arrays, test_arrays):
    pop = evaluate_next_item(SessionPopularity(train_arrays.n_items).fit(train_arrays), test_arrays)
    markov = evaluate_next_item(MarkovChain(train_arrays.n_items).fit(train_arrays), test_arrays)
    pop.save(str(tmp_path / "pop.npz"))
    loaded = NextItemResult.load(str(tmp_path / "pop.npz"))
    assert loaded.mean == pytest.approx(pop.mean)
    table = compare_next_item(markov, loaded)
    assert table["recall@20"]["diff"] > 0 and table["recall@20"]["ttest_p"] < 0.01


def test_empty_test_split_and_item_space_mismatch_are_errors(train_arrays, test_arrays):
    with pytest.raises(ValueError, match="item space"):
        evaluate_next_item(SessionPopularity(train_arrays.n_items + 1), test_arrays)
    with pytest.raises(ValueError, match="0 predictions"):
        evaluate_next_item(SessionPopularity(train_arrays.n_items), _head(test_arrays, 0))


def test_recommend_next_matches_the_model_scores(train_arrays):
    from gradtracer.recsys.sessions import recommend_next

    chain = MarkovChain(train_arrays.n_items, alpha=0.2).fit(train_arrays)
    prefixes = [[3], [5, 9, 3], [int(train_arrays.items[0])]]
    top = recommend_next(chain, prefixes, k=5)
    for row, prefix in zip(top, prefixes, strict=True):
        scores = chain.scores_after(np.array([prefix[-1]]))[0]
        assert np.array_equal(row, np.argsort(-scores, kind="stable")[:5])
    seen = recommend_next(chain, prefixes, k=5, exclude_seen=True)
    assert 3 not in seen[0] and not set(seen[1]) & {5, 9, 3}

    model = GRU4Rec(train_arrays.n_items, GRU4RecConfig(layers=(8,), n_sample=16, n_epochs=1))
    train_gru4rec(model, train_arrays)
    state = model.init_state(1)
    with torch.no_grad():
        for item in prefixes[1]:
            scores = model(torch.tensor([item]), state, None)[0].numpy()
    got = recommend_next(model, prefixes, k=5, batch_size=2)[1]
    assert np.array_equal(got, np.argsort(-scores.astype(np.float64), kind="stable")[:5])
    with pytest.raises(ValueError, match="empty"):
        recommend_next(chain, [[]])
