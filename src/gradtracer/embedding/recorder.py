"""Step bookkeeping of one tracked table: the pending step, the step counter, the schedule.

:class:`StepRecorder` turns what the hooks capture into recorded optimizer steps: it keeps
the step in flight (backward done, optimizer step not yet), hands each finished step to the
backend and to the intervention, and writes a history snapshot every ``track_interval``
steps. Outside ``torch.distributed`` a buffered step's snapshot is written when the buffer
is folded (reading ``history`` folds it); a distributed run folds and aggregates across
ranks at the scheduled step itself, so every rank joins the collective then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gradtracer.embedding import distributed as _dist
from gradtracer.embedding.backends import Backend
from gradtracer.embedding.evidence import Intervention, RowEvidence, checked_table
from gradtracer.embedding.history import History
from gradtracer.embedding.hooks import PendingStep
from gradtracer.embedding.state import RowState
from gradtracer.embedding.sums import NONFINITE_ROWS, RunningSums

__all__ = ["StepRecorder"]


class StepRecorder:
    """Records the optimizer steps of one table (see the module docstring).

    Args:
        name: the tracker's name (in the evidence handed to the intervention).
        weight: the table's weight.
        state: the per-row state; ``acc``: the running table sums (both changed in place).
        backend: folds steps into them; ``history``: receives the snapshots.
        track_interval: optimizer steps between snapshots.
        intervention: consulted after every step, or None.
        snapshot_of_merged_state: builds a distributed snapshot's statistics (collective).
    """

    def __init__(
        self,
        *,
        name: str,
        weight: torch.Tensor,
        state: RowState,
        acc: torch.Tensor,
        backend: Backend,
        history: History,
        track_interval: int,
        intervention: Intervention | None,
        snapshot_of_merged_state: Callable[[], dict[str, Any]],
    ) -> None:
        self.name = name
        self.weight = weight
        self.state = state
        self.acc = acc
        self.backend = backend
        self.history = history
        self.track_interval = track_interval
        self.intervention = intervention
        self._merged_snapshot = snapshot_of_merged_state
        self.step = 0  # optimizer steps recorded
        self.touched = 0  # rows updated by the last optimizer step
        self.pending: PendingStep | None = None
        self.last_loss: float | None = None
        self.version = 0  # changes whenever the recorded state changes
        #: the intervention's latest factor table, and the rows whose update it ever damped
        self.table: torch.Tensor | None = None
        self.damped_ever: torch.Tensor | None = None
        if intervention is not None:
            self.damped_ever = torch.zeros(
                int(weight.shape[0]), dtype=torch.bool, device=weight.device
            )

    # ------------------------------------------------------------------ per step
    def begin(self, param: torch.Tensor) -> torch.Tensor | None:
        """A gradient arrived: close a step applied by hand; the pending rows (or None)."""
        pend = self.pending
        if pend is not None and param._version != pend.version:
            self.close()  # a hand-written update happened without an optimizer hook
            pend = None
        return None if pend is None else pend.rows

    def close(self, count_empty: bool = False) -> None:
        """Finish the pending step: fold it into the row state, consult the intervention.

        ``count_empty``: an optimizer holding the weight stepped, so a step without rows
        counts too.
        """
        pend = self.pending
        if pend is None:
            if count_empty:  # optimizer stepped but this table got no gradient
                self.step += 1
                self.touched = 0
                self._after_update()
            return
        self.pending = None
        self.step += 1
        self.touched = int(pend.rows.shape[0])
        if self.intervention is None:
            # the backends read detached tensors only: no autograd mode to switch
            self.backend.record(pend, self.step)
            if self.backend.due():
                self.flush()
        else:
            with torch.no_grad():
                applied = self.backend.record(pend, self.step)
                self.flush()
                table = self.intervention.on_step(
                    self.step, pend.rows, self.last_loss, self.evidence
                )
                self.table = None if table is None else checked_table(table, self.intervention)
                if self.table is not None:
                    assert self.damped_ever is not None
                    self.backend.damp(applied, self.table, self.damped_ever, self.step)
        self._after_update()

    def evidence(self, rows: torch.Tensor) -> RowEvidence:
        """The current row state of ``rows`` as :class:`RowEvidence` (fresh tensors)."""
        return self.state.evidence(rows, step=self.step, layer=self.name, loss=self.last_loss)

    def sync(self) -> None:
        """Close a pending step applied without an optimizer hook; fold buffered steps."""
        pend = self.pending
        if pend is not None and self.weight._version != pend.version:
            self.close()
        self.flush()

    def flush(self) -> None:
        """Fold buffered steps (batched backend) and write their due history snapshots."""
        n_rows = self.state.n_rows
        for step, touched, sums in self.backend.flush(self._snapshot_due):
            self.history.add(sums, step=step, touched=touched, n_rows=n_rows)

    def set_loss(self, value: float) -> None:
        """Attach ``value`` to the step of this iteration (the pending one, if any)."""
        self.last_loss = value
        self.history.set_loss(self.step + (1 if self.pending is not None else 0), value)

    # ------------------------------------------------------------------ schedule
    def _snapshot_due(self, step: int) -> bool:
        return step % self.track_interval == 0 and not _dist.is_distributed()

    def _after_update(self) -> None:
        self.version += 1
        n = self.step
        if n % self.track_interval:
            return
        if _dist.is_distributed():
            self.flush()
            self.history.append(self._distributed_snapshot())  # type: ignore[arg-type]
        elif self.history.last_step != n and self.backend.buffered_last_step != n:
            # this step recorded no rows (or was folded already without a snapshot)
            self.flush()
            sums = RunningSums.from_acc(self.acc.tolist())
            self.history.add(sums, step=n, touched=self.touched, n_rows=self.state.n_rows)

    def _distributed_snapshot(self) -> dict[str, Any]:
        """History entry from the row state merged across ranks (a collective call)."""
        stats = self._merged_snapshot()
        extra = torch.tensor(
            [float(self.acc[NONFINITE_ROWS]), float(self.touched)],
            dtype=torch.float64,
            device=self.acc.device,
        )
        bad_rows, touched = _dist.all_reduce_sum(extra).tolist()
        return {
            "step": self.step,
            "loss": self.history.pop_loss(self.step),
            **stats,
            "touched_rows": int(touched),
            "non_finite_rows": int(bad_rows),
        }
