"""The tracker's history: one snapshot every ``track_interval`` optimizer steps.

A snapshot is built from the :class:`~gradtracer.embedding.sums.RunningSums` as they stood
after its step (O(1), no pass over the rows); losses given to ``tracker.step(loss)`` wait
here until their step's snapshot is written.
"""

from __future__ import annotations

from typing import Any

from gradtracer.embedding.sums import RunningSums
from gradtracer.report.history import HistoryEntry

__all__ = ["History", "entry_from_sums"]


def entry_from_sums(
    sums: RunningSums, *, step: int, loss: float | None, touched: int, n_rows: int
) -> HistoryEntry:
    """The history entry of ``step`` from the running sums after it."""
    n_exp = max(sums.exposed, 1.0)
    return {
        "step": step,
        "loss": loss,
        "mean_velocity": sums.velocity / n_exp,
        "mean_grad_norm": sums.grad_norm / n_exp,
        "active_rows": int(round(sums.exposed)),
        "coverage": sums.exposed / max(n_rows, 1),
        "oscillation_mean": sums.cos / max(sums.paired, 1.0),
        "zombie_count": int(round(sums.zombie)),
        "touched_rows": touched,
        "non_finite_rows": int(round(sums.non_finite_rows)),
    }


class History:
    """Snapshots (oldest first), thinned to every second one beyond ``max_history``."""

    def __init__(self, max_history: int) -> None:
        self.max_history = max_history
        self.entries: list[HistoryEntry] = []
        self.last_step = -1  # step of the latest snapshot
        self._losses: dict[int, float] = {}  # step -> loss, until its snapshot is written

    def append(self, entry: HistoryEntry) -> None:
        self.last_step = int(entry["step"])
        self.entries.append(entry)
        if len(self.entries) > self.max_history:
            self.entries = self.entries[::2]

    def add(self, sums: RunningSums, *, step: int, touched: int, n_rows: int) -> None:
        """Append the snapshot of ``step`` from its running sums."""
        self.append(
            entry_from_sums(
                sums, step=step, loss=self.pop_loss(step), touched=touched, n_rows=n_rows
            )
        )

    def set_loss(self, step: int, value: float) -> None:
        """Attach ``value`` to ``step``: to its snapshot if written, else when it is."""
        last = self.entries[-1] if self.entries else None
        if last is not None and last["step"] == step:
            last["loss"] = value  # the latest loss given for a step wins
        elif last is None or last["step"] < step:
            self._losses[step] = value

    def pop_loss(self, step: int) -> float | None:
        """The loss given for ``step`` (None if none); older waiting losses are dropped."""
        loss = self._losses.get(step)
        for key in [k for k in self._losses if k <= step]:
            del self._losses[key]
        return loss

    def load(self, entries: list[dict[str, Any]]) -> None:
        """Replace the snapshots (a checkpoint was loaded)."""
        self.entries = [HistoryEntry(**h) for h in entries]  # type: ignore[typeddict-item]
        self.last_step = int(self.entries[-1]["step"]) if self.entries else -1
        self._losses = {}
