"""The shipped JSON Schemas: valid draft 2020-12, accept every real output, reject broken ones."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from gradtracer.export.schema import (
    SchemaValidationError,
    load_schema,
    schema_errors,
    validate_agent_report,
    validate_report,
)
from gradtracer.findings import SCHEMA_VERSION, Finding, FindingType, Report, Severity


@pytest.mark.parametrize("name", ["report", "agent"])
def test_shipped_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


def test_unknown_schema_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown schema 'nope'"):
        load_schema("nope")  # type: ignore[arg-type]


def test_fixed_report_validates_and_carries_versions(fixed_report: Report) -> None:
    doc = fixed_report.to_dict()
    validate_report(doc)
    assert doc["metadata"]["schema_version"] == SCHEMA_VERSION
    assert doc["stats"]["effective_rank"] is None  # NaN written as null


def test_nested_children_validate(fixed_report: Report) -> None:
    parent = Report.merge("manager", "mgr", [fixed_report, Report("embedding", "user_emb")])
    validate_report(parent.to_dict())


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["findings"][0].__setitem__("confidence", 1.5), "$.findings[0].confidence"),
        (lambda d: d["findings"][1].__setitem__("severity", "fatal"), "$.findings[1].severity"),
        (lambda d: d["findings"][0].pop("premise"), "$.findings[0]"),
        (lambda d: d["findings"][0].__setitem__("action", "lower the lr"), "$.findings[0].action"),
        (lambda d: d.pop("stats"), "$"),
        (lambda d: d["metadata"].__setitem__("schema_version", "2.0"), "$.metadata.schema_version"),
        (lambda d: d.__setitem__("extra", 1), "$"),
    ],
    ids=[
        "confidence>1",
        "bad-severity",
        "no-premise",
        "free-text-action",
        "no-stats",
        "future-schema",
        "unknown-key",
    ],
)
def test_broken_documents_are_rejected_with_their_path(fixed_report, mutate, path) -> None:
    doc = copy.deepcopy(fixed_report.to_dict())
    mutate(doc)
    with pytest.raises(SchemaValidationError) as info:
        validate_report(doc)
    assert any(e.startswith(path + ":") for e in info.value.errors), info.value.errors


def test_agent_schema_rejects_both_roots_and_neither() -> None:
    body = {
        "layer": "x",
        "schema_version": "1.0",
        "diagnostics": [],
        "embedding_stats": {
            "num_embeddings": 1,
            "active_coverage_pct": 1.0,
            "popularity_gini": 0.0,
        },
    }
    validate_agent_report({"gradtracer_embedding_report": body})
    assert schema_errors({}, "agent")
    with pytest.raises(SchemaValidationError):
        validate_agent_report(
            {"gradtracer_embedding_report": body, "gradtracer_manager_report": {}}
        )
    bad = copy.deepcopy(body)
    bad["embedding_stats"]["active_coverage_pct"] = 120.0
    with pytest.raises(SchemaValidationError, match="active_coverage_pct"):
        validate_agent_report({"gradtracer_embedding_report": bad})


# --- property: every Report built from arbitrary (finite or not) values validates ----------

names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
stat_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=6,
)
findings = st.builds(
    Finding,
    type=st.sampled_from(list(FindingType)),
    severity=st.sampled_from(list(Severity)),
    subject=names,
    premise=st.text(min_size=1, max_size=40),
    implies=st.text(max_size=20),
    action=st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True),
    expected_effect=st.text(max_size=20),
    # on the 1e-4 grid Finding.to_dict() writes: Report.to_dict() sorts by the unrounded
    # confidence, so values closer than 5e-5 may swap places after a JSON round trip
    confidence=st.integers(0, 10_000).map(lambda n: n / 10_000),
    evidence=st.dictionaries(names, scalars, max_size=4),
    sample_ids=st.lists(st.one_of(st.integers(0, 10**6), names), max_size=5).map(tuple),
)
reports = st.builds(
    Report,
    kind=names,
    subject=st.text(max_size=10),
    stats=st.dictionaries(names, stat_values, max_size=5),
    findings=st.lists(findings, max_size=4),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports)
def test_any_report_validates_and_round_trips(report: Report) -> None:
    doc = report.to_dict()
    validate_report(doc)
    text = json.dumps(doc, allow_nan=False)  # no NaN/Infinity literal survives
    again = Report.from_dict(json.loads(text)).to_dict()
    assert again == doc
    for f in doc["findings"]:
        assert 0.0 <= f["confidence"] <= 1.0 and not math.isnan(f["confidence"])
