"""One suite run: a plain PyTorch training loop with an optional injected fault and remedy.

:func:`train_run` builds the family's data and model, trains it tracked through the public
API (an :class:`~gradtracer.embedding.tracker.EmbeddingTracker` per embedding table and a
:class:`~gradtracer.flow.tracker.FlowTracker` on the whole model, both in a
:class:`~gradtracer.manager.FlowManager`), runs :func:`gradtracer.diagnosis.diagnose`
at checkpoints and evaluates the model (NDCG@10 by full ranking for the recommender
families, accuracy for the MLP).

A healthy run and its faulty twin share data, seed, initial weights, batch order and the
negative draws: all sampling comes from generators seeded by ``random_state`` before
the fault is applied, and the fault only transforms what was drawn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from gradtracer.fault_suite.faults import FAMILIES, fault_spec
from gradtracer.fault_suite.inject import (
    _INIT_FAULTS,
    _apply_onset,
    _Ctx,
    _delayed_lr_fixes,
    _freeze,
    _init_fault,
    _lr_schedule,
    _make_optimizer,
    _scale_groups,
)
from gradtracer.fault_suite.trainer import _Trainer
from gradtracer.findings import Remedy

__all__ = ["VARIANTS", "RunResult", "RunSpec", "train_run"]

#: healthy variants per family: odd-looking but fine training set-ups
VARIANTS: dict[str, tuple[str, ...]] = {
    "mf_bce": ("default", "zipf", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "long",
               "sparse"),
    "mf_bpr": ("default", "zipf", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "long",
               "sparse"),
    "two_tower": ("default", "zipf", "tuned_high_lr", "warmup", "lr_decay", "small_batch",
                  "dropout", "long", "sampled"),
    "gru": ("default", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "long"),
    "mlp": ("default", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "dropout", "long",
            "small_noisy"),
}  # fmt: skip


@dataclass(frozen=True)
class RunSpec:
    """What to train.

    Attributes:
        family: one of :data:`~gradtracer.fault_suite.faults.FAMILIES`.
        random_state: seed of data, initial weights, batch order and negatives.
        variant: healthy variant (see :data:`VARIANTS`; a fault may require one).
        fault: injected fault name, or None for a healthy run.
        intensity: index (0 or 1) into the fault's two intensities.
        onset: fraction of training at which the fault starts (0.0 or 0.3 in the suite).
        remedy: a remedy applied on top of the fault (or None).
        more_remedies: the same remedy for further subjects (the cause named on several
            tables or layers); applied with ``remedy``.
        data_path: a real data file (None: synthetic): MovieLens ratings or Amazon reviews
            for the MF and two-tower families, a DIGINETICA click log for the GRU.
        track: track with the public API and diagnose at checkpoints (default True).
        auto_fix: turn on Auto-Fix on every embedding table.
        legacy: also attach ``gradtracer==0.9.0``'s trackers (:mod:`.legacy`).
    """

    family: str
    random_state: int = 0
    variant: str = "default"
    fault: str | None = None
    intensity: int = 0
    onset: float = 0.0
    remedy: Remedy | None = None
    more_remedies: tuple[Remedy, ...] = ()
    data_path: str | None = None
    track: bool = True
    auto_fix: bool = False
    legacy: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.variant not in VARIANTS[self.family]:
            raise ValueError(
                f"family {self.family!r} has no variant {self.variant!r}; "
                f"known: {', '.join(VARIANTS[self.family])}"
            )
        if self.fault is not None:
            spec = fault_spec(self.fault)
            if self.family not in spec.families:
                raise ValueError(
                    f"fault {self.fault!r} cannot be applied to family {self.family!r} "
                    f"(applies to {', '.join(spec.families)})"
                )
        if self.intensity not in (0, 1):
            raise ValueError(f"intensity must be 0 or 1, got {self.intensity!r}")
        if not 0.0 <= self.onset < 1.0:
            raise ValueError(f"onset must be in [0, 1), got {self.onset!r}")
        if self.data_path is not None:
            from gradtracer.fault_suite.data import real_data_kind

            sessions = real_data_kind(self.data_path) == "sessions"
            if self.family == "mlp" or sessions != (self.family == "gru"):
                need = "a session log" if self.family == "gru" else "user-item data"
                raise ValueError(
                    f"family {self.family!r} needs {need}; {self.data_path} holds "
                    f"{'sessions' if sessions else 'user-item data'}"
                    if self.family != "mlp"
                    else "data_path does not apply to family 'mlp'"
                )

    def key(self) -> str:
        """Short unique label of the run."""
        parts = [self.family, self.variant, f"s{self.random_state}"]
        if self.data_path:
            from gradtracer.fault_suite.data import real_data_kind

            parts.append(real_data_kind(self.data_path))
        if self.fault:
            parts += [self.fault, f"i{self.intensity}", f"o{self.onset:g}"]
        if self.remedy:
            parts.append(f"fix:{self.remedy.kind}")
        if self.auto_fix:
            parts.append("autofix")
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["remedy"] = None if self.remedy is None else self.remedy.to_dict()
        out["more_remedies"] = [r.to_dict() for r in self.more_remedies]
        return out


def warning_findings(findings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The WARNING and CRITICAL findings of a run record (finding dicts)."""
    return [f for f in findings if f["severity"] in ("warning", "critical")]


