"""Auto-Fix: damp the applied updates of embedding rows whose updates oscillate, audited.

* :mod:`~gradtracer.embedding.autofix.controller`: :class:`AutoFixController`, the tracker's
  intervention (decisions, audit events, checkpoints);
* :mod:`~gradtracer.embedding.autofix.audit_trail`: writes the controller's audit events;
  a log that cannot be written costs one warning, never the training run;
* :mod:`~gradtracer.embedding.autofix.state`: checks a saved controller state before it is
  restored;
* :mod:`~gradtracer.embedding.autofix.findings`: the findings the controller reports;
* :mod:`~gradtracer.embedding.autofix.policy`: the pure damping rule
  (:class:`AutoFixPolicy`, posteriors, factors);
* :mod:`~gradtracer.embedding.autofix.replay`: re-derives logged scales from their logged
  inputs (``gradtracer audit replay``).
"""

from __future__ import annotations

from gradtracer.embedding.autofix.controller import AutoFixController
from gradtracer.embedding.autofix.policy import (
    NEUTRAL_LOSS_TREND,
    AutoFixPolicy,
    LossTrend,
    damping_factors,
    dead_rows,
    loss_trend_posterior,
    oscillation_confidence,
)
from gradtracer.embedding.autofix.replay import Mismatch, ReplayResult, replay_audit

__all__ = [
    "NEUTRAL_LOSS_TREND",
    "AutoFixController",
    "AutoFixPolicy",
    "LossTrend",
    "Mismatch",
    "ReplayResult",
    "damping_factors",
    "dead_rows",
    "loss_trend_posterior",
    "oscillation_confidence",
    "replay_audit",
]
