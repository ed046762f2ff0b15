"""EmbeddingTracker: per-row training dynamics of an ``nn.Embedding`` / ``nn.EmbeddingBag``.

How one optimizer step is observed (all work is batch-sized, on the layer's device):

1. forward hook: remembers the index tensor(s) the layer was called with (dense grads);
2. post-accumulate-grad hook on ``layer.weight`` (after ``loss.backward()``): touched rows =
   unique forward indices (dense) or the coalesced sparse gradient's indices; snapshots
   the touched rows' gradient and weights (``(R, d)`` copies);
3. optimizer step post-hook (the global ``register_optimizer_step_post_hook`` filtered to
   optimizers that hold this weight, or the ``optimizer=`` given): reads the touched rows
   again, so the displacement is the update the optimizer actually applied, and updates
   the per-row state. Without an optimizer hook (hand-written updates) the displacement is
   measured at the next backward, ``step()`` or ``summary()`` once ``weight._version``
   shows the weight changed.

``tracker.step()`` is therefore optional for the per-row state and gives the same
statistics whether it is called before or after ``optimizer.step()``; it only records the
loss. ``track_interval`` schedules the history snapshots and the cross-rank aggregation,
never the per-row sampling. Summaries and findings are computed lazily on request.
"""

from __future__ import annotations

import logging
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from gradtracer.embedding import distributed as _dist
from gradtracer.embedding import row_kernel as _row_kernel
from gradtracer.embedding import stats as _stats
from gradtracer.embedding.diagnose import (
    EmbeddingThresholds,
    diagnose,
    pressure_threshold,
    zombie_mask,
)
from gradtracer.embedding.evidence import Intervention, RowEvidence
from gradtracer.embedding.fold import (
    ACC_DAMPED,
    ACC_NONFINITE_ROWS,
    ACC_NONFINITE_STEPS,
    ACC_VEL,
    N_ACC,
    StepRecord,
    apply_step,
    fold_steps,
    sketch_words,
)
from gradtracer.embedding.row_kernel import damp_rows, track_rows
from gradtracer.embedding.state import FloatCol, IntCol, RowState, SignSketch, decode_ints
from gradtracer.errors import GradTracerWarning, TrackerError
from gradtracer.findings import Finding, FindingType, Report

__all__ = ["EmbeddingTracker"]

logger = logging.getLogger(__name__)

# id(weight) -> (weak weight, weak tracker): one live tracker per weight, nothing kept alive
_ATTACHED: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[EmbeddingTracker]]] = {}


def _live_tracker(weight: torch.Tensor) -> EmbeddingTracker | None:
    entry = _ATTACHED.get(id(weight))
    if entry is None or entry[0]() is not weight:
        return None
    return entry[1]()


_STATE_VERSION = 1

# on accelerators recorded steps are folded into the row state in batches of at most this
# many steps (and whenever a snapshot, summary, checkpoint or intervention needs the current
# state) ...; on CPU every step is applied in place at once (fold.apply_step)
_MAX_BUFFERED_STEPS = 64
_MAX_BUFFERED_ROWS = 1 << 18  # ... or of at most this many buffered row updates


@dataclass
class _Pending:
    """Touched rows of the current (not yet applied) step."""

    rows: torch.Tensor  # (R,) int64, unique
    grad: torch.Tensor  # (R, d) gradient rows
    before: torch.Tensor  # (R, d) weight rows before the update
    version: int  # weight._version when the snapshot was taken