def cause_findings(findings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`warning_findings` that are not marked as another finding's consequence, in
    rank order: what the suite scores as the named causes."""
    return [f for f in warning_findings(findings) if not f.get("consequence_of")]


@dataclass
class Checkpoint:
    """The diagnosis after ``step`` steps: ranked findings (dicts) and the health score."""

    step: int
    findings: list[dict[str, Any]]
    health: float


@dataclass
class RunResult:
    """What one run produced."""

    spec: RunSpec
    quality: float
    quality_name: str
    n_steps: int
    onset_step: int
    losses: list[float]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    layer_stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: what the same-suite baselines observed (AUTOTRAINER trace, 0.9.0 alarms)
    baselines: dict[str, Any] = field(default_factory=dict)
    #: extra diagnoses after the onset, for latency at step resolution (see train_run)
    probes: list[Checkpoint] = field(default_factory=list)
    #: seconds spent in the probes' diagnoses
    probe_seconds: float = 0.0
    #: first step (0-based) whose loss was not finite, or None
    first_non_finite: int | None = None

    @property
    def final(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "key": self.spec.key(),
            "quality": self.quality,
            "quality_name": self.quality_name,
            "n_steps": self.n_steps,
            "onset_step": self.onset_step,
            "losses": [x if math.isfinite(x) else None for x in self.losses],
            "checkpoints": [asdict(c) for c in self.checkpoints],
            "probes": [asdict(c) for c in self.probes],
            "probe_seconds": self.probe_seconds,
            "first_non_finite": self.first_non_finite,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------------------- main
def _tracking(trainer: _Trainer, opt: torch.optim.Optimizer, spec: RunSpec, n_steps: int) -> Any:
    from gradtracer.embedding.tracker import EmbeddingTracker
    from gradtracer.flow.tracker import FlowTracker
    from gradtracer.manager import FlowManager

    manager = FlowManager(spec.family)
    interval = max(1, n_steps // 40)
    for name, mod in trainer.model.named_modules():
        if isinstance(mod, nn.Embedding):
            manager.add_tracker(name, EmbeddingTracker(
                mod, name=name, track_interval=interval, auto_fix=spec.auto_fix))  # fmt: skip
    manager.add_tracker("model", FlowTracker(
        trainer.model, name=spec.family, optimizer=opt, track_activations=True, sample_size=2048,
        history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    return manager


def train_run(
    spec: RunSpec,
    *,
    n_checkpoints: int = 10,
    latency_probes: bool = True,
    probe_every: float = 0.02,
    probe_window: float = 0.2,
) -> RunResult:
    """Train one run and diagnose it at ``n_checkpoints`` evenly spaced steps (and the end).

    A tracked faulty run is also diagnosed every ``probe_every`` of the run (default 2%)
    from its onset, for ``probe_window`` of the run (default 20%) or until one of the fault's
    right causes is among the top three causes, and right after every step whose loss is not
    finite until it is named; this measures the latency at step resolution. The probes only
    read the trackers: the checkpoints are the same with ``latency_probes=False``.

    Returns:
        :class:`RunResult` with the quality (NDCG@10 or accuracy), the loss per step, the
        ranked findings and health score at each checkpoint and at each probe.
    """
    from gradtracer.diagnosis import diagnose

    start = time.perf_counter()
    ctx = _Ctx(spec)
    trainer = _Trainer(spec, ctx)
    model = trainer.model
    if ctx.active and spec.fault in _INIT_FAULTS:
        _init_fault(ctx, model)
    opt, _ = _make_optimizer(ctx, model)
    n_steps = len(trainer.batches)
    onset_step = int(round(spec.onset * n_steps)) if spec.fault else 0
    if spec.fault == "overfitting":  # it starts where the usual epochs end
        onset_step = trainer.n_usual
    stop = ctx.fix("early_stop")
    stop_at = int(stop.params.get("at_step") or n_steps) if stop is not None else n_steps
    val_every = max(1, trainer.n_usual // 20)
    # trackers attach first: a tracker cannot hook a table that is already frozen
    manager = _tracking(trainer, opt, spec, n_steps) if spec.track else None
    probe, legacy = _baseline_observers(trainer, opt, spec, n_steps, ctx)
    if ctx.active:
        _freeze(ctx, model)
    marks = sorted({max(1, int(round(n_steps * (j + 1) / n_checkpoints))) for j in
                    range(n_checkpoints)})  # fmt: skip
    base_lrs = [pg["lr"] for pg in opt.param_groups]
    delayed = _delayed_lr_fixes(ctx)
    losses: list[float] = []
    checkpoints: list[Checkpoint] = []
    probes = _Probes(spec, n_steps, onset_step, probe_every, probe_window) if (
        latency_probes and manager is not None and spec.fault) else None  # fmt: skip
    first_non_finite: int | None = None
    accumulate = spec.fault == "missing_zero_grad"
    with torch.random.fork_rng():
        torch.manual_seed(spec.random_state + 1)
        for step, idx in enumerate(trainer.batches):
            if step >= stop_at:
                break
            if spec.fault and step == onset_step and not ctx.active:
                _apply_onset(ctx, model, opt)
                base_lrs = [pg["lr"] for pg in opt.param_groups]
            for fix in delayed.pop(step, []):
                base_lrs = _scale_groups(fix, opt, base_lrs)
            factor = _lr_schedule(ctx, step, n_steps)
            for pg, lr in zip(opt.param_groups, base_lrs):
                pg["lr"] = lr * factor
            every = int(ctx.level) if accumulate else 1
            skip_zero = accumulate and ctx.active and not ctx.fix("call_zero_grad") and (
                every == 0 or step % every != 0)  # fmt: skip
            if not skip_zero:
                opt.zero_grad(set_to_none=True)
            loss = trainer.loss(step, idx)
            value = float(loss.detach())
            losses.append(value)
            if first_non_finite is None and not math.isfinite(value):
                first_non_finite = step
            guard = ctx.fix("skip_non_finite_batches") is not None
            if guard and not math.isfinite(value):
                opt.zero_grad(set_to_none=True)
                if manager is not None:
                    manager.step(loss=value)
                continue
            loss.backward()
            if probe is not None:
                probe.record()
            clip = ctx.fix("clip_gradients")
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), float(clip.params.get(
                    "max_norm") or 1.0))  # fmt: skip
            if manager is not None:
                manager.step(loss=value)
            opt.step()
            if legacy is not None:
                legacy.step(value)
            if manager is not None and (step + 1) % val_every == 0:
                valid = trainer.validate()
                if valid is not None:
                    manager.record_validation(valid, name="valid_accuracy", higher_is_better=True)
            if manager is not None and step + 1 in marks:
                d = diagnose(manager)
                checkpoints.append(Checkpoint(step + 1, [f.to_dict() for f in d.findings],
                                              d.health))  # fmt: skip
            if probes is not None:
                probes.after(step, manager, not math.isfinite(value))
    quality, qname = trainer.evaluate()
    layer_stats: dict[str, Any] = {}
    if manager is not None:
        layer_stats = _flow_layer_stats(manager)
        manager.detach()
    baselines: dict[str, Any] = {}
    if probe is not None:
        baselines["autotrainer_trace"] = probe.trace()
    if legacy is not None:
        baselines["legacy"] = legacy.alarms()
    return RunResult(spec, quality, qname, n_steps, onset_step, losses, checkpoints,
                     layer_stats, time.perf_counter() - start, baselines,
                     probes.taken if probes else [], probes.seconds if probes else 0.0,
                     first_non_finite)  # fmt: skip


class _Probes:
    """Extra diagnoses after a fault's onset (latency at step resolution)."""

    def __init__(self, spec: RunSpec, n_steps: int, onset_step: int, every: float,
                 window: float) -> None:  # fmt: skip
        assert spec.fault is not None
        self.right = fault_spec(spec.fault).right_causes
        self.onset = onset_step
        self.every = max(1, int(round(every * n_steps)))
        self.until = onset_step + max(1, int(round(window * n_steps)))
        self.taken: list[Checkpoint] = []
        self.seconds = 0.0
        self.named = False
        self.non_finite_probes = 0

    def after(self, step: int, manager: Any, non_finite: bool) -> None:
        """Diagnose after ``step`` (0-based) when a probe is due."""
        done = step + 1
        if self.named or done <= self.onset:
            return
        on_grid = done <= self.until and (done - self.onset) % self.every == 0
        extra = non_finite and self.non_finite_probes < 3  # the first non-finite steps
        if not (on_grid or extra):
            return
        self.non_finite_probes += int(extra and not on_grid)
        from gradtracer.diagnosis import diagnose

        start = time.perf_counter()
        d = diagnose(manager)
        self.seconds += time.perf_counter() - start
        found = [f.to_dict() for f in d.findings]
        self.taken.append(Checkpoint(done, found, d.health))
        self.named = any(f["type"] in self.right for f in cause_findings(found)[:3])


def _baseline_observers(trainer: _Trainer, opt: torch.optim.Optimizer, spec: RunSpec,
                        n_steps: int, ctx: _Ctx) -> tuple[Any, Any]:  # fmt: skip
    """The AUTOTRAINER probe (tracked runs) and 0.9.0's trackers (``spec.legacy``)."""
    from gradtracer.diagnosis.baselines import AutotrainerProbe
    from gradtracer.fault_suite.legacy import LegacyObserver

    per_epoch = max(1, n_steps // max(1, int(ctx.cfg["n_epochs"])))
    probe = AutotrainerProbe(trainer.model, steps_per_epoch=per_epoch) if spec.track else None
    legacy = spec.legacy and spec.track  # remedy retrains are not diagnosed
    return probe, LegacyObserver(trainer.model, opt) if legacy else None


def _flow_layer_stats(manager: Any) -> dict[str, Any]:
    """Per-layer gradient statistics the baselines read (first / last layer gradient norms,
    dead fractions)."""
    flow = manager["model"]
    snaps = flow.snapshots()
    return {
        s.name: {
            "grad_norm_median": s.grad_norm_median,
            "grad_norm_max": s.grad_norm_max,
            "weight_norm": s.weight_norm,
            "numel": s.numel,
            "dead_fraction": s.dead_fraction,
        }
        for s in snaps
    }
