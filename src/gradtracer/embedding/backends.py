"""The three ways one optimizer step is folded into the per-row state (the tracker's backend).

* ``"numba"``: the fused compiled per-step update of :mod:`~gradtracer.embedding.row_kernel`
  (CPU float32 tables; the fastest path there), damping by the compiled kernel too;
* ``"numpy"``: :func:`~gradtracer.embedding.fold.apply_step`, NumPy on zero-copy views of
  the CPU tensors (CPU tables of any float dtype, or where numba is unavailable);
* ``"batched"``: steps are buffered and folded together by
  :func:`~gradtracer.embedding.fold.fold_steps` (any device; the cheaper way where each
  kernel launch is what costs, i.e. accelerators).

``"auto"`` picks numba on CPU float32 tables when it is importable, NumPy on other CPU
tables and batched elsewhere. All three give the same state (integers bit-identical, floats
to rounding); the tests compare them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from gradtracer.embedding import row_kernel
from gradtracer.embedding.fold import StepRecord, apply_step, fold_steps, sketch_words
from gradtracer.embedding.hooks import PendingStep
from gradtracer.embedding.state import FloatCol, IntCol, RowState, SignSketch
from gradtracer.embedding.sums import DAMPED, VELOCITY, RunningSums
from gradtracer.embedding.thresholds import ZombieThresholds

__all__ = ["BACKENDS", "Applied", "Backend", "BackendName", "make_backend", "resolve_backend"]

BackendName = Literal["auto", "numba", "numpy", "batched"]
BACKENDS: tuple[str, ...] = ("auto", "numba", "numpy", "batched")

# the batched path folds at most this many buffered steps at once (and whenever a snapshot,
# summary, checkpoint or intervention needs the current state) ...
MAX_BUFFERED_STEPS = 64
MAX_BUFFERED_ROWS = 1 << 18  # ... or at most this many buffered row updates


@dataclass
class Applied:
    """What one recorded step leaves for an intervention: the rows, their weights before
    the step and the applied displacement (``disp``) or its norms (``v``, compiled path)."""

    rows: torch.Tensor
    before: torch.Tensor
    disp: torch.Tensor | None = None
    v: np.ndarray | None = None


def resolve_backend(backend: str, weight: torch.Tensor) -> str:
    """The concrete backend for ``weight`` (``"auto"`` resolved; others checked).

    Raises:
        ValueError: an unknown name, or ``"numba"``/``"numpy"`` for a table they cannot run
            (``"numba"``: CPU float32 with numba importable; ``"numpy"``: CPU).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    on_cpu = weight.device.type == "cpu"
    if backend == "auto":
        if not on_cpu:
            return "batched"
        numba_ok = weight.dtype == torch.float32 and row_kernel.available()
        return "numba" if numba_ok else "numpy"
    if backend == "numba" and not (
        on_cpu and weight.dtype == torch.float32 and row_kernel.available()
    ):
        raise ValueError(
            "backend='numba' needs a CPU float32 table and numba (got "
            f"{weight.device.type} {weight.dtype}, numba available: {row_kernel.available()})"
        )
    if backend == "numpy" and not on_cpu:
        raise ValueError(f"backend='numpy' needs a CPU table, got device {weight.device}")
    return backend


class Backend:
    """Folds recorded steps into ``state`` and the running sums ``acc`` (both in place)."""

    name = "numpy"

    def __init__(
        self,
        state: RowState,
        acc: torch.Tensor,
        weight: torch.Tensor,
        sketch: SignSketch,
        *,
        ema_decay: float,
        zombie: ZombieThresholds,
    ) -> None:
        self.state = state
        self.acc = acc
        self.weight = weight
        self.sketch = sketch
        self.ema_decay = ema_decay
        self.zombie = zombie

    # ------------------------------------------------------------------ per step
    def record(self, pend: PendingStep, step: int) -> Applied:
        """Fold the step's touched rows into the state (or buffer them)."""
        w = self.weight.detach()
        disp = w.index_select(0, pend.rows).sub_(pend.before)
        gn = torch.linalg.vector_norm(pend.grad, dim=1).float()
        v = torch.linalg.vector_norm(disp, dim=1).float()
        apply_step(
            self.state,
            self.acc,
            pend.rows,
            gn,
            v,
            self.sketch.encode_numpy(pend.grad),
            step,
            sketch=self.sketch,
            ema_decay=self.ema_decay,
            zombie=self.zombie,
        )
        return Applied(pend.rows, pend.before, disp=disp)

    def due(self) -> bool:
        """True when buffered steps should be folded now."""
        return False

    def flush(self, want: Callable[[int], bool]) -> list[tuple[int, int, RunningSums]]:
        """Fold buffered steps; ``(step, touched rows, sums after it)`` for each step where
        ``want(step)``. Nothing is buffered on the per-step paths."""
        return []

    @property
    def buffered_last_step(self) -> int | None:
        """The latest buffered step, or None when nothing is buffered."""
        return None

    def clear(self) -> None:
        """Drop buffered steps (a checkpoint was loaded)."""

    # ------------------------------------------------------------------ intervention
    def damp(self, applied: Applied, table: torch.Tensor, ever: torch.Tensor, step: int) -> None:
        """``w[r] = before + f * (w[r] - before)`` with ``f = table[r]`` for the step's rows
        (rows at or beyond the table's end get 1, NaN counts as 1, factors clip to
        ``[0, 1]``); the velocity EMA records the damped displacement, ``ever`` flags the
        damped rows, the running sums count them."""
        rows, before = applied.rows, applied.before
        w = self.weight.detach()
        disp = applied.disp
        if disp is None:
            disp = w.index_select(0, rows).sub_(before)
        n = table.numel()
        table = table.to(device=rows.device, dtype=torch.float32)
        f = (
            table.index_select(0, rows.clamp(max=max(n - 1, 0)))
            if n
            else torch.ones_like(rows, dtype=torch.float32)
        )
        f = torch.where(rows < n, f, 1.0)
        f = torch.nan_to_num(f, nan=1.0).clamp_(0.0, 1.0)
        ints = self.state.ints_of(rows)
        w.index_copy_(0, rows, before + f.to(w.dtype)[:, None] * disp)
        # the velocity EMA records the displacement actually applied: f * v
        b = self.ema_decay
        first_w = torch.where(ints[:, IntCol.EXPOSURE] == 1, 1.0, 1.0 - b)
        v = torch.linalg.vector_norm(disp, dim=1).float()
        updated = ints[:, IntCol.LAST_SEEN] == step  # rows whose state took this step
        correction = torch.nan_to_num(first_w * (1.0 - f) * v * updated, nan=0.0, posinf=0.0)
        self.state.floats[:, FloatCol.VELOCITY].index_add_(0, rows, -correction)
        self.acc[VELOCITY] -= correction.sum(dtype=torch.float64)
        damped = f < 1.0
        ever.index_copy_(0, rows, ever.index_select(0, rows) | damped)
        self.acc[DAMPED] += damped.sum()


