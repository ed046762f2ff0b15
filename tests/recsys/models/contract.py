"""The contract every user-item recommender passes, as a test mixin.

A test class inherits :class:`UserItemContract` and sets ``make_model`` (an unfitted model,
the fixture data decide its sizes). The checks run on a *checkerboard*: two groups of users
and two groups of items; every user has interacted with every item of its own group but one,
and that one is the obvious top-1 recommendation (the held-out item). The groups differ in
size, so item popularity is not uniform and a non-personalised model has an obvious top-1
too: the most popular unseen item (set ``personalised = False``).

The ideas carry over to next-item models (which have their own mixin): exclusion honoured,
``k`` validated, ``score`` and ``recommend`` agree, a save/load round trip gives identical
scores, evaluating the model equals evaluating its scorer, and a planted structure with an
obvious answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from gradtracer.recsys.data import Interactions
from gradtracer.recsys.metrics import evaluate_topk
from gradtracer.recsys.models import UserItemRecommender, load_model


@dataclass(frozen=True)
class Checkerboard:
    """Training interactions plus each user's held-out in-group item (dense indices)."""

    train: Interactions
    heldout: np.ndarray  # (n_users,) the one in-group item each user has not seen
    user_group: np.ndarray  # (n_users,) 0 or 1
    item_group: np.ndarray  # (n_items,) 0 or 1

    @property
    def seen(self) -> sp.csr_matrix:
        return self.train.user_items()

    @property
    def test(self) -> sp.csr_matrix:
        n_users, n_items = self.seen.shape
        ones = np.ones(n_users, dtype=np.float32)
        return sp.csr_matrix((ones, (np.arange(n_users), self.heldout)), shape=(n_users, n_items))


def make_checkerboard(
    users_per_group: tuple[int, int] = (14, 8), items_per_group: int = 6
) -> Checkerboard:
    """Group ``g`` users rate group ``g`` items (all but one each; rating 1.0)."""
    rows = []
    for g, n in enumerate(users_per_group):
        for j in range(n):
            user = f"g{g}u{j:02d}"
            skip = j % items_per_group
            for i in range(items_per_group):
                if i != skip:
                    rows.append((user, f"g{g}i{i:02d}", 1.0, len(rows)))
    frame = pl.DataFrame(rows, schema=["user", "item", "rating", "timestamp"], orient="row")
    train = Interactions.from_raw(frame, source="checkerboard")
    user_group = np.array([int(raw[1]) for raw in train.user_ids.ids])
    item_group = np.array([int(raw[1]) for raw in train.item_ids.ids])
    heldout = np.empty(train.n_users, dtype=np.int64)
    for u, raw in enumerate(train.user_ids.ids):
        g, j = int(raw[1]), int(raw[3:])
        heldout[u] = train.item_ids.index(f"g{g}i{j % items_per_group:02d}")
    return Checkerboard(train, heldout, user_group, item_group)


