"""CompressedMF in the evaluator, npz artifacts, recipes, the COMPRESSION_CANDIDATE finding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gradtracer.compress import (
    ArtifactError,
    CompressedMF,
    QuantizationAdvisor,
    Recipe,
    RecipeError,
    apply_recipe,
    load_compressed,
    load_recipe,
    methods,
    recipe_report,
)
from gradtracer.compress.workloads import (
    DotMF,
    TrainConfig,
    evaluate_model,
    load_workload,
    train_dot_mf,
)
from gradtracer.findings import Report
from gradtracer.recsys.metrics import evaluate_topk


@pytest.fixture(scope="module")
def trained() -> tuple:
    w = load_workload("synthetic", random_state=0)
    model = DotMF(w.n_users, w.n_items, 16, random_state=0)
    train_dot_mf(model, w.train, TrainConfig(n_epochs=8, learning_rate=0.01))
    return w, model


def test_compressed_model_in_evaluate_topk(trained: tuple) -> None:
    w, model = trained
    user, item = model.scorer()
    cm = methods.uniform(user, item, "fp32")
    a = evaluate_topk(model, w.test, exclude=w.train, ks=(10,))
    b = evaluate_topk(cm, w.test, exclude=w.train, ks=(10,))
    np.testing.assert_allclose(a.per_user["ndcg@10"], b.per_user["ndcg@10"])
    q = methods.uniform(user, item, "int8")
    assert isinstance(q, CompressedMF)
    # forward() reads both tables through the kernels and agrees with the dense product
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    dense = (q.user_table.dequantize()[users] * q.item_table.dequantize()[items]).sum(-1)
    assert torch.allclose(q(users, items), dense, atol=1e-5)
    res = evaluate_topk(q, w.test, exclude=w.train, ks=(10,))
    assert res.mean["ndcg@10"] > 0


def test_artifact_round_trip_and_tamper(tmp_path: Path, trained: tuple) -> None:
    _, model = trained
    user, item = model.scorer()
    cm = methods.mixed(user, item, methods.fp32_bytes(user, item) // 8)
    path = cm.save(tmp_path / "m.npz")
    back = load_compressed(path)
    assert back.nbytes() == cm.nbytes()
    assert torch.equal(back.item_table.dequantize(), cm.item_table.dequantize())
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    key = next(k for k in arrays if k.startswith("item/rows_"))
    arrays[key].flat[0] ^= 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ArtifactError, match=f"array '{key}' does not match its checksum"):
        load_compressed(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ArtifactError, match="not a GradTracer compressed artifact"):
        load_compressed(tmp_path / "other.npz")


def test_advisor_recipe_apply_and_finding(tmp_path: Path, trained: tuple) -> None:
    w, model = trained
    user, item = model.scorer()

    def validate(m: CompressedMF) -> float:
        return float(np.mean(evaluate_model(m, w, part="valid")["ndcg@10"]))

    advisor = QuantizationAdvisor(user, item, validate=validate, selection="validation")
    budget = methods.fp32_bytes(user, item) // 16
    recipe = advisor.advise(budget)
    assert recipe.budget_bytes == budget and recipe.candidates
    best = max(c["valid_ndcg@10"] for c in recipe.candidates)
    assert recipe.predicted["valid_ndcg@10"] == best  # the winner is the best on validation
    path = recipe.save(tmp_path / "recipe.json")
    loaded = load_recipe(path)
    cm = apply_recipe(loaded, user, item)
    assert cm.nbytes() <= budget
    assert validate(cm) == pytest.approx(best)  # applying rebuilds exactly the chosen plan

    report = recipe_report([recipe], subject="mf")
    d = report.to_dict()
    (f,) = d["findings"]
    assert f["type"] == "COMPRESSION_CANDIDATE"
    assert (
        json.loads(f["evidence"]["recipe_json"])["fingerprint"] == recipe.to_dict()["fingerprint"]
    )
    assert Report.from_dict(d).findings[0].evidence["method"] == recipe.method


def test_bad_recipes_are_refused(tmp_path: Path, trained: tuple) -> None:
    _, model = trained
    user, item = model.scorer()
    recipe = QuantizationAdvisor(user, item).advise(methods.fp32_bytes(user, item) // 8)
    data = recipe.to_dict()
    data["budget_bytes"] += 1000
    (tmp_path / "edited.json").write_text(json.dumps(data))
    with pytest.raises(RecipeError, match="fingerprint does not match"):
        load_recipe(tmp_path / "edited.json")
    with pytest.raises(RecipeError, match="another model"):
        apply_recipe(recipe, user[:10], item)
    with pytest.raises(RecipeError, match="kind"):
        Recipe.from_dict({"kind": "x"})
    with pytest.raises(ValueError, match="budget_bytes must be a positive int"):
        QuantizationAdvisor(user, item).advise(0)


def test_recipe_matches_shipped_schema(trained: tuple) -> None:
    import importlib.resources

    import jsonschema

    _, model = trained
    user, item = model.scorer()
    recipe = QuantizationAdvisor(user, item).advise(methods.fp32_bytes(user, item) // 32)
    schema = json.loads(
        importlib.resources.files("gradtracer").joinpath("schema/recipe.schema.json").read_text()
    )
    jsonschema.validate(recipe.to_dict(), schema)
    bad = recipe.to_dict()
    bad["method"] = "magic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize("method", ["score_svd", "score_svd_twoscale"])
def test_score_factor_artifact_checks_against_its_recipe(
    tmp_path: Path, trained: tuple, method: str
) -> None:
    # score-factor plans store rank-r factors: their tables have r columns, not the float dim
    _, model = trained
    user, item = model.scorer()
    budget = methods.fp32_bytes(user, item) // (4 if method == "score_svd" else 8)
    params = {"precision": "int8"} if method == "score_svd" else {"bits": 4}
    tables = {
        "user": {"n_rows": int(user.shape[0]), "dim": int(user.shape[1])},
        "item": {"n_rows": int(item.shape[0]), "dim": int(item.shape[1])},
    }
    recipe = Recipe(tables, budget, methods.fp32_bytes(user, item), method, params=params)
    cm = apply_recipe(recipe, user, item)
    assert cm.user_table.dim < user.shape[1]
    path = cm.save(tmp_path / "f.npz")
    back = load_compressed(path, recipe=recipe)
    assert torch.equal(back.item_table.dequantize(), cm.item_table.dequantize())
    other = {**tables, "item": {"n_rows": int(item.shape[0]) + 1, "dim": int(item.shape[1])}}
    with pytest.raises(ArtifactError, match="a recipe for another model"):
        load_compressed(path, recipe=Recipe(other, budget, 1, method, params=params))
    narrow = {k: {"n_rows": v["n_rows"], "dim": 1} for k, v in tables.items()}
    with pytest.raises(ArtifactError, match="a recipe for another model"):
        load_compressed(path, recipe=Recipe(narrow, budget, 1, method, params=params))
