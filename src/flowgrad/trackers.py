"""GradTracer's trackers with the FlowGrad ``to_agent_xml()`` method added.

The method lives here, above the exporters, so that GradTracer's trackers never import
``gradtracer.export``.
"""

from __future__ import annotations

from gradtracer.embedding.tracker import EmbeddingTracker as _EmbeddingTracker
from gradtracer.export.agent_xml import to_agent_xml
from gradtracer.features.analyzer import FeatureAnalyzer as _FeatureAnalyzer
from gradtracer.flow.tracker import FlowTracker as _FlowTracker
from gradtracer.manager import FlowManager as _FlowManager
from gradtracer.trees.tracker import TreeDynamicsTracker as _TreeDynamicsTracker

__all__ = ["BoostingTracker", "EmbeddingTracker", "FeatureAnalyzer", "FlowManager", "FlowTracker"]


class _AgentXml:
    """Adds FlowGrad's ``to_agent_xml()`` to an object with ``to_report()``."""

    def to_agent_xml(self) -> str:
        """Return the FlowGrad agent XML of this object's report (``<flowgrad_..._report>``)."""
        return to_agent_xml(self, prefix="flowgrad")


class EmbeddingTracker(_AgentXml, _EmbeddingTracker):
    """:class:`gradtracer.EmbeddingTracker` with FlowGrad's ``to_agent_xml()``."""


class FlowTracker(_AgentXml, _FlowTracker):
    """:class:`gradtracer.FlowTracker` with FlowGrad's ``to_agent_xml()``."""


class BoostingTracker(_AgentXml, _TreeDynamicsTracker):
    """:class:`gradtracer.BoostingTracker` with FlowGrad's ``to_agent_xml()``."""


class FeatureAnalyzer(_AgentXml, _FeatureAnalyzer):
    """:class:`gradtracer.FeatureAnalyzer` with FlowGrad's ``to_agent_xml()``."""


class FlowManager(_AgentXml, _FlowManager):
    """:class:`gradtracer.FlowManager` with FlowGrad's ``to_agent_xml()``."""
