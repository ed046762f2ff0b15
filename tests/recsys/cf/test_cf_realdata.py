"""The CF pipeline on the real Amazon Musical Instruments 5-core file (shared data)."""

from __future__ import annotations

import numpy as np
import pytest

from gradtracer.recsys.cf import CFConfig, CFModel, evaluate, train
from gradtracer.recsys.data import load_amazon, ratio_split

AMAZON = "amazon/musical-instruments-5core-2014/Musical_Instruments.json"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def amazon_split(shared_data):
    path = shared_data / AMAZON
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return ratio_split(load_amazon(path), test_fraction=0.1, valid_fraction=0.1, random_state=0)


def test_amazon_svd_learns_and_round_trips(amazon_split, tmp_path) -> None:
    s = amazon_split
    pure = train(s.train, CFConfig(n_factors=10, center=False))
    centred = train(s.train, CFConfig(n_factors=10, center=True))
    pure_eval = evaluate(pure, s.test, exclude=s.valid)
    centred_eval = evaluate(centred, s.test, exclude=s.valid)
    assert pure_eval.n_users > 1000 and pure_eval.info["cold_user_rows"] == 0

    # same model with item factors shuffled: no signal left in the ranking
    shuffled = train(s.train, CFConfig(n_factors=10, center=False))
    perm = np.random.default_rng(0).permutation(shuffled.factors.item_factors.shape[0])
    shuffled.factors.item_factors = shuffled.factors.item_factors[perm]
    shuffled_eval = evaluate(shuffled, s.test, exclude=s.valid)
    assert pure_eval.mean["ndcg@10"] > 2 * shuffled_eval.mean["ndcg@10"]
    # centring is what makes the rating predictions usable
    assert centred_eval.rmse < pure_eval.rmse
    assert centred_eval.accuracy > pure_eval.accuracy

    user = s.train.user_ids.raw(int(s.train.frame["user"][0]))
    recs = CFModel.load(pure.save(tmp_path / "amazon")).raw().recommend(user, k=20)
    u = s.train.user_ids.index(user)
    seen = set(s.train.item_ids.raws(pure.train_matrix[u].indices))
    assert len(recs) == 20 and not seen & set(recs.item_ids)
    assert recs.item_ids == pure.raw().recommend(user, k=20).item_ids
