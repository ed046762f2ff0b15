"""Every user-item model passes the shared contract (tests/recsys/models/contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from contract import UserItemContract, make_checkerboard

from gradtracer.recsys.cf import CFConfig, CFModel
from gradtracer.recsys.models import (
    ImplicitMF,
    MFTrainConfig,
    PopularityRecommender,
    UserItemRecommender,
)
from gradtracer.recsys.models.als import ALSRecommender
from gradtracer.recsys.models.svd import SVDRecommender


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class TestPopularityContract(UserItemContract):
    personalised = False

    def make_model(self) -> UserItemRecommender:
        return PopularityRecommender()


class TestImplicitMFContract(UserItemContract):
    def make_model(self) -> UserItemRecommender:
        board = make_checkerboard()
        config = MFTrainConfig(learning_rate=0.05, n_epochs=40, batch_size=32, random_state=1)
        n_users, n_items = board.train.n_users, board.train.n_items
        return ImplicitMF(n_users, n_items, n_factors=8, init_std=0.1, config=config)


class TestSVDContract(UserItemContract):
    def make_model(self) -> UserItemRecommender:
        return SVDRecommender(n_factors=2, solver="scipy", center=False)


class TestSVDSklearnContract(UserItemContract):
    def make_model(self) -> UserItemRecommender:
        return SVDRecommender(n_factors=2, solver="sklearn", center=False, random_state=3)


class TestALSContract(UserItemContract):
    def make_model(self) -> UserItemRecommender:
        pytest.importorskip("implicit")
        return ALSRecommender(n_factors=2, iterations=10, regularization=0.01)


class TestCFModelContract(UserItemContract):
    def make_model(self) -> UserItemRecommender:
        return CFModel(config=CFConfig(n_factors=2, solver="scipy", center=False))


def test_unfitted_factor_models_say_so():
    with pytest.raises(RuntimeError, match="SVDRecommender is not fitted; call fit"):
        SVDRecommender().score([0])
    with pytest.raises(RuntimeError, match="CFModel is not fitted"):
        CFModel().recommend([0], k=1)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_scores_are_refused_naming_the_model_file(tmp_path):
    board = make_checkerboard()
    model = SVDRecommender(n_factors=2, solver="scipy", center=False).fit(board.train)
    model.factors.user_factors[1, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"SVDRecommender \(not saved\): scores of user\(s\) \[1\]"
    ):
        model.recommend([0, 1], k=2)
    mf = ImplicitMF(board.train.n_users, board.train.n_items, n_factors=2)
    d = mf.save(tmp_path / "mf")
    loaded = ImplicitMF.load(d)
    with torch.no_grad():
        loaded.item_emb.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"implicit_mf model {d / 'model.json'}: scores of user"):
        loaded.recommend([0], k=2)


def test_the_contract_catches_a_model_that_ignores_exclusion():
    class IgnoresExclusion(PopularityRecommender):
        def recommend(self, users, k=10, *, exclude=None):
            return super().recommend(users, k)

    board = make_checkerboard()
    model = IgnoresExclusion().fit(board.train)
    contract = TestPopularityContract()
    with pytest.raises(AssertionError):
        contract.test_exclusion_is_honoured(model, board)
    contract.test_k_is_validated(model, 0)  # the rest of the contract still holds
