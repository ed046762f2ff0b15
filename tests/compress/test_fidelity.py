"""Ranking fidelity of compressed models, the advisor's selection rules and the study's
per-user paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats as sps

from gradtracer.compress import QuantizationAdvisor, methods
from gradtracer.compress.advisor import SELECTION_KEYS, SELECTION_RULES, SHORTLIST
from gradtracer.compress.fidelity import fidelity_score, scores_fn, topk_fidelity
from gradtracer.compress.study import (
    StudyConfig,
    decode_hits,
    encode_hits,
    per_user_test,
    run_study,
    summary_markdown,
)
from gradtracer.compress.workloads import TrainConfig, load_workload


def _tables(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spectrum = torch.logspace(0, -1.5, 16)
    return torch.randn(120, 16, generator=g) * spectrum, torch.randn(
        200, 16, generator=g
    ) * spectrum


def _fixed(scores: list[list[float]]) -> object:
    table = torch.tensor(scores, dtype=torch.float64)
    return lambda idx: table[idx]


def test_hand_computed_values_of_each_measure() -> None:
    ref = _fixed([[5.0, 4.0, 3.0, 2.0, 1.0]])  # top-2: items 0, 1
    cand = _fixed([[0.0, 9.0, 8.0, 1.0, 2.0]])  # top-2: items 1, 2
    users = [0]
    assert topk_fidelity(ref, cand, users, k=2, measure="overlap")[0] == pytest.approx(0.5)
    # item 1 (relevant) at position 1, item 2 (not relevant) at position 2
    ideal = 1.0 + 1.0 / math.log2(3)
    assert topk_fidelity(ref, cand, users, k=2, measure="ndcg")[0] == pytest.approx(1.0 / ideal)
    p = np.exp([5.0, 4.0, 3.0, 2.0, 1.0])
    p /= p.sum()
    want = (p[1] + p[2] / math.log2(3)) / (p[0] + p[1] / math.log2(3))
    got = topk_fidelity(ref, cand, users, k=2, measure="expected")[0]
    assert got == pytest.approx(want)
    # a hotter softmax spreads the mass: the same ranking scores closer to 1
    hot = topk_fidelity(ref, cand, users, k=2, measure="expected", temperature=100.0)[0]
    assert want < hot < 1.0


def test_identical_rankings_score_one_and_noise_lowers_fidelity() -> None:
    user, item = _tables()
    ref = scores_fn((user, item))
    g = torch.Generator().manual_seed(5)
    users = np.arange(user.shape[0])
    last = {m: 1.0 for m in ("ndcg", "overlap", "expected")}
    for m in last:
        assert topk_fidelity(ref, ref, users, k=10, measure=m) == pytest.approx(1.0)
    noise = torch.randn(item.shape, generator=g)
    for level in (0.05, 0.2, 0.8):
        cand = scores_fn((user, item + level * noise * item.std()))
        for m in last:
            value = float(topk_fidelity(ref, cand, users, k=10, measure=m).mean())
            assert value < last[m]  # more noise, less faithful
            last[m] = value
    assert last["overlap"] < 0.9


def test_excluded_items_are_never_ranked() -> None:
    user, item = _tables(1)
    n_u, n_i = user.shape[0], item.shape[0]
    rng = np.random.default_rng(0)
    mask = sp.random(n_u, n_i, density=0.2, random_state=1, format="csr")
    mask.data[:] = 1.0
    ref = scores_fn((user, item))
    # the candidate puts every excluded item first; once they are excluded it is the reference
    boost = torch.from_numpy(mask.toarray()).float() * 1e6

    def cand(idx: torch.Tensor) -> torch.Tensor:
        return ref(idx) + boost[idx]

    users = rng.permutation(n_u)[:50]
    assert topk_fidelity(ref, cand, users, k=10, exclude=mask) == pytest.approx(1.0)
    assert topk_fidelity(ref, cand, users, k=10).mean() < 0.6  # without the mask it departs
    # per-user values come back in the order of ``users``
    one = topk_fidelity(ref, cand, users[:1], k=10)
    assert topk_fidelity(ref, cand, users, k=10)[0] == pytest.approx(one[0])


def test_fidelity_score_of_models_and_pairs() -> None:
    user, item = _tables(2)
    budget = methods.fp32_bytes(user, item) // 8
    plan = methods.score_svd(user, item, budget, precision="int4")  # rank 8 of 16
    exact = fidelity_score((user, item), (user, item), k=10)
    assert exact == pytest.approx(1.0)
    value = fidelity_score((user, item), plan, k=10)
    assert 0.0 < value < 1.0
    via_fn = float(
        topk_fidelity(scores_fn((user, item)), plan.scorer(), np.arange(user.shape[0]), k=10).mean()
    )
    assert value == pytest.approx(via_fn)


def test_bad_input_names_the_problem() -> None:
    ref = _fixed([[1.0, 2.0, 3.0]])
    short = _fixed([[1.0, 2.0]])
    with pytest.raises(ValueError, match="k must be a positive int"):
        topk_fidelity(ref, ref, [0], k=0)
    with pytest.raises(ValueError, match="measure must be one of"):
        topk_fidelity(ref, ref, [0], k=1, measure="kendall")
    with pytest.raises(ValueError, match=r"both be \(1, n_items\)"):
        topk_fidelity(ref, short, [0], k=1)
    with pytest.raises(ValueError, match="fewer than k=3 rankable"):
        topk_fidelity(ref, ref, [0], k=3, exclude=sp.csr_matrix(np.array([[1.0, 0.0, 0.0]])))
    with pytest.raises(ValueError, match="temperature"):
        topk_fidelity(ref, ref, [0], k=1, measure="expected", temperature=0.0)
    with pytest.raises(TypeError, match="scorer"):
        scores_fn(3)


def test_advisor_selects_the_most_faithful_plan_and_records_every_rule() -> None:
    user, item = _tables(3)
    budget = methods.fp32_bytes(user, item) // 16
    calls: list[int] = []

    def validate(m: object) -> float:  # an arbitrary judge: prefers the smallest plan
        calls.append(1)
        return -float(m.nbytes())  # type: ignore[attr-defined]

    adv = QuantizationAdvisor(user, item, validate=validate, selection="fidelity")
    assert QuantizationAdvisor(user, item).selection == "fidelity"
    assert QuantizationAdvisor(user, item, validate=validate).selection == SELECTION_RULES[0]
    recipe = adv.advise(budget)
    key = SELECTION_KEYS["fidelity"]
    assert recipe.predicted["selected_by"] == "fidelity"
    assert all(set(SELECTION_KEYS.values()) <= set(c) for c in recipe.candidates)
    best = max(recipe.candidates, key=lambda c: c[key])
    assert (recipe.method, recipe.params) == (best["method"], best["params"])
    by_valid = QuantizationAdvisor(user, item, validate=validate, selection="validation")
    other = by_valid.advise(budget)
    smallest = min(c["bytes"] for c in other.candidates)
    assert other.decisions["user"]["bytes"] + other.decisions["item"]["bytes"] == smallest
    assert other.predicted["selected_by"] == "validation"
    # the hybrid: the smallest of the SHORTLIST most faithful plans
    hybrid = QuantizationAdvisor(
        user, item, validate=validate, selection="fidelity_validation"
    ).advise(budget)
    faithful = sorted(hybrid.candidates, key=lambda c: -c[key])[:SHORTLIST]
    assert hybrid.candidates[0]["bytes"] == min(c["bytes"] for c in faithful)
    assert hybrid.candidates[0] in faithful
    with pytest.raises(ValueError, match="selection must be one of"):
        QuantizationAdvisor(user, item, selection="test")
    for rule in ("validation", "fidelity_validation", "fidelity_plus_validation"):
        with pytest.raises(ValueError, match="needs a validate callable"):
            QuantizationAdvisor(user, item, selection=rule)
    with pytest.raises(ValueError, match="exclude must be a sparse"):
        QuantizationAdvisor(user, item, exclude=np.zeros((3, 3)))


def test_hit_strings_round_trip_and_refuse_other_values() -> None:
    gains = np.concatenate([[0.0], 1.0 / np.log2(np.arange(2, 12))])
    values = gains[np.random.default_rng(0).integers(0, 11, size=200)]
    text = encode_hits(values)
    assert text is not None and len(text) == 200
    np.testing.assert_allclose(decode_hits(text), values)
    assert encode_hits(np.array([0.45])) is None  # not the gain of one held-out item
    with pytest.raises(ValueError, match="not a hit-rank string"):
        decode_hits("0x1")


def test_per_user_test_pools_seeds_and_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    gains = np.concatenate([[0.0], 1.0 / np.log2(np.arange(2, 12))])
    rows, a_all, b_all = [], [], []
    for seed in (0, 1):
        a = gains[rng.integers(0, 11, size=60)]
        b = np.where(rng.random(60) < 0.3, gains[rng.integers(0, 11, size=60)], a)
        a_all.append(a)
        b_all.append(b)
        for name, v in (("x", a), ("y", b)):
            rows.append({"seed": seed, "ratio": 8, "method": name, "ndcg@10_hits": encode_hits(v)})
    res = per_user_test(rows, 8, "x", "y")
    assert res is not None and res["n_pairs"] == 120 and res["n_seeds"] == 2
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    assert res["p_t"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    d = (a - b)[a != b]
    assert res["p_wilcoxon"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert per_user_test(rows, 16, "x", "y") is None


def test_study_selects_by_the_hybrid_rule_and_measures_the_others(tmp_path: object) -> None:
    w = load_workload("synthetic")
    cfg = StudyConfig(
        ratios=(16,), n_seeds=1, n_factors=8, train=TrainConfig(n_epochs=2), retrain=False
    )
    result = run_study(w, cfg)
    assert result.config["selection"] == "fidelity_plus_validation"
    names = {r["method"] for r in result.rows}
    assert {
        "recipe",
        "recipe_by_fidelity_validation",
        "recipe_by_fidelity",
        "recipe_by_validation",
        "recipe_by_score_error",
    } <= names
    recipe_row = next(r for r in result.rows if r["method"] == "recipe")
    assert len(recipe_row["ndcg@10_hits"]) == int((w.test.getnnz(axis=1) > 0).sum())
    assert decode_hits(recipe_row["ndcg@10_hits"]).mean() == pytest.approx(recipe_row["ndcg@10"])
    (rec,) = result.recipes
    key = SELECTION_KEYS["fidelity"]
    cands = rec["recipe"]["candidates"]
    assert rec["recipe"]["predicted"]["selected_by"] == "fidelity_plus_validation"
    by_fid = next(r for r in result.rows if r["method"] == "recipe_by_fidelity")
    most = max(cands, key=lambda c: c[key])
    assert by_fid["detail"].split(" ")[0] == most["method"]
    text = summary_markdown([result])
    assert (
        "per-user p (t / Wilcoxon)" in text and "selection rule: fidelity_plus_validation" in text
    )


def test_select_plan_rules_and_bad_input() -> None:
    from gradtracer.compress.advisor import select_plan

    fid, val = SELECTION_KEYS["fidelity"], SELECTION_KEYS["validation"]
    # the most faithful plan is the worst on validation; the validation-best is unfaithful
    scores = [{fid: 1.0 - 0.1 * j, val: 0.1 * j} for j in range(SHORTLIST)]
    scores.append({fid: 0.0, val: 9.0})
    assert select_plan(scores, "fidelity") == 0
    assert select_plan(scores, "validation") == SHORTLIST
    assert select_plan(scores, "fidelity_validation") == SHORTLIST - 1  # best of the shortlist
    assert select_plan([{fid: 0.5, val: 0.1}, {fid: 0.5, val: 0.1}], "fidelity") == 0  # ties: first
    with pytest.raises(ValueError, match="rule must be one of"):
        select_plan(scores, "test")
    # the combined rule: good on both signals beats best on one and worst on the other
    both = [{fid: 1.0, val: 0.0}, {fid: 0.0, val: 1.0}, {fid: 0.8, val: 0.8}]
    assert select_plan(both, "fidelity_plus_validation") == 2
    assert select_plan(both, "fidelity_validation") == 1  # the shortlist keeps all three
    # equal combined scores go to the lower score error, then to the first plan
    err = SELECTION_KEYS["score_error"]
    tied = [{fid: 1.0, val: 0.0, err: -0.5}, {fid: 0.0, val: 1.0, err: -0.1}]
    assert select_plan(tied, "fidelity_plus_validation") == 1
    assert select_plan([{fid: 0.3, val: 0.2}] * 2, "fidelity_plus_validation") == 0
    with pytest.raises(ValueError, match="no plans"):
        select_plan([], "fidelity")
