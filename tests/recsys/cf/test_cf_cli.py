"""``gradtracer recsys svd train|tune|evaluate|recommend`` end to end on a small ratings file."""

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
            "svd",
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

    assert main(["recsys", "svd", "evaluate", "--model-dir", str(md), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in rows] == ["valid", "test"]
    assert all(0 <= r["ndcg@10"] <= 1 and r["rmse"] > 0 for r in rows)
    assert (md / "metrics.json").is_file() and (md / "valid_vs_test.png").is_file()

    assert (
        main(["recsys", "svd", "recommend", "--model-dir", str(md), "-u", "7", "-n", "5", "--json"])
        == 0
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
                "svd",
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
    assert main(["recsys", "svd", "recommend", "--model-dir", str(md), "-u", "no-such-user"]) == 2
    assert "unknown user id 'no-such-user'" in capsys.readouterr().err


def test_tune_writes_curve_and_chosen_model(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "tuned"
    rc = main(
        ["recsys", "svd", "tune", "--data", str(udata), "--grid", "2,4,8", "--model-dir", str(md)]
    )
    assert rc == 0, capsys.readouterr().err
    tuning = json.loads((md / "tuning.json").read_text())
    assert tuning["grid"] == [2, 4, 8] and CFModel.load(md).n_factors == tuning["chosen"]
    assert (md / "tuning.png").read_bytes()[:4] == b"\x89PNG"
    assert "chosen n_factors=" in capsys.readouterr().out


def test_als_solver(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "als"
    assert (
        main(
            [
                "recsys",
                "svd",
                "train",
                "--data",
                str(udata),
                "--solver",
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
    assert main(["recsys", "svd", "evaluate", "--model-dir", str(md), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["rmse"] is None and rows[-1]["recall@10"] >= 0


def test_bad_inputs_exit_2_with_file_and_column(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "reviews.json"
    bad.write_text('{"reviewerID": "a", "asin": "x", "stars": 5, "unixReviewTime": 1}\n')
    assert (
        main(["recsys", "svd", "train", "--data", str(bad), "--model-dir", str(tmp_path / "m")])
        == 2
    )
    err = capsys.readouterr().err
    assert "reviews.json" in err and "overall" in err
    assert main(["recsys", "svd", "evaluate", "--model-dir", str(tmp_path / "none")]) == 2
    assert "config.json: missing" in capsys.readouterr().err
    assert (
        main(
            [
                "recsys",
                "svd",
                "train",
                "--data",
                str(bad),
                "--solver",
                "nmf",
                "--model-dir",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    assert "solver must be one of" in capsys.readouterr().err  # checked before the data is read


def test_temporal_split_without_validation(udata: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "temporal"
    assert (
        main(
            [
                "recsys",
                "svd",
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
    assert main(["recsys", "svd", "evaluate", "--model-dir", str(md), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["split"] == "test" and row["info"]["heldout_rows"] > 0
    assert not (md / "valid_vs_test.png").exists()
    assert (
        main(
            [
                "recsys",
                "svd",
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
