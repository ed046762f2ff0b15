"""Agent JSON: findings as causal statements for AI coding assistants.

Two documents, both described by the shipped ``agent`` schema:

- ``{"gradtracer_embedding_report": {"layer", "schema_version", "step", "embedding_stats",
  "diagnostics": [{type, severity, premise, implies, action, expected_effect, confidence,
  evidence, sample_ids, subject}]}}`` for one tracker;
- ``{"gradtracer_manager_report": {"name", "schema_version", "step", "health_score",
  "cross_tracker_stats", "trackers": [{key, kind, layer, stats, diagnostics}],
  "diagnostics"}}`` for a :class:`~gradtracer.manager.FlowManager`.

Both render a :class:`~gradtracer.findings.Report` and never recompute analysis.
"""

from __future__ import annotations

from typing import Any

from gradtracer.export.json_report import dumps_stable
from gradtracer.export.schema import validate_agent_report
from gradtracer.findings import SCHEMA_VERSION, Report
from gradtracer.report.coerce import as_report

__all__ = [
    "EMBEDDING_ROOT",
    "MANAGER_ROOT",
    "REQUIRED_EMBEDDING_STATS",
    "embedding_agent_dict",
    "manager_agent_dict",
    "to_agent_dict",
    "to_agent_json",
]

EMBEDDING_ROOT = "gradtracer_embedding_report"
MANAGER_ROOT = "gradtracer_manager_report"
#: statistics every embedding report carries (``null`` when the tracker did not measure one)
REQUIRED_EMBEDDING_STATS = ("num_embeddings", "active_coverage_pct", "popularity_gini")
#: manager statistics lifted out of ``cross_tracker_stats``
_MANAGER_TOP = ("health_score", "step")


def _step(report: Report, stats: dict[str, Any]) -> int | None:
    step = report.metadata.get("step", stats.get("step"))
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def _diagnostics(report: Report) -> list[dict[str, Any]]:
    return [f.to_dict() for f in report.sorted_findings()]


def embedding_agent_dict(report: Report) -> dict[str, Any]:
    """Return the ``gradtracer_embedding_report`` document for one tracker's report."""
    stats = report.to_dict()["stats"]
    for name in REQUIRED_EMBEDDING_STATS:
        stats.setdefault(name, None)
    body = {
        "layer": report.subject,
        "schema_version": SCHEMA_VERSION,
        "step": _step(report, stats),
        "embedding_stats": stats,
        "diagnostics": _diagnostics(report),
    }
    return {EMBEDDING_ROOT: body}


def manager_agent_dict(report: Report) -> dict[str, Any]:
    """Return the ``gradtracer_manager_report`` document for a FlowManager's report."""
    stats = report.to_dict()["stats"]
    trackers = []
    for child in report.children:
        child_stats = child.to_dict()["stats"]
        trackers.append(
            {
                "key": str(child.metadata.get("tracker_key", child.subject)),
                "kind": child.kind,
                "layer": child.subject,
                "stats": child_stats,
                "diagnostics": _diagnostics(child),
            }
        )
    body = {
        "name": report.subject,
        "schema_version": SCHEMA_VERSION,
        "step": _step(report, stats),
        "health_score": stats.get("health_score"),
        "cross_tracker_stats": {k: v for k, v in stats.items() if k not in _MANAGER_TOP},
        "trackers": trackers,
        "diagnostics": _diagnostics(report),
    }
    return {MANAGER_ROOT: body}


def to_agent_dict(report_or_tracker: Any) -> dict[str, Any]:
    """Return the agent document: manager form for ``kind == "manager"``, else embedding form."""
    report = as_report(report_or_tracker)
    if report.kind == "manager":
        return manager_agent_dict(report)
    return embedding_agent_dict(report)


def to_agent_json(report_or_tracker: Any, *, indent: int | None = 2, validate: bool = True) -> str:
    """Return :func:`to_agent_dict` as stable JSON text (schema-checked unless told not to)."""
    document = to_agent_dict(report_or_tracker)
    if validate:
        validate_agent_report(document)
    return dumps_stable(document, indent=indent)
