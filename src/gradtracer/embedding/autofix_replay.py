"""Compatibility path of :mod:`gradtracer.embedding.autofix.replay` (audit replay)."""

from __future__ import annotations

from gradtracer.embedding.autofix.replay import (
    P_IMPROVING_TOL,
    Mismatch,
    ReplayResult,
    replay_audit,
)

__all__ = ["P_IMPROVING_TOL", "Mismatch", "ReplayResult", "replay_audit"]