class EmbeddingTracker:
    """Tracks exposure, displacement velocity, gradient pressure and oscillation per row.

    Args:
        layer: the ``nn.Embedding`` or ``nn.EmbeddingBag`` to track (dense or sparse grads).
        name: name used in summaries and findings (default ``"embedding"``).
        auto_fix: ``False`` (observe only), ``True`` (the default Auto-Fix controller,
            ``gradtracer.embedding.autofix.AutoFixController``) or any object implementing
            :class:`~gradtracer.embedding.evidence.Intervention`.
        track_interval: optimizer steps between history snapshots (and cross-rank
            aggregation under ``torch.distributed``); default 1.
        optimizer: hook only this optimizer's steps instead of every optimizer holding the
            weight (optional).
        thresholds: diagnosis thresholds (default :class:`EmbeddingThresholds`).
        ema_decay: decay of the per-row EMAs, per exposure of the row (default 0.9).
        sketch_bits: bits of the gradient-direction sign sketch per row (default 32).
        analysis_rows: rows sampled for effective rank / collapse (default 16,384).
        max_history: history entries kept; beyond it every second entry is dropped.
        seed: seed of the sketch projection and of the analysis sample.

    Raises:
        TypeError: ``layer`` is not an embedding layer.
        TrackerError: the layer's weight already has a live tracker.
    """

    def __init__(
        self,
        layer: nn.Module,
        name: str | None = None,
        auto_fix: bool | Intervention = False,
        track_interval: int = 1,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        thresholds: EmbeddingThresholds | None = None,
        ema_decay: float = 0.9,
        sketch_bits: int = 32,
        analysis_rows: int = 16_384,
        max_history: int = 100_000,
        seed: int = 0,
    ) -> None:
        if not isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
            raise TypeError(
                f"EmbeddingTracker needs an nn.Embedding or nn.EmbeddingBag, got {type(layer).__name__}"
            )
        if (
            isinstance(track_interval, bool)
            or not isinstance(track_interval, int)
            or track_interval < 1
        ):
            raise ValueError(f"track_interval must be an int >= 1, got {track_interval!r}")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}")
        if max_history < 2:
            raise ValueError(f"max_history must be >= 2, got {max_history!r}")
        weight = layer.weight
        existing = _live_tracker(weight)
        if existing is not None:
            raise TrackerError(
                f"layer {type(layer).__name__} {tuple(weight.shape)} already has a tracker "
                f"({existing.name!r}); call detach() on it first"
            )
        self.layer = layer
        self.name = name or "embedding"
        self.track_interval = track_interval
        self.thresholds = thresholds or EmbeddingThresholds()
        self.ema_decay = float(ema_decay)
        self.analysis_rows = int(analysis_rows)
        self.max_history = int(max_history)
        self.seed = int(seed)
        self._history: list[dict[str, Any]] = []
        self._losses: dict[int, float] = {}  # step -> loss, until its snapshot is written
        self._snap_step = -1  # step of the latest snapshot

        self._weight = weight
        self._sparse = bool(getattr(layer, "sparse", False))
        self._padding_idx: int | None = getattr(layer, "padding_idx", None)
        n_rows, dim = weight.shape
        device = weight.device
        self._sketch = SignSketch(dim, sketch_bits, seed=seed, device=device)
        nb = self._sketch.n_bytes
        self._word_dtype = (
            torch.int64 if nb % 8 == 0 else torch.int32 if nb % 4 == 0 else torch.uint8
        )
        self._state = RowState.zeros(n_rows, self._sketch.n_bytes, device)
        # steps buffered before folding: 1 = apply each step in place (see fold.py)
        self._fold_every = 1 if device.type == "cpu" else _MAX_BUFFERED_STEPS
        # the fused compiled per-step update: CPU float32 tables with numba (row_kernel.py)
        self._kernel = (
            device.type == "cpu" and weight.dtype == torch.float32 and _row_kernel.available()
        )
        self._acc = torch.zeros(N_ACC, dtype=torch.float64, device=device)
        self._n_updates = 0
        self._own_seconds = 0.0  # wall time inside the per-step hooks (tracker_seconds)
        self._touched = 0  # rows updated by the last optimizer step
        self._pending: _Pending | None = None
        self._buffer: list[StepRecord] = []
        self._buffered_values = 0
        self._fwd_indices: list[torch.Tensor] = []
        self._last_loss: float | None = None
        self._summary_cache: (
            tuple[tuple[int, bool], dict[str, Any], dict[str, list[int]]] | None
        ) = None
        self._opt_cache: weakref.WeakKeyDictionary[torch.optim.Optimizer, bool] = (
            weakref.WeakKeyDictionary()
        )

        self._intervention: Intervention | None = self._make_intervention(auto_fix)
        # the table protocol (AutoFixController): on_step + scales + ever_scaled; the
        # intervention keeps the per-row factors, the tracker only applies them
        self._on_step = getattr(self._intervention, "on_step", None)
        self._scales: torch.Tensor | None = None  # last factor applied (evidence protocol)
        self._damped_ever: torch.Tensor | None = None
        if self._intervention is not None and self._on_step is None:
            self._scales = torch.ones(n_rows, dtype=torch.float32, device=device)
            self._damped_ever = torch.zeros(n_rows, dtype=torch.bool, device=device)

        self._handles: list[Any] = []
        if not self._sparse:
            self._handles.append(layer.register_forward_hook(self._on_forward, with_kwargs=True))
        self._handles.append(weight.register_post_accumulate_grad_hook(self._on_grad))
        if optimizer is not None:
            self._handles.append(optimizer.register_step_post_hook(self._on_optimizer_step))
            self._opt_cache[optimizer] = True
        else:
            self._handles.append(register_optimizer_step_post_hook(self._on_optimizer_step))
        _ATTACHED[id(weight)] = (weakref.ref(weight), weakref.ref(self))
        self._attached = True

    # ------------------------------------------------------------------ setup helpers
    def _make_intervention(self, auto_fix: bool | Intervention) -> Intervention | None:
        if auto_fix is False or auto_fix is None:
            return None
        if auto_fix is True:
            from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy

            return AutoFixController(layer_name=self.name, policy=AutoFixPolicy())
        if not callable(getattr(auto_fix, "on_update", None)):
            raise TypeError(
                f"auto_fix must be a bool or an Intervention (with on_update/close), "
                f"got {type(auto_fix).__name__}"
            )
        return auto_fix

    # ------------------------------------------------------------------ hooks (hot path)
    def _on_forward(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        if not torch.is_grad_enabled() or not self._weight.requires_grad:
            return
        idx = args[0] if args else kwargs.get("input")
        if isinstance(idx, torch.Tensor):
            self._fwd_indices.append(idx.detach())

    def _on_grad(self, param: torch.Tensor) -> None:
        grad = param.grad
        if grad is None:
            return
        if grad.is_sparse and not grad.is_coalesced():
            # the sparse optimizers coalesce anyway; handing them the result costs nothing
            # extra, so this is left out of the tracker's own time
            grad = grad.coalesce()
            param.grad = grad
        start = time.perf_counter()
        try:
            self._record_grad(param, grad)
        finally:
            self._own_seconds += time.perf_counter() - start

    def _record_grad(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        pend = self._pending
        if pend is not None and param._version != pend.version:
            self._close()  # a hand-written update happened without an optimizer hook
            pend = None
        w = param.detach()
        if grad.is_sparse:
            rows = grad.indices()[0]
            values = grad.values()
            if self._padding_idx is not None:
                keep = rows != self._padding_idx
                rows, values = rows[keep], values[keep]
            g_rows = values.detach()
        else:
            parts = self._fwd_indices
            if pend is not None:  # gradient accumulation: union with earlier micro-batches
                parts = [pend.rows, *parts]
            if parts:
                flat = torch.cat(
                    [p.reshape(-1).to(device=w.device, dtype=torch.long) for p in parts]
                )
                rows = torch.unique(flat)
            else:  # weight used outside the module's forward: scan the gradient
                rows = torch.nonzero(grad.detach().abs().sum(dim=1)).reshape(-1)
            if self._padding_idx is not None:
                rows = rows[rows != self._padding_idx]
            g_rows = grad.detach().index_select(0, rows)
        self._fwd_indices = []
        before = w.index_select(0, rows)
        self._pending = _Pending(rows=rows, grad=g_rows, before=before, version=param._version)

    def _owns(self, optimizer: torch.optim.Optimizer) -> bool:
        owned = self._opt_cache.get(optimizer)
        if owned is None:
            owned = any(
                p is self._weight for group in optimizer.param_groups for p in group["params"]
            )
            self._opt_cache[optimizer] = owned
        return owned

    def _on_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._attached or not self._owns(optimizer):
            return
        start = time.perf_counter()
        try:
            self._close(count_empty=True)
        finally:
            self._own_seconds += time.perf_counter() - start

    def _close(self, count_empty: bool = False) -> None:
        """Finish the pending step: measure the applied displacement and record the step.

        Batch-sized work only: two norms, the sign sketch and either the in-place row-state
        update (:func:`fold.apply_step`, CPU) or a buffered record folded later with the
        other buffered steps (:func:`fold.fold_steps`, accelerators).
        """
        pend = self._pending
        if pend is None:
            if count_empty:  # optimizer stepped but this table got no gradient
                self._n_updates += 1
                self._touched = 0
                self._after_update()
            return
        self._pending = None
        self._n_updates += 1
        n_rows = int(pend.rows.numel())
        disp: torch.Tensor | None = None
        v_applied = None  # displacement norms from the compiled update, if it ran
        with torch.no_grad():
            if self._kernel and self._fold_every == 1 and pend.grad.dtype == self._weight.dtype:
                # CPU float32 table: the fused compiled update (row_kernel.py)
                v_applied = track_rows(
                    self._state,
                    self._acc,
                    self._weight.detach(),
                    pend.rows,
                    pend.before,
                    pend.grad,
                    self._n_updates,
                    sketch=self._sketch,
                    ema_decay=self.ema_decay,
                    zombie=self.thresholds.zombie,
                )
            else:
                disp = self._weight.detach().index_select(0, pend.rows).sub_(pend.before)
                gn = torch.linalg.vector_norm(pend.grad, dim=1).float()
                v = torch.linalg.vector_norm(disp, dim=1).float()
                if self._fold_every == 1 and not self._buffer:
                    # apply in place now (the cheaper way on CPU, see fold.py)
                    apply_step(
                        self._state,
                        self._acc,
                        pend.rows,
                        gn,
                        v,
                        self._sketch.encode_numpy(pend.grad),
                        self._n_updates,
                        sketch=self._sketch,
                        ema_decay=self.ema_decay,
                        zombie=self.thresholds.zombie,
                    )
                else:
                    self._buffer.append(
                        StepRecord(
                            rows=pend.rows,
                            gn=gn,
                            v=v,
                            code=sketch_words(self._sketch.encode(pend.grad), self._sketch),
                            step=self._n_updates,
                        )
                    )
                    self._buffered_values += n_rows
        self._touched = n_rows
        if self._intervention is not None:
            self._flush()
            with torch.no_grad():
                self._intervene(pend.rows, pend.before, disp, v_applied)
        elif len(self._buffer) >= self._fold_every or self._buffered_values >= _MAX_BUFFERED_ROWS:
            self._flush()
        self._after_update()

    def _flush(self) -> None:
        """Fold the buffered steps into the per-row state (see :func:`fold.fold_steps`)."""
        buf = self._buffer
        if not buf:
            return
        self._buffer = []
        self._buffered_values = 0
        with torch.no_grad():
            self._fold(buf)

    def _fold(self, buf: list[StepRecord]) -> None:
        """Apply the buffered steps to the row state; write their history snapshots."""
        trajectory = fold_steps(
            self._state,
            self._acc,
            buf,
            sketch=self._sketch,
            ema_decay=self.ema_decay,
            zombie=self.thresholds.zombie,
        )
        if not _dist.is_distributed():
            due = [i for i, s in enumerate(buf) if s.step % self.track_interval == 0]
            if due:
                values = trajectory[due].tolist()
                for i, vals in zip(due, values):
                    self._append_history(
                        self._snapshot_from(vals, buf[i].step, int(buf[i].rows.numel()))
                    )

    def _evidence_for(self, rows: torch.Tensor) -> RowEvidence:
        """The current row state of ``rows`` as :class:`RowEvidence` (fresh tensors)."""
        packed = self._state.packed
        if packed is not None and packed.device.type == "cpu" and rows.device.type == "cpu":
            # one gather of the whole packed records (half the cost of two strided ones)
            block = np.take(self._state.packed_numpy(), rows.numpy(), axis=0)
            whole = torch.from_numpy(block)
            ints = decode_ints(whole[:, : RowState.FLOAT_COL])
            fl = whole[:, RowState.FLOAT_COL : RowState.SKETCH_COL].view(torch.float32)
        else:
            ints = self._state.ints_of(rows)
            fl = self._state.floats.index_select(0, rows)
        return RowEvidence(
            step=self._n_updates,
            layer=self.name,
            rows=rows,
            n_agree=ints[:, IntCol.N_AGREE],
            n_disagree=ints[:, IntCol.N_DISAGREE],
            cos_ema=fl[:, FloatCol.COS],
            grad_norm_ema=fl[:, FloatCol.GRAD_NORM],
            velocity_ema=fl[:, FloatCol.VELOCITY],
            exposure=ints[:, IntCol.EXPOSURE],
            loss=self._last_loss,
        )

    def _intervene(
        self,
        rows: torch.Tensor,
        before: torch.Tensor,
        disp: torch.Tensor | None,
        v_applied: Any = None,
    ) -> None:
        """Ask the intervention for per-row factors and apply them to the displacement.

        An intervention with ``on_step`` (the table protocol, :class:`AutoFixController`)
        gets the touched rows only and returns its whole per-row scale table; the factors
        are then applied by the compiled kernel where the compiled update ran. Others get
        the full :class:`RowEvidence` every step through ``on_update``.
        """
        assert self._intervention is not None
        if self._on_step is not None:
            table = self._on_step(self._n_updates, rows, self._last_loss, self._evidence_for)
            if table is None:
                return
            if v_applied is not None and table.device.type == "cpu":
                damp_rows(
                    self._state,
                    self._acc,
                    self._weight.detach(),
                    rows,
                    before,
                    v_applied,
                    table.to(torch.float32),
                    self._n_updates,
                    ema_decay=self.ema_decay,
                )
                return
            f = table.index_select(0, rows.clamp(max=table.numel() - 1)).to(rows.device)
        else:
            factors = self._intervention.on_update(self._evidence_for(rows))
            if factors is None:
                return
            f = torch.as_tensor(factors).to(device=rows.device, dtype=torch.float32).reshape(-1)
            if f.shape != rows.shape:
                raise ValueError(
                    f"intervention {type(self._intervention).__name__} returned "
                    f"{tuple(f.shape)} factors for {rows.numel()} rows"
                )
        if disp is None:
            disp = self._weight.detach().index_select(0, rows).sub_(before)
        self._apply_factors(rows, before, disp, f)

    def _apply_factors(
        self, rows: torch.Tensor, before: torch.Tensor, disp: torch.Tensor, f: torch.Tensor
    ) -> None:
        """``w[rows] = before + f * disp``; velocity EMA, scales and counts follow (torch)."""
        f = torch.nan_to_num(f.to(torch.float32), nan=1.0).clamp_(0.0, 1.0)
        ints = self._state.ints_of(rows)
        w = self._weight.detach()
        w.index_copy_(0, rows, before + f.to(w.dtype)[:, None] * disp)
        # the velocity EMA records the displacement actually applied: f * v
        first_w = torch.where(ints[:, IntCol.EXPOSURE] == 1, 1.0, 1.0 - self.ema_decay)
        v = torch.linalg.vector_norm(disp, dim=1).float()
        updated = ints[:, IntCol.LAST_SEEN] == self._n_updates  # rows whose state took this step
        correction = torch.nan_to_num(first_w * (1.0 - f) * v * updated, nan=0.0, posinf=0.0)
        self._state.floats[:, FloatCol.VELOCITY].index_add_(0, rows, -correction)
        self._acc[ACC_VEL] -= correction.sum(dtype=torch.float64)
        damped = f < 1.0
        if self._scales is not None and self._damped_ever is not None:
            self._scales.index_copy_(0, rows, f)
            ever = self._damped_ever.index_select(0, rows) | damped
            self._damped_ever.index_copy_(0, rows, ever)
        self._acc[ACC_DAMPED] += damped.sum()

    # ------------------------------------------------------------------ schedule
    def _after_update(self) -> None:
        """Schedule: snapshots every ``track_interval`` optimizer steps.

        Outside ``torch.distributed`` a buffered step's snapshot is written when the buffer
        is folded (reading ``history`` folds it); a distributed run folds and aggregates
        across ranks at the scheduled step itself, so every rank joins the collective then.
        """
        self._summary_cache = None
        n = self._n_updates
        if n % self.track_interval:
            return
        if _dist.is_distributed():
            self._flush()
            self._append_history(self._snapshot())
        elif self._snap_step != n and (not self._buffer or self._buffer[-1].step != n):
            # this step recorded no rows (or was folded already without a snapshot)
            self._flush()
            acc = self._acc.tolist()
            vals = [*acc[:6], acc[ACC_NONFINITE_ROWS]]
            self._append_history(self._snapshot_from(vals, n, self._touched))

    def _append_history(self, snap: dict[str, Any]) -> None:
        self._snap_step = int(snap["step"])
        self._history.append(snap)
        if len(self._history) > self.max_history:
            self._history = self._history[::2]

    def _loss_of(self, step: int) -> float | None:
        loss = self._losses.get(step)
        for key in [k for k in self._losses if k <= step]:  # older losses are no longer needed
            del self._losses[key]
        return loss

    def _snapshot_from(self, vals: list[float], step: int, touched: int) -> dict[str, Any]:
        """History entry from the 7 running sums (velocity, grad norm, cos, exposed, paired,
        zombie, non-finite rows) as they stood after ``step``."""
        n_exp = max(vals[3], 1.0)
        return {
            "step": step,
            "loss": self._loss_of(step),
            "mean_velocity": vals[0] / n_exp,
            "mean_grad_norm": vals[1] / n_exp,
            "active_rows": int(round(vals[3])),
            "coverage": vals[3] / max(self._state.n_rows, 1),
            "oscillation_mean": vals[2] / max(vals[4], 1.0),
            "zombie_count": int(round(vals[5])),
            "touched_rows": touched,
            "non_finite_rows": int(round(vals[6])),
        }

    def _snapshot(self) -> dict[str, Any]:
        """History entry from the row state merged across ranks (a collective call)."""
        step = self._n_updates
        state = _dist.merge_row_state(self._state)
        light = self._light_stats(state)
        extra = torch.tensor(
            [float(self._acc[ACC_NONFINITE_ROWS]), float(self._touched)],
            dtype=torch.float64,
            device=self._acc.device,
        )
        acc = _dist.all_reduce_sum(extra).tolist()
        light.update(non_finite_rows=int(acc[0]), touched_rows=int(acc[1]))
        return {"step": step, "loss": self._loss_of(step), **light}

    def _light_stats(self, state: RowState) -> dict[str, Any]:
        """History numbers recomputed from a full (merged) row state."""
        exposure = state.col("exposure")
        exposed = exposure > 0
        n_exp = int(exposed.sum())
        pairs = state.col("n_agree") + state.col("n_disagree")
        gn = state.col("grad_norm_ema")
        mean_gn = float(gn[exposed].double().mean()) if n_exp else 0.0
        zmask = self._zombies(state, mean_gn) & exposed
        return {
            "mean_velocity": float(state.col("velocity_ema")[exposed].double().mean())
            if n_exp
            else 0.0,
            "mean_grad_norm": mean_gn,
            "active_rows": n_exp,
            "coverage": n_exp / max(state.n_rows, 1),
            "oscillation_mean": float(state.col("cos_ema")[pairs > 0].double().mean())
            if bool((pairs > 0).any())
            else 0.0,
            "zombie_count": int(zmask.sum()),
        }

    def _zombies(self, state: RowState, mean_grad_norm: float) -> torch.Tensor:
        zt = self.thresholds.zombie
        return zombie_mask(
            state.col("n_agree"),
            state.col("n_disagree"),
            state.col("cos_ema"),
            state.col("grad_norm_ema"),
            state.col("grad_norm_peak"),
            pressure_threshold(mean_grad_norm, zt),
            zt,
        )

    # ------------------------------------------------------------------ public API
    @property
    def history(self) -> list[dict[str, Any]]:
        """Snapshots taken every ``track_interval`` optimizer steps (oldest first).

        Keys: ``step``, ``loss`` (None unless passed to :meth:`step`), ``mean_velocity``,
        ``mean_grad_norm``, ``active_rows``, ``coverage``, ``oscillation_mean``,
        ``zombie_count`` (rows flagged as zombies when last touched), ``touched_rows``,
        ``non_finite_rows``.
        """
        self._sync()
        return self._history

    @property
    def num_steps(self) -> int:
        """Optimizer steps observed so far."""
        self._sync()
        return self._n_updates

    @property
    def row_state(self) -> RowState:
        """The live per-row state tensors (read them, do not modify them)."""
        self._sync()
        return self._state

    def _sync(self) -> None:
        """Close a pending step applied without an optimizer hook; fold buffered steps."""
        pend = self._pending
        if pend is not None and self._weight._version != pend.version:
            self._close()
        self._flush()

    def step(self, loss: float | torch.Tensor | None = None) -> None:
        """Record the training loss of the current iteration (optional; a no-op otherwise).

        May be called before or after ``optimizer.step()``: the loss is attached to the
        optimizer step of this iteration either way. Before any backward it does nothing
        but remember the loss.
        """
        pend = self._pending
        if pend is not None and self._weight._version != pend.version:
            self._close()  # a hand-written update happened without an optimizer hook
        if loss is not None:
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            target = self._n_updates + (1 if self._pending is not None else 0)
            self._last_loss = value
            last = self._history[-1] if self._history else None
            if last is not None and last["step"] == target:
                last["loss"] = value  # the latest loss given for a step wins
            elif last is None or last["step"] < target:
                self._losses[target] = value

    def autofix_scales(self) -> torch.Tensor:
        """Per-row update factor, ``(num_embeddings,)`` float32 (1 = undamped).

        With Auto-Fix (:class:`AutoFixController`) the factor each row's updates get now;
        with an intervention that only implements ``on_update``, the last factor applied.
        """
        n = self._state.n_rows
        if self._on_step is not None:
            return self._intervention.scales(n).to(self._weight.device)  # type: ignore[union-attr]
        if self._scales is None:
            return torch.ones(n, dtype=torch.float32, device=self._weight.device)
        return self._scales.clone()

    def _ever_damped(self) -> torch.Tensor | None:
        """Bool mask of rows ever damped, or None without an intervention."""
        if self._on_step is not None:
            return self._intervention.ever_scaled(self._state.n_rows)  # type: ignore[union-attr]
        return self._damped_ever

    def summary(self) -> dict[str, Any]:
        """JSON-safe table statistics (a collective call under ``torch.distributed``).

        Keys include ``layer``, ``num_embeddings``, ``embedding_dim``, ``step``,
        ``active_coverage_pct``, ``popularity_gini``, ``zombie_count``, ``zombie_ratio``
        (share of exposed rows), ``dead_count`` (never exposed + frozen), ``dead_ratio``,
        ``frozen_count``, ``mean_velocity`` (weight units per touched step),
        ``effective_rank``; see ``docs/embedding_tracker.md`` for the rest.
        """
        return dict(self._summary_and_samples()[0])

    def _summary_and_samples(self) -> tuple[dict[str, Any], dict[str, list[int]]]:
        self._sync()
        key = (self._n_updates, self._pending is None)
        if self._summary_cache is not None and self._summary_cache[0] == key:
            return self._summary_cache[1], self._summary_cache[2]
        out, samples = self._compute_summary()
        self._summary_cache = (key, out, samples)
        return out, samples

    def _compute_summary(self) -> tuple[dict[str, Any], dict[str, list[int]]]:
        th = self.thresholds
        state = _dist.merge_row_state(self._state)
        acc = _dist.all_reduce_sum(
            self._acc[[ACC_NONFINITE_ROWS, ACC_NONFINITE_STEPS, ACC_DAMPED]].clone()
        )
        n_bad_rows, n_bad_steps, n_damped = (int(x) for x in acc.tolist())
        ever = self._ever_damped()
        weight = self._weight.detach()
        n_rows, dim = weight.shape
        exposure = state.col("exposure")
        exposed = exposure > 0
        n_exp = int(exposed.sum())
        vel = state.col("velocity_ema")
        gn = state.col("grad_norm_ema")
        mean_vel = float(vel[exposed].double().mean()) if n_exp else 0.0
        mean_gn = float(gn[exposed].double().mean()) if n_exp else 0.0
        pairs = state.col("n_agree") + state.col("n_disagree")
        has_pairs = pairs > 0
        osc = (
            float(state.col("cos_ema")[has_pairs].double().mean()) if bool(has_pairs.any()) else 0.0
        )
        zmask = self._zombies(state, mean_gn) & exposed
        z_ids = torch.nonzero(zmask).reshape(-1)
        posterior = _stats.disagreement_posterior(
            state.col("n_agree")[z_ids], state.col("n_disagree")[z_ids]
        )
        z_order = torch.argsort(gn[z_ids] * posterior, descending=True)
        frozen_tol = max(th.frozen_abs_velocity, th.frozen_rel_velocity * mean_vel)
        frozen = exposed & (vel <= frozen_tol)
        unexposed = ~exposed
        n_zombie, n_frozen, n_unexp = int(zmask.sum()), int(frozen.sum()), int(unexposed.sum())

        norms = torch.linalg.vector_norm(weight.float(), dim=1)
        norms = torch.where(torch.isfinite(norms), norms, torch.zeros_like(norms))
        buckets = _stats.norm_by_popularity_bucket(norms.cpu(), exposure.cpu(), n_buckets=5)
        exposed_buckets = [b for b in buckets if b["min_exposure"] > 0]
        norm_ratio = None
        if len(exposed_buckets) >= 2 and exposed_buckets[0]["mean_norm"] > 0:
            norm_ratio = exposed_buckets[-1]["mean_norm"] / exposed_buckets[0]["mean_norm"]

        pool = (
            torch.nonzero(exposed).reshape(-1)
            if n_exp > 1
            else torch.arange(n_rows, device=weight.device)
        )
        pick = _stats.sample_rows(
            pool.numel(), self.analysis_rows, seed=self.seed, device=pool.device
        )
        sample = weight.index_select(0, pool[pick]).float()
        sample = sample[torch.isfinite(sample).all(dim=1)]
        saliency = _stats.frequency_aware_saliency(vel, exposure)
        top_sal = torch.topk(saliency, min(10, n_rows)).indices
        exp_cpu = exposure.cpu()
        lorenz_x, lorenz_y = _stats.lorenz_curve(exp_cpu, n_points=21)
        state_bytes = self._state.nbytes() + (
            0 if self._intervention is None else n_rows * 5  # scales float32 + damped bool
        )
        table_bytes = weight.numel() * weight.element_size()
        out: dict[str, Any] = {
            "layer": self.name,
            "num_embeddings": n_rows,
            "embedding_dim": dim,
            "step": self._n_updates,
            "track_interval": self.track_interval,
            "loss": self._last_loss,
            "world_size": _dist.world_size(),
            "active_rows": n_exp,
            "active_coverage_pct": 100.0 * n_exp / max(n_rows, 1),
            "popularity_gini": _stats.gini(exp_cpu),
            "normalized_entropy": _stats.normalized_entropy(exp_cpu),
            "top1pct_share": _stats.top_share(exp_cpu, 0.01),
            "lorenz_x": lorenz_x,
            "lorenz_y": lorenz_y,
            "zombie_count": n_zombie,
            "zombie_ratio": n_zombie / max(n_exp, 1),
            "zombie_mean_posterior": float(posterior.double().mean()) if n_zombie else 0.0,
            "zombie_pressure_threshold": float(pressure_threshold(mean_gn, th.zombie)),
            "unexposed_count": n_unexp,
            "dead_count": n_unexp + n_frozen,
            "dead_ratio": (n_unexp + n_frozen) / max(n_rows, 1),
            "frozen_count": n_frozen,
            "mean_velocity": mean_vel,
            "mean_grad_norm": mean_gn,
            "oscillation_mean": osc,
            "mean_exposure": float(exposure.double().mean()) if n_rows else 0.0,
            "cold_start_share": _stats.cold_start_share(exposure, th.cold_start_exposure),
            "effective_rank": _stats.effective_rank(sample),
            "collapse_score": _stats.collapse_score(sample),
            "analysis_rows": int(sample.shape[0]),
            "mean_row_norm": float(norms.double().mean()) if n_rows else 0.0,
            "norm_by_popularity": buckets,
            "norm_popularity_ratio": norm_ratio,
            "saliency_top_rows": top_sal.tolist(),
            "non_finite_rows": n_bad_rows,
            "non_finite_steps": n_bad_steps,
            "state_bytes": state_bytes,
            "table_bytes": table_bytes,
            "state_memory_ratio": state_bytes / max(table_bytes, 1),
            "autofix": self._intervention is not None,
            "autofix_damped_updates": n_damped,
            "autofix_damped_rows": 0 if ever is None else int(ever.sum()),
            "tracker_seconds": self._own_seconds,
            "tracker_ms_per_step": 1e3 * self._own_seconds / max(self._n_updates, 1),
        }
        samples = {
            "zombie": z_ids[z_order][:32].tolist(),
            "dead": torch.nonzero(unexposed).reshape(-1)[:32].tolist(),
            "frozen": torch.nonzero(frozen).reshape(-1)[:32].tolist(),
        }
        if ever is not None:
            samples["autofix"] = torch.nonzero(ever).reshape(-1)[:32].tolist()
        return out, samples

    def zombie_rows(self) -> torch.Tensor:
        """Row ids judged zombies now (sorted ascending, int64, on the layer's device)."""
        state = _dist.merge_row_state(self.row_state)
        exposed = state.col("exposure") > 0
        gn = state.col("grad_norm_ema")
        mean_gn = float(gn[exposed].double().mean()) if bool(exposed.any()) else 0.0
        return torch.nonzero(self._zombies(state, mean_gn) & exposed).reshape(-1)

    def findings(self) -> list[Finding]:
        """Diagnoses of the current state (see :func:`gradtracer.embedding.diagnose.diagnose`)."""
        stats, samples = self._summary_and_samples()
        found = diagnose(stats, self.thresholds, samples=samples)
        extra = getattr(self._intervention, "findings", None)
        if callable(extra):
            try:
                own = [f for f in extra() if isinstance(f, Finding)]
            except Exception:  # an intervention's own report must not break ours
                logger.exception("intervention findings() failed for %s", self.name)
                own = []
            # an intervention that reports its own AUTOFIX_APPLIED (with posteriors and the
            # audit log) supersedes the tracker's generic count of damped updates
            if any(f.type == FindingType.AUTOFIX_APPLIED.value for f in own):
                found = [f for f in found if f.type != FindingType.AUTOFIX_APPLIED.value]
            found.extend(own)
        return found

    def to_report(self) -> Report:
        """``Report(kind="embedding", subject=name, stats=summary(), findings=findings())``.

        ``metadata`` holds ``step``, ``track_interval`` and ``history`` (the history
        snapshots thinned to at most 200, for :meth:`plot`).
        """
        from gradtracer.export.figures import thin_history

        stats, _ = self._summary_and_samples()
        return Report(
            kind="embedding",
            subject=self.name,
            stats=dict(stats),
            findings=self.findings(),
            metadata={
                "step": self._n_updates,
                "track_interval": self.track_interval,
                "history": thin_history(self.history),
            },
        )

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Draw the table's figure (dynamics over steps, exposure Lorenz curve, norm by
        popularity, row kinds) as ``<out_dir>/<name>_dynamics.png`` and ``.svg``; returns
        the paths. See :mod:`gradtracer.export.figures`."""
        from gradtracer.export.figures import plot_embedding_report

        return plot_embedding_report(self.to_report(), out_dir)

    def report(self) -> str:
        """Readable multi-line text: the main statistics and one line per finding."""
        s, _ = self._summary_and_samples()
        lines = [
            f"EmbeddingTracker {s['layer']!r}: {s['num_embeddings']} x {s['embedding_dim']}, "
            f"step {s['step']}",
            f"  coverage {s['active_coverage_pct']:.1f}%  gini {s['popularity_gini']:.3f}  "
            f"entropy {s['normalized_entropy']:.3f}  top1% share {s['top1pct_share']:.3f}",
            f"  zombies {s['zombie_count']} ({100 * s['zombie_ratio']:.2f}% of exposed)  "
            f"dead {s['dead_count']} (never exposed {s['unexposed_count']}, frozen {s['frozen_count']})",
            f"  mean velocity {s['mean_velocity']:.3g}  mean grad norm {s['mean_grad_norm']:.3g}  "
            f"oscillation {s['oscillation_mean']:+.3f}",
            f"  effective rank {s['effective_rank']:.2f}  collapse {s['collapse_score']:.3f}  "
            f"cold-start share {s['cold_start_share']:.3f}",
        ]
        for f in sorted(self.findings(), key=lambda f: (-f.severity.rank, -f.confidence)):
            lines.append(f"  [{f.severity.value.upper()}] {f.type}: {f.premise} -> {f.action}")
        return "\n".join(lines)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state: tensors (CPU) and plain values; save with ``torch.save``.

        Load it back with ``torch.load(path, weights_only=True)`` and :meth:`load_state_dict`.
        A step in flight (backward done, optimizer step not yet) is not included. An
        intervention with its own ``state_dict`` (``AutoFixController``) is saved with it.
        """
        self._sync()
        out: dict[str, Any] = {
            "version": _STATE_VERSION,
            "name": self.name,
            "shape": list(self._weight.shape),
            "sketch_bits": self._sketch.n_bits,
            "seed": self.seed,
            "n_updates": self._n_updates,
            "last_loss": self._last_loss,
            "accumulators": self._acc.cpu().clone(),
            "history": [dict(h) for h in self._history],
            **{f"row_{k}": v for k, v in self._state.to_dict().items()},
        }
        if self._scales is not None and self._damped_ever is not None:
            out["autofix_scales"] = self._scales.cpu().clone()
            out["autofix_damped_ever"] = self._damped_ever.cpu().clone()
        save = getattr(self._intervention, "state_dict", None)
        if callable(save):
            out["intervention"] = save()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same table shape, sketch bits and seed).

        The intervention's state is restored too when both the state and this tracker have
        one; a mismatch (Auto-Fix state without an intervention, or the reverse) warns.
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"tracker state version {state.get('version')!r} != {_STATE_VERSION}")
        for key, mine in (
            ("shape", list(self._weight.shape)),
            ("sketch_bits", self._sketch.n_bits),
            ("seed", self.seed),
        ):
            if state.get(key) != mine:
                raise ValueError(
                    f"tracker state {key}={state.get(key)!r} does not match this tracker ({mine!r})"
                )
        self._state.load_dict({k: state[f"row_{k}"] for k in ("ints", "floats", "sketch")})
        self._acc.copy_(state["accumulators"].to(self._acc.device))
        self._n_updates = int(state["n_updates"])
        self._last_loss = state.get("last_loss")
        self._history = [dict(h) for h in state.get("history", [])]
        self._snap_step = int(self._history[-1]["step"]) if self._history else -1
        self._losses = {}
        self._buffer = []
        self._buffered_values = 0
        if self._scales is not None and "autofix_scales" in state:
            self._scales.copy_(state["autofix_scales"].to(self._scales.device))
        if self._damped_ever is not None and "autofix_damped_ever" in state:
            self._damped_ever.copy_(state["autofix_damped_ever"].to(self._damped_ever.device))
        load = getattr(self._intervention, "load_state_dict", None)
        if "intervention" in state and callable(load):
            load(state["intervention"])
        elif "intervention" in state:
            warnings.warn(
                f"tracker {self.name!r}: the state holds Auto-Fix state but this tracker has "
                "no intervention that can load it; it is ignored", GradTracerWarning, stacklevel=2)
        elif callable(load):
            warnings.warn(
                f"tracker {self.name!r}: the state holds no Auto-Fix state; the intervention "
                "starts afresh (every factor 1)", GradTracerWarning, stacklevel=2)
        self._pending = None
        self._fwd_indices = []
        self._summary_cache = None

    def detach(self) -> None:
        """Remove every hook, release the layer for another tracker, close the intervention."""
        if not self._attached:
            return
        self._sync()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if _live_tracker(self._weight) is self:
            del _ATTACHED[id(self._weight)]
        self._attached = False
        self._pending = None
        self._fwd_indices = []
        if self._intervention is not None:
            close = getattr(self._intervention, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> EmbeddingTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        n, d = self._weight.shape
        return (
            f"EmbeddingTracker(name={self.name!r}, rows={n}, dim={d}, step={self._n_updates}, "
            f"track_interval={self.track_interval}, attached={self._attached})"
        )
