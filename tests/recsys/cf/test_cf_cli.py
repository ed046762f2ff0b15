"""``gradtracer recsys train|tune|evaluate|recommend`` end to end on a small ratings file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradtracer.cli import main
from gradtracer.recsys.cf import CFModel


@pytest.fixture(scope="module")
def udata(tmp_path_factory) -> Path:
    """A MovieLens-style ``u.data`` (user, item, rating, ts) with two planted taste groups."""
    rng = np.random.default_rng(3)
    lines = []
    for u in range(1, 81):
        for t, i in enumerate(rng.choice(np.arange(1, 71), 20, replace=False)):
            rating = 5 if u % 2 == i % 2 else rng.integers(1, 3)
            lines.append(f"{u}\t{i}\t{rating}\t{1_000_000 + t}")
    path = tmp_path_factory.mktemp("ml") / "u.data"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_evaluate_recommend(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "model"
    rc = main(
        [
            "recsys",
            "train",
            "--data",
            str(udata),
            "--n-factors",
            "4",
            "--solver",
            "scipy",
            "--model-dir",
            str(md),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "n_factors=4" in capsys.readouterr().out
    assert (md / "splits" / "test" / "interactions.parquet").is_file()

    assert main(["recsys", "evaluate", "--model-dir", str(md), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in rows] == ["valid", "test"]
    assert all(0 <= r["ndcg@10"] <= 1 and r["rmse"] > 0 for r in rows)
    assert (md / "metrics.json").is_file() and (md / "valid_vs_test.png").is_file()

    assert (
        main(["recsys", "recommend", "--model-dir", str(md), "-u", "7", "-n", "5", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    model = CFModel.load(md)
    seen = set(model.item_ids.raws(model.train_matrix[model.user_ids.index("7")].indices))
    assert len(out["items"]) == 5 and not seen & set(out["items"])


def test_unknown_user_exits_2(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "model"
    assert (
        main(
            [
                "recsys",
                "train",
                "--data",
                str(udata),
                "--n-factors",
                "3",
                "--model-dir",
                str(md),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["recsys", "recommend", "--model-dir", str(md), "-u", "no-such-user"]) == 2
    assert "unknown user id 'no-such-user'" in capsys.readouterr().err


def test_tune_writes_curve_and_chosen_model(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "tuned"
    rc = main(["recsys", "tune", "--data", str(udata), "--grid", "2,4,8", "--model-dir", str(md)])
    assert rc == 0, capsys.readouterr().err
    tuning = json.loads((md / "tuning.json").read_text())
    assert tuning["grid"] == [2, 4, 8] and CFModel.load(md).n_factors == tuning["chosen"]
    assert (md / "tuning.png").read_bytes()[:4] == b"\x89PNG"
    assert "chosen n_factors=" in capsys.readouterr().out


def test_als_model(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "als"
    assert (
        main(
            [
                "recsys",
                "train",
                "--data",
                str(udata),
                "--model",
                "als",
                "--n-factors",
                "4",
                "--iterations",
                "3",
                "--model-dir",
                str(md),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["recsys", "evaluate", "--model-dir", str(md), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["rmse"] is None and rows[-1]["recall@10"] >= 0


def test_bad_inputs_exit_2_with_file_and_column(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "reviews.json"
    bad.write_text('{"reviewerID": "a", "asin": "x", "stars": 5, "unixReviewTime": 1}\n')
    assert main(["recsys", "train", "--data", str(bad), "--model-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "reviews.json" in err and "overall" in err
    assert main(["recsys", "evaluate", "--model-dir", str(tmp_path / "none")]) == 2
    assert "none: no such model directory" in capsys.readouterr().err
    assert (
        main(
            [
                "recsys",
                "train",
                "--data",
                str(bad),
                "--model",
                "nmf",
                "--model-dir",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    assert "--model must be one of" in capsys.readouterr().err  # checked before the data is read


def test_temporal_split_without_validation(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "temporal"
    assert (
        main(
            [
                "recsys",
                "train",
                "--data",
                str(udata),
                "--split",
                "temporal",
                "--valid-fraction",
                "0",
                "--n-factors",
                "3",
                "--model-dir",
                str(md),
            ]
        )
        == 0
    )
    assert not (md / "splits" / "valid").exists()
    capsys.readouterr()
    assert main(["recsys", "evaluate", "--model-dir", str(md), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["split"] == "test" and row["info"]["heldout_rows"] > 0
    assert not (md / "valid_vs_test.png").exists()
    assert (
        main(
            [
                "recsys",
                "tune",
                "--data",
                str(udata),
                "--valid-fraction",
                "0",
                "--model-dir",
                str(tmp_path / "t"),
            ]
        )
        == 2
    )
    assert "--valid-fraction must be > 0" in capsys.readouterr().err


def _train_args(udata: Path, md: Path, *extra: str) -> list[str]:
    return [
        "recsys",
        "train",
        "--data",
        str(udata),
        "--n-factors",
        "3",
        "--model-dir",
        str(md),
        *extra,
    ]


def test_old_svd_spelling_still_works_with_a_note(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "old"
    args = ["recsys", "svd", "train", "--data", str(udata), "--solver", "als", "--n-factors", "3"]
    assert main([*args, "--iterations", "2", "--model-dir", str(md)]) == 0
    err = capsys.readouterr().err
    assert (
        "'gradtracer recsys svd train' is deprecated; use 'gradtracer recsys train --model als'"
        in err
    )
    assert CFModel.load(md).config.solver == "als"
    assert main(["recsys", "svd", "recommend", "--model-dir", str(md), "-u", "3", "-n", "2"]) == 0
    assert "rank" in capsys.readouterr().out
    assert main(_train_args(udata, tmp_path / "x", "--solver", "als")) == 2
    assert "use --model als" in capsys.readouterr().err


def test_retraining_removes_outputs_it_does_not_rewrite(
    udata: Path, tmp_path: Path, capsys
) -> None:
    md = tmp_path / "model"
    assert main(_train_args(udata, md)) == 0
    assert main(["recsys", "evaluate", "--model-dir", str(md), "--json"]) == 0
    assert (md / "splits" / "valid").is_dir() and (md / "valid_vs_test.png").is_file()
    (md / "notes.txt").write_text("mine")  # not an output of these commands: kept
    capsys.readouterr()
    assert main(_train_args(udata, md, "--valid-fraction", "0", "--split", "temporal")) == 0
    assert not (md / "splits" / "valid").exists()
    assert not (md / "metrics.json").exists() and not (md / "valid_vs_test.png").exists()
    assert (md / "notes.txt").read_text() == "mine"
    assert (md / ".complete").is_file() and not (md / ".incomplete").exists()
    capsys.readouterr()
    assert main(["recsys", "evaluate", "--model-dir", str(md), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["split"] == "test"  # the test split is not masked by a stale validation split


def test_interrupted_write_is_refused(udata: Path, tmp_path: Path, capsys) -> None:
    from gradtracer.durable import mark_incomplete

    md = tmp_path / "model"
    assert main(_train_args(udata, md)) == 0
    mark_incomplete(md)  # what a kill during the next train leaves behind
    capsys.readouterr()
    assert main(["recsys", "recommend", "--model-dir", str(md), "-u", "3"]) == 1
    assert "did not finish" in capsys.readouterr().err
    assert main(["recsys", "evaluate", "--model-dir", str(md)]) == 1


def test_recommend_refuses_non_finite_scores(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "model"
    assert main(_train_args(udata, md)) == 0
    model = CFModel.load(md)
    model.factors.item_factors[4, 0] = np.nan  # a diverged / corrupted model
    model.save(md)
    capsys.readouterr()
    assert main(["recsys", "recommend", "--model-dir", str(md), "-u", "3"]) == 2
    err = capsys.readouterr().err
    assert str(md / "arrays.npz") in err and "'item_factors' has 1 NaN/inf values" in err


@pytest.mark.parametrize("model", ["popularity", "mf"])
def test_baseline_models_train_evaluate_recommend(
    udata: Path, tmp_path: Path, capsys, model: str
) -> None:
    from gradtracer.recsys.models import load_model

    md = tmp_path / model
    extra = ["--n-epochs", "2", "--n-factors", "4"] if model == "mf" else []
    assert main(["recsys", "train", "--model", model, *_train_args(udata, md)[2:], *extra]) == 0
    assert f"trained {model}" in capsys.readouterr().out
    assert (md / "splits" / "train" / "interactions.parquet").is_file()
    assert type(load_model(md)).__name__ in ("PopularityRecommender", "ImplicitMF")
    assert main(["recsys", "evaluate", "--model-dir", str(md), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in rows] == ["valid", "test"]
    assert all(r["rmse"] is None and 0 <= r["ndcg@10"] <= 1 for r in rows)
    assert (
        main(["recsys", "recommend", "--model-dir", str(md), "-u", "7", "-k", "5", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    from gradtracer.recsys.data import Interactions

    train = Interactions.load(md / "splits" / "train")
    u = train.user_ids.index("7")
    seen = set(train.item_ids.raws(train.user_items()[u].indices))
    assert len(out["items"]) == 5 and not seen & set(out["items"])
    assert (
        main(["recsys", "tune", "--model", model, "--data", str(udata), "--model-dir", str(md)])
        == 2
    )
    assert "has no solver" in capsys.readouterr().err