class NumbaBackend(Backend):
    """The compiled per-step update and damping (CPU float32 tables)."""

    name = "numba"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._kernel = row_kernel.RowKernel(
            self.state,
            self.acc,
            self.weight,
            self.sketch,
            ema_decay=self.ema_decay,
            zombie=self.zombie,
        )

    def record(self, pend: PendingStep, step: int) -> Applied:
        if pend.grad.dtype != self.weight.dtype:  # e.g. a float64 gradient: the NumPy path
            return super().record(pend, step)
        v = self._kernel.track(pend.rows, pend.before, pend.grad, step)
        return Applied(pend.rows, pend.before, v=v)

    def damp(self, applied: Applied, table: torch.Tensor, ever: torch.Tensor, step: int) -> None:
        if applied.v is None or table.device.type != "cpu":
            super().damp(applied, table, ever, step)
            return
        self._kernel.damp(
            applied.rows,
            applied.before,
            applied.v,
            table.to(torch.float32).contiguous(),
            ever,
            step,
        )


class BatchedBackend(Backend):
    """Buffers steps and folds them together (accelerators)."""

    name = "batched"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._buffer: list[StepRecord] = []
        self._values = 0

    def record(self, pend: PendingStep, step: int) -> Applied:
        disp = self.weight.detach().index_select(0, pend.rows).sub_(pend.before)
        gn = torch.linalg.vector_norm(pend.grad, dim=1).float()
        v = torch.linalg.vector_norm(disp, dim=1).float()
        code = sketch_words(self.sketch.encode(pend.grad), self.sketch)
        self._buffer.append(StepRecord(rows=pend.rows, gn=gn, v=v, code=code, step=step))
        self._values += int(pend.rows.numel())
        return Applied(pend.rows, pend.before, disp=disp)

    def due(self) -> bool:
        return len(self._buffer) >= MAX_BUFFERED_STEPS or self._values >= MAX_BUFFERED_ROWS

    @property
    def buffered_last_step(self) -> int | None:
        return self._buffer[-1].step if self._buffer else None

    def flush(self, want: Callable[[int], bool]) -> list[tuple[int, int, RunningSums]]:
        buf = self._buffer
        if not buf:
            return []
        self._buffer = []
        self._values = 0
        with torch.no_grad():
            trajectory = fold_steps(
                self.state,
                self.acc,
                buf,
                sketch=self.sketch,
                ema_decay=self.ema_decay,
                zombie=self.zombie,
            )
        due = [i for i, s in enumerate(buf) if want(s.step)]
        if not due:
            return []
        rows = trajectory[due].tolist()
        return [
            (buf[i].step, int(buf[i].rows.numel()), RunningSums.from_trajectory(r))
            for i, r in zip(due, rows)
        ]

    def clear(self) -> None:
        self._buffer = []
        self._values = 0


def make_backend(
    name: str,
    state: RowState,
    acc: torch.Tensor,
    weight: torch.Tensor,
    sketch: SignSketch,
    *,
    ema_decay: float,
    zombie: ZombieThresholds,
) -> Backend:
    """The backend ``name`` (``"auto"`` resolved by :func:`resolve_backend`)."""
    cls = {"numba": NumbaBackend, "numpy": Backend, "batched": BatchedBackend}[
        resolve_backend(name, weight)
    ]
    return cls(state, acc, weight, sketch, ema_decay=ema_decay, zombie=zombie)
