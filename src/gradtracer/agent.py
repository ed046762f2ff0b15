"""``AgentExporter``: the published entry point for agent JSON and legacy XML.

>>> from gradtracer.findings import Report
>>> import json
>>> text = AgentExporter.export_embedding(Report(kind="embedding", subject="item_emb"))
>>> json.loads(text)["gradtracer_embedding_report"]["layer"]
'item_emb'
"""

from __future__ import annotations

from typing import Any

from gradtracer.export.agent_json import to_agent_dict, to_agent_json
from gradtracer.export.agent_xml import to_agent_xml
from gradtracer.report.coerce import as_report

__all__ = ["AgentExporter", "to_agent_xml"]


class AgentExporter:
    """Renders trackers, managers and reports for AI coding assistants (stateless)."""

    @staticmethod
    def export_embedding(tracker: Any, *, indent: int | None = 2) -> str:
        """Return the ``gradtracer_embedding_report`` JSON text of a tracker (or its Report).

        Raises:
            ValueError: given a FlowManager / ``"manager"`` report (use :meth:`export_manager`).
        """
        report = as_report(tracker)
        if report.kind == "manager":
            raise ValueError("export_embedding got a FlowManager report; use export_manager")
        return to_agent_json(report, indent=indent)

    @staticmethod
    def export_manager(manager: Any, *, indent: int | None = 2) -> str:
        """Return the ``gradtracer_manager_report`` JSON text of a FlowManager (or its Report).

        Raises:
            ValueError: the report is not a ``"manager"`` report.
        """
        report = as_report(manager)
        if report.kind != "manager":
            raise ValueError(
                f"export_manager expects a FlowManager or a 'manager' report, "
                f"got {type(manager).__name__}; use export_embedding for one tracker"
            )
        return to_agent_json(report, indent=indent)

    @staticmethod
    def export_dict(obj: Any) -> dict[str, Any]:
        """Return the agent document as a dict (manager or embedding form, by report kind)."""
        return to_agent_dict(obj)

    @staticmethod
    def to_agent_xml(obj: Any) -> str:
        """Return the legacy agent XML of a tracker, manager or Report."""
        return to_agent_xml(obj)
