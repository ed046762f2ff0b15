"""Legacy agent XML (the FlowGrad ``to_agent_xml()`` shape), well formed and escaped.

An embedding report renders as::

    <gradtracer_embedding_report layer="item_emb">
      <causal_model type="ZOMBIE_EMBEDDINGS" severity="warning">
        <premise>...</premise>
        <implies>...</implies>
        <action>DECREASE_LR_OR_USE_SPARSE_ADAM</action>
        <expected_effect>...</expected_effect>
        <confidence>0.92</confidence>
      </causal_model>
    </gradtracer_embedding_report>

Other kinds use ``<gradtracer_<kind>_report subject="...">`` with their children nested.
Text is escaped by :mod:`xml.etree.ElementTree`; characters XML 1.0 forbids (control
characters) are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from gradtracer.export._coerce import as_report
from gradtracer.findings import Finding, Report

__all__ = ["report_to_element", "to_agent_xml"]

# characters not allowed in XML 1.0 documents
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _text(value: Any) -> str:
    return _INVALID_XML.sub("", str(value))


def _finding_element(finding: Finding) -> ET.Element:
    node = ET.Element("causal_model", {"type": _text(finding.type)})
    node.set("severity", finding.severity.value)
    if finding.subject:
        node.set("subject", _text(finding.subject))
    for tag in ("premise", "implies", "action", "expected_effect"):
        ET.SubElement(node, tag).text = _text(getattr(finding, tag))
    ET.SubElement(node, "confidence").text = f"{finding.confidence:.2f}"
    return node


def report_to_element(report: Report) -> ET.Element:
    """Return the XML element tree of ``report`` (children nested as sub-reports)."""
    kind = _NAME_UNSAFE.sub("_", report.kind) or "unknown"
    if kind == "embedding":
        root = ET.Element("gradtracer_embedding_report", {"layer": _text(report.subject)})
    else:
        root = ET.Element(f"gradtracer_{kind}_report", {"subject": _text(report.subject)})
    key = report.metadata.get("tracker_key")
    if key is not None:
        root.set("key", _text(key))
    for finding in report.sorted_findings():
        root.append(_finding_element(finding))
    for child in report.children:
        root.append(report_to_element(child))
    return root


def to_agent_xml(report_or_tracker: Any) -> str:
    """Return the legacy agent XML of a Report, tracker or FlowManager (indented, no XML header)."""
    root = report_to_element(as_report(report_or_tracker))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode")
