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
    assert json.loads((out / "recipe_8x.json").read_text())["predicted"]["selected_by"] == (
        "fidelity_plus_validation"
    )
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


def _write_diginetica(path: Path, *, n_sessions: int = 200, n_items: int = 40) -> Path:
    """Synthetic sessions in the Diginetica ``train-item-views`` layout."""
    import datetime as dt

    from gradtracer.recsys.data.synthetic import make_sessions

    frame = make_sessions(n_sessions=n_sessions, n_items=n_items, random_state=7).frame
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    start: dict[int, int] = {}
    for s, item, t in zip(frame["session"], frame["item"], frame["timestamp"], strict=True):
        first = start.setdefault(int(s), int(t))
        day = dt.date(2016, 1, 1) + dt.timedelta(days=int(s) // 10)
        lines.append(f"{int(s) + 1};NA;{int(item) + 100};{(int(t) - first) * 1000};{day}")
    path.write_text("\n".join(lines))
    return path


_GRU = ["--preset", "default", "--layers", "8", "--n-sample", "8", "--batch-size", "16"]


def test_session_advise_apply_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _write_diginetica(tmp_path / "views.csv")
    out = tmp_path / "adv"
    advise = ["compress", "advise", "--sessions", str(log), *_GRU, "--n-epochs", "1"]
    assert main([*advise, "--ratios", "8", "--dense", "int8", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    (finding,) = report["findings"]
    assert finding["type"] == "COMPRESSION_CANDIDATE"
    recipe = json.loads(finding["evidence"]["recipe_json"])
    assert recipe["kind"] == "gradtracer.session_compression_recipe"
    assert [d["precision"] for d in recipe["dense_layers"]] == ["int8", "int8"]
    assert (out / "float_model").is_dir()
    capsys.readouterr()

    artifact = tmp_path / "gru.npz"
    apply = ["compress", "apply", str(out / "recipe_8x.json"), "--model", str(out / "float_model")]
    assert main([*apply, "--out", str(artifact)]) == 0
    assert "smaller" in capsys.readouterr().out
    evaluate = ["compress", "evaluate", "--sessions", str(log), "--artifact", str(artifact)]
    assert main([*evaluate, "--recipe", str(out / "recipe_8x.json")]) == 0
    assert "test NDCG@10" in capsys.readouterr().out

    # a session recipe needs the float GRU4Rec, and an edited one is refused
    assert main(["compress", "apply", str(out / "recipe_8x.json")]) == 2
    assert "give --model" in capsys.readouterr().err
    data = json.loads((out / "recipe_8x.json").read_text())
    data["budget_bytes"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(data))
    assert main([*evaluate, "--recipe", str(tmp_path / "bad.json")]) == 2
    assert "fingerprint does not match" in capsys.readouterr().err
    # a session artifact is not an MF artifact, and the MF evaluator says so
    mf = ["compress", "evaluate", "--workload", "synthetic", "--artifact", str(artifact)]
    assert main(mf) == 2
    assert "gradtracer.compressed_gru4rec/1" in capsys.readouterr().err


def test_session_study_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _write_diginetica(tmp_path / "views.csv", n_sessions=150, n_items=30)
    out = tmp_path / "study"
    args = ["compress", "evaluate", "--sessions", str(log), *_GRU, "--n-epochs", "1"]
    opts = ["--n-seeds", "2", "--ratios", "8", "--dense-precisions", "int8"]
    assert main([*args, *opts, "--select", "fidelity", "--out", str(out)]) == 0
    study = json.loads((out / "session_study.json").read_text())
    methods = {(r["seed"], r["method"]) for r in study["rows"]}
    assert {(0, "fp32"), (1, "fp32"), (0, "recipe"), (1, "dense_int8")} <= methods
    picks = [r for r in study["rows"] if r["method"] == "recipe"]
    for pick in picks:  # chosen by fidelity: the highest of its seed's candidates
        same = [
            r["fidelity"]
            for r in study["rows"]
            if r["seed"] == pick["seed"] and r["ratio"] == 8 and r["method"] != "recipe"
        ]
        assert pick["fidelity"] == max(same)
    assert "| 8x | recipe" in (out / "session_summary.md").read_text()
    assert "session_summary.md" in capsys.readouterr().out
