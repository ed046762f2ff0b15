"""EmbeddingTracker: per-row training dynamics of an ``nn.Embedding`` / ``nn.EmbeddingBag``.

One optimizer step is observed by the hooks of :mod:`~gradtracer.embedding.hooks`: after
``loss.backward()`` the rows that received gradient, their gradient and their weights are
snapshotted; after ``optimizer.step()`` the rows are read again, so the displacement is
the update the optimizer actually applied, and a backend
(:mod:`~gradtracer.embedding.backends`) folds the step into the per-row state. Without an
optimizer hook (hand-written updates) the displacement is measured at the next backward,
``step()`` or ``summary()`` once ``weight._version`` shows the weight changed.

``tracker.step(loss)`` is optional: it only records the loss, before or after
``optimizer.step()`` alike. ``track_interval`` schedules the history snapshots and the
cross-rank aggregation, never the per-row sampling. Summaries and findings are computed
lazily on request, once per step (:mod:`~gradtracer.embedding.summary`).

This module is only the public class; the work lives in the modules it names. It runs past
400 lines because every public method keeps its docstring here, next to the hooks it wires.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradtracer.embedding import checkpoint as _checkpoint
from gradtracer.embedding import distributed as _dist
from gradtracer.embedding import hooks as _hooks
from gradtracer.embedding.backends import BackendName, make_backend
from gradtracer.embedding.diagnose import diagnose
from gradtracer.embedding.evidence import (
    Intervention,
    make_intervention,
)
from gradtracer.embedding.history import History
from gradtracer.embedding.recorder import StepRecorder
from gradtracer.embedding.state import RowState, SignSketch
from gradtracer.embedding.summary import (
    NormStats,
    RowVerdicts,
    history_stats,
    norm_stats,
    row_columns,
    row_verdicts,
    table_summary,
)
from gradtracer.embedding.sums import (
    DAMPED,
    N_ACC,
    NONFINITE_ROWS,
    NONFINITE_STEPS,
)
from gradtracer.embedding.thresholds import EmbeddingThresholds
from gradtracer.errors import TrackerError
from gradtracer.findings import Finding, FindingType, Report
from gradtracer.report.history import thin_history

__all__ = ["EmbeddingTracker"]

logger = logging.getLogger(__name__)


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
        seed: seed of the sketch projection and of the analysis samples.
        backend: how steps are folded into the row state: ``"auto"`` (default: ``"numba"``
            on CPU float32 tables when numba is importable, ``"numpy"`` on other CPU
            tables, ``"batched"`` on accelerators) or one of those three names.

    Raises:
        TypeError: ``layer`` is not an embedding layer.
        ValueError: a bad argument value, or a backend the table cannot run.
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
        backend: BackendName = "auto",
    ) -> None:
        if not isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
            raise TypeError(
                f"EmbeddingTracker needs an nn.Embedding or nn.EmbeddingBag, got {type(layer).__name__}"
            )
        if isinstance(track_interval, bool) or not isinstance(track_interval, int):
            raise ValueError(f"track_interval must be an int >= 1, got {track_interval!r}")
        if track_interval < 1:
            raise ValueError(f"track_interval must be an int >= 1, got {track_interval!r}")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}")
        if max_history < 2:
            raise ValueError(f"max_history must be >= 2, got {max_history!r}")
        weight = layer.weight
        existing = _hooks.live_tracker(weight)
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
        self.seed = int(seed)
        self._weight = weight
        n_rows, dim = weight.shape
        device = weight.device
        self._sketch = SignSketch(dim, sketch_bits, seed=seed, device=device)
        self._state = RowState.zeros(n_rows, self._sketch.n_bytes, device)
        self._acc = torch.zeros(N_ACC, dtype=torch.float64, device=device)
        self._backend = make_backend(
            backend,
            self._state,
            self._acc,
            weight,
            self._sketch,
            ema_decay=self.ema_decay,
            zombie=self.thresholds.zombie,
        )
        self._capture = _hooks.RowCapture(weight, getattr(layer, "padding_idx", None))
        self._watch = _hooks.OptimizerWatch(weight, optimizer)
        self._own_seconds = 0.0  # wall time inside the per-step hooks (tracker_seconds)
        self._initial_norms: NormStats | None = None  # row norms at the first backward
        self._cache: dict[str, Any] = {}  # merged state, verdicts, summary of one version
        self._intervention = make_intervention(auto_fix, self.name)
        self._rec = StepRecorder(
            name=self.name,
            weight=weight,
            state=self._state,
            acc=self._acc,
            backend=self._backend,
            history=History(int(max_history)),
            track_interval=track_interval,
            intervention=self._intervention,
            snapshot_of_merged_state=lambda: history_stats(self._verdicts()[1], n_rows),
        )
        self._handles = _hooks.install(
            layer,
            weight,
            self._capture,
            self._watch,
            self._on_grad,
            self._on_optimizer_step,
            sparse=bool(getattr(layer, "sparse", False)),
        )
        _hooks.attach_tracker(weight, self)
        self._attached = True

    # ------------------------------------------------------------------ hooks (hot path)
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
            previous = self._rec.begin(param)
            if self._initial_norms is None:  # once: the table training starts from
                self._initial_norms = norm_stats(param)
            rows, g_rows = self._capture.touched(grad, previous)
            before = param.detach().index_select(0, rows)
            self._rec.pending = _hooks.PendingStep(rows, g_rows, before, param._version)
        finally:
            self._own_seconds += time.perf_counter() - start

    def _on_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._attached or not self._watch.owns(optimizer):
            return
        start = time.perf_counter()
        try:
            self._rec.close(count_empty=True)
        finally:
            self._own_seconds += time.perf_counter() - start

    # ------------------------------------------------------------------ summaries
    def _verdicts(self) -> tuple[RowState, RowVerdicts]:
        """The merged row state and its verdicts, computed once per step."""
        self._rec.sync()
        key = (self._rec.version, self._rec.pending is None)
        if self._cache.get("key") != key:
            state = _dist.merge_row_state(self._state)
            self._cache = {
                "key": key,
                "state": state,
                "verdicts": row_verdicts(state, self.thresholds),
            }
        return self._cache["state"], self._cache["verdicts"]

    def _summary_and_samples(self) -> tuple[dict[str, Any], dict[str, list[int]]]:
        state, verdicts = self._verdicts()
        if "summary" not in self._cache:
            self._cache["summary"] = table_summary(
                state,
                verdicts,
                self._weight,
                thresholds=self.thresholds,
                analysis_rows=self.analysis_rows,
                seed=self.seed,
                damped_ever=self._rec.damped_ever,
                counters=self._counters(),
            )
        return self._cache["summary"]

    def _counters(self) -> dict[str, Any]:
        acc = _dist.all_reduce_sum(self._acc[[NONFINITE_ROWS, NONFINITE_STEPS, DAMPED]].clone())
        n_bad_rows, n_bad_steps, n_damped = (int(x) for x in acc.tolist())
        w = self._weight
        rec = self._rec
        state_bytes = self._state.nbytes() + (0 if rec.damped_ever is None else w.shape[0])
        table_bytes = w.numel() * w.element_size()
        init = self._initial_norms
        return {
            "layer": self.name,
            "step": rec.step,
            "track_interval": self.track_interval,
            "loss": rec.last_loss,
            "world_size": _dist.world_size(),
            "backend": self._backend.name,
            "requires_grad": bool(w.requires_grad),
            "in_optimizer": self._watch.stepped,
            "backward_passes": self._capture.backward_passes,
            "initial_mean_row_norm": None if init is None else init.mean,
            "initial_std_row_norm": None if init is None else init.std,
            "initial_max_row_norm": None if init is None else init.max,
            "non_finite_rows": n_bad_rows,
            "non_finite_steps": n_bad_steps,
            "state_bytes": state_bytes,
            "table_bytes": table_bytes,
            "state_memory_ratio": state_bytes / max(table_bytes, 1),
            "autofix": self._intervention is not None,
            "autofix_damped_updates": n_damped,
            "tracker_seconds": self._own_seconds,
            "tracker_ms_per_step": 1e3 * self._own_seconds / max(rec.step, 1),
        }

    # ------------------------------------------------------------------ public API
    @property
    def backend(self) -> str:
        """The backend folding steps into the row state: ``"numba"``, ``"numpy"`` or ``"batched"``."""
        return self._backend.name

    @property
    def history(self) -> list[Any]:
        """Snapshots taken every ``track_interval`` optimizer steps (oldest first).

        Keys: ``step``, ``loss`` (None unless passed to :meth:`step`), ``mean_velocity``,
        ``mean_grad_norm``, ``active_rows``, ``coverage``, ``oscillation_mean``,
        ``zombie_count`` (rows flagged as zombies when last touched), ``touched_rows``,
        ``non_finite_rows``.
        """
        self._rec.sync()
        return self._rec.history.entries

    @property
    def n_steps(self) -> int:
        """Optimizer steps observed so far (``summary()["step"]``; as ``FlowManager.n_steps``)."""
        self._rec.sync()
        return self._rec.step

    @property
    def num_steps(self) -> int:
        """Deprecated alias of :attr:`n_steps`."""
        warnings.warn(
            "EmbeddingTracker.num_steps is deprecated; use n_steps (or summary()['step'])",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.n_steps

    @property
    def row_state(self) -> RowState:
        """The live per-row state tensors (read them, do not modify them)."""
        self._rec.sync()
        return self._state

    def row_stats(self) -> dict[str, np.ndarray]:
        """Per-row columns, ``(num_embeddings,)`` NumPy arrays (a collective call when
        distributed): ``exposure`` (steps the row received gradient in, int64),
        ``last_seen`` (last such step, 0 = never, int64), ``velocity_ema`` (EMA of the
        applied displacement L2 norm, weight units per touched step), ``grad_norm_ema``
        and ``grad_norm_peak`` (EMA of the gradient L2 norm and its running maximum,
        gradient units), ``cos_ema`` (EMA of the cosine between consecutive gradients, in
        [-1, 1]), ``n_pairs`` (consecutive-exposure gradient pairs), ``disagree_rate``
        (share of those pairs pointing apart, 0 without pairs) and ``zombie`` (bool, the
        rows :meth:`zombie_rows` returns)."""
        state, verdicts = self._verdicts()
        return row_columns(state, verdicts)

    def step(self, loss: float | torch.Tensor | None = None) -> None:
        """Record the training loss of the current iteration (optional; a no-op otherwise).

        May be called before or after ``optimizer.step()``: the loss is attached to the
        optimizer step of this iteration either way. Before any backward it does nothing
        but remember the loss.
        """
        self._rec.begin(self._weight)  # closes a step applied by hand, if any
        if loss is not None:
            self._rec.set_loss(
                float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            )

    def autofix_scales(self) -> torch.Tensor:
        """Per-row update factor, ``(num_embeddings,)`` float32 (1 = undamped): the factor
        table the intervention returned at the latest step (all ones without one)."""
        n = self._state.n_rows
        out = torch.ones(n, dtype=torch.float32, device=self._weight.device)
        table = self._rec.table
        if table is not None:
            k = min(n, table.numel())
            out[:k] = torch.nan_to_num(table[:k].to(out), nan=1.0).clamp_(0.0, 1.0)
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-safe table statistics (a collective call under ``torch.distributed``).

        Keys include ``layer``, ``num_embeddings``, ``embedding_dim``, ``step``,
        ``active_coverage_pct``, ``popularity_gini``, ``zombie_count``, ``zombie_ratio``
        (share of exposed rows), ``dead_count`` (never exposed + frozen), ``dead_ratio``,
        ``frozen_count``, ``mean_velocity`` (weight units per touched step),
        ``effective_rank``; see ``docs/embedding_tracker.md`` for the rest.
        """
        return dict(self._summary_and_samples()[0])

    def zombie_rows(self) -> torch.Tensor:
        """Row ids judged zombies now (sorted ascending, int64, on the layer's device)."""
        return torch.nonzero(self._verdicts()[1].zombie).reshape(-1)

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
            if any(f.type == FindingType.AUTOFIX_APPLIED for f in own):
                found = [f for f in found if f.type != FindingType.AUTOFIX_APPLIED]
            found.extend(own)
        return found

    def to_report(self) -> Report:
        """``Report(kind="embedding", subject=name, stats=summary(), findings=findings())``.

        ``metadata`` holds ``step``, ``track_interval`` and ``history`` (the history
        snapshots thinned to at most 200, for :meth:`plot`).
        """
        stats, _ = self._summary_and_samples()
        return Report(
            kind="embedding",
            subject=self.name,
            stats=dict(stats),
            findings=self.findings(),
            metadata={
                "step": self._rec.step,
                "track_interval": self.track_interval,
                "history": thin_history(self.history),
            },
        )

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Draw the table's figure as ``<out_dir>/<name>_dynamics.png`` and ``.svg``
        (:func:`gradtracer.report.figures.plot_embedding_report`); returns the paths."""
        from gradtracer.report.figures import plot_embedding_report

        return plot_embedding_report(self.to_report(), out_dir)

    def report(self) -> str:
        """The report as text (:func:`gradtracer.report.text.report_text`; not printed)."""
        from gradtracer.report.text import report_text

        return report_text(self)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state: tensors (CPU) and plain values; save with ``torch.save``.

        Load it back with ``torch.load(path, weights_only=True)`` and :meth:`load_state_dict`.
        A step in flight (backward done, optimizer step not yet) is not included. An
        intervention with its own ``state_dict`` (``AutoFixController``) is saved with it.
        """
        self._rec.sync()
        return _checkpoint.save_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same table shape, sketch bits and seed).

        Everything is checked before anything changes
        (:func:`~gradtracer.embedding.checkpoint.validate_state`): a rejected checkpoint
        raises ``ValueError`` naming the key and the bad value and leaves this tracker as
        it was. The intervention's state is restored too when both the state and this
        tracker have one; a mismatch (Auto-Fix state without an intervention, or the
        reverse) warns.
        """
        _checkpoint.load_state(self, state)
        self._cache = {}

    def detach(self) -> None:
        """Remove every hook, release the layer for another tracker, close the intervention."""
        if not self._attached:
            return
        self._rec.sync()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        _hooks.detach_tracker(self._weight, self)
        self._attached = False
        self._rec.pending = None
        self._capture.clear()
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
            f"EmbeddingTracker(name={self.name!r}, rows={n}, dim={d}, step={self._rec.step}, "
            f"backend={self.backend!r}, track_interval={self.track_interval}, "
            f"attached={self._attached})"
        )
