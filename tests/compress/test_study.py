"""The study's candidates (two-scale and mixed score-SVD, prune + quantize), the
float-model tuning and cache, and that plans are chosen without reading test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from gradtracer.compress import BudgetError, QuantizationAdvisor, methods
from gradtracer.compress.allocate import index_overhead
from gradtracer.compress.methods import TwoScaleTable, two_scale_bytes
from gradtracer.compress.model import CompressedMF
from gradtracer.compress.recipe import describe_model
from gradtracer.compress.rowwise import packed_width
from gradtracer.compress.study import apply_plan, cached_float_model
from gradtracer.compress.workloads import TrainConfig, evaluate_model, load_workload, tune_float


def _low_rank_tables() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    spectrum = torch.logspace(0, -2, 16)
    u = torch.randn(150, 16, generator=g) * spectrum
    i = torch.randn(220, 16, generator=g) * spectrum
    return u, i


def _column_weights() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(300, 13, generator=g) * torch.linspace(3.0, 0.1, 13)


@pytest.mark.parametrize("bits", [8, 6, 5, 4, 3, 2])
def test_two_scale_bytes_are_exact(bits: int) -> None:
    w = _column_weights()
    t = TwoScaleTable.from_weight(w, bits, name="t")
    per_row = -(-13 * bits // 8)
    assert t.byte_breakdown() == {
        "codes": 300 * per_row,
        "row_exponents": 300,
        "column_scales": 2 * 13,
    }
    assert t.nbytes() == two_scale_bytes(300, 13, bits) == 300 * (per_row + 1) + 26
    rows = torch.tensor([0, 7, 299, 7])
    assert torch.equal(t.lookup(rows), t.dequantize()[rows])


def test_two_scale_round_trip_error_bounds() -> None:
    w = _column_weights()
    errs = {}
    for bits in (8, 6, 5, 4, 3, 2):
        t = TwoScaleTable.from_weight(w, bits)
        diff = (t.dequantize() - w).double()
        errs[bits] = float((diff**2).sum() / (w.double() ** 2).sum())
        # with the full range (share 1.0) every value is within half a step of its level;
        # the chosen range only lowers the row's error further
        col = torch.from_numpy(t.col_scale.astype(np.float32)).double()
        peak = (w.double() / col).abs().max(1).values
        step = torch.exp2(torch.ceil(8 * torch.log2(peak)) / 8) / 2 ** (bits - 1)
        bound = ((0.5 * step[:, None] * col) ** 2).sum(1)
        assert bool(((diff**2).sum(1) <= bound * (1 + 1e-6)).all())
    assert errs[8] < 1e-4 < errs[4] < 0.02 < errs[2] < 0.2
    assert errs[8] < errs[6] < errs[5] < errs[4] < errs[3] < errs[2]
    for bits in (4, 3):  # whole-byte and straddling codes round-trip through the arrays
        meta, arrays = TwoScaleTable.from_weight(w, bits, name="t").to_arrays("x_")
        back = TwoScaleTable.from_arrays(meta, arrays, "x_")
        assert torch.equal(back.dequantize(), TwoScaleTable.from_weight(w, bits).dequantize())


def test_odd_widths_pack_as_one_bit_stream() -> None:
    from gradtracer.compress.methods import _pack_bits

    rng = np.random.default_rng(0)
    for bits in (2, 3, 4, 5, 6, 8):
        codes = rng.integers(0, 2**bits, size=(9, 13)).astype(np.uint8)
        bits_lsb = (codes[:, :, None].astype(np.uint16) >> np.arange(bits)) & 1
        stream = np.packbits(bits_lsb.reshape(9, -1).astype(np.uint8), axis=1, bitorder="little")
        np.testing.assert_array_equal(_pack_bits(codes, bits), stream)


def test_refit_lowers_the_score_error_of_coarse_factors() -> None:
    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8
    exact = u @ i.T
    errs = {}
    for refit in (0, 3):
        m = methods.score_svd_twoscale(u, i, budget, bits=2, refit=refit)
        errs[refit] = float(((m.scorer()(torch.arange(u.shape[0])) - exact) ** 2).sum())
        assert m.nbytes() <= budget and m.info.get("refit", 0) == refit
    assert errs[3] < 0.9 * errs[0]
    plan = methods.score_svd_twoscale(u, i, budget, bits=3, refit=3)
    again = methods.build_extra(
        "score_svd_twoscale", u, i, budget, {"bits": 3, "rank": plan.info["rank"], "refit": 3}
    )
    assert torch.equal(again.item_table.dequantize(), plan.item_table.dequantize())


def test_two_scale_bad_input_names_the_problem() -> None:
    w = _column_weights()
    with pytest.raises(ValueError, match=r"bits must be one of \(2, 3, 4, 5, 6, 8\)"):
        TwoScaleTable.from_weight(w, 7, name="t")
    t = TwoScaleTable.from_weight(w, 4, name="t")
    with pytest.raises(ValueError, match=r"codes must be \(300, 7\)"):
        TwoScaleTable("t", 300, 13, 4, t.codes[:, :6], t.row_exponent, t.col_scale)
    with pytest.raises(ValueError, match="row_exponent must have 300"):
        TwoScaleTable("t", 300, 13, 4, t.codes, t.row_exponent[:5], t.col_scale)
    with pytest.raises(IndexError, match="rows must be in"):
        t.lookup(torch.tensor([300]))


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_two_scale_embedding_bag_pools_the_decoded_rows(bits: int) -> None:
    t = TwoScaleTable.from_weight(_column_weights(), bits, name="t")
    dense = t.dequantize()
    gen = torch.Generator().manual_seed(bits)
    idx = torch.randint(0, t.n_rows, (57,), generator=gen)
    offsets = torch.tensor([0, 5, 5, 20, 40])  # an empty bag included
    for mode in ("sum", "mean"):
        want = torch.nn.functional.embedding_bag(idx, dense, offsets, mode=mode)
        got = t.embedding_bag(idx, offsets, mode=mode)
        assert got.shape == (5, t.dim)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    ends = torch.cat([offsets, torch.tensor([idx.numel()])])
    assert torch.equal(t.embedding_bag(idx, ends, include_last_offset=True),
                       t.embedding_bag(idx, offsets))  # fmt: skip
    with pytest.raises(IndexError, match="table 't': rows must be in"):
        t.embedding_bag(torch.tensor([0, t.n_rows]), torch.tensor([0]))
    with pytest.raises(ValueError, match="offsets must start at 0"):
        t.embedding_bag(idx, torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="mode must be"):
        t.embedding_bag(idx, offsets, mode="max")


def test_two_scale_score_svd_buys_rank_at_the_same_bytes() -> None:
    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8  # 8 bytes per row at d = 16
    rowwise = methods.score_svd(u, i, budget, precision="int4")
    compact = methods.score_svd_twoscale(u, i, budget, bits=4)
    assert compact.nbytes() <= budget and rowwise.nbytes() <= budget
    # row-wise int4 pays 4 bytes of scale + bias per row, the two-scale table 1
    assert compact.info["rank"] > rowwise.info["rank"]
    assert compact.nbytes() == sum(compact.byte_breakdown().values())
    with pytest.raises(BudgetError, match="no rank-1 two-scale"):
        methods.score_svd_twoscale(u, i, 100, bits=8)


def test_score_svd_mixed_fits_and_counts_every_byte() -> None:
    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8
    ranks = methods.mixed_ranks(u.shape[0] + i.shape[0], 16, budget)
    assert ranks == sorted(set(ranks)) and len(ranks) >= 2
    model = methods.score_svd_mixed(u, i, budget, rank=ranks[-1])
    assert model.user_table.dim == ranks[-1]
    assert model.nbytes() <= budget
    assert model.nbytes() == sum(model.byte_breakdown().values())
    with pytest.raises(ValueError, match="rank must be an int"):
        methods.score_svd_mixed(u, i, budget, rank=17)


def test_prune_quantize_keeps_the_rows_the_budget_holds() -> None:
    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8
    sig_u, sig_i = u.norm(dim=1).numpy(), i.norm(dim=1).numpy()
    model = methods.prune_quantize(
        u, i, budget, user_signal=sig_u, item_signal=sig_i, precision="int8"
    )
    assert model.nbytes() <= budget
    counts = model.user_table.level_counts()
    share = int(budget * u.numel() / (u.numel() + i.numel()))
    overhead = index_overhead(150, 16, ("int8", "drop"))
    assert counts["int8"] == (share - overhead) // packed_width("int8", 16)
    kept = np.flatnonzero(model.user_table.row_levels() != model.user_table.row_levels().max())
    assert set(kept.tolist()) == set(np.argsort(-sig_u)[: counts["int8"]].tolist())


@pytest.mark.parametrize(
    ("method", "expected_params"),
    [("score_svd_twoscale", {"bits"}), ("score_svd_mixed", {"rank"}), ("prune", {"precision"})],
)
def test_advisor_picks_on_validation_and_the_recipe_rebuilds_it(
    method: str, expected_params: set[str]
) -> None:
    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8
    seen: list[str] = []

    def validate(m: CompressedMF) -> float:  # prefers one kind of plan, else the larger
        name = str(m.info.get("method", m.name))
        seen.append(name)
        wanted = name == method and (method != "prune" or m.info.get("precision") == "int4")
        return float(wanted) + 1e-9 * m.nbytes()

    recipe = QuantizationAdvisor(u, i, validate=validate, selection="validation").advise(budget)
    assert recipe.method == method
    assert expected_params <= set(recipe.params)
    assert len(seen) >= len(recipe.candidates) >= 10
    chosen = apply_plan(recipe, u, i)
    assert chosen.nbytes() <= budget
    assert recipe.decisions["user"]["bytes"] == chosen.user_table.nbytes()
    again = describe_model(chosen)
    assert again["item"]["bytes"] == recipe.decisions["item"]["bytes"]


def test_tuning_and_advice_never_read_test() -> None:
    w = load_workload("synthetic")
    blind = dataclasses.replace(w, test=None)  # any read of the test split would fail
    res = tune_float(
        blind, 8, weight_decays=(1e-5, 1e-2), max_epochs=4, eval_every=2, random_state=0
    )
    assert len(res.trials) == 4
    best = max(res.trials, key=lambda t: t["valid_ndcg@10"])
    assert res.config.weight_decay == best["weight_decay"]
    assert res.config.n_epochs == best["n_epochs"]
    assert res.valid_ndcg == best["valid_ndcg@10"]
    assert 0.0 < res.popularity_valid_ndcg < 1.0
    with pytest.raises(TypeError):
        evaluate_model(None, blind, part="test")  # the blind workload really has no test
    model, (su, si) = cached_float_model(blind, 8, TrainConfig(n_epochs=1), 0, None)
    user, item = model.scorer()
    scores: list[float] = []

    def validate(m: CompressedMF) -> float:
        scores.append(float(np.mean(evaluate_model(m, blind, part="valid")["ndcg@10"])))
        return scores[-1]

    adv = QuantizationAdvisor(
        user,
        item,
        user_stats=su,
        item_stats=si,
        validate=validate,
        signals=("dynamics",),
        selection="validation",
    )
    recipe = adv.advise(adv.fp32_bytes // 8)
    best = max(c["valid_ndcg@10"] for c in recipe.candidates)
    assert recipe.predicted["valid_ndcg@10"] == best == max(scores[: len(recipe.candidates)])


def test_float_model_cache_round_trip(tmp_path: Path) -> None:
    w = load_workload("synthetic")
    cfg = TrainConfig(n_epochs=1)
    first, stats = cached_float_model(w, 8, cfg, 3, tmp_path)
    files = list(tmp_path.glob("float_synthetic_d8_s3_*.npz"))
    assert len(files) == 1
    again, stats2 = cached_float_model(w, 8, cfg, 3, tmp_path)
    assert torch.equal(first.user_emb.weight, again.user_emb.weight)
    assert torch.equal(first.item_emb.weight, again.item_emb.weight)
    assert set(stats[1]) == set(stats2[1])
    np.testing.assert_array_equal(stats[1]["exposure"], stats2[1]["exposure"])
    other, _ = cached_float_model(w, 8, TrainConfig(n_epochs=2), 3, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not torch.equal(other.user_emb.weight, first.user_emb.weight)


def test_advise_refuses_given_plans_over_the_budget() -> None:
    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8
    adv = QuantizationAdvisor(u, i)
    too_big = methods.table_svd(u, i, budget * 2)
    with pytest.raises(ValueError, match="plans over the budget"):
        adv.advise(budget, plans=[("table_svd", {"precision": "fp32"}, too_big)])
    fits = methods.score_svd_twoscale(u, i, budget, bits=4)
    recipe = adv.advise(budget, plans=[("score_svd_twoscale", {"bits": 4, "rank": 14}, fits)])
    assert recipe.method == "score_svd_twoscale" and len(recipe.candidates) == 1


def test_two_scale_recipe_round_trips_through_json_and_artifact(tmp_path: Path) -> None:
    from gradtracer.compress.model import load_compressed, save_compressed
    from gradtracer.compress.recipe import Recipe, apply_recipe

    u, i = _low_rank_tables()
    budget = methods.fp32_bytes(u, i) // 8
    plan = methods.score_svd_twoscale(u, i, budget, bits=4)
    recipe = QuantizationAdvisor(u, i).advise(
        budget, plans=[("score_svd_twoscale", {"bits": 4, "rank": plan.info["rank"]}, plan)]
    )
    again = Recipe.from_dict(recipe.to_dict())
    model = apply_recipe(again, u, i)
    assert torch.equal(model.item_table.dequantize(), plan.item_table.dequantize())
    path = save_compressed(model, tmp_path / "m.npz")
    loaded = load_compressed(path)
    assert loaded.nbytes() == model.nbytes() <= budget
    assert torch.equal(loaded.user_table.dequantize(), model.user_table.dequantize())


def test_a_budget_no_plan_meets_names_the_budget_and_the_smallest_plan():
    g = torch.Generator().manual_seed(0)
    advisor = QuantizationAdvisor(
        torch.randn(50, 16, generator=g), torch.randn(80, 16, generator=g)
    )
    with pytest.raises(BudgetError, match=r"no plan fits 10 bytes.*smallest plan built needs \d+"):
        advisor.advise(10)
    assert advisor.advise(300).to_dict()["budget_bytes"] == 300
