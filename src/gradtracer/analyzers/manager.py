"""Compatibility path: ``from gradtracer.analyzers.manager import FlowManager``."""

from gradtracer.flow.manager import FlowManager

__all__ = ["FlowManager"]
