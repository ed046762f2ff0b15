"""Layer-level tracking of any ``nn.Module``.

``FlowTracker`` (``gradtracer.flow.tracker``) tracks layers,
judged by ``FlowThresholds`` (``gradtracer.flow.layer_stats``); ``RunHistory``
(``gradtracer.flow.history``) compares runs.
``FlowManager``, ``ManagerThresholds`` and ``TrackerLike`` are kept here as compatibility
names of :mod:`gradtracer.manager` (through the ``gradtracer.flow.manager`` shim).
Names are imported lazily so that ``import gradtracer.flow`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradtracer._lazy import lazy_exports

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "FlowManager": "gradtracer.flow.manager",
    "ManagerThresholds": "gradtracer.flow.manager",
    "TrackerLike": "gradtracer.flow.manager",
    "FlowTracker": "gradtracer.flow.tracker",
    "FlowThresholds": "gradtracer.flow.layer_stats",
    "LayerSnapshot": "gradtracer.flow.layer_stats",
    "RunHistory": "gradtracer.flow.history",
}

__all__ = [
    "FlowManager",
    "FlowThresholds",
    "FlowTracker",
    "LayerSnapshot",
    "ManagerThresholds",
    "RunHistory",
    "TrackerLike",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from gradtracer.flow.history import RunHistory
    from gradtracer.flow.layer_stats import FlowThresholds, LayerSnapshot
    from gradtracer.flow.manager import FlowManager, ManagerThresholds, TrackerLike
    from gradtracer.flow.tracker import FlowTracker
