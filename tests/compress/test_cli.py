"""``gradtracer compress advise | apply | evaluate`` on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradtracer.cli import main


def test_advise_apply_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adv"
    code = main(
        ["compress", "advise", "--workload", "synthetic", "--n-factors", "8", "--n-epochs", "3",
         "--ratios", "8", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [f["type"] for f in report["findings"]] == ["COMPRESSION_CANDIDATE"]
    assert "COMPRESSION_CANDIDATE" in capsys.readouterr().out
    artifact = tmp_path / "c.npz"
    args = [
        "compress",
        "apply",
        str(out / "recipe_8x.json"),
        "--tables",
        str(out / "float_tables.npz"),
    ]
    assert main([*args, "--out", str(artifact)]) == 0
    assert (
        main(["compress", "evaluate", "--workload", "synthetic", "--artifact", str(artifact)]) == 0
    )
    assert "test NDCG@10" in capsys.readouterr().out

    # a tampered recipe is a usage error naming the problem
    data = json.loads((out / "recipe_8x.json").read_text())
    data["method"] = "uniform"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    assert (
        main(
            [
                "compress",
                "apply",
                str(tmp_path / "bad.json"),
                "--tables",
                str(out / "float_tables.npz"),
            ]
        )
        == 2
    )
    assert "fingerprint does not match" in capsys.readouterr().err
