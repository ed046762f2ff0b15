"""Compatibility path of :mod:`gradtracer.embedding.autofix.policy` (the pure damping rule)."""

from __future__ import annotations

from gradtracer.embedding.autofix.policy import (
    NEUTRAL_LOSS_TREND,
    AutoFixPolicy,
    LossTrend,
    damping_factors,
    dead_rows,
    loss_trend_posterior,
    oscillation_confidence,
)

__all__ = [
    "NEUTRAL_LOSS_TREND",
    "AutoFixPolicy",
    "LossTrend",
    "damping_factors",
    "dead_rows",
    "loss_trend_posterior",
    "oscillation_confidence",
]
