"""FlowManager and its pure cross-tracker statistics, on scripted trackers with known answers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.agent import AgentExporter
from gradtracer.export.schema import validate_agent_report, validate_report
from gradtracer.findings import Finding, Severity
from gradtracer.manager import (
    FlowManager,
    ManagerThresholds,
    compute_exposure_alignment,
    compute_health_score,
    compute_tracker_health,
    compute_velocity_correlation,
    compute_velocity_loss_correlation,
    detect_exposure_misalignment,
    detect_tower_imbalance,
    pearson,
)
from gradtracer.report.text import print_report, render_text

# --- pure statistics -------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=3, max_size=30))
def test_pearson_matches_numpy(pairs: list[tuple[float, float]]) -> None:
    x, y = (list(v) for v in zip(*pairs))
    r = pearson(x, y)
    if np.std(x) < 1e-9 or np.std(y) < 1e-9:
        return  # degenerate: numpy warns, we return None or a clipped value
    assert r is not None
    assert r == pytest.approx(float(np.corrcoef(x, y)[0, 1]), abs=1e-6)


def test_pearson_edge_cases() -> None:
    assert pearson([1.0, 2.0], [2.0, 4.0]) is None  # too few points
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # no variance
    with pytest.raises(ValueError, match="lengths differ: 3 vs 2"):
        pearson([1.0, 2.0, 3.0], [1.0, 2.0])


def test_velocity_correlation_aligns_on_shared_steps() -> None:
    a = [{"step": s, "mean_velocity": float(s)} for s in (1, 2, 3, 4, 5)]
    b = [{"step": s, "mean_velocity": -2.0 * s} for s in (2, 3, 4, 9)]
    r, n = compute_velocity_correlation(a, b)
    assert n == 3 and r == pytest.approx(-1.0)
    nan_hist = [{"step": 2, "mean_velocity": float("nan")}]
    assert compute_velocity_correlation(a, nan_hist) == (None, 0)


def test_velocity_loss_correlation_uses_only_snapshots_with_a_loss() -> None:
    hist = [{"step": s, "mean_velocity": 1.0 / s, "loss": 2.0 / s} for s in range(1, 6)]
    hist.append({"step": 6, "mean_velocity": 5.0, "loss": None})
    r, n = compute_velocity_loss_correlation(hist)
    assert n == 5 and r == pytest.approx(1.0)


def test_exposure_alignment_formula() -> None:
    a = {"popularity_gini": 0.8, "active_coverage_pct": 20.0}
    b = {"popularity_gini": 0.2, "active_coverage_pct": 100.0}
    assert compute_exposure_alignment(a, a) == 1.0
    assert compute_exposure_alignment(a, b) == pytest.approx(1 - (0.6 + 0.8) / 2)
    assert compute_exposure_alignment(a, {"popularity_gini": 0.1}) is None
    finding = detect_exposure_misalignment("item", a, "user", b)
    assert finding is not None and finding.type == "EXPOSURE_MISALIGNMENT"
    assert finding.evidence["exposure_alignment"] == pytest.approx(0.3)
    assert detect_exposure_misalignment("item", a, "user", a) is None


def test_tracker_health_formula() -> None:
    assert compute_tracker_health({}) == 100.0
    stats = {"zombie_ratio": 0.1, "dead_ratio": 0.5, "popularity_gini": 0.75}
    expected = 100 * 0.9 * 0.5 * (1 - 0.5 / 2)
    assert compute_tracker_health(stats) == pytest.approx(expected)
    critical = Finding("DEAD_EMBEDDINGS", Severity.CRITICAL, "x", "p", "", "A", "", 0.9)
    assert compute_tracker_health(stats, [critical]) == pytest.approx(expected / 2)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 100), max_size=5),
    st.lists(st.sampled_from(list(Severity)), max_size=6),
)
def test_health_score_stays_in_range(healths: list[float], severities: list[Severity]) -> None:
    findings = [Finding("TOWER_IMBALANCE", s, "x", "p", "", "A", "", 0.5) for s in severities]
    score = compute_health_score(healths, findings)
    if not healths:
        assert score is None
    else:
        assert 0.0 <= score <= 100.0
        assert score <= sum(healths) / len(healths)


def test_tower_imbalance_is_planted_and_judged() -> None:
    finding = detect_tower_imbalance({"user": 0.001, "item": 0.2, "ctx": None})
    assert finding is not None and finding.type == "TOWER_IMBALANCE"
    assert finding.evidence["slow_tracker"] == "user"
    assert finding.evidence["fast_tracker"] == "item"
    assert finding.severity is Severity.WARNING
    assert detect_tower_imbalance({"user": 0.0, "item": 0.2}).severity is Severity.CRITICAL
    assert detect_tower_imbalance({"user": 0.05, "item": 0.2}) is None
    assert detect_tower_imbalance({"user": 0.001}) is None


# --- FlowManager ------------------------------------------------------------------------


def test_add_tracker_validates(scripted) -> None:
    manager = FlowManager()
    item = scripted("item_emb", [1.0])
    assert manager.add_tracker("item", item) is item
    with pytest.raises(ValueError, match="already registered under key 'item'"):
        manager.add_tracker("item", scripted("other", [1.0]))
    with pytest.raises(ValueError, match="already registered under key 'item'"):
        manager.add_tracker("item2", item)
    with pytest.raises(ValueError, match="non-empty"):
        manager.add_tracker("", scripted("x", [1.0]))
    with pytest.raises(TypeError, match="must be a str, got int"):
        manager.add_tracker(3, scripted("x", [1.0]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lacks step, summary, findings, to_report"):
        manager.add_tracker("bad", object())  # type: ignore[arg-type]
    assert list(manager) == ["item"] and "item" in manager and len(manager) == 1


def test_step_reaches_every_tracker_with_the_loss(scripted) -> None:
    manager = FlowManager()
    a, b = scripted("a", [1.0]), scripted("b", [2.0])
    manager.add_tracker("a", a)
    manager.add_tracker("b", b)
    for loss in (0.9, 0.8, None):
        manager.step(loss)
    assert a.losses == b.losses == [0.9, 0.8, None]
    assert manager.n_steps == 3 == manager.summary()["step"]
    with pytest.warns(DeprecationWarning, match="global_step is deprecated"):
        assert manager.global_step == 3
    manager.detach()
    assert a.detached and b.detached


def _two_towers(scripted, user_velocities, item_velocities, user_stats=None, item_stats=None):
    manager = FlowManager("two_tower")
    manager.add_tracker(
        "user", scripted("user_emb", user_velocities, track_interval=2, stats=user_stats)
    )
    manager.add_tracker(
        "item", scripted("item_emb", item_velocities, track_interval=2, stats=item_stats)
    )
    for i in range(20):
        manager.step(loss=1.0 / (i + 1))
    return manager


def test_report_with_a_stagnating_tower(scripted) -> None:
    stats = {
        "popularity_gini": 0.5,
        "active_coverage_pct": 50.0,
        "zombie_ratio": 0.0,
        "dead_ratio": 0.0,
    }
    falling = [1.0 / (i + 1) for i in range(20)]
    manager = _two_towers(scripted, [1e-4 * v for v in falling], falling, stats, stats)
    report = manager.to_report()
    validate_report(report.to_dict())
    assert report.kind == "manager" and report.subject == "two_tower"
    pair = report.stats["pairs"][0]
    assert (pair["a"], pair["b"]) == ("user", "item")
    assert pair["n_points"] == 10 and pair["velocity_correlation"] == pytest.approx(1.0)
    assert pair["exposure_alignment"] == 1.0
    # velocity falls with the loss in both towers (both series fall monotonically: r near 1)
    assert report.stats["velocity_loss_correlation"]["item"] > 0.9
    types = [f.type for f in report.findings]
    assert types == ["TOWER_IMBALANCE"]
    assert report.findings[0].evidence["slow_tracker"] == "user"
    # health: both trackers at 100, one warning -> 90
    assert report.stats["health_score"] == pytest.approx(90.0)
    assert [c.metadata["tracker_key"] for c in report.children] == ["user", "item"]
    assert manager.health_score() == pytest.approx(90.0)
    summary = manager.summary()
    assert set(summary["trackers"]) == {"user", "item"} and summary["n_trackers"] == 2


def test_balanced_towers_with_misaligned_exposure(scripted) -> None:
    manager = _two_towers(
        scripted,
        [1.0, 2.0, 1.5],
        [2.0, 1.0, 1.8],
        {"popularity_gini": 0.1, "active_coverage_pct": 95.0},
        {"popularity_gini": 0.9, "active_coverage_pct": 10.0},
    )
    findings = manager.findings()
    assert [f.type for f in findings] == ["EXPOSURE_MISALIGNMENT"]
    assert findings[0].subject == "user vs item"


def test_findings_include_every_trackers_own(scripted) -> None:
    own = Finding("DEAD_EMBEDDINGS", Severity.CRITICAL, "user_emb", "p", "", "A", "", 0.9)
    manager = FlowManager()
    manager.add_tracker("user", scripted("user_emb", [1.0], findings=[own]))
    manager.step()
    assert manager.findings() == [own]
    assert manager.to_report().findings == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"imbalance_ratio": 0.0}, "imbalance_ratio must be in"),
        ({"min_exposure_alignment": 1.5}, "min_exposure_alignment must be in"),
        ({"min_points": 1}, "min_points must be >= 2, got 1"),
        ({"recent_window": 0}, "recent_window must be >= 1, got 0"),
    ],
    ids=["ratio-0", "alignment>1", "one-point", "empty-window"],
)
def test_thresholds_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ManagerThresholds(**kwargs)


def test_snapshots_without_step_use_their_position() -> None:
    a = [{"mean_velocity": v} for v in (1.0, 2.0, 3.0)]
    b = [{"step": None, "mean_velocity": v} for v in (3.0, 2.0, 1.0)]
    assert compute_velocity_correlation(a, b) == (pytest.approx(-1.0), 3)


def test_thresholds_are_honoured(scripted) -> None:
    manager = FlowManager(thresholds=ManagerThresholds(imbalance_ratio=1e-6))
    manager.add_tracker("user", scripted("user_emb", [1e-3]))
    manager.add_tracker("item", scripted("item_emb", [1.0]))
    manager.step()
    assert manager.to_report().findings == []


def test_empty_manager_reports_without_health() -> None:
    report = FlowManager().to_report()
    validate_report(report.to_dict())
    assert report.stats["health_score"] is None and report.stats["pairs"] == []
    doc = json.loads(AgentExporter.export_manager(FlowManager()))
    validate_agent_report(doc)


def test_report_returns_the_text_and_print_report_prints_it(scripted, capsys) -> None:
    manager = _two_towers(scripted, [1e-6], [1.0])
    text = manager.report()
    assert capsys.readouterr().out == ""  # report() never prints
    assert text == render_text(manager) and repr(text) == text  # a notebook cell shows the text
    assert text.startswith("GradTracer manager report: two_tower (step 20)")
    assert "TOWER_IMBALANCE" in text and "GradTracer embedding report: user_emb [user]" in text
    buffer = io.StringIO()
    assert print_report(manager, file=buffer) == text and buffer.getvalue() == text + "\n"


def test_published_manager_report_prints_and_returns_text(scripted, capsys) -> None:
    """``gradtracer.analyzers.manager.FlowManager`` keeps the published printing report()."""
    from gradtracer.analyzers.manager import FlowManager as PublishedManager

    manager = PublishedManager("two_tower")
    manager.add_tracker("user", scripted("user_emb", [1e-6], track_interval=2))
    manager.add_tracker("item", scripted("item_emb", [1.0], track_interval=2))
    for i in range(20):
        manager.step(loss=1.0 / (i + 1))
    text = manager.report()
    assert capsys.readouterr().out == text + "\n"
    assert text.startswith("GradTracer manager report: two_tower (step 20)")
    buffer = io.StringIO()
    assert manager.report(file=buffer) == text and buffer.getvalue() == text + "\n"
    assert manager.report(quiet=True) == text and capsys.readouterr().out == ""


def test_agent_export_of_a_manager_validates(scripted) -> None:
    manager = _two_towers(scripted, [1e-6], [1.0])
    doc = json.loads(AgentExporter.export_manager(manager))
    validate_agent_report(doc)
    body = doc["gradtracer_manager_report"]
    assert [t["key"] for t in body["trackers"]] == ["user", "item"]
    assert body["diagnostics"][0]["type"] == "TOWER_IMBALANCE"
    assert body["cross_tracker_stats"]["n_trackers"] == 2
