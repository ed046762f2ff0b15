"""Read the numbers the run-level detectors need from a manager's trackers.

Only public tracker API is used: ``EmbeddingTracker.summary()``, ``.history``,
``.row_state``, ``.row_stats()``, ``.layer`` and ``.n_steps``; ``FlowTracker.snapshots()``,
``.history``, ``.model`` and ``.optimizer``; ``FlowManager.trackers``, ``.n_steps`` and
``.validation``. The result
is plain data (:class:`RunSignals`), so every detector is a pure function of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["LayerSignals", "RunSignals", "TableSignals", "ValidationSignals", "collect_signals"]


@dataclass(frozen=True)
class TableSignals:
    """One embedding table.

    Attributes:
        name: the tracker's name.
        n_rows, dim: table shape.
        steps: optimizer steps the tracker saw update this table.
        requires_grad: the weight's flag.
        in_optimizer: whether the run's known optimizer holds the weight (None: unknown).
        weight_decay: that optimizer's weight decay for the weight (None: unknown).
        learning_rate: that optimizer's learning rate for the weight (None: unknown).
        finite: every weight is finite.
        coord_rms: root mean square of the weights.
        mean_row_norm: mean L2 norm of the rows.
        rel_velocity: mean displacement per update of the exposed rows / mean row norm.
        mean_grad_norm: mean gradient-norm EMA of the exposed rows.
        oscillation: mean cosine of successive update directions (negative: reversing).
        exposure: per-row exposure counts.
        grad_pressure: per-row gradient-norm EMA.
        duplicate_share: share of sampled rows that have a near-identical other row.
        spectrum: singular values of a row sample, descending.
        summary: the tracker's summary (for detectors that need more).
        last_seen: per-row last optimizer step with a gradient (0 = never; empty: unknown).
        disagree_rate: per-row share of consecutive gradient pairs pointing apart
            (empty: unknown).
        n_pairs: per-row number of consecutive-exposure gradient pairs (empty: unknown).
        row_velocity: per-row EMA of the applied displacement norm (weight units per
            touched step; empty: unknown).
        row_norms: per-row L2 norm of the weights now (non-finite entries as 0).
        velocity_series: (step, mean velocity EMA of the exposed rows) from the tracker's
            history snapshots (empty: none).
        init_mean_row_norm: mean row norm when training started (None: unknown).
        grad_snr: temporal gradient signal-to-noise ratio of the table's weight as the
            FlowTracker measures it (``||E g||^2 / sum Var g`` over sampled coordinates;
            NaN: unknown).
    """

    name: str
    n_rows: int
    dim: int
    steps: int
    requires_grad: bool
    in_optimizer: bool | None
    weight_decay: float | None
    learning_rate: float | None
    finite: bool
    coord_rms: float
    mean_row_norm: float
    rel_velocity: float
    mean_grad_norm: float
    oscillation: float
    exposure: np.ndarray
    grad_pressure: np.ndarray
    duplicate_share: float
    spectrum: np.ndarray
    summary: Mapping[str, Any] = field(default_factory=dict)
    last_seen: np.ndarray = field(default_factory=lambda: np.zeros(0))
    disagree_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_pairs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    row_velocity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    row_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    velocity_series: tuple[tuple[int, float], ...] = ()
    init_mean_row_norm: float | None = None
    grad_snr: float = math.nan


@dataclass(frozen=True)
class ValidationSignals:
    """A validation metric the training loop reported (``FlowManager.record_validation``).

    Attributes:
        name: the metric's name.
        higher_is_better: True for quality metrics, False for losses.
        steps: manager step of each value.
        values: the values (non-finite kept).
    """

    name: str
    higher_is_better: bool
    steps: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class LayerSignals:
    """One dense (non-embedding) parameter tensor seen by a FlowTracker.

    Attributes:
        name: parameter name; ``module`` is the name without the last component.
        n_obs: tracked steps with a gradient.
        fan_in: input width of a 2-D weight (None for 1-D tensors).
        gain: ``rms(W) * sqrt(fan_in)`` of a 2-D weight (None otherwise).
        all_zero: every weight is exactly zero.
        update_ratio: mean update-to-weight ratio per tracked step.
        grad_norm, grad_norm_median, grad_norm_max: gradient L2 norms.
        snr: temporal gradient signal-to-noise ratio.
        spikes: gradient-norm spikes counted by the tracker.
        requires_grad, in_optimizer: as for tables.
        weight_decay, learning_rate: the optimizer's values for the tensor (None: unknown).
        weight_norm: the tensor's current L2 norm (NaN: unknown).
    """

    name: str
    module: str
    numel: int
    n_obs: int
    fan_in: int | None
    gain: float | None
    all_zero: bool
    update_ratio: float
    velocity: float
    grad_norm: float
    grad_norm_median: float
    grad_norm_max: float
    snr: float
    spikes: int
    requires_grad: bool
    in_optimizer: bool | None
    weight_decay: float | None
    learning_rate: float | None
    weight_norm: float = math.nan


@dataclass(frozen=True)
class RunSignals:
    """Everything the run-level detectors read.

    Attributes:
        step: the manager's step count.
        tables: embedding tables.
        layers: dense tensors (from the first FlowTracker).
        dead_fractions: activation module -> share of dead units (FlowTracker with
            ``track_activations=True``).
        losses: (step, loss) pairs in step order, non-finite values kept.
        grad_norms: (step, mean gradient norm over tracked tensors) from the FlowTracker;
            without one, the mean over the embedding tables of their rows' gradient-norm
            EMA.
        validation: validation metrics reported to the manager (empty: none).
        velocities: (step, mean displacement per step over the FlowTracker's tensors).
    """

    step: int
    tables: tuple[TableSignals, ...]
    layers: tuple[LayerSignals, ...]
    dead_fractions: Mapping[str, float]
    losses: tuple[tuple[int, float], ...]
    grad_norms: tuple[tuple[int, float], ...]
    validation: tuple[ValidationSignals, ...] = ()
    velocities: tuple[tuple[int, float], ...] = ()


def _optimizer_info(optimizer: Any) -> dict[int, tuple[float | None, float | None]]:
    """id(param) -> (learning rate, weight decay) for every parameter the optimizer holds."""
    out: dict[int, tuple[float | None, float | None]] = {}
    if optimizer is None:
        return out
    for group in optimizer.param_groups:
        lr = group.get("lr")
        wd = group.get("weight_decay")
        for p in group["params"]:
            out[id(p)] = (None if lr is None else float(lr), None if wd is None else float(wd))
    return out


def _duplicate_share(rows: torch.Tensor, cos_min: float = 0.999) -> float:
    """Share of ``rows`` with another row at cosine >= ``cos_min`` and norm within 1%."""
    if rows.shape[0] < 2:
        return 0.0
    norms = rows.norm(dim=1)
    ok = norms > 0
    if int(ok.sum()) < 2:
        return 1.0 if rows.shape[0] >= 2 and bool((norms == 0).all()) else 0.0
    r = rows[ok] / norms[ok, None]
    cos = r @ r.T
    cos.fill_diagonal_(-2.0)
    n = norms[ok]
    close = (cos >= cos_min) & ((n[:, None] - n[None, :]).abs() <= 0.01 * n[:, None])
    return float(close.any(dim=1).float().mean()) * float(ok.float().mean())


def _table(tracker: Any, opt_info: Mapping[int, tuple[float | None, float | None]],
           optimizer_known: bool, sample: int) -> TableSignals:  # fmt: skip
    weight = tracker.layer.weight
    w = weight.detach().float()
    n_rows, dim = w.shape
    summary = tracker.summary()
    state = tracker.row_state
    exposure = state.col("exposure").detach().cpu().double().numpy()
    pressure = state.col("grad_norm_ema").detach().cpu().double().numpy()
    finite = bool(torch.isfinite(w).all())
    wf = torch.where(torch.isfinite(w), w, torch.zeros_like(w))
    norms = wf.norm(dim=1)
    mean_norm = float(norms.mean()) if n_rows else 0.0
    mean_vel = float(summary.get("mean_velocity") or 0.0)
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(n_rows, generator=gen)[: min(n_rows, sample)]
    rows = wf[pick]
    spectrum = (
        torch.linalg.svdvals(rows).cpu().double().numpy() if rows.shape[0] >= 2 else np.zeros(0)
    )
    lr, wd = opt_info.get(id(weight), (None, None))
    cols = _row_columns(tracker)
    init_norm = summary.get("initial_mean_row_norm")
    return TableSignals(
        name=str(tracker.name),
        n_rows=int(n_rows),
        dim=int(dim),
        steps=int(tracker.n_steps),
        requires_grad=bool(weight.requires_grad),
        in_optimizer=(id(weight) in opt_info) if optimizer_known else None,
        weight_decay=wd,
        learning_rate=lr,
        finite=finite,
        coord_rms=float(wf.pow(2).mean().sqrt()) if wf.numel() else 0.0,
        mean_row_norm=mean_norm,
        rel_velocity=mean_vel / mean_norm if mean_norm > 0 else (math.inf if mean_vel else 0.0),
        mean_grad_norm=float(summary.get("mean_grad_norm") or 0.0),
        oscillation=float(summary.get("oscillation_mean") or 0.0),
        exposure=exposure,
        grad_pressure=pressure,
        duplicate_share=_duplicate_share(rows),
        spectrum=spectrum,
        summary=summary,
        last_seen=cols.get("last_seen", np.zeros(0)),
        disagree_rate=cols.get("disagree_rate", np.zeros(0)),
        n_pairs=cols.get("n_pairs", np.zeros(0)),
        row_velocity=cols.get("velocity_ema", np.zeros(0)),
        row_norms=norms.cpu().double().numpy(),
        velocity_series=_series(list(getattr(tracker, "history", []) or []), "mean_velocity"),
        init_mean_row_norm=None if init_norm is None else float(init_norm),
    )


def _row_columns(tracker: Any) -> dict[str, np.ndarray]:
    """``last_seen``, ``disagree_rate``, ``n_pairs`` and ``velocity_ema`` from
    ``tracker.row_stats()`` (empty when the tracker has no such method)."""
    row_stats = getattr(tracker, "row_stats", None)
    if not callable(row_stats):
        return {}
    cols = row_stats()
    out = {}
    for key in ("last_seen", "disagree_rate", "n_pairs", "velocity_ema"):
        if key in cols:
            out[key] = np.asarray(cols[key], dtype=np.float64)
    return out


def _validation(manager: Any) -> tuple[ValidationSignals, ...]:
    series = getattr(manager, "validation", None)
    if not isinstance(series, Mapping):
        return ()
    return tuple(
        ValidationSignals(
            str(v.name),
            bool(v.higher_is_better),
            tuple(int(x) for x in v.steps),
            tuple(float(x) for x in v.values),
        )  # fmt: skip
        for v in series.values()
    )


def _layers(flow: Any, opt_info: Mapping[int, tuple[float | None, float | None]],
            optimizer_known: bool, table_params: set[int]) -> list[LayerSignals]:  # fmt: skip
    params = dict(flow.model.named_parameters())
    out = []
    for snap in flow.snapshots():
        p = params.get(snap.name)
        if p is None or snap.numel == 0 or id(p) in table_params:
            continue
        w = p.detach().float()
        fan_in = int(w.shape[1]) if w.dim() == 2 else None
        rms = float(w.pow(2).mean().sqrt()) if w.numel() else 0.0
        lr, wd = opt_info.get(id(p), (None, None))
        out.append(
            LayerSignals(
                name=snap.name,
                module=snap.name.rsplit(".", 1)[0] if "." in snap.name else snap.name,
                numel=int(snap.numel),
                n_obs=int(snap.n_obs),
                fan_in=fan_in,
                gain=rms * math.sqrt(fan_in) if fan_in else None,
                all_zero=bool((w == 0).all()),
                update_ratio=float(snap.update_ratio),
                velocity=float(snap.velocity),
                grad_norm=float(snap.grad_norm),
                grad_norm_median=float(snap.grad_norm_median),
                grad_norm_max=float(snap.grad_norm_max),
                snr=float(snap.snr),
                spikes=int(snap.spikes),
                requires_grad=bool(p.requires_grad),
                in_optimizer=(id(p) in opt_info) if optimizer_known else None,
                weight_decay=wd,
                learning_rate=lr,
                weight_norm=float(snap.weight_norm),
            )
        )
    return out


def _table_snr(flow: Any, index: Mapping[int, int]) -> dict[int, float]:
    """Table index -> the FlowTracker's temporal gradient SNR of that table's weight."""
    params = dict(flow.model.named_parameters())
    out = {}
    for snap in flow.snapshots():
        p = params.get(snap.name)
        if p is not None and id(p) in index:
            out[index[id(p)]] = float(snap.snr)
    return out


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[tuple[int, float], ...]:
    out = []
    for entry in history:
        v = entry.get(key)
        if v is None:
            continue
        try:
            out.append((int(entry["step"]), float(v)))
        except (TypeError, ValueError, KeyError):
            continue
    return tuple(out)


def _mean_series(
    series: Sequence[Sequence[tuple[int, float]]],
) -> tuple[tuple[int, float], ...]:
    """Per step, the mean of the finite values the series hold for that step."""
    by_step: dict[int, list[float]] = {}
    for one in series:
        for step, v in one:
            if math.isfinite(v):
                by_step.setdefault(step, []).append(v)
    return tuple((step, float(np.mean(vs))) for step, vs in sorted(by_step.items()))


def collect_signals(manager: Any, *, sample_rows: int = 512) -> RunSignals:
    """Collect :class:`RunSignals` from a :class:`~gradtracer.manager.FlowManager`.

    Trackers are recognised by duck typing: an embedding tracker has ``layer`` and
    ``row_state``; a flow tracker has ``snapshots()`` and ``model``. The optimizer of the
    first flow tracker that has one tells which parameters are optimized (left unknown
    otherwise).
    """
    trackers = list(manager.trackers.values())
    emb = [t for t in trackers if hasattr(t, "row_state") and hasattr(t, "layer")]
    flows = [t for t in trackers if callable(getattr(t, "snapshots", None)) and hasattr(t, "model")]
    optimizer = next((f.optimizer for f in flows if getattr(f, "optimizer", None)), None)
    opt_info = _optimizer_info(optimizer)
    known = optimizer is not None
    tables = tuple(_table(t, opt_info, known, sample_rows) for t in emb)
    table_params = {id(t.layer.weight) for t in emb}
    if flows:
        snr = _table_snr(flows[0], {id(t.layer.weight): i for i, t in enumerate(emb)})
        tables = tuple(dataclasses.replace(t, grad_snr=snr[i]) if i in snr else t
                       for i, t in enumerate(tables))  # fmt: skip
    layers: list[LayerSignals] = []
    dead: dict[str, float] = {}
    losses: tuple[tuple[int, float], ...] = ()
    grads: tuple[tuple[int, float], ...] = ()
    vels: tuple[tuple[int, float], ...] = ()
    if flows:
        flow = flows[0]
        layers = _layers(flow, opt_info, known, table_params)
        for snap in flow.snapshots():
            if snap.dead_fraction is not None and snap.numel == 0:
                dead[snap.name] = float(snap.dead_fraction)
        history = list(flow.history)
        losses = _series(history, "loss")
        grads = _series(history, "mean_grad_norm")
        vels = _series(history, "mean_velocity")
    if not losses:
        for t in emb:
            losses = _series(list(t.history), "loss")
            if losses:
                break
    if not grads and emb:  # no FlowTracker: the tables' own gradient-norm EMAs
        grads = _mean_series([_series(list(t.history), "mean_grad_norm") for t in emb])
    return RunSignals(
        step=int(manager.n_steps if hasattr(manager, "n_steps") else manager.global_step),
        tables=tables,
        layers=tuple(layers),
        dead_fractions=dead,
        losses=losses,
        grad_norms=grads,
        velocities=vels,
        validation=_validation(manager),
    )
