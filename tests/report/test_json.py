"""Stable report JSON: golden file, sorted keys, round trip, errors naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gradtracer.agent import AgentExporter, to_agent_xml
from gradtracer.export.json_report import read_json, report_from_json, to_json, write_json
from gradtracer.findings import Report
from gradtracer.report.text import render_text

GOLDEN = Path(__file__).parent / "golden" / "fixed_report.json"
VOLATILE = ("created_unix", "gradtracer_version")


def _strip_volatile(doc: dict) -> dict:
    for key in VOLATILE:
        doc["metadata"].pop(key, None)
    for child in doc["children"]:
        _strip_volatile(child)
    return doc


def _report_json(report: Report) -> str:
    doc = _strip_volatile(json.loads(to_json(report)))
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(
    ("name", "render"),
    [
        ("fixed_report.json", _report_json),
        ("fixed_agent.json", lambda r: AgentExporter.export_embedding(r) + "\n"),
        ("fixed_agent.xml", lambda r: to_agent_xml(r) + "\n"),
        ("fixed_report.txt", lambda r: render_text(r) + "\n"),
    ],
    ids=["report-json", "agent-json", "agent-xml", "text"],
)
def test_matches_golden_file(fixed_report: Report, name: str, render) -> None:
    """Regenerate with GRADTRACER_UPDATE_GOLDEN=1 after an intended layout change."""
    golden = GOLDEN.parent / name
    text = render(fixed_report)
    if os.environ.get("GRADTRACER_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden} missing; run once with GRADTRACER_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_output_is_stable_and_sorted(fixed_report: Report) -> None:
    first, second = to_json(fixed_report), to_json(fixed_report)
    assert first == second
    doc = json.loads(first)
    assert first == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False)
    assert list(doc) == sorted(doc)
    # findings most severe first, whatever order they were added in
    assert [f["severity"] for f in doc["findings"]] == ["critical", "warning"]
    assert "NaN" not in first and "Infinity" not in first


def test_write_read_round_trip(tmp_path: Path, fixed_report: Report) -> None:
    path = write_json(fixed_report, tmp_path / "sub" / "report.json")
    back = read_json(path)
    assert back.to_dict() == json.loads(path.read_text())
    assert back.findings[0].sample_ids == (3, 17, 42)
    assert back.stats["norm_by_bucket"] == {"head": 1.5, "tail": 0.25}


def test_read_errors_name_the_file(tmp_path: Path, fixed_report: Report) -> None:
    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"kind": "embedding",\n  oops}')
    with pytest.raises(ValueError, match=r"broken\.json:2: not valid JSON"):
        read_json(bad_json)
    doc = fixed_report.to_dict()
    doc["findings"][0]["confidence"] = 3
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"wrong\.json: .*findings\[0\]\.confidence"):
        read_json(wrong)


def test_accepts_anything_with_to_report(fixed_report: Report) -> None:
    class Holder:
        def to_report(self) -> Report:
            return fixed_report

    assert to_json(Holder()) == to_json(fixed_report)
    with pytest.raises(TypeError, match="got int"):
        to_json(3)
    assert report_from_json(to_json(fixed_report, indent=None)).subject == "item_emb"
