"""The JSON Schemas shipped in ``gradtracer/schema`` and validators for every JSON output.

``report`` describes :meth:`gradtracer.findings.Report.to_dict`; ``agent`` describes the
``gradtracer_embedding_report`` / ``gradtracer_manager_report`` JSON of
:class:`gradtracer.agent.AgentExporter`. Both are JSON Schema draft 2020-12.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = [
    "SCHEMA_NAMES",
    "SchemaValidationError",
    "load_schema",
    "schema_errors",
    "validate_agent_report",
    "validate_report",
]

SchemaName = Literal["report", "agent"]

#: schema name -> file name inside the ``gradtracer.schema`` folder
SCHEMA_NAMES: dict[str, str] = {
    "report": "report.schema.json",
    "agent": "agent.schema.json",
}


class SchemaValidationError(ValueError):
    """A document does not match a shipped schema; ``errors`` lists every violation.

    Each entry reads ``"<json path>: <message>"``, e.g. ``"$.findings[0].confidence: 1.5 is
    greater than the maximum of 1"``.
    """

    def __init__(self, schema: str, errors: list[str]) -> None:
        self.schema = schema
        self.errors = errors
        shown = "; ".join(errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"document does not match the {schema!r} schema: {shown}{more}")


@cache
def _load_text(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {sorted(SCHEMA_NAMES)}")
    return (resources.files("gradtracer") / "schema" / SCHEMA_NAMES[name]).read_text("utf-8")


def load_schema(name: SchemaName = "report") -> dict[str, Any]:
    """Return a fresh copy of the shipped schema ``name`` (``"report"`` or ``"agent"``)."""
    return json.loads(_load_text(name))


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema(name)  # type: ignore[arg-type]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_errors(document: Any, name: SchemaName = "report") -> list[str]:
    """Return every violation of schema ``name`` by ``document`` (empty list when valid)."""
    validator = _validator(name)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors]


def validate_report(document: Any) -> None:
    """Check a ``Report.to_dict()`` document; raise :class:`SchemaValidationError` if invalid."""
    errors = schema_errors(document, "report")
    if errors:
        raise SchemaValidationError("report", errors)


def validate_agent_report(document: Any) -> None:
    """Check an agent JSON document (parsed); raise :class:`SchemaValidationError` if invalid."""
    errors = schema_errors(document, "agent")
    if errors:
        raise SchemaValidationError("agent", errors)
