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

Other kinds use ``<gradtracer_<kind>_report subject="...">`` with their children nested;
``prefix="flowgrad"`` writes the FlowGrad root names (``<flowgrad_embedding_report ...>``).
Text is escaped by :mod:`xml.etree.ElementTree`; characters XML 1.0 forbids (control
characters) are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from gradtracer.findings import Finding, Report
from gradtracer.report.coerce import as_report

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


def report_to_element(report: Report, *, prefix: str = "gradtracer") -> ET.Element:
    """Return the XML element tree of ``report`` (children nested as sub-reports); root
    tags are ``<prefix>_<kind>_report``.

    Raises:
        ValueError: ``prefix`` is not a plain XML name (letters, digits, underscore).
    """
    if not prefix or _NAME_UNSAFE.search(prefix) or prefix[0].isdigit():
        raise ValueError(f"prefix must be letters, digits and underscores, got {prefix!r}")
    kind = _NAME_UNSAFE.sub("_", report.kind) or "unknown"
    if kind == "embedding":
        root = ET.Element(f"{prefix}_embedding_report", {"layer": _text(report.subject)})
    else:
        root = ET.Element(f"{prefix}_{kind}_report", {"subject": _text(report.subject)})
    key = report.metadata.get("tracker_key")
    if key is not None:
        root.set("key", _text(key))
    for finding in report.sorted_findings():
        root.append(_finding_element(finding))
    for child in report.children:
        root.append(report_to_element(child, prefix=prefix))
    return root


def to_agent_xml(report_or_tracker: Any, *, prefix: str = "gradtracer") -> str:
    """Return the legacy agent XML of a Report, tracker or FlowManager (indented, no XML
    header); ``prefix`` names the root tags (``"flowgrad"`` for the FlowGrad form)."""
    root = report_to_element(as_report(report_or_tracker), prefix=prefix)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode")
