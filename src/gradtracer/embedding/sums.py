"""Running table sums kept next to the per-row state, so a history snapshot is O(1).

The tracker holds them in one float64 tensor (on the layer's device) that every update path
changes in place; the index names below are the only place its layout is declared.
:class:`RunningSums` is the named view a history entry is built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "COS",
    "DAMPED",
    "EXPOSED",
    "GRAD_NORM",
    "N_ACC",
    "NONFINITE_ROWS",
    "NONFINITE_STEPS",
    "N_TRAJECTORY",
    "PAIRED",
    "VELOCITY",
    "ZOMBIE",
    "RunningSums",
]

VELOCITY = 0  # sum over exposed rows of the velocity EMA (weight units per touched step)
GRAD_NORM = 1  # sum over exposed rows of the gradient-norm EMA (gradient units)
COS = 2  # sum over paired rows of the EMA of consecutive-gradient cosines
EXPOSED = 3  # rows exposed at least once
PAIRED = 4  # rows with at least one consecutive-exposure gradient pair
ZOMBIE = 5  # rows judged zombies at their last touch
NONFINITE_ROWS = 6  # row-updates left out because a norm was NaN/Inf
NONFINITE_STEPS = 7  # steps with at least one such row
DAMPED = 8  # row-updates an intervention scaled below 1
N_ACC = 9

#: columns of a folded trajectory (:func:`gradtracer.embedding.fold.fold_steps`): the first
#: six sums, then the non-finite rows
N_TRAJECTORY = 7


class RunningSums(NamedTuple):
    """The running sums a history entry needs, as they stood after one optimizer step."""

    velocity: float
    grad_norm: float
    cos: float
    exposed: float
    paired: float
    zombie: float
    non_finite_rows: float

    @classmethod
    def from_acc(cls, acc: Sequence[float]) -> RunningSums:
        """From the tracker's full accumulator (``N_ACC`` values, in the order above)."""
        return cls(
            acc[VELOCITY],
            acc[GRAD_NORM],
            acc[COS],
            acc[EXPOSED],
            acc[PAIRED],
            acc[ZOMBIE],
            acc[NONFINITE_ROWS],
        )

    @classmethod
    def from_trajectory(cls, row: Sequence[float]) -> RunningSums:
        """From one row of a folded trajectory (``N_TRAJECTORY`` values)."""
        return cls(*(float(x) for x in row[:N_TRAJECTORY]))
