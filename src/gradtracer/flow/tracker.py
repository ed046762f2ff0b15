"""FlowTracker: per-layer training dynamics of any ``nn.Module``.

Per parameter tensor ("layer") it follows weight velocity, update-to-weight ratio,
gradient norm, temporal gradient signal-to-noise ratio, non-finite gradients and,
optionally, dead activations of ReLU-family modules; the loss trend comes from
``step(loss=...)``. Verdicts are the pure functions of :mod:`gradtracer.flow.layer_stats`.

Cost model: on a tracked step the tracker reads every gradient once (exact L2 norms with
one fused ``torch._foreach_norm``) and gathers a fixed random subset of coordinates of
each tensor (``sample_size``, default 4096) for displacement and SNR, so its work is a
small fraction of a forward/backward pass. Displacement and weight norms are estimated
from that subset (unbiased for the squared norm; relative standard error about
``sqrt(2 / sample_size)`` for weights with evenly spread updates, exact for tensors of at
most ``sample_size`` elements).

Length: the module runs past 400 lines because it is the one :class:`FlowTracker` class,
whose hooks, sampled-coordinate state and summaries share that state; the pure per-layer
verdicts already live in :mod:`gradtracer.flow.layer_stats`.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> tracker = FlowTracker(model)
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     loss = model(torch.randn(16, 4)).pow(2).mean()
    ...     loss.backward()
    ...     opt.step()
    ...     tracker.step(loss=loss.item())
    >>> tracker.summary()["tracked_steps"]
    3
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradtracer.findings import Finding, Report
from gradtracer.flow.layer_state import LayerState, dense
from gradtracer.flow.layer_stats import (
    FlowThresholds,
    LayerSnapshot,
    detect_layer_findings,
    detect_loss_findings,
    layer_health,
    linear_trend,
)
from gradtracer.report.history import HistoryEntry, thin_history
from gradtracer.report.text import ReportText, report_text

__all__ = ["FlowTracker"]

_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardtanh)


class FlowTracker:
    """Track per-layer dynamics of ``model``; call :meth:`step` once per training step.

    Args:
        model: any ``nn.Module``; every parameter with ``requires_grad`` is tracked.
        name: subject name used in reports (default ``"model"``).
        track_interval: measure every this many ``step`` calls (default 1). Displacement
            is always measured over exactly one step (the weights are sampled on the step
            before a tracked one).
        optimizer: optional; its learning rates are recorded and used in findings.
        scheduler: optional LR scheduler; its last learning rate is recorded.
        sample_size: coordinates sampled per tensor for displacement and SNR (default 4096).
        window: number of recent tracked steps the verdicts look at (default 50).
        track_activations: also hook ReLU-family modules to measure dead units (default False).
        thresholds: :class:`FlowThresholds` overrides.
        history_dir: where :meth:`save_run` writes run summaries and :meth:`compare_runs`
            reads earlier ones (default ``.gradtracer/runs``).
        run_id: identifier of this run (default: a random hex id).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str = "model",
        track_interval: int = 1,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        sample_size: int = 4096,
        window: int = 50,
        track_activations: bool = False,
        thresholds: FlowThresholds | None = None,
        history_dir: str | Path | None = None,
        run_id: str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"FlowTracker needs an nn.Module, got {type(model).__name__}")
        if int(track_interval) < 1:
            raise ValueError(f"track_interval must be >= 1, got {track_interval!r}")
        if int(sample_size) < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size!r}")
        self.model = model
        self.name = name
        self.track_interval = int(track_interval)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.thresholds = thresholds or FlowThresholds()
        self.history_dir = (
            Path(history_dir) if history_dir is not None else Path(".gradtracer/runs")
        )
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._layers = [
            LayerState(n, p, int(sample_size), int(window))
            for n, p in model.named_parameters()
            if p.requires_grad
        ]
        if not self._layers:
            raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True")
        self._step = 0
        self._tracked = 0
        self._losses: list[float] = []
        self._lrs: list[float] = []
        self.history: list[HistoryEntry] = []
        self._dead: dict[str, deque[float]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        if track_activations:
            for mod_name, mod in model.named_modules():
                if isinstance(mod, _ACTIVATIONS):
                    self._dead[mod_name] = deque(maxlen=int(window))
                    self._handles.append(mod.register_forward_hook(self._activation_hook(mod_name)))

    # --- hot path --------------------------------------------------------------------
    def _tracking_next(self) -> bool:
        return (self._step + 1) % self.track_interval == 0

    def _activation_hook(self, mod_name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if not (torch.is_grad_enabled() and self._tracking_next()):
                return
            if not isinstance(out, torch.Tensor) or out.dim() < 2:
                return
            with torch.no_grad():
                alive = (out > 0).transpose(0, 1).reshape(out.shape[1], -1).any(dim=1)
                self._dead[mod_name].append(1.0 - alive.float().mean().item())

        return hook

    @torch.no_grad()
    def step(self, loss: float | torch.Tensor | None = None) -> None:
        """Record one training step. Call after ``loss.backward()``, before ``zero_grad``.

        Calling it before or after ``optimizer.step()`` both work as long as the order is
        the same every step. ``loss`` may be a float or a scalar tensor.
        """
        self._step += 1
        tracked = self._step % self.track_interval == 0
        if tracked:
            self._measure(loss)  # also keeps the current sample as the next step's "before"
        elif self._tracking_next():  # sample weights one step before the next measurement
            for st in self._layers:
                st.prev = st.sample(st.param)

    def _measure(self, loss: float | torch.Tensor | None) -> None:
        self._tracked += 1
        loss_val = None
        if loss is not None:
            loss_val = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            self._losses.append(loss_val)
        lr = self._current_lr()
        if lr is not None:
            self._lrs.append(lr)
        grads = [(st, st.param.grad) for st in self._layers]
        with_grad = [st for st, g in grads if g is not None]
        if with_grad:
            norms = torch._foreach_norm([dense(g) for _, g in grads if g is not None])
            norms_list = torch.stack(norms).float().cpu().tolist()
        else:
            norms_list = []
        cur = [st.sample(st.param) for st in self._layers]
        w_norms = torch.stack([c.norm() for c in cur]).cpu().tolist()
        disp = [
            (c - st.prev).norm() if st.prev is not None else c.new_tensor(math.nan)
            for st, c in zip(self._layers, cur)
        ]
        disp_list = torch.stack(disp).cpu().tolist()
        for st, c, wn, dn in zip(self._layers, cur, w_norms, disp_list):
            st.weight_norm = wn * st.scale
            if st.prev is not None and math.isfinite(dn):
                v = dn * st.scale
                st.velocities.append(v)
                st.ratios.append(v / st.weight_norm if st.weight_norm > 0 else math.inf)
            st.prev = c
        for st, gn in zip(with_grad, norms_list):
            st.n_obs += 1
            if not math.isfinite(gn):
                st.non_finite += 1
                continue
            th = self.thresholds
            if len(st.grad_norms) >= th.min_observations:
                med = statistics.median(st.grad_norms)
                if med > 0 and gn > th.exploding_factor * med:
                    st.spikes += 1
            st.grad_norms.append(gn)
            st.grad_norm_max = max(st.grad_norm_max, gn)
            grad = st.param.grad
            assert grad is not None  # with_grad holds only layers with a gradient
            g = st.sample(dense(grad))
            if st.g_mean is None or st.g_sq is None:
                st.g_mean, st.g_sq = g.clone(), g * g
            else:
                st.g_mean.mul_(0.9).add_(g, alpha=0.1)
                st.g_sq.mul_(0.9).addcmul_(g, g, value=0.1)
        vel = [st.velocities[-1] for st in self._layers if st.velocities]
        gns = [st.grad_norms[-1] for st in self._layers if st.grad_norms]
        self.history.append(
            {
                "step": self._step,
                "loss": loss_val,
                "lr": lr,
                "mean_velocity": float(np.mean(vel)) if vel else None,
                "mean_grad_norm": float(np.mean(gns)) if gns else None,
                "active_rows": None,
            }
        )

    def _current_lr(self) -> float | None:
        if self.scheduler is not None and hasattr(self.scheduler, "get_last_lr"):
            return float(self.scheduler.get_last_lr()[0])
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return None

    # --- analysis (lazy) ---------------------------------------------------------------
    def snapshots(self) -> list[LayerSnapshot]:
        """One :class:`LayerSnapshot` per tracked tensor, plus one per hooked activation."""
        out = []
        for st in self._layers:
            snr = math.nan
            if (
                st.g_mean is not None
                and st.g_sq is not None
                and st.n_obs >= self.thresholds.min_observations
            ):
                var = (st.g_sq - st.g_mean * st.g_mean).clamp_min(0).sum().item()
                signal = float((st.g_mean * st.g_mean).sum().item())
                snr = signal / var if var > 0 else math.inf
            gn = list(st.grad_norms)
            out.append(
                LayerSnapshot(
                    name=st.name,
                    numel=st.numel,
                    n_obs=st.n_obs,
                    grad_norm=gn[-1] if gn else (math.inf if st.non_finite else 0.0),
                    grad_norm_median=float(np.median(gn)) if gn else 0.0,
                    grad_norm_max=st.grad_norm_max,
                    weight_norm=st.weight_norm,
                    velocity=float(np.mean(st.velocities)) if st.velocities else math.nan,
                    update_ratio=float(np.mean(st.ratios)) if st.ratios else math.nan,
                    snr=snr,
                    non_finite_steps=st.non_finite,
                    spikes=st.spikes,
                )
            )
        for mod_name, dead in self._dead.items():
            if dead:
                out.append(
                    LayerSnapshot(
                        name=mod_name, numel=0, n_obs=0, grad_norm=0.0, grad_norm_median=0.0,
                        grad_norm_max=0.0, weight_norm=math.nan, velocity=math.nan,
                        update_ratio=math.nan, snr=math.nan, non_finite_steps=0,
                        dead_fraction=float(np.mean(dead)),
                    )
                )  # fmt: skip
        return out

    def findings(self) -> list[Finding]:
        """Layer and loss findings, plus run-history differences when earlier runs exist."""
        out: list[Finding] = []
        for snap in self.snapshots():
            out.extend(detect_layer_findings(snap, self.name, self.thresholds))
        out.extend(detect_loss_findings(self._losses[-200:], self.name, self.thresholds))
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary: overall health, loss trend, learning rate and per-layer stats."""
        snaps = self.snapshots()
        layers = {}
        scores = []
        for s in snaps:
            h = layer_health(s, self.thresholds)
            scores.append(h)
            layers[s.name] = {**s.to_dict(), "health": h}
        slope, p = linear_trend(self._losses[-200:])
        overall = min(float(np.mean(scores)), min(scores) + 25.0) if scores else 100.0
        return {
            "model": self.name,
            "run_id": self.run_id,
            "step": self._step,
            "tracked_steps": self._tracked,
            "track_interval": self.track_interval,
            "health": round(overall, 2),
            "n_layers": len(self._layers),
            "n_parameters": sum(st.numel for st in self._layers),
            "loss_last": self._losses[-1] if self._losses else None,
            "loss_slope": slope,
            "loss_slope_p": p,
            "lr": self._lrs[-1] if self._lrs else None,
            "layers": layers,
        }

    def to_report(self) -> Report:
        """A :class:`~gradtracer.findings.Report` of kind ``"flow"``; ``metadata`` holds
        ``step``, ``run_id`` and ``history`` (thinned to at most 200 snapshots)."""
        return Report(
            kind="flow",
            subject=self.name,
            stats=self.summary(),
            findings=self.findings(),
            metadata={
                "step": self._step,
                "run_id": self.run_id,
                "history": thin_history(self.history),
            },
        )

    def plot(self, out_dir: str | Path) -> list[Path]:
        """Draw ``<out_dir>/<name>_flow.png`` and ``.svg`` (loss, velocity and gradient
        norm over steps, per-layer health); returns the paths."""
        from gradtracer.report.figures import plot_flow_report

        return plot_flow_report(self.to_report(), out_dir)

    def report(self) -> ReportText:
        """Return the readable report (:func:`gradtracer.report.text.render_text` of
        :meth:`to_report`); it does not print."""
        return report_text(self)

    # --- run history -----------------------------------------------------------------
    def save_run(self, directory: str | Path | None = None) -> Path:
        """Write this run's summary as JSON under ``directory`` (default ``history_dir``)."""
        from gradtracer.flow.history import RunHistory

        return RunHistory(directory or self.history_dir).save(self.summary())

    def compare_runs(self, directory: str | Path | None = None) -> list[Finding]:
        """Findings for layers that behave differently from earlier runs of this model."""
        from gradtracer.flow.history import RunHistory, compare_with_history

        hist = RunHistory(directory or self.history_dir)
        earlier = [r for r in hist.load(model=self.name) if r.get("run_id") != self.run_id]
        return compare_with_history(self.summary(), earlier, subject=self.name)

    # --- persistence / lifecycle -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters, losses and per-layer running statistics (tensors kept as tensors)."""
        return {
            "step": self._step,
            "tracked": self._tracked,
            "losses": list(self._losses),
            "lrs": list(self._lrs),
            "history": list(self.history),
            "run_id": self.run_id,
            "layers": {
                st.name: {
                    "prev": st.prev,
                    "g_mean": st.g_mean,
                    "g_sq": st.g_sq,
                    "n_obs": st.n_obs,
                    "non_finite": st.non_finite,
                    "grad_norms": list(st.grad_norms),
                    "velocities": list(st.velocities),
                    "ratios": list(st.ratios),
                    "grad_norm_max": st.grad_norm_max,
                    "spikes": st.spikes,
                    "weight_norm": st.weight_norm,
                }
                for st in self._layers
            },
            "dead": {k: list(v) for k, v in self._dead.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same model layout required)."""
        names = {st.name for st in self._layers}
        if set(state["layers"]) != names:
            missing = sorted(names ^ set(state["layers"]))
            raise ValueError(f"state_dict layers differ from the model's: {missing[:5]}")
        self._step, self._tracked = int(state["step"]), int(state["tracked"])
        self._losses, self._lrs = list(state["losses"]), list(state["lrs"])
        self.history = list(state["history"])
        self.run_id = state.get("run_id", self.run_id)
        for st in self._layers:
            s = state["layers"][st.name]
            st.prev, st.g_mean, st.g_sq = s["prev"], s["g_mean"], s["g_sq"]
            st.n_obs, st.non_finite = int(s["n_obs"]), int(s["non_finite"])
            st.grad_norms.extend(s["grad_norms"])
            st.velocities.extend(s["velocities"])
            st.ratios.extend(s["ratios"])
            st.grad_norm_max, st.weight_norm = float(s["grad_norm_max"]), float(s["weight_norm"])
            st.spikes = int(s.get("spikes", 0))
        for k, v in state.get("dead", {}).items():
            if k in self._dead:
                self._dead[k].extend(v)

    def detach(self) -> None:
        """Remove every hook this tracker registered."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> FlowTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"FlowTracker({self.name!r}, layers={len(self._layers)}, step={self._step})"