class UserItemContract:
    """Checks shared by every :class:`UserItemRecommender` (inherit and set ``make_model``)."""

    #: False for models that score every user alike (popularity).
    personalised: ClassVar[bool] = True

    def make_model(self) -> UserItemRecommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def board(cls) -> Checkerboard:
        return make_checkerboard()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, board: Checkerboard) -> UserItemRecommender:
        model = cls().make_model()
        assert isinstance(model, UserItemRecommender)
        out = model.fit(board.train)
        assert out is model
        return model

    def test_shapes_and_dtypes(self, fitted: Any, board: Checkerboard) -> None:
        n_items = board.train.n_items
        assert (fitted.n_users, fitted.n_items) == (board.train.n_users, n_items)
        scores = fitted.score([0, 3, 5])
        assert scores.shape == (3, n_items) and scores.dtype == np.float32
        recs = fitted.recommend(np.array([0, 3]), k=4)
        assert recs.shape == (2, 4) and recs.dtype == np.int64
        assert fitted.recommend(2, k=1).shape == (1, 1)
        with pytest.raises(ValueError, match="user indices must be in"):
            fitted.score([board.train.n_users])
        with pytest.raises(ValueError, match="user indices must be in"):
            fitted.recommend([-1], k=2)

    @pytest.mark.parametrize("bad_k", [0, -1, 2.5, True, "3", None])
    def test_k_is_validated(self, fitted: Any, bad_k: Any) -> None:
        with pytest.raises(ValueError, match=r"k must be an int in \[1, "):
            fitted.recommend([0], k=bad_k)

    def test_k_above_the_catalogue_is_refused(self, fitted: Any, board: Checkerboard) -> None:
        n_items = board.train.n_items
        assert fitted.recommend([0], k=n_items).shape == (1, n_items)
        with pytest.raises(
            ValueError, match=rf"k must be an int in \[1, {n_items}\], got {n_items + 1}"
        ):
            fitted.recommend([0], k=n_items + 1)

    def test_exclusion_is_honoured(self, fitted: Any, board: Checkerboard) -> None:
        seen = board.seen
        users = np.arange(board.train.n_users)
        n_unseen = board.train.n_items - int(np.diff(seen.indptr).max())
        recs = fitted.recommend(users, k=n_unseen, exclude=seen)
        for u, row in zip(users, recs, strict=True):
            assert not set(row.tolist()) & set(seen[u].indices.tolist()), u
        # with k = n_items, the excluded items come last
        full = fitted.recommend(users, k=board.train.n_items, exclude=seen)
        for u, row in zip(users, full, strict=True):
            n_seen = seen[u].nnz
            assert set(row[-n_seen:].tolist()) == set(seen[u].indices.tolist()), u
        with pytest.raises(ValueError, match="columns but the model has"):
            fitted.recommend([0], k=1, exclude=sp.csr_matrix((board.train.n_users, 2)))

    def test_score_and_recommend_agree(self, fitted: Any, board: Checkerboard) -> None:
        users = np.arange(board.train.n_users)
        scores = fitted.score(users)
        recs = fitted.recommend(users, k=3, exclude=board.seen)
        for u, row in zip(users, recs, strict=True):
            chosen = scores[u, row]
            assert np.all(np.diff(chosen) <= 1e-6), u  # best first
            rest = np.setdiff1d(
                np.arange(board.train.n_items), np.union1d(row, board.seen[u].indices)
            )
            if rest.size:
                assert chosen.min() >= scores[u, rest].max() - 1e-6, u

    def test_save_load_round_trip_gives_identical_scores(
        self, fitted: Any, board: Checkerboard, tmp_path: Any
    ) -> None:
        users = np.arange(board.train.n_users)
        d = fitted.save(tmp_path / "model")
        for loaded in (type(fitted).load(d), load_model(d)):
            assert type(loaded) is type(fitted)
            np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
            np.testing.assert_array_equal(
                loaded.recommend(users, k=3, exclude=board.seen),
                fitted.recommend(users, k=3, exclude=board.seen),
            )

    def test_evaluating_the_model_equals_evaluating_its_scorer(
        self, fitted: Any, board: Checkerboard
    ) -> None:
        kwargs = {"exclude": board.seen, "ks": (1, 3), "progress": False}
        a = evaluate_topk(fitted, board.test, **kwargs)
        b = evaluate_topk(fitted.scorer(), board.test, **kwargs)
        assert a.mean == b.mean
        for key in a.per_user:
            np.testing.assert_array_equal(a.per_user[key], b.per_user[key])

    def test_checkerboard_has_an_obvious_top_1(self, fitted: Any, board: Checkerboard) -> None:
        users = np.arange(board.train.n_users)
        top = fitted.recommend(users, k=1, exclude=board.seen)[:, 0]
        if self.personalised:
            np.testing.assert_array_equal(top, board.heldout)
            result = evaluate_topk(fitted, board.test, exclude=board.seen, ks=(1,), progress=False)
            assert result.mean["hr@1"] == 1.0
        else:
            counts = np.asarray(board.seen.sum(axis=0)).ravel()
            for u, item in zip(users, top, strict=True):
                unseen = np.setdiff1d(np.arange(board.train.n_items), board.seen[u].indices)
                assert counts[item] == counts[unseen].max(), u
