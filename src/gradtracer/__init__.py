"""GradTracer: training-dynamics diagnostics for embedding-heavy recommender models.

Public names are imported lazily, so ``import gradtracer`` stays cheap (no matplotlib,
scipy, pandas or optional backends at import time).

>>> import gradtracer
>>> gradtracer.__version__ != ""
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradtracer._lazy import lazy_exports
from gradtracer._version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Finding": "gradtracer.findings",
    "FindingType": "gradtracer.findings",
    "Report": "gradtracer.findings",
    "Severity": "gradtracer.findings",
    "EmbeddingTracker": "gradtracer.embedding.tracker",
    "ZombieThresholds": "gradtracer.embedding.diagnose",
    "AutoFixPolicy": "gradtracer.embedding.autofix",
    "FlowManager": "gradtracer.manager",
    "FlowTracker": "gradtracer.flow.tracker",
    "TreeDynamicsTracker": "gradtracer.trees",
    "BoostingTracker": "gradtracer.trees",
    "FeatureAnalyzer": "gradtracer.features",
    "AgentExporter": "gradtracer.agent",
    "diagnose": "gradtracer.diagnosis",
    "QuantizationAdvisor": "gradtracer.compress",
    "DistillationTracker": "gradtracer.compress",
}

__all__ = ["__version__", *sorted(_LAZY)]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from gradtracer.agent import AgentExporter  # noqa: F401
    from gradtracer.compress import DistillationTracker, QuantizationAdvisor  # noqa: F401
    from gradtracer.diagnosis import diagnose  # noqa: F401
    from gradtracer.embedding.autofix import AutoFixPolicy  # noqa: F401
    from gradtracer.embedding.diagnose import ZombieThresholds  # noqa: F401
    from gradtracer.embedding.tracker import EmbeddingTracker  # noqa: F401
    from gradtracer.features import FeatureAnalyzer  # noqa: F401
    from gradtracer.findings import Finding, FindingType, Report, Severity  # noqa: F401
    from gradtracer.flow.tracker import FlowTracker  # noqa: F401
    from gradtracer.manager import FlowManager  # noqa: F401
    from gradtracer.trees import BoostingTracker, TreeDynamicsTracker  # noqa: F401
