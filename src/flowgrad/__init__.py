"""FlowGrad, the earlier name of GradTracer: a deprecated compatibility package.

``from flowgrad import EmbeddingTracker`` and ``tracker.to_agent_xml()`` keep working as
in the FlowGrad README; importing this package emits a :class:`DeprecationWarning`. The
classes are GradTracer's (``gradtracer.EmbeddingTracker`` and friends) with one addition
each, ``to_agent_xml()``, which renders the FlowGrad agent XML
(``<flowgrad_embedding_report layer="...">``). New code imports ``gradtracer``.

``QuantizationAdvisor`` and ``DistillationTracker`` are looked up in
:mod:`gradtracer.compress` on first use.
"""

from __future__ import annotations

import warnings
from typing import Any

from flowgrad.trackers import (
    BoostingTracker,
    EmbeddingTracker,
    FeatureAnalyzer,
    FlowManager,
    FlowTracker,
)

warnings.warn(
    "the 'flowgrad' package is deprecated; import 'gradtracer' instead "
    "(e.g. from gradtracer import EmbeddingTracker; "
    "gradtracer.export.to_agent_xml(tracker) for the agent XML)",
    DeprecationWarning,
    stacklevel=2,
)

#: names resolved from gradtracer.compress on first use
_COMPRESS = ("DistillationTracker", "QuantizationAdvisor")

__all__ = [
    "BoostingTracker",
    "DistillationTracker",
    "EmbeddingTracker",
    "FeatureAnalyzer",
    "FlowManager",
    "FlowTracker",
    "QuantizationAdvisor",
]


def __getattr__(name: str) -> Any:
    if name in _COMPRESS:
        import gradtracer.compress

        return getattr(gradtracer.compress, name)
    raise AttributeError(f"module 'flowgrad' has no attribute {name!r}")
