"""``gradtracer demo`` end to end on tiny synthetic sizes."""

from __future__ import annotations

import json

import pytest

from gradtracer.cli import main
from gradtracer.cli.demo import DEMO_METRICS, format_demo, run_demo

TINY = ["--n-users", "60", "--n-items", "80", "--n-interactions", "900", "--dim", "8"]
NO_FAULT = ["--fault", "none"]


def test_demo_prints_table_and_writes_json(tmp_path, capsys):
    code = main(["demo", "--epochs", "2", "--seed", "3", "--out", str(tmp_path), *TINY, *NO_FAULT])
    out = capsys.readouterr().out
    assert code == 0
    assert "popularity" in out and "implicit_mf" in out and "ndcg@10" in out
    assert "full ranking" in out
    summary = json.loads((tmp_path / "demo_results.json").read_text())
    assert summary["config"]["n_epochs"] == 2 and summary["config"]["dim"] == 8
    assert len(summary["losses"]) == 2
    for name in ("popularity", "implicit_mf"):
        result = summary["results"][name]
        assert result["n_users"] + result["n_skipped"] == 60
        assert set(DEMO_METRICS) <= set(result["mean"])
        assert all(0.0 <= result["mean"][k] <= 1.0 for k in DEMO_METRICS)


def test_demo_is_deterministic_and_hook_is_called():
    calls: list[float] = []
    kwargs = {"n_users": 50, "n_items": 60, "n_interactions": 700, "dim": 4, "epochs": 1}
    a = run_demo(seed=1, on_backward=calls.append, **kwargs)
    b = run_demo(seed=1, **kwargs)
    assert calls and all(loss > 0 for loss in calls)
    assert a["losses"] == b["losses"]
    assert a["results"] == b["results"]
    assert "implicit_mf" in format_demo(a)


def test_demo_rejects_bad_options(capsys):
    assert main(["demo", "--epochs", "0", *TINY]) == 2
    assert "epochs must be a positive int, got 0" in capsys.readouterr().err
    assert main(["demo", "--threads", "0"]) == 2


def test_demo_tracks_both_tables_and_writes_valid_reports(tmp_path, capsys):
    from gradtracer.export.schema import validate_agent_report, validate_report

    code = main(
        ["demo", "--epochs", "1", "--track-interval", "5", "--out", str(tmp_path), *TINY, *NO_FAULT]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "GradTracer findings" in out and "user_emb" in out and "item_emb" in out
    report = json.loads((tmp_path / "report.json").read_text())
    validate_report(report)
    assert report["kind"] == "manager"
    assert {c["subject"] for c in report["children"]} == {"user_emb", "item_emb"}
    item = next(c for c in report["children"] if c["subject"] == "item_emb")
    assert item["stats"]["num_embeddings"] == 80 and item["stats"]["step"] > 0
    agent = json.loads((tmp_path / "agent_report.json").read_text())
    validate_agent_report(agent)
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert "manager" not in saved and saved["report"] == report


def test_demo_without_tracking_has_no_report():
    summary = run_demo(n_users=40, n_items=50, n_interactions=500, dim=4, epochs=1, track=False)
    assert "report" not in summary and "manager" not in summary


def test_fault_demo_names_the_fault_and_its_remedy_recovers():
    from gradtracer.cli.demo import format_fault_demo, run_fault_demo

    result = run_fault_demo("table_not_in_optimizer", seed=0, intensity=0)
    assert result["faulty"]["quality"] < result["healthy"]["quality"]
    assert result["finding"]["type"] == "PARAMETERS_NOT_UPDATED"
    assert result["finding"]["remedy"]["kind"] == "add_to_optimizer"
    assert result["recovered"] == pytest.approx(1.0)
    text = format_fault_demo(result)
    assert "PARAMETERS_NOT_UPDATED" in text and "100% of the healthy run" in text


def test_demo_rejects_an_unknown_fault(capsys):
    assert main(["demo", "--epochs", "1", *TINY, "--fault", "nope"]) == 2
    assert "unknown fault 'nope'" in capsys.readouterr().err
