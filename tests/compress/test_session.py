"""CompressedGRU4Rec: the session evaluator accepts it, its scores are the dequantized model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtracer.compress import LowRankTable, QuantizedTable
from gradtracer.compress.session import (
    CompressedGRU4Rec,
    dense_matrices,
    gru4rec_trainer,
    hidden_gram,
    metric_svd,
    session_splits,
    session_study,
    summarize_session_study,
    table_candidates,
)
from gradtracer.recsys.data.synthetic import make_sessions
from gradtracer.recsys.models.gru4rec import GRU4Rec, preset_config
from gradtracer.recsys.sessions import (
    SessionArrays,
    evaluate_next_item,
    iterate_session_parallel,
    session_arrays,
    split_sessions,
)


@pytest.fixture(scope="module")
def sessions() -> tuple[SessionArrays, SessionArrays]:
    torch.set_num_threads(1)
    ix = make_sessions(n_sessions=300, n_items=60, mean_length=5.0, random_state=3)
    split = split_sessions(ix, test_fraction=0.25)
    return session_arrays(split.train), session_arrays(split.test)


def _gru(train: SessionArrays, seed: int = 0, **changes: object) -> GRU4Rec:
    cfg = preset_config(
        "default", layers=(16,), n_sample=16, n_epochs=2, batch_size=16, random_state=seed
    )
    cfg = type(cfg).from_dict({**cfg.to_dict(), **changes})
    return GRU4Rec(train.n_items, cfg).fit(train).eval()


@pytest.fixture(scope="module")
def model(sessions: tuple[SessionArrays, SessionArrays]) -> GRU4Rec:
    return _gru(sessions[0])


def _all_scores(m: object, test: SessionArrays) -> torch.Tensor:
    state = m.init_state(8)  # type: ignore[attr-defined]
    out = []
    with torch.no_grad():
        for batch in iterate_session_parallel(test, 8):
            scores, state = m.advance(state, batch)  # type: ignore[attr-defined]
            out.append(scores)
    return torch.cat(out)


@pytest.mark.parametrize("precision", ["int8", "int4", "int2"])
def test_scores_match_the_dequantized_float_model(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays], precision: str
) -> None:
    _, test = sessions
    w = model.output_emb.weight.detach()
    table = QuantizedTable.from_weight(w, precision, name="output_emb")
    cm = CompressedGRU4Rec(model, {"output_emb": table}, dense="int8")
    ref = cm.float_model(model)
    a, b = _all_scores(cm, test), _all_scores(ref, test)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    # the compression is real: the float model's scores differ
    assert not torch.allclose(a, _all_scores(model, test), atol=1e-4)
    res_c = evaluate_next_item(cm, test, ks=(10, 20))
    res_f = evaluate_next_item(ref, test, ks=(10, 20))
    assert res_c.model == "compressed_gru4rec" and res_c.n_predictions == test.n_predictions
    np.testing.assert_array_equal(res_c.ranks, res_f.ranks)


def test_float32_wrapper_reproduces_the_model(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays]
) -> None:
    _, test = sessions
    cm = CompressedGRU4Rec(model)
    assert torch.allclose(_all_scores(cm, test), _all_scores(model, test), atol=1e-5)
    n, d = model.output_emb.weight.shape
    dense = sum(int(p.numel()) for p in dense_matrices(model).values()) * 4
    assert cm.table_bytes() == n * d * 4 and cm.dense_bytes() == dense
    assert cm.nbytes() == sum(cm.byte_breakdown().values())


def test_dense_precision_counts_bytes_per_matrix(model: GRU4Rec) -> None:
    mats = dense_matrices(model)
    assert sorted(mats) == ["cells.0.weight_hh", "cells.0.weight_ih"]
    fp16 = CompressedGRU4Rec(model, dense="fp16")
    assert fp16.dense_bytes() == sum(int(w.numel()) for w in mats.values()) * 2
    one = CompressedGRU4Rec(model, dense={"cells.0.weight_hh": "int8"})
    assert one.dense_precision == {"cells.0.weight_ih": "fp32", "cells.0.weight_hh": "int8"}
    # int8 row-wise: one byte per weight plus a float32 scale and bias per row
    rows, cols = mats["cells.0.weight_hh"].shape
    assert one.dense_bytes() == mats["cells.0.weight_ih"].numel() * 4 + rows * (cols + 8)


def test_bad_input_is_named(model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays]) -> None:
    w = model.output_emb.weight.detach()
    other = QuantizedTable.from_weight(w[:-1], "int8", name="output_emb")
    with pytest.raises(ValueError, match="another model"):
        CompressedGRU4Rec(model, {"output_emb": other})
    with pytest.raises(ValueError, match=r"unknown table\(s\) \['user'\]"):
        CompressedGRU4Rec(model, {"user": other})
    with pytest.raises(ValueError, match="precision must be one of"):
        CompressedGRU4Rec(model, dense="int3")
    with pytest.raises(ValueError, match="unknown dense matrix"):
        CompressedGRU4Rec(model, dense={"cells.9.weight": "int8"})
    onehot = _gru(sessions[0], constrained_embedding=False, n_epochs=1)
    with pytest.raises(ValueError, match="one-hot input mode is not supported"):
        CompressedGRU4Rec(onehot)


def test_separate_input_table(sessions: tuple[SessionArrays, SessionArrays]) -> None:
    train, test = sessions
    m = _gru(train, constrained_embedding=False, embedding_dim=8, n_epochs=1)
    tin = QuantizedTable.from_weight(m.item_emb.weight.detach(), "int4", name="item_emb")
    cm = CompressedGRU4Rec(m, {"item_emb": tin})
    assert cm.table_bytes() == tin.nbytes() + m.output_emb.weight.numel() * 4
    assert torch.allclose(_all_scores(cm, test), _all_scores(cm.float_model(m), test), atol=1e-4)


def test_metric_svd_minimises_score_error(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays]
) -> None:
    train, _ = sessions
    g = hidden_gram(model, train)
    assert g.shape == (16, 16) and np.allclose(g, g.T)
    assert np.linalg.eigvalsh(g).min() > -1e-9
    w = model.output_emb.weight.detach()

    def score_err(t: LowRankTable) -> float:
        delta = (w - t.dequantize()).double().numpy()
        return float(np.einsum("nd,de,ne->", delta, g, delta))

    plain, weighted = metric_svd(w, 3), metric_svd(w, 3, g)
    assert isinstance(weighted, LowRankTable) and weighted.rank == 3
    assert score_err(weighted) < score_err(plain)
    full = metric_svd(w, 16, g)
    assert torch.allclose(full.dequantize(), w, atol=1e-3)


def test_table_candidates_fit_the_budget(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays]
) -> None:
    train, _ = sessions
    w = model.output_emb.weight.detach()
    budget = w.numel() * 4 // 8
    freq = model.counts.numpy().astype(np.float64)
    cands = table_candidates(
        w, budget, metric=hidden_gram(model, train), signals={"frequency": freq}
    )
    assert {"prune_l2", "prune_frequency", "mixed_rowerror", "mixed_score"} <= set(cands)
    assert "mixed_score_frequency" in cands and any(k.startswith("score_svd") for k in cands)
    for label, t in cands.items():
        assert t.nbytes() <= budget, label
    # frequency pruning keeps the most clicked rows exactly
    kept = cands["prune_frequency"]
    assert isinstance(kept, QuantizedTable)
    top = int(np.argmax(freq))
    assert torch.equal(kept.lookup(torch.tensor([top]))[0], w[top])


def test_splits_and_trainer_feed_the_study() -> None:
    ix = make_sessions(n_sessions=200, n_items=40, mean_length=5.0, random_state=5)
    train, valid, test = session_splits(ix, test_fraction=0.2, valid_fraction=0.2)
    assert train.n_items == valid.n_items == test.n_items
    assert min(train.n_predictions, valid.n_predictions, test.n_predictions) > 0
    fit = gru4rec_trainer(train, "default", layers=(8,), n_sample=8, n_epochs=1, batch_size=16)
    model, signals = fit(0)
    assert sorted(signals) == ["dynamics", "frequency", "magnitude"]
    assert all(v.shape == (train.n_items,) for v in signals.values())
    np.testing.assert_array_equal(signals["frequency"], model.counts.numpy())
    assert signals["dynamics"].max() > 0


def test_session_study_rows_and_summary(sessions: tuple[SessionArrays, SessionArrays]) -> None:
    train, test = sessions

    def train_model(seed: int) -> tuple[GRU4Rec, dict[str, np.ndarray]]:
        m = _gru(train, seed, n_epochs=1)
        return m, {"frequency": m.counts.numpy().astype(np.float64)}

    rows = session_study(train_model, train, test, test, seeds=(0, 1), ratios=(8,), dense=("int8",))
    methods = {r.method for r in rows}
    assert {"fp32", "dense_int8", "recipe", "prune_l2"} <= methods
    recipe = [r for r in rows if r.method == "recipe"]
    assert len(recipe) == 2 and all(r.achieved_ratio >= 8 for r in recipe)
    for r in recipe:  # the recipe is the best candidate on validation
        same = [x for x in rows if x.seed == r.seed and x.ratio == 8 and x.method != "recipe"]
        assert r.valid_ndcg == max(x.valid_ndcg for x in same if x.achieved_ratio >= 8)
    summary = summarize_session_study(rows)
    by = {(e["ratio"], e["method"]): e for e in summary}
    assert by[(0.0, "fp32")]["rel_ndcg@10"] == 0.0
    assert "p_ndcg@10" in by[(8.0, "prune_l2")]
    assert by[(8.0, "recipe")]["picked"] == [r.picked for r in recipe]


# --- recipes and artifacts --------------------------------------------------------------
@pytest.fixture(scope="module")
def advised(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays]
) -> tuple[object, list[object]]:
    from gradtracer.compress.session_advice import advise_session

    train, test = sessions
    budget = model.output_emb.weight.numel() * 4 // 8
    freq = model.counts.numpy().astype(np.float64)
    return advise_session(
        model, train, test, budget, signals={"frequency": freq}, dense="int8", fidelity=True
    )


def test_session_recipe_round_trips_and_rebuilds_the_pick(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays], advised: tuple, tmp_path
) -> None:
    import importlib.resources
    import json

    import jsonschema

    from gradtracer.compress.session_recipe import apply_session_recipe, load_session_recipe

    recipe, cands = advised
    best = max(cands, key=lambda c: c.valid_ndcg)
    assert recipe.method == best.label and recipe.predicted["valid_ndcg@10"] == best.valid_ndcg
    assert len(recipe.candidates) == len(cands) and all("fidelity" in c for c in recipe.candidates)
    assert [d["precision"] for d in recipe.dense_layers] == ["int8", "int8"]
    schema = json.loads(
        importlib.resources.files("gradtracer")
        .joinpath("schema/session_recipe.schema.json")
        .read_text()
    )
    jsonschema.validate(recipe.to_dict(), schema)
    back = load_session_recipe(recipe.save(tmp_path / "r.json"))
    assert back.to_dict() == recipe.to_dict()
    cm = apply_session_recipe(back, model)
    assert torch.equal(
        cm.tables["output_emb"].dequantize(), best.model.tables["output_emb"].dequantize()
    )
    assert cm.table_bytes() == recipe.decisions["output_emb"]["bytes"] <= recipe.budget_bytes
    _, test = sessions
    assert torch.equal(_all_scores(cm, test), _all_scores(best.model, test))


def test_score_metric_low_rank_recipe_carries_its_metric(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays], advised: tuple
) -> None:
    from gradtracer.compress.session_advice import advise_session
    from gradtracer.compress.session_recipe import apply_session_recipe

    train, test = sessions
    recipe0, cands = advised
    svd = [c for c in cands if c.label.startswith("score_svd")]
    assert svd, [c.label for c in cands]
    recipe, _ = advise_session(
        model, train, test, recipe0.budget_bytes, candidates=svd[:1], dense="int8"
    )
    assert recipe.decisions["output_emb"]["type"] == "lowrank" and "score_metric" in recipe.params
    cm = apply_session_recipe(recipe, model)
    assert torch.equal(
        cm.tables["output_emb"].dequantize(), svd[0].model.tables["output_emb"].dequantize()
    )


def test_session_recipe_refuses_tampering_and_other_models(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays], advised: tuple
) -> None:
    from gradtracer.compress.recipe import RecipeError
    from gradtracer.compress.session_recipe import SessionRecipe, apply_session_recipe

    recipe, _ = advised
    data = recipe.to_dict()
    data["budget_bytes"] += 1
    with pytest.raises(RecipeError, match="fingerprint does not match"):
        SessionRecipe.from_dict(data)
    with pytest.raises(RecipeError, match="kind"):
        SessionRecipe.from_dict({**recipe.to_dict(), "kind": "gradtracer.compression_recipe"})
    wider = _gru(sessions[0], layers=(12,), n_epochs=1)
    with pytest.raises(RecipeError, match="another model"):
        apply_session_recipe(recipe, wider)
    # same shapes, other float weights: refused unless asked for
    other = _gru(sessions[0], seed=5, n_epochs=1)
    with pytest.raises(RecipeError, match="tables_sha256"):
        apply_session_recipe(recipe, other)
    cm = apply_session_recipe(recipe, other, same_weights=False)
    assert cm.table_bytes() == recipe.decisions["output_emb"]["bytes"]


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_session_artifact_round_trip_and_refusals(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays], advised: tuple, tmp_path, suffix
) -> None:
    from gradtracer.compress import ArtifactError, CompressedMF, load_compressed
    from gradtracer.compress.session_artifact import load_session_artifact
    from gradtracer.compress.session_recipe import apply_session_recipe

    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    _, test = sessions
    recipe, _ = advised
    cm = apply_session_recipe(recipe, model)
    path = cm.save(tmp_path / f"gru{suffix}")
    back = CompressedGRU4Rec.load(path, recipe=recipe)
    assert back.nbytes() == cm.nbytes() and back.dense_precision == cm.dense_precision
    assert torch.equal(_all_scores(back, test), _all_scores(cm, test))
    np.testing.assert_array_equal(
        evaluate_next_item(back, test).ranks, evaluate_next_item(cm, test).ranks
    )
    # an artifact of another recipe, a flipped byte, an MF artifact: each named
    other = CompressedGRU4Rec(model, {"output_emb": cm.tables["output_emb"]}, dense="int8")
    with pytest.raises(ArtifactError, match="not from this recipe"):
        load_session_artifact(other.save(tmp_path / f"other{suffix}"), recipe=recipe)
    with pytest.raises(ArtifactError, match="compressed_gru4rec/1"):
        load_compressed(path)
    w = model.output_emb.weight.detach()
    mf = CompressedMF(QuantizedTable.from_weight(w, "int8"), QuantizedTable.from_weight(w, "int8"))
    with pytest.raises(ArtifactError, match=r"format 'gradtracer.compressed/1'"):
        load_session_artifact(mf.save(tmp_path / f"mf{suffix}"))
    if suffix == ".npz":
        arrays = dict(np.load(path, allow_pickle=False))
        key = "float/output_bias"
        arrays[key] = arrays[key] + 1.0
        np.savez(tmp_path / "edited.npz", **arrays)
        with pytest.raises(ArtifactError, match="float/output_bias"):
            load_session_artifact(tmp_path / "edited.npz")


def test_split_half_selection_judges_each_pick_on_the_other_half(
    model: GRU4Rec, sessions: tuple[SessionArrays, SessionArrays]
) -> None:
    from gradtracer.compress.session_advice import split_half_selection

    train, valid = sessions
    budget = model.output_emb.weight.numel() * 4 // 16
    rows = split_half_selection(
        model, train, valid, [budget], rules=("valid_ndcg", "fidelity:ndcg@5")
    )
    assert {(r["direction"], r["rule"]) for r in rows} == {
        (d, r) for d in ("A->B", "B->A") for r in ("valid_ndcg", "fidelity:ndcg@5", "oracle")
    }
    for d in ("A->B", "B->A"):
        by = {r["rule"]: r for r in rows if r["direction"] == d}
        assert all(by["oracle"]["change"] >= r["change"] for r in by.values())
    with pytest.raises(ValueError, match="fidelity:<measure>@<k>"):
        split_half_selection(model, train, valid, [budget], rules=("fidelity",))
