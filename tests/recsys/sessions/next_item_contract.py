"""Contract every next-item model passes (mix into a test class that provides ``make_model``).

A test class subclasses :class:`NextItemContract` and defines the static method
``make_model(n_items)`` (an unfitted model). :meth:`NextItemContract.planted_case` gives training sessions and
prefixes whose best next item is obvious; models that ignore the session (popularity)
override it with a case that suits them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from gradtracer.recsys.models.artifact import ArtifactError
from gradtracer.recsys.models.next_item import NextItemRecommender
from gradtracer.recsys.models.registry import load_model
from gradtracer.recsys.sessions import SessionArrays, evaluate_next_item

N_ITEMS = 10
CYCLE = 5  # items 0..4 form one cycle, 5..9 another


def sessions_to_arrays(sessions: list[list[int]], n_items: int) -> SessionArrays:
    """Session arrays of ``sessions`` (dense item indices) in list order."""
    lengths = np.array([len(s) for s in sessions], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    order = np.arange(len(sessions), dtype=np.int64)
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sessions])
    return SessionArrays(items, offsets, order, order.copy(), n_items)


def cycle_sessions(n_sessions: int, random_state: int) -> list[list[int]]:
    """Sessions walking one of two disjoint item cycles (0->1->..->4->0, 5->..->9->5)."""
    rng = np.random.default_rng(random_state)
    out = []
    for _ in range(n_sessions):
        base = CYCLE * int(rng.integers(0, 2))
        start, length = int(rng.integers(0, CYCLE)), int(rng.integers(2, 7))
        out.append([base + (start + j) % CYCLE for j in range(length)])
    return out


def next_in_cycle(item: int) -> int:
    base = item - item % CYCLE
    return base + (item % CYCLE + 1) % CYCLE


class NextItemContract:
    """Behaviour shared by every :class:`NextItemRecommender` (see the module docstring)."""

    @staticmethod
    def make_model(n_items: int) -> NextItemRecommender:
        raise NotImplementedError

    def planted_case(self) -> tuple[SessionArrays, list[list[int]], list[int]]:
        """``(train, prefixes, expected top-1 after each prefix)`` on two item cycles."""
        train = sessions_to_arrays(cycle_sessions(300, random_state=0), N_ITEMS)
        prefixes = [[0], [3, 4], [5, 6, 7], [9], [2, 3, 4, 0]]
        return train, prefixes, [next_in_cycle(p[-1]) for p in prefixes]

    # --- fixtures --------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> tuple[SessionArrays, SessionArrays]:
        train = sessions_to_arrays(cycle_sessions(300, random_state=1), N_ITEMS)
        test = sessions_to_arrays(cycle_sessions(40, random_state=2), N_ITEMS)
        return train, test

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Any) -> NextItemRecommender:
        return cls.make_model(N_ITEMS).fit(data[0])

    # --- the contract ----------------------------------------------------------------------
    def test_is_a_registered_next_item_model(self, fitted: NextItemRecommender) -> None:
        from gradtracer.recsys.models.next_item import next_item_models

        assert isinstance(fitted, NextItemRecommender)
        assert next_item_models()[fitted.name] is type(fitted)

    def test_planted_top1(self) -> None:
        train, prefixes, expected = self.planted_case()
        model = self.make_model(train.n_items).fit(train)
        assert model.recommend(prefixes, k=1)[:, 0].tolist() == expected

    @pytest.mark.parametrize("k", [0, -1, N_ITEMS + 1, 2.5, True, "3", None])
    def test_k_is_validated(self, fitted: NextItemRecommender, k: Any) -> None:
        with pytest.raises(ValueError, match="k must be an int in"):
            fitted.recommend([[1]], k=k)

    def test_k_up_to_the_catalog(self, fitted: NextItemRecommender) -> None:
        full = fitted.recommend([[1], [6, 7]], k=N_ITEMS)
        assert full.shape == (2, N_ITEMS) and full.dtype == np.int64
        assert all(sorted(row) == list(range(N_ITEMS)) for row in full.tolist())

    def test_score_and_recommend_agree(self, fitted: NextItemRecommender) -> None:
        prefixes = [[0], [3, 4], [8, 9, 5], [1, 1]]
        scores = fitted.score(prefixes)
        assert scores.shape == (len(prefixes), N_ITEMS) and scores.dtype == np.float32
        top = fitted.recommend(prefixes, k=4)
        for row, s in zip(top, scores, strict=True):
            assert np.array_equal(row, np.argsort(-s.astype(np.float64), kind="stable")[:4])
            assert np.all(np.diff(s[row]) <= 0)

    def test_exclusion_is_honoured(self, fitted: NextItemRecommender) -> None:
        prefixes = [[0, 1, 2], [7], [9, 5]]
        seen = fitted.recommend(prefixes, k=5, exclude="seen")
        for row, p in zip(seen, prefixes, strict=True):
            assert not set(row.tolist()) & set(p)
        banned = [[4, 3], [8], []]
        as_lists = fitted.recommend(prefixes, k=5, exclude=banned)
        rows = np.repeat(np.arange(3), [len(b) for b in banned])
        cols = np.concatenate([np.asarray(b, dtype=np.int64) for b in banned])
        matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(3, N_ITEMS))
        as_matrix = fitted.recommend(prefixes, k=5, exclude=matrix)
        assert np.array_equal(as_lists, as_matrix)
        for row, b in zip(as_lists, banned, strict=True):
            assert not set(row.tolist()) & set(b)
        # the rest keeps the unrestricted order
        free = fitted.recommend(prefixes, k=N_ITEMS)
        for got, full, b in zip(as_lists, free, banned, strict=True):
            assert got.tolist() == [i for i in full.tolist() if i not in b][:5]
        with pytest.raises(ValueError, match="exclude"):
            fitted.recommend(prefixes, k=5, exclude=[[1]])
        with pytest.raises(ValueError, match="exclude matrix has shape"):
            fitted.recommend(prefixes, k=5, exclude=sp.csr_matrix((2, N_ITEMS)))

    def test_bad_prefixes_are_named(self, fitted: NextItemRecommender) -> None:
        with pytest.raises(ValueError, match="prefix 1 is empty"):
            fitted.score([[1], []])
        with pytest.raises(ValueError, match=f"prefix 0 has item index {N_ITEMS}"):
            fitted.score([[N_ITEMS]])

    def test_evaluating_the_model_equals_evaluating_its_scorer(
        self, fitted: NextItemRecommender, data: Any
    ) -> None:
        test = data[1]
        direct = fitted.evaluate(test, ks=(1, 5))
        via_scorer = evaluate_next_item(fitted.scorer(), test, ks=(1, 5), name=fitted.name)
        via_model = evaluate_next_item(fitted, test, ks=(1, 5))
        assert np.array_equal(direct.ranks, via_scorer.ranks)
        assert np.array_equal(direct.ranks, via_model.ranks)
        assert direct.mean == via_scorer.mean and direct.model == fitted.name

    def test_evaluation_matches_scoring_each_prefix(
        self, fitted: NextItemRecommender, data: Any
    ) -> None:
        test = data[1]
        result = fitted.evaluate(test, ks=(5,))
        prefixes, targets = [], []
        for s in range(test.n_sessions):
            items = test.items[test.offsets[s] : test.offsets[s + 1]].tolist()
            for t in range(1, len(items)):
                prefixes.append(items[:t])
                targets.append(items[t])
        scores = fitted.score(prefixes)
        target_scores = scores[np.arange(len(targets)), targets]
        # conservative ties: every other item scoring >= the target ranks above it
        ranks = 1 + (scores >= target_scores[:, None]).sum(axis=1) - 1
        assert np.array_equal(result.ranks, ranks)

    def test_save_load_round_trip_gives_identical_scores(
        self, fitted: NextItemRecommender, data: Any, tmp_path: Any
    ) -> None:
        prefixes = [[0], [3, 4], [8, 9, 5]]
        path = fitted.save(tmp_path / "model")
        for loaded in (type(fitted).load(path), load_model(path)):
            assert type(loaded) is type(fitted)
            assert np.array_equal(loaded.score(prefixes), fitted.score(prefixes))
            ours, theirs = loaded.evaluate(data[1], ks=(5,)), fitted.evaluate(data[1], ks=(5,))
            assert np.array_equal(ours.ranks, theirs.ranks)
        files = {p.name for p in path.iterdir()}
        assert {"model.json", "arrays.npz"} <= files
        assert not {p for p in files if p.endswith((".pkl", ".pt", ".tmp", ".next"))}

    def test_saving_again_replaces_the_model(
        self, fitted: NextItemRecommender, tmp_path: Any
    ) -> None:
        other = self.make_model(N_ITEMS).fit(sessions_to_arrays([[0, 5, 0, 5, 0]], N_ITEMS))
        path = other.save(tmp_path / "model")
        fitted.save(path)
        assert np.array_equal(type(fitted).load(path).score([[0]]), fitted.score([[0]]))

    def test_loading_another_kind_is_refused(
        self, fitted: NextItemRecommender, tmp_path: Any
    ) -> None:
        from gradtracer.recsys.models.markov import MarkovChain
        from gradtracer.recsys.models.session_popularity import SessionPopularity

        path = fitted.save(tmp_path / "model")
        other = SessionPopularity if not isinstance(fitted, SessionPopularity) else MarkovChain
        with pytest.raises(ArtifactError, match=f"holds a '{fitted.kind}' model"):
            other.load(path)

    def test_fit_rejects_another_item_space(self) -> None:
        model = self.make_model(N_ITEMS + 1)
        with pytest.raises(ValueError, match="item space"):
            model.fit(sessions_to_arrays([[0, 1]], N_ITEMS))
