"""The findings catalog: one spec per finding type, and make_finding built from it."""

from __future__ import annotations

import json
import re

import pytest

from gradtracer.export.schema import schema_errors, validate_report
from gradtracer.findings import Finding, FindingType, Remedy, Report, Severity
from gradtracer.report.catalog import CATALOG, FindingSpec, make_finding, spec_for, template_fields

_UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def test_every_finding_type_has_one_entry_in_enum_order() -> None:
    assert list(CATALOG) == list(FindingType)
    for t, spec in CATALOG.items():
        assert spec.type is t
        filled = re.sub(r"\{[^}]*\}", "X", spec.action)  # a template field may name the subject
        assert _UPPER_SNAKE.match(filled), (t, spec.action)
        assert spec.implies.strip() and spec.expected_effect.strip(), t
        assert isinstance(spec.severity, Severity)


def test_make_finding_fills_the_templates_and_the_defaults() -> None:
    f = make_finding(
        FindingType.TREE_STAGNATION,
        subject="gbm",
        premise="Leaf spread fell to 0.5%.",
        confidence=0.8,
        evidence={"rounds_after_stagnation": 40},
        wasted=40,
    )
    assert f.implies == "The last 40 rounds barely change predictions: training time is wasted."
    assert f.severity is CATALOG[FindingType.TREE_STAGNATION].severity
    assert f.action == CATALOG[FindingType.TREE_STAGNATION].action
    assert f.type is FindingType.TREE_STAGNATION
    assert template_fields(CATALOG[FindingType.TREE_STAGNATION]) == {"wasted"}
    # a formatted field keeps its format spec
    g = make_finding(
        FindingType.FEATURE_INTERACTION,
        subject="features",
        premise="p.",
        confidence=0.9,
        delta_adj_r2=0.123456,
    )
    assert g.expected_effect.startswith("About 0.1235 more adjusted R^2")


def test_make_finding_names_a_missing_template_field() -> None:
    with pytest.raises(TypeError, match=r"TOWER_IMBALANCE.*'slow'.*fast, slow"):
        make_finding(FindingType.TOWER_IMBALANCE, subject="a vs b", premise="p.", confidence=0.5)


def test_make_finding_rejects_an_unknown_type() -> None:
    with pytest.raises(KeyError, match="NOT_A_TYPE"):
        spec_for("NOT_A_TYPE")
    with pytest.raises(ValueError, match="Finding.type must be a FindingType value, got 'NOPE'"):
        Finding("NOPE", Severity.INFO, "s", "p", "i", "A", "e", 0.5)  # type: ignore[arg-type]


def test_severity_override_and_remedy_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def builder(**kw: object) -> Remedy:
        calls.append(kw)
        return Remedy("scale_learning_rate", {"subject": str(kw["subject"]), "factor": 0.1})

    spec = CATALOG[FindingType.HIGH_UPDATE_RATIO]
    patched = dict(CATALOG)
    patched[FindingType.HIGH_UPDATE_RATIO] = FindingSpec(
        spec.type, spec.severity, spec.implies, spec.action, spec.expected_effect, builder
    )
    monkeypatch.setattr("gradtracer.report.catalog.CATALOG", patched)
    f = make_finding(
        FindingType.HIGH_UPDATE_RATIO,
        subject="fc1.weight",
        premise="ratio 0.1 > 0.01.",
        confidence=0.75,
        severity=Severity.CRITICAL,
        evidence={"update_ratio": 0.1},
    )
    assert f.severity is Severity.CRITICAL
    assert f.remedy == Remedy("scale_learning_rate", {"subject": "fc1.weight", "factor": 0.1})
    assert calls == [{"subject": "fc1.weight", "evidence": {"update_ratio": 0.1}}]
    # an explicit remedy wins over the builder
    own = Remedy("clip_gradients", {"max_norm": 1.0})
    assert (
        make_finding(
            FindingType.HIGH_UPDATE_RATIO, subject="x", premise="p.", confidence=0.5, remedy=own
        ).remedy
        == own
    )


def test_remedy_and_consequence_of_round_trip_and_validate() -> None:
    f = make_finding(
        FindingType.LOSS_PLATEAU,
        subject="model",
        premise="Loss slope 1e-9.",
        confidence=0.6,
        remedy=Remedy("scale_learning_rate", {"factor": 0.5, "subject": "model"}),
        consequence_of=FindingType.STAGNATING_LAYER,
    )
    report = Report(kind="flow", subject="model", findings=[f])
    doc = json.loads(json.dumps(report.to_dict()))
    validate_report(doc)
    assert doc["findings"][0]["remedy"] == {
        "kind": "scale_learning_rate",
        "params": {"factor": 0.5, "subject": "model"},
    }
    assert doc["findings"][0]["consequence_of"] == "STAGNATING_LAYER"
    back = Report.from_dict(doc).findings[0]
    assert back == f
    # without them the keys are absent (older readers see the 1.0 layout) and null is valid
    plain = Report(
        kind="flow",
        subject="m",
        findings=[
            make_finding(FindingType.LOSS_PLATEAU, subject="m", premise="p.", confidence=0.6)
        ],
    ).to_dict()
    assert "remedy" not in plain["findings"][0] and "consequence_of" not in plain["findings"][0]
    plain["findings"][0].update(remedy=None, consequence_of=None)
    assert schema_errors(plain) == []
    plain["findings"][0]["remedy"] = {"kind": "", "params": {}}
    assert schema_errors(plain)


def test_finding_type_is_the_enum_and_prints_as_its_value() -> None:
    f = make_finding(FindingType.COLD_START, subject="item_emb", premise="p.", confidence=0.3)
    assert isinstance(f.type, FindingType)
    assert f.type == "COLD_START"
    # Enum hashes by name: with name == value a member and its string are one dict key
    assert all(t.name == t.value for t in FindingType)
    assert {"COLD_START": 1}[f.type] == 1 and f.type in {"COLD_START"}
    assert f"{f.type}" == str(f.type) == "COLD_START"
    assert Finding.from_dict(f.to_dict()).type is FindingType.COLD_START
    with pytest.raises(ValueError, match="consequence_of"):
        make_finding(
            FindingType.COLD_START,
            subject="x",
            premise="p.",
            confidence=0.3,
            consequence_of="NOT_A_TYPE",  # type: ignore[arg-type]
        )


def test_only_the_catalog_builds_findings() -> None:
    """Every detector goes through make_finding, so a finding's texts live in one place."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "gradtracer"
    allowed = {src / "findings.py", src / "report" / "catalog.py"}
    direct = []
    for path in sorted(src.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                if name == "Finding":
                    direct.append(f"{path.relative_to(src)}:{node.lineno}")
    assert direct == [], "Finding(...) built outside the catalog: " + ", ".join(direct)
