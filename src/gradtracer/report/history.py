"""Run history: the snapshot entry trackers append, and the views reports and figures take.

Trackers append one :class:`HistoryEntry` every ``track_interval`` steps; reports keep a
thinned copy (:func:`thin_history`, the keys in :data:`HISTORY_KEYS`) in
``metadata["history"]``; figures and the manager read a key's curve with
:func:`history_series`.

>>> hist = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": float("nan")}, {"step": 3, "loss": 1.0}]
>>> history_series(hist, "loss")
{1: 2.0, 3: 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from gradtracer._numeric import finite_or_none

__all__ = [
    "HISTORY_KEYS",
    "MAX_HISTORY_POINTS",
    "HistoryEntry",
    "history_series",
    "thin_history",
]

#: history snapshots kept in a report (evenly thinned, the last one always kept)
MAX_HISTORY_POINTS = 200


class HistoryEntry(TypedDict, total=False):
    """One history snapshot. ``step`` is always there; a tracker writes the keys it measures.

    Attributes:
        step: optimizer steps counted when the snapshot was taken.
        loss: training loss passed to ``step(loss=...)`` (None when not given).
        lr: learning rate in effect (FlowTracker).
        mean_velocity: mean per-step displacement L2 norm of the tracked rows / layers.
        mean_grad_norm: mean gradient L2 norm of the tracked rows / layers.
        active_rows: rows exposed so far (EmbeddingTracker; None for FlowTracker).
        coverage: share of rows exposed so far, in [0, 1].
        oscillation_mean: mean cosine between consecutive gradients of a row.
        zombie_count: rows judged zombie at that step.
        touched_rows: rows touched since the previous snapshot.
        non_finite_rows: row gradients with NaN/Inf so far.
    """

    step: int
    loss: float | None
    lr: float | None
    mean_velocity: float | None
    mean_grad_norm: float | None
    active_rows: int | None
    coverage: float | None
    oscillation_mean: float | None
    zombie_count: int | None
    touched_rows: int | None
    non_finite_rows: int | None


#: the keys of a :class:`HistoryEntry` that a report keeps (the ones figures draw)
HISTORY_KEYS: tuple[str, ...] = (
    "step",
    "loss",
    "lr",
    "mean_velocity",
    "mean_grad_norm",
    "zombie_count",
    "coverage",
    "oscillation_mean",
)


def thin_history(
    history: Sequence[Mapping[str, Any]], max_points: int = MAX_HISTORY_POINTS
) -> list[dict[str, Any]]:
    """At most ``max_points`` snapshots of ``history`` (evenly spaced, the last one kept),
    each reduced to :data:`HISTORY_KEYS`.

    Raises:
        ValueError: ``max_points`` < 2.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    n = len(history)
    if n > max_points:
        picks = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    else:
        picks = list(range(n))
    return [{k: history[i].get(k) for k in HISTORY_KEYS if k in history[i]} for i in picks]


def history_series(history: Sequence[Mapping[str, Any]], key: str) -> dict[int, float]:
    """``{step: value}`` of ``key`` over history snapshots; missing, non-numeric and
    non-finite values are skipped (a snapshot without ``step`` is keyed by its index)."""
    out: dict[int, float] = {}
    for i, snap in enumerate(history):
        if not isinstance(snap, Mapping):
            continue
        value = finite_or_none(snap.get(key))
        if value is not None:
            step = snap.get("step")
            out[i if step is None else int(step)] = value
    return out
