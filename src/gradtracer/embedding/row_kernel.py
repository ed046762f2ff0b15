"""Compiled per-step row update for CPU tables (numba), the tracker's fastest path.

One call does everything a recorded optimizer step needs after the sign projection: the
rows' gradient and displacement norms, the sign-sketch bits, the comparison with each row's
previous sketch, the EMA, count and zombie updates of the packed row state and the running
table sums. It is :func:`fold.apply_step` fused into one loop over the touched rows (same
float32 arithmetic, same verdicts), so a step costs one pass over ``R`` rows instead of ~40
NumPy dispatches: for ~1,000 touched rows of a 1M-row table ~65 us in a tight loop
(100-160 us inside the benchmark's training loop, where the state is cold) against
0.35-0.5 ms for the NumPy update.

numba is a core dependency; where it cannot be imported (or with the environment variable
``GRADTRACER_NO_NUMBA=1``) the tracker falls back to :func:`fold.apply_step`. The kernels
live at module level in :mod:`~gradtracer.embedding._jit_rows`, so numba caches their
machine code next to that file: the first process compiles them (seconds), later ones load
them. :class:`RowKernel` binds them to one tracker (NumPy views and constants made once).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch

from gradtracer.embedding.fold import _cos_table, _z_min  # the NumPy path's exact values
from gradtracer.embedding.state import COUNT_MAX, RowState, SignSketch
from gradtracer.embedding.sums import (
    COS,
    DAMPED,
    EXPOSED,
    GRAD_NORM,
    NONFINITE_ROWS,
    NONFINITE_STEPS,
    PAIRED,
    VELOCITY,
    ZOMBIE,
)
from gradtracer.embedding.thresholds import ZombieThresholds

__all__ = ["RowKernel", "available", "unique_rows"]


@functools.lru_cache(maxsize=1)
def _compiled() -> Any | None:
    """The compiled kernels ``(update, damp, dedupe)``, or None where numba is unavailable or disabled."""
    if os.environ.get("GRADTRACER_NO_NUMBA", "").strip() not in ("", "0"):
        return None
    try:
        from gradtracer.embedding import _jit_rows as jit
    except ImportError:  # pragma: no cover - numba is a core dependency
        return None
    layout = (jit.W_EXPOSURE, jit.W_SEEN, jit.W_COUNTS, jit.FLOAT_COL, jit.SKETCH_COL)
    sums = (jit.VELOCITY, jit.GRAD_NORM, jit.COS, jit.EXPOSED, jit.PAIRED, jit.ZOMBIE)
    sums_rest = (jit.NONFINITE_ROWS, jit.NONFINITE_STEPS, jit.DAMPED)
    want = (
        RowState.W_EXPOSURE,
        RowState.W_SEEN,
        RowState.W_COUNTS,
        RowState.FLOAT_COL,
        RowState.SKETCH_COL,
    )
    if (
        layout != want
        or jit.COUNT_MAX != COUNT_MAX
        or sums != (VELOCITY, GRAD_NORM, COS, EXPOSED, PAIRED, ZOMBIE)
        or sums_rest != (NONFINITE_ROWS, NONFINITE_STEPS, DAMPED)
    ):  # pragma: no cover - a layout change must be made in both places
        raise RuntimeError(
            "gradtracer.embedding._jit_rows constants differ from RowState / sums: update them"
        )
    return jit.kernel, jit.damp, jit.dedupe


def available() -> bool:
    """True when the compiled kernel can be used (numba importable, not disabled)."""
    return _compiled() is not None


class RowKernel:
    """The compiled update and damping bound to one tracker's state, sums, table and sketch.

    Holds the NumPy views and converted constants the kernels take, and a reusable buffer
    for the sign projection, so a step marshals only its own rows. The table's view is
    made again whenever the weight's storage changes (``weight.data = ...``).

    Args:
        state: packed CPU row state (:meth:`RowState.zeros`), changed in place.
        acc: the tracker's running table sums, float64 CPU tensor, changed in place.
        weight: ``(N, d)`` float32 CPU table (the parameter itself).
        sketch: the tracker's sign sketch.
        ema_decay: decay of the per-row EMAs; ``zombie``: the zombie thresholds.

    Raises:
        RuntimeError: the compiled kernels are unavailable (numba missing or disabled).
    """

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
        kernels = _compiled()
        if kernels is None:
            raise RuntimeError("the compiled row kernel is unavailable (numba missing or disabled)")
        self._update, self._damp = kernels[0], kernels[1]
        self._packed = state.packed_numpy()
        self._packed_f = state.packed_numpy_f32()
        self._acc = acc.numpy()
        self._weight = weight
        self._w_ptr = -1
        self._w_np = np.zeros((0, 0), dtype=np.float32)
        self._sketch = sketch
        self._cos = _cos_table(sketch.n_bits)
        self._consts = _constants(float(ema_decay), zombie)
        self._b = np.float32(ema_decay)
        self._proj = torch.empty(0, sketch.n_bits)  # reused sign-projection buffer
        self._proj_np = self._proj.numpy()
        self._v = np.empty(0, dtype=np.float32)  # reused displacement-norm buffer
        self._head = (self._packed, self._packed_f, self._acc)  # the kernel's first arguments

    def table(self) -> np.ndarray:
        """NumPy view of the table (made again when its storage or shape changed)."""
        w = self._weight
        ptr = w.data_ptr()
        if ptr != self._w_ptr or self._w_np.shape != w.shape:
            self._w_np = w.detach().numpy()
            self._w_ptr = ptr
        return self._w_np

    def _reserve(self, n: int) -> None:
        """Grow the reusable buffers to at least ``n`` rows (doubling; never shrinking)."""
        size = max(n, 2 * self._proj.shape[0])
        self._proj = torch.empty(size, self._sketch.n_bits)
        self._proj_np = self._proj.numpy()
        self._v = np.empty(size, dtype=np.float32)

    def track(
        self, rows: torch.Tensor, before: torch.Tensor, grad: torch.Tensor, step: int
    ) -> np.ndarray:
        """Apply one optimizer step (the table already updated) to the state and sums.

        Args:
            rows: ``(R,)`` int64 unique touched rows.
            before: ``(R, d)`` float32 rows before the step; ``grad``: their gradients.
            step: 1-based optimizer step number.

        Returns:
            ``(R,)`` float32 L2 norms of the rows' applied displacement (a view of a buffer
            reused by the next call).
        """
        n = rows.shape[0]
        if n > self._v.shape[0]:
            self._reserve(n)
        grad = grad.contiguous()  # the kernel reads it as a C-contiguous array too
        # the projection on torch's own thread pool (a NumPy BLAS call here would start a
        # second pool that competes with torch's for the cores)
        torch.mm(grad, self._sketch.projection, out=self._proj[:n])
        v = self._v[:n]
        self._update(
            *self._head,
            self.table(),
            rows.numpy(),
            before.numpy(),
            grad.numpy(),
            self._proj_np[:n],
            self._cos,
            v,
            step,
            *self._consts,
        )
        return v

    def damp(
        self,
        rows: torch.Tensor,
        before: torch.Tensor,
        v: np.ndarray,
        table: torch.Tensor,
        ever: torch.Tensor,
        step: int,
    ) -> None:
        """Scale the step's applied update of each touched row by its factor (in place).

        ``w[r] = before + f * (w[r] - before)`` with ``f = table[r]`` (rows at or beyond the
        table's end get 1; NaN counts as 1; factors are clipped to [0, 1]); the velocity EMA
        of the row is corrected to record ``f * v``, the damped row-updates are counted in
        the sums and flagged in ``ever`` (``(N,)`` bool). ``v`` is :meth:`track`'s result,
        ``table`` a float32 CPU tensor.
        """
        self._damp(
            self._packed,
            self._packed_f,
            self._acc,
            self.table(),
            rows.numpy(),
            before.numpy(),
            v,
            table.numpy(),
            ever.numpy(),
            int(step),
            self._b,
        )


@functools.lru_cache(maxsize=64)
def _constants(ema_decay: float, zombie: ZombieThresholds) -> tuple[Any, ...]:
    """The update kernel's trailing arguments, converted once per (decay, thresholds)."""
    f32 = np.float32
    return (
        f32(ema_decay),
        int(zombie.min_pairs),
        f32(_z_min(zombie.min_posterior)),
        f32(zombie.min_disagree_rate),
        f32(zombie.max_cos_ema),
        f32(zombie.min_retained_pressure),
        f32(zombie.pressure_ratio),
        f32(zombie.min_grad_norm),
    )


def unique_rows(parts: list[torch.Tensor], scratch: dict[str, Any]) -> torch.Tensor:
    """Unique row ids (>= 0) of the int64 tensors ``parts``, in first-seen order on CPU.

    Without sorting: a flag per table row (``scratch["mark"]``, allocated once, one byte
    per row) marks the ids already seen. Falls back to ``torch.unique`` (sorted) without
    numba or off the CPU.
    """
    kernels = _compiled()
    rows = torch.cat(parts) if len(parts) > 1 else parts[0]
    if kernels is None or rows.device.type != "cpu" or rows.numel() == 0:
        return torch.unique(rows)
    ids = rows.numpy()
    n_rows = int(ids.max()) + 1
    mark = scratch.get("mark")
    if mark is None or mark.shape[0] < n_rows:
        mark = np.zeros(n_rows, dtype=np.uint8)
        scratch["mark"] = mark
    return torch.from_numpy(kernels[2](ids, mark))
