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

    # a safetensors artifact, checked against its recipe and against another one
    pytest.importorskip("safetensors")
    st = tmp_path / "c.safetensors"
    assert main([*args, "--out", str(st)]) == 0
    evaluate = ["compress", "evaluate", "--workload", "synthetic", "--artifact", str(st)]
    assert main([*evaluate, "--recipe", str(out / "recipe_8x.json")]) == 0
    capsys.readouterr()
    other = json.loads((out / "recipe_8x.json").read_text())
    other["budget_bytes"] -= 1
    other.pop("fingerprint")
    from gradtracer.compress.recipe import Recipe

    Recipe.from_dict({**other, "fingerprint": _fingerprint(other)}).save(tmp_path / "other.json")
    assert main([*evaluate, "--recipe", str(tmp_path / "other.json")]) == 2
    assert "not from this recipe" in capsys.readouterr().err


def _fingerprint(body: dict) -> str:
    from gradtracer.compress.recipe import _fingerprint as fp

    return fp(body)
