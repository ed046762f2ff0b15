"""Re-derive logged Auto-Fix scales from their logged posterior inputs with the pure policy.

``replay_audit`` is what ``gradtracer audit replay`` runs: for every ``damp`` event it
recomputes the factors from ``n_agree``/``n_disagree``, the loss-trend posterior, the step
and the run's policy (from its ``run_start`` event) and checks they equal, bit for bit in
float32, the scales that were applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradtracer.audit import decode_ids
from gradtracer.embedding.autofix.policy import AutoFixPolicy, damping_factors

__all__ = ["Mismatch", "ReplayResult", "replay_audit"]

#: Allowed gap between a logged ``p_improving`` and the one recomputed from its t summary.
P_IMPROVING_TOL = 1e-9


@dataclass(frozen=True)
class Mismatch:
    """One logged value the policy does not reproduce."""

    run_id: str
    layer: str
    step: int
    row: int | None
    logged: float | str
    replayed: float | str

    def __str__(self) -> str:
        where = f"run {self.run_id} layer {self.layer} step {self.step}"
        row = "" if self.row is None else f" row {self.row}"
        return f"{where}{row}: logged {self.logged}, replayed {self.replayed}"


@dataclass
class ReplayResult:
    """Outcome of :func:`replay_audit`.

    Attributes:
        n_events: ``damp`` events checked.
        n_rows: row scales checked.
        mismatches: every disagreement found (empty means the log replays exactly).
        runs: ``(run_id, layer)`` pairs seen.
    """

    n_events: int = 0
    n_rows: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    runs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every checked scale was reproduced."""
        return not self.mismatches


def replay_audit(events: Sequence[Mapping[str, Any]]) -> ReplayResult:
    """Return the replay of ``events`` (as read by :func:`~gradtracer.audit.read_audit`)."""
    result = ReplayResult()
    policies: dict[tuple[str, str], AutoFixPolicy] = {}
    for ev in events:
        key = (str(ev.get("run_id")), str(ev.get("layer")))
        kind = ev.get("kind")
        if kind == "run_start":
            policies[key] = AutoFixPolicy.from_dict(dict(ev["policy"]))
            if key not in result.runs:
                result.runs.append(key)
        elif kind == "damp":
            step = int(ev["step"])
            policy = policies.get(key)
            if policy is None:
                result.mismatches.append(
                    Mismatch(
                        *key, step, None, "damp event", "no run_start with the policy before it"
                    )
                )
                continue
            result.n_events += 1
            _replay_event(ev, key, step, policy, result)
    return result


def _replay_event(
    ev: Mapping[str, Any],
    key: tuple[str, str],
    step: int,
    policy: AutoFixPolicy,
    result: ReplayResult,
) -> None:
    rows = decode_ids(ev["rows"])
    logged = np.asarray(ev["scales"], dtype=np.float32)
    agree = np.asarray(ev["n_agree"], dtype=np.int64)
    disagree = np.asarray(ev["n_disagree"], dtype=np.int64)
    if not (rows.size == logged.size == agree.size == disagree.size):
        result.mismatches.append(
            Mismatch(
                *key,
                step,
                None,
                f"{rows.size} rows / {logged.size} scales",
                f"{agree.size} n_agree / {disagree.size} n_disagree (lengths differ)",
            )
        )
        return
    trend = ev.get("loss_trend") or {}
    g = float(trend.get("p_improving", 0.5))
    expected_g = _p_from_summary(trend)
    if expected_g is not None and abs(expected_g - g) > P_IMPROVING_TOL:
        result.mismatches.append(
            Mismatch(*key, step, None, f"p_improving={g}", f"p_improving={expected_g}")
        )
    dead = np.isin(rows, decode_ids(ev.get("dead", [])))
    replayed = damping_factors(agree, disagree, p_improving=g, step=step, policy=policy, dead=dead)
    result.n_rows += int(rows.size)
    bad = np.flatnonzero(replayed != logged)
    for i in bad[:1000]:
        result.mismatches.append(
            Mismatch(*key, step, int(rows[i]), float(logged[i]), float(replayed[i]))
        )


def _p_from_summary(trend: Mapping[str, Any]) -> float | None:
    slope, sd, dof = trend.get("slope_mean"), trend.get("slope_sd"), trend.get("dof")
    if slope is None or sd is None or not dof:
        return None
    if sd == 0:
        return 1.0 if slope < 0 else (0.0 if slope > 0 else 0.5)
    if not (math.isfinite(slope) and math.isfinite(sd)):
        return None
    from scipy.special import stdtr

    return float(stdtr(int(dof), -float(slope) / float(sd)))
