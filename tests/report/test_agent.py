"""Agent JSON, legacy XML and text: the documented shapes, schema-valid, escaped."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pytest

from gradtracer.agent import AgentExporter, to_agent_xml
from gradtracer.export.schema import validate_agent_report
from gradtracer.findings import Finding, Report, Severity
from gradtracer.report.text import print_report, render_text


def test_export_embedding_has_the_published_shape(fixed_report: Report) -> None:
    text = AgentExporter.export_embedding(fixed_report)
    doc = json.loads(text)
    validate_agent_report(doc)
    body = doc["gradtracer_embedding_report"]
    assert body["layer"] == "item_emb" and body["step"] == 340
    stats = body["embedding_stats"]
    assert stats["num_embeddings"] == 1682
    assert stats["active_coverage_pct"] == 20.4 and stats["popularity_gini"] == 0.85
    assert stats["effective_rank"] is None
    first = body["diagnostics"][0]
    assert first["type"] == "ZOMBIE_EMBEDDINGS"  # critical before warning
    for key in ("type", "premise", "implies", "action", "expected_effect", "confidence"):
        assert key in first
    assert first["confidence"] == 0.92 and first["sample_ids"] == [3, 17, 42]
    assert text == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False)


def test_missing_documented_stats_are_null_not_absent() -> None:
    doc = json.loads(AgentExporter.export_embedding(Report("embedding", "user_emb")))
    validate_agent_report(doc)
    stats = doc["gradtracer_embedding_report"]["embedding_stats"]
    assert stats == {"num_embeddings": None, "active_coverage_pct": None, "popularity_gini": None}
    assert doc["gradtracer_embedding_report"]["diagnostics"] == []


def test_exporters_refuse_the_wrong_kind(fixed_report: Report) -> None:
    manager = Report.merge("manager", "mgr", [fixed_report])
    with pytest.raises(ValueError, match="use export_manager"):
        AgentExporter.export_embedding(manager)
    with pytest.raises(ValueError, match="use export_embedding"):
        AgentExporter.export_manager(fixed_report)
    with pytest.raises(TypeError, match="got str"):
        AgentExporter.export_embedding("item_emb")


def test_export_manager_shape(fixed_report: Report) -> None:
    fixed_report.metadata["tracker_key"] = "item"
    cross = Finding(
        "TOWER_IMBALANCE", Severity.WARNING, "user vs item", "p", "i", "RAISE_LR", "e", 0.7
    )
    manager = Report(
        "manager",
        "mgr",
        stats={"health_score": 55.5, "step": 9, "pairs": []},
        findings=[cross],
        metadata={"step": 9},
        children=[fixed_report],
    )
    doc = json.loads(AgentExporter.export_manager(manager))
    validate_agent_report(doc)
    body = doc["gradtracer_manager_report"]
    assert body["health_score"] == 55.5 and body["step"] == 9
    assert body["cross_tracker_stats"] == {"pairs": []}
    assert [t["key"] for t in body["trackers"]] == ["item"]
    assert body["trackers"][0]["layer"] == "item_emb"
    assert body["diagnostics"][0]["type"] == "TOWER_IMBALANCE"


def test_xml_is_well_formed_escaped_and_legacy_shaped(fixed_report: Report) -> None:
    text = to_agent_xml(fixed_report)
    assert AgentExporter.to_agent_xml(fixed_report) == text
    root = ET.fromstring(text)
    assert root.tag == "gradtracer_embedding_report" and root.get("layer") == "item_emb"
    models = root.findall("causal_model")
    assert [m.get("type") for m in models] == ["ZOMBIE_EMBEDDINGS", "POPULARITY_BIAS"]
    zombie = models[0]
    # the control character is dropped, everything else survives the round trip
    assert zombie.findtext("premise") == (
        "8.5% of rows move fast but flip direction (cos < 0) <\"&'>  here."
    )
    assert zombie.findtext("action") == "DECREASE_LR_OR_USE_SPARSE_ADAM"
    assert zombie.findtext("confidence") == "0.92"
    assert [c.tag for c in zombie] == [
        "premise",
        "implies",
        "action",
        "expected_effect",
        "confidence",
    ]
    assert "&lt;" in text and "&amp;" in text


def test_xml_nests_children_of_a_manager(fixed_report: Report) -> None:
    parent = Report.merge("manager", 'a"b', [fixed_report, Report("embedding", "user_emb")])
    root = ET.fromstring(to_agent_xml(parent))
    assert root.tag == "gradtracer_manager_report" and root.get("subject") == 'a"b'
    assert [c.get("layer") for c in root] == ["item_emb", "user_emb"]


def test_text_lists_stats_and_findings_most_severe_first(fixed_report: Report) -> None:
    text = render_text(fixed_report)
    assert text.splitlines()[0] == "GradTracer embedding report: item_emb (step 340)"
    assert text.index("[CRITICAL] ZOMBIE_EMBEDDINGS") < text.index("[WARNING] POPULARITY_BIAS")
    assert "effective_rank" in text and "n/a" in text
    assert "action:   DECREASE_LR_OR_USE_SPARSE_ADAM" in text
    assert "examples: [3, 17, 42]" in text


def test_text_drops_terminal_escapes() -> None:
    report = Report("embedding", "item\x1b[2Jemb", stats={"note": "a\x07b"})
    text = render_text(report)
    assert "\x1b" not in text and "\x07" not in text
    assert "item[2Jemb" in text and "ab" in text


def test_print_report_prints_what_it_returns(fixed_report: Report) -> None:
    buffer = io.StringIO()
    text = print_report(fixed_report, file=buffer)
    assert buffer.getvalue() == text + "\n"
    assert text == render_text(fixed_report)


def test_text_cuts_long_values_and_lists_records_per_line() -> None:
    report = Report(
        "manager",
        "mgr",
        stats={
            "long": list(range(100)),
            "blob": "x" * 500,
            "pairs": [{"a": "user", "b": "item", "r": 0.5}, {"a": "user", "b": "ctx", "r": None}],
        },
    )
    lines = render_text(report).splitlines()
    assert "    long   [0, 1, 2, 3, 4, 5, 6, 7, ...]" in lines
    blob = next(line for line in lines if line.lstrip().startswith("blob"))
    assert blob.endswith("...") and len(blob.split("  ", 3)[-1].strip()) == 120
    i = lines.index("    pairs:")
    assert lines[i + 1 : i + 3] == [
        "      - {a: user, b: item, r: 0.5}",
        "      - {a: user, b: ctx, r: n/a}",
    ]
