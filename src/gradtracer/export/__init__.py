"""Exporters: every output format renders one :class:`~gradtracer.findings.Report`.

- :mod:`~gradtracer.export.json_report`: stable report JSON (``to_json``, ``read_json``);
- :mod:`~gradtracer.export.agent_json`: ``gradtracer_embedding_report`` agent JSON;
- :mod:`~gradtracer.export.agent_xml`: legacy agent XML;
- :mod:`~gradtracer.export.schema`: the shipped JSON Schemas and validators;
- :mod:`~gradtracer.export.metrics`: scalar metrics keyed by ``metric_key``;
- :mod:`~gradtracer.export.wandb`, :mod:`~gradtracer.export.tensorboard`: logging
  bridges (their backends are imported only when called).

``render_text`` and ``print_report`` are re-exported here from :mod:`gradtracer.report.text`
(the one text renderer); ``export.text``, ``export.figures`` and ``export.audit`` remain as
compatibility modules of :mod:`gradtracer.report` and :mod:`gradtracer.audit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradtracer._lazy import lazy_exports

# public name -> module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "SchemaValidationError": "gradtracer.export.schema",
    "load_schema": "gradtracer.export.schema",
    "validate_agent_report": "gradtracer.export.schema",
    "validate_report": "gradtracer.export.schema",
    "read_json": "gradtracer.export.json_report",
    "to_json": "gradtracer.export.json_report",
    "write_json": "gradtracer.export.json_report",
    "to_agent_dict": "gradtracer.export.agent_json",
    "to_agent_json": "gradtracer.export.agent_json",
    "to_agent_xml": "gradtracer.export.agent_xml",
    "print_report": "gradtracer.report.text",
    "render_text": "gradtracer.report.text",
    "log_to_wandb": "gradtracer.export.wandb",
    "report_metrics": "gradtracer.export.metrics",
    "TensorBoardExporter": "gradtracer.export.tensorboard",
    "write_tensorboard": "gradtracer.export.tensorboard",
}

__all__ = [
    "SchemaValidationError",
    "TensorBoardExporter",
    "load_schema",
    "log_to_wandb",
    "print_report",
    "read_json",
    "render_text",
    "report_metrics",
    "to_agent_dict",
    "to_agent_json",
    "to_agent_xml",
    "to_json",
    "validate_agent_report",
    "validate_report",
    "write_json",
    "write_tensorboard",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from gradtracer.export.agent_json import to_agent_dict, to_agent_json
    from gradtracer.export.agent_xml import to_agent_xml
    from gradtracer.export.json_report import read_json, to_json, write_json
    from gradtracer.export.metrics import report_metrics
    from gradtracer.export.schema import (
        SchemaValidationError,
        load_schema,
        validate_agent_report,
        validate_report,
    )
    from gradtracer.export.tensorboard import TensorBoardExporter, write_tensorboard
    from gradtracer.export.wandb import log_to_wandb
    from gradtracer.report.text import print_report, render_text
