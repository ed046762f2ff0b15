"""Run-level cause detectors: pure functions of :class:`~gradtracer.diagnosis.signals.RunSignals`.

Each detector looks for the mechanism of one kind of training fault and returns findings
built from the catalog (:func:`gradtracer.report.catalog.make_finding`), each with a
machine-readable :class:`~gradtracer.findings.Remedy`. Every number a verdict depends on
is a field of :class:`DiagnosisThresholds`, with the reasoning behind its default.

One module past 400 lines: the thresholds dataclass documents every detector's numbers in
one place, and splitting the detectors away from it would separate each rule from the
reasons for its defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradtracer.diagnosis.signals import LayerSignals, RunSignals
from gradtracer.findings import Finding, FindingType, Remedy, Severity
from gradtracer.report.catalog import make_finding

__all__ = ["DETECTORS", "DiagnosisThresholds", "run_detectors"]

T = FindingType


@dataclass(frozen=True)
class DiagnosisThresholds:
    """Named thresholds of the run-level detectors.

    Attributes:
        min_steps: optimizer steps before any dynamics verdict (early steps are noisy).
        window: share of the loss series averaged at its start and at its end (0.1).
        huge_coord_rms: an embedding table whose root-mean-square weight exceeds this is
            badly scaled: 3x PyTorch's own N(0, 1) default, so dot products of two such
            rows have a standard deviation above ``9 sqrt(dim)`` and saturate a sigmoid or
            softmax.
        huge_gain: a dense weight with ``rms(W) * sqrt(fan_in)`` above this multiplies the
            activation scale by that much per layer (Kaiming init has ~1.4, PyTorch's
            Linear default ~0.58).
        saturated_rel_velocity: a badly scaled table that moves less than this share of
            its norm per update is stuck in saturation (not merely grown by training).
        not_moving_rel_velocity: a table or layer moving less than this share of its
            norm per update after ``min_steps`` does not train (float32 round-off of a
            real Adam/SGD update is orders of magnitude larger).
        high_rel_velocity: embedding rows that move more than this share of their norm per
            update (5x what a well-tuned Adam run shows late in training) overshoot.
        high_update_ratio: the same for dense layers (update-to-weight ratio per step).
        loss_rise: the loss counts as having risen when its final window exceeds its
            minimum window by this factor.
        overshoot_share: fast-moving weights whose loss never gets below this share of the
            first tracked loss (the untrained model's) overshoot from the start.
        low_rel_velocity: rows or layers moving less than this share of their norm per
            update (1/40 of a healthy run's slowest late-training rate) learn too slowly.
        stalled_loss_drop: relative loss decrease (start window to end window) under which
            the loss has not moved.
        accumulation_cosine: mean cosine of successive row updates above which updates
            keep repeating themselves, as summed gradients do.
        accumulation_growth: growth of the mean gradient norm (end window over start
            window) that, with repeated directions, marks gradients that are never reset.
        easy_loss_share: a loss falling below this share of its start while the tables
            collapse onto few directions means the negatives are trivially separable.
        collapsed_spectrum: ratio of the third to the first singular value of a row
            sample under which the rows lie on (almost) two directions.
        cancelled_gradient_drop: a gradient norm that falls by this factor while the loss
            stays at its starting level means positive and negative terms cancel.
        decay_budget: ``lr * weight_decay * steps`` above which decoupled weight decay alone
            would have shrunk the weights by ``exp(-budget)``.
        unreachable_share: never-looked-up share of a table above which a block matters.
        unreachable_run_factor: the longest contiguous never-looked-up block must be this
            many times longer than the longest block random cold rows would form.
        dead_fraction: share of dead units of an activation module that kills the layer.
        vanishing_ratio: first-layer over last-layer gradient norm under which the
            gradient vanishes on its way back through depth.
        exploding_ratio: a gradient-norm maximum this many times its median is an explosion.
    """

    min_steps: int = 10
    window: float = 0.1
    huge_coord_rms: float = 3.0
    huge_gain: float = 4.0
    saturated_rel_velocity: float = 0.005
    not_moving_rel_velocity: float = 1e-9
    high_rel_velocity: float = 0.04
    high_update_ratio: float = 0.08
    loss_rise: float = 1.15
    overshoot_share: float = 0.97
    low_rel_velocity: float = 3e-4
    stalled_loss_drop: float = 0.02
    accumulation_cosine: float = 0.6
    accumulation_growth: float = 4.0
    easy_loss_share: float = 0.15
    collapsed_spectrum: float = 0.15
    cancelled_gradient_drop: float = 100.0
    decay_budget: float = 3.0
    unreachable_share: float = 0.05
    unreachable_run_factor: float = 4.0
    dead_fraction: float = 0.9
    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 50.0


def _upper(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def _make(type: FindingType, subject: str, premise: str, confidence: float,
          evidence: dict | None = None, *, severity: Severity | None = None,
          remedy: Remedy | None = None, sample_ids: Sequence[int | str] = (),
          **fields: Any) -> Finding:  # fmt: skip
    return make_finding(
        type, subject=subject, premise=premise, confidence=min(1.0, max(0.0, confidence)),
        evidence=evidence or {}, severity=severity, remedy=remedy, sample_ids=sample_ids,
        who=subject, who_upper=_upper(subject), **fields,
    )  # fmt: skip


def _windows(losses: Sequence[tuple[int, float]], share: float) -> tuple[float, float, float]:
    """(mean of the first window, mean of the last window, min over window means)."""
    vals = np.asarray([v for _, v in losses if math.isfinite(v)], dtype=np.float64)
    if vals.size < 4:
        return math.nan, math.nan, math.nan
    w = max(2, int(round(share * vals.size)))
    means = np.convolve(vals, np.ones(w) / w, mode="valid")
    return float(means[0]), float(means[-1]), float(means.min())


def _modules(layers: Sequence[LayerSignals]) -> dict[str, list[LayerSignals]]:
    """Tensors grouped by their module (``item_tower.0.weight`` -> ``item_tower.0``)."""
    out: dict[str, list[LayerSignals]] = {}
    for ly in layers:
        out.setdefault(ly.module, []).append(ly)
    return out


# ------------------------------------------------------------------------------ detectors
def detect_non_finite_loss(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """NaN or infinite loss values were seen (named at the first tracked one)."""
    bad = [step for step, v in s.losses if not math.isfinite(v)]
    if not bad:
        return []
    return [_make(
        T.NON_FINITE_LOSS, "loss",
        f"The loss was not finite at {len(bad)} of {len(s.losses)} tracked steps, first at "
        f"step {bad[0]}.", 0.99, {"first_step": bad[0], "non_finite_steps": len(bad)},
    )]  # fmt: skip


def detect_parameters_not_updated(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """A table or dense module that never changes: frozen, missing from the optimizer, or cut
    off from the gradient."""
    if s.step < th.min_steps:
        return []
    out: list[Finding] = []
    for t in s.tables:
        if t.coord_rms == 0.0 or not t.finite:
            continue  # all-zero tables are a bad initialisation; NaN ones a NaN loss
        kind, why = None, ""
        if not t.requires_grad:
            kind, why = "set_requires_grad", "its weight has requires_grad=False"
        elif t.in_optimizer is False:
            kind, why = "add_to_optimizer", "the optimizer does not hold its weight"
        elif t.steps == 0 and t.mean_grad_norm == 0.0:
            kind, why = "reconnect_gradient", "no gradient reached it in any step"
        elif (
            t.steps >= th.min_steps
            and t.mean_grad_norm > 0
            and (t.rel_velocity <= th.not_moving_rel_velocity)
        ):
            kind, why = "add_to_optimizer", "it receives gradients but its rows do not move"
        if kind is None:
            continue
        action = {"set_requires_grad": "SET_REQUIRES_GRAD_TRUE_ON_{}",
                  "add_to_optimizer": "ADD_{}_TO_THE_OPTIMIZER",
                  "reconnect_gradient": "REMOVE_DETACH_OR_NO_GRAD_BEFORE_{}"}[kind]  # fmt: skip
        out.append(_make(
            T.PARAMETERS_NOT_UPDATED, t.name,
            f"Table '{t.name}' did not change in {s.step} steps: {why}.", 0.97,
            {"remedy_kind": kind, "tracked_steps": t.steps, "requires_grad": t.requires_grad,
             "in_optimizer": t.in_optimizer, "mean_grad_norm": t.mean_grad_norm},
            action_text=action.format(_upper(t.name)),
        ))  # fmt: skip
    if not s.layers:
        return out
    seen_obs = max((ly.n_obs for ly in s.layers), default=0)
    for module, group in _modules(s.layers).items():
        if any(ly.all_zero for ly in group if ly.fan_in):
            continue
        kind, why = None, ""
        if all(not ly.requires_grad for ly in group):
            kind, why = "set_requires_grad", "its parameters have requires_grad=False"
        elif all(ly.in_optimizer is False for ly in group):
            kind, why = "add_to_optimizer", "the optimizer does not hold its parameters"
        elif seen_obs >= th.min_steps // 2 and all(ly.n_obs == 0 for ly in group):
            kind, why = "reconnect_gradient", "no gradient reached it in any tracked step"
        elif all(
            ly.n_obs >= th.min_steps // 2 and ly.grad_norm_median > 0
            and math.isfinite(ly.update_ratio) and ly.update_ratio <= th.not_moving_rel_velocity
            for ly in group
        ):  # fmt: skip
            kind, why = "add_to_optimizer", "it receives gradients but does not move"
        if kind is None:
            continue
        action = {"set_requires_grad": "SET_REQUIRES_GRAD_TRUE_ON_{}",
                  "add_to_optimizer": "ADD_{}_TO_THE_OPTIMIZER",
                  "reconnect_gradient": "REMOVE_DETACH_OR_NO_GRAD_BEFORE_{}"}[kind]  # fmt: skip
        out.append(_make(
            T.PARAMETERS_NOT_UPDATED, module,
            f"Module '{module}' ({len(group)} tensors) did not change in {s.step} steps: "
            f"{why}.", 0.95, {"remedy_kind": kind, "tensors": len(group)},
            action_text=action.format(_upper(module)),
        ))  # fmt: skip
    return out


def detect_bad_initialization(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """All-zero, identical-row or badly scaled starting weights that the run never escapes."""
    out: list[Finding] = []
    for t in s.tables:
        if not t.finite:
            continue
        how = ""
        if t.coord_rms == 0.0:
            how = "all zero: every score and every gradient through it is zero"
        elif t.duplicate_share >= 0.5:
            how = f"{t.duplicate_share:.0%} of sampled rows are identical to another row"
        elif t.coord_rms > th.huge_coord_rms and t.rel_velocity < th.saturated_rel_velocity:
            how = (f"weights have RMS {t.coord_rms:.3g}, so scores saturate; rows move "
                   f"{t.rel_velocity:.2g} of their norm per update")  # fmt: skip
        if how:
            out.append(_make(
                T.BAD_INITIALIZATION, t.name, f"Table '{t.name}': {how}.", 0.9,
                {"coord_rms": t.coord_rms, "duplicate_share": t.duplicate_share,
                 "rel_velocity": t.rel_velocity}, how=how,
            ))  # fmt: skip
    zero = [ly for ly in s.layers if ly.fan_in and ly.all_zero]
    big = [
        ly
        for ly in s.layers
        if ly.gain is not None
        and ly.gain > th.huge_gain
        and not (math.isfinite(ly.update_ratio) and ly.update_ratio > th.high_update_ratio)
    ]
    if zero:
        how = f"{len(zero)} weight matrices are all zero, so hidden units stay identical"
        out.append(_make(T.BAD_INITIALIZATION, zero[0].module, f"{how} ({zero[0].name}).",
                         0.9, {"zero_weights": len(zero)}, how=how))  # fmt: skip
    elif big:
        worst = max(big, key=lambda ly: ly.gain or 0.0)
        how = f"weight gain rms(W)*sqrt(fan_in) = {worst.gain:.3g} in {len(big)} layers"
        out.append(_make(T.BAD_INITIALIZATION, worst.module, f"{how} (largest: {worst.name}).",
                         0.85, {"gain": worst.gain, "layers": len(big)}, how=how))  # fmt: skip
    return out


def detect_learning_rate(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Learning rate too high (rows or layers overshoot and the loss rises) or too low
    (nothing moves enough to change the loss)."""
    if s.step < th.min_steps:
        return []
    first, last, best = _windows(s.losses, th.window)
    if not math.isfinite(first):
        return []
    start = next((v for _, v in s.losses if math.isfinite(v)), math.nan)
    never_improved = math.isfinite(start) and best >= th.overshoot_share * start
    risen = (last > th.loss_rise * best and last >= 0.97 * first) or never_improved
    stalled = (first - last) <= th.stalled_loss_drop * abs(first)
    out: list[Finding] = []
    fast_tables = [t for t in s.tables if t.finite and t.steps >= th.min_steps
                   and t.rel_velocity > th.high_rel_velocity]  # fmt: skip
    fast_layers = [
        ly for ly in s.layers
        if ly.n_obs >= th.min_steps // 2 and math.isfinite(ly.update_ratio)
        and ly.update_ratio > th.high_update_ratio
    ]  # fmt: skip
    if risen and (fast_tables or fast_layers):
        for t in fast_tables:
            out.append(_make(
                T.LEARNING_RATE_TOO_HIGH, t.name,
                f"Rows of '{t.name}' move {t.rel_velocity:.3g} of their norm per update and the "
                f"loss rose from its best {best:.4g} to {last:.4g}.", 0.85,
                {"rel_velocity": t.rel_velocity, "loss_best": best, "loss_last": last},
            ))  # fmt: skip
        for module, group in _modules(fast_layers).items():
            ratio = max(ly.update_ratio for ly in group)
            out.append(_make(
                T.LEARNING_RATE_TOO_HIGH, module,
                f"Module '{module}' changes by {ratio:.3g} of its weight norm per step and the "
                f"loss rose from its best {best:.4g} to {last:.4g}.", 0.8,
                {"update_ratio": ratio, "loss_best": best, "loss_last": last},
            ))  # fmt: skip
        return out
    if not stalled:
        return out
    moving = [t for t in s.tables if t.finite and t.coord_rms > 0 and t.steps >= th.min_steps]
    layers = [ly for ly in s.layers if ly.n_obs >= th.min_steps // 2 and math.isfinite(
        ly.update_ratio) and not ly.all_zero]  # fmt: skip
    rates = [t.rel_velocity for t in moving] + [ly.update_ratio for ly in layers]
    if rates and max(rates) < th.low_rel_velocity and min(rates) > th.not_moving_rel_velocity:
        out.append(_make(
            T.LEARNING_RATE_TOO_LOW, "model",
            f"The fastest table or layer moves only {max(rates):.2g} of its norm per update "
            f"and the loss changed from {first:.4g} to {last:.4g}.", 0.85,
            {"max_rel_velocity": max(rates), "loss_first": first, "loss_last": last},
            remedy=Remedy("scale_learning_rate", {"subject": "*", "factor": 100.0}),
        ))  # fmt: skip
    return out


def detect_gradient_accumulation(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Gradients summed over steps: successive updates repeat each other and the gradient
    norm keeps growing."""
    if s.step < th.min_steps or len(s.grad_norms) < 6:
        return []
    g_first, g_last, _ = _windows(s.grad_norms, th.window)
    growth = g_last / g_first if g_first and g_first > 0 else math.inf
    first, last, _ = _windows(s.losses, th.window)
    easy = math.isfinite(first) and last < th.easy_loss_share * first
    repeated = [t for t in s.tables if t.oscillation > th.accumulation_cosine]
    if growth < th.accumulation_growth or easy:
        return []
    if s.tables and not repeated:
        return []
    cos = max((t.oscillation for t in repeated), default=math.nan)
    return [_make(
        T.GRADIENT_ACCUMULATION, "optimizer",
        f"The mean gradient norm grew {growth:.3g}x over the run"
        + (f" while successive row updates agree (mean cosine {cos:.2f})" if repeated else "")
        + ".", 0.85, {"grad_norm_growth": growth, "update_cosine": cos},
    )]  # fmt: skip


def detect_negative_sampling(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Negatives that are trivially easy (a tiny pool: the loss collapses to ~0 while rows
    fold onto few directions) or that include the positive (gradients cancel, the loss
    stays at its starting level)."""
    if s.step < th.min_steps or not s.tables:
        return []
    first, last, _ = _windows(s.losses, th.window)
    if not math.isfinite(first):
        return []
    out: list[Finding] = []
    collapsed = [t for t in s.tables if t.spectrum.size >= 3 and t.spectrum[0] > 0
                 and t.spectrum[2] / t.spectrum[0] < th.collapsed_spectrum]  # fmt: skip
    if last < th.easy_loss_share * first and collapsed:
        t = collapsed[0]
        ratio = float(t.spectrum[2] / t.spectrum[0])
        how = (f"the loss fell to {last / first:.1%} of its start while '{t.name}' folded onto "
               f"two directions (s3/s1 = {ratio:.2g})")  # fmt: skip
        out.append(_make(
            T.NEGATIVE_SAMPLING_PROBLEM, t.name, f"Negatives look trivially easy: {how}.", 0.75,
            {"remedy_kind": "sample_negatives_from_catalog", "loss_share": last / first,
             "spectrum_ratio": ratio}, how="too few distinct negatives",
            action_text="SAMPLE_NEGATIVES_FROM_THE_WHOLE_CATALOGUE",
        ))  # fmt: skip
        return out
    g_first, g_last, _ = _windows(s.grad_norms, th.window)
    stalled = (first - last) <= th.stalled_loss_drop * abs(first)
    if stalled and g_first > 0 and g_last * th.cancelled_gradient_drop < g_first:
        how = (f"the gradient norm fell {g_first / max(g_last, 1e-30):.3g}x while the loss stayed "
               f"at {last:.4g}")  # fmt: skip
        out.append(_make(
            T.NEGATIVE_SAMPLING_PROBLEM, s.tables[-1].name,
            f"Positive and negative terms cancel: {how}.", 0.7,
            {"remedy_kind": "exclude_positives_from_negatives", "grad_drop": g_first / max(
                g_last, 1e-30)}, how="positives drawn as their own negatives",
            action_text="EXCLUDE_POSITIVES_FROM_NEGATIVES",
        ))  # fmt: skip
    return out


def detect_no_learning_signal(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """The loss stays at its start although rows and layers move at a normal rate."""
    if s.step < 3 * th.min_steps:
        return []
    first, last, best = _windows(s.losses, th.window)
    if not math.isfinite(first) or (first - best) > 2 * th.stalled_loss_drop * abs(first):
        return []
    if last > th.loss_rise * best:
        return []  # a rising loss is a step-size problem, not a missing signal
    rates = [t.rel_velocity for t in s.tables if t.finite and t.steps >= th.min_steps] + [
        ly.update_ratio for ly in s.layers if math.isfinite(ly.update_ratio)]  # fmt: skip
    g_first, g_last, _ = _windows(s.grad_norms, th.window)
    if g_first > 0 and g_last * th.cancelled_gradient_drop < g_first:
        return []  # cancelling gradients: a negative-sampling problem
    if not rates or max(rates) < th.low_rel_velocity:
        return []  # nothing moves: a learning-rate or update problem
    return [_make(
        T.NO_LEARNING_SIGNAL, "loss",
        f"The loss stayed at {last:.4g} (start {first:.4g}, best {best:.4g}) while weights "
        f"moved up to {max(rates):.2g} of their norm per update.", 0.7,
        {"loss_first": first, "loss_last": last, "max_rel_velocity": max(rates)},
    )]  # fmt: skip


def detect_weight_decay_collapse(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Decoupled weight decay large enough to pull a table onto a few directions near zero."""
    out = []
    for t in s.tables:
        if t.weight_decay is None or t.learning_rate is None or not t.finite:
            continue
        budget = t.weight_decay * t.learning_rate * t.steps
        ratio = (t.spectrum[2] / t.spectrum[0]) if t.spectrum.size >= 3 and t.spectrum[0] > 0 \
            else 1.0  # fmt: skip
        if budget >= th.decay_budget and ratio < th.collapsed_spectrum:
            out.append(_make(
                T.WEIGHT_DECAY_COLLAPSE, t.name,
                f"Weight decay {t.weight_decay:g} at lr {t.learning_rate:g} over {t.steps} "
                f"steps would shrink '{t.name}' by exp(-{budget:.3g}); its rows now span "
                f"few directions (s3/s1 = {ratio:.2g}, RMS {t.coord_rms:.3g}).", 0.8,
                {"decay_budget": budget, "spectrum_ratio": float(ratio),
                 "coord_rms": t.coord_rms},
            ))  # fmt: skip
    return out


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, start) of the longest run of True in ``mask``."""
    best, start, cur, cur_start = 0, 0, 0, 0
    for i, v in enumerate(mask.tolist()):
        if v:
            if cur == 0:
                cur_start = i
            cur += 1
            if cur > best:
                best, start = cur, cur_start
        else:
            cur = 0
    return best, start


def detect_unreachable_rows(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """A contiguous block of rows never looked up: an id-mapping bug, not a cold tail
    (cold rows are scattered over the id space)."""
    if s.step < 3 * th.min_steps:
        return []
    out = []
    for t in s.tables:
        if t.steps < th.min_steps or t.exposure.size < 20:
            continue
        unseen = t.exposure == 0
        share = float(unseen.mean())
        if share < th.unreachable_share or share >= 0.98:
            continue
        length, start = _longest_run(unseen)
        n = unseen.size
        # longest run of a Bernoulli(share) sequence of length n: ~ log(n (1 - p)) / log(1/p)
        expected = math.log(max(n * (1 - share), 2.0)) / math.log(1.0 / share)
        if length >= max(8.0, th.unreachable_run_factor * expected):
            out.append(_make(
                T.UNREACHABLE_ROWS, t.name,
                f"{share:.0%} of the rows of '{t.name}' were never looked up, including the "
                f"contiguous block {start}-{start + length - 1} ({length} rows; random cold "
                f"rows would form blocks of ~{expected:.1f}).", 0.8,
                {"unseen_share": share, "block_start": start, "block_length": length},
                sample_ids=list(range(start, start + min(length, 16))),
            ))  # fmt: skip
    return out


def detect_layer_gradients(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Dead activations, gradients vanishing through depth, exploding gradients."""
    out = []
    dead = {m: f for m, f in s.dead_fractions.items() if f >= th.dead_fraction}
    if dead:
        worst = max(dead, key=lambda m: dead[m])
        out.append(_make(
            T.DEAD_ACTIVATIONS, worst,
            f"{len(dead)} activation module(s) output zero for {dead[worst]:.0%} of units "
            f"(worst: {worst}).", 0.85, {"dead_fraction": dead[worst], "modules": len(dead)},
            remedy=Remedy("reinitialize", {"subject": worst}),
        ))  # fmt: skip
    weights = [ly for ly in s.layers if ly.fan_in and ly.n_obs >= th.min_steps // 2]
    if len(weights) >= 3:
        first, last = weights[0], weights[-1]
        if last.grad_norm_median > 0 and first.grad_norm_median < th.vanishing_ratio * (
            last.grad_norm_median
        ):
            out.append(_make(
                T.VANISHING_GRADIENT, first.module,
                f"The gradient norm of {first.name} is {first.grad_norm_median:.2g}, "
                f"{last.grad_norm_median / max(first.grad_norm_median, 1e-30):.3g}x smaller "
                f"than that of {last.name} ({len(weights)} weight layers).", 0.85,
                {"first_grad_norm": first.grad_norm_median,
                 "last_grad_norm": last.grad_norm_median},
                remedy=Remedy("change_activation", {"subject": "model", "to": "relu"}),
            ))  # fmt: skip
    spiky = [ly for ly in s.layers if ly.grad_norm_median > 0 and math.isfinite(
        ly.grad_norm_max) and ly.grad_norm_max > th.exploding_ratio * ly.grad_norm_median]  # fmt: skip
    if spiky:
        spike = max(spiky, key=lambda ly: ly.grad_norm_max / ly.grad_norm_median)
        out.append(_make(
            T.EXPLODING_GRADIENT, spike.module,
            f"The gradient norm of {spike.name} peaked at {spike.grad_norm_max:.3g}, "
            f"{spike.grad_norm_max / spike.grad_norm_median:.3g}x its median.", 0.8,
            {"grad_norm_max": spike.grad_norm_max, "grad_norm_median": spike.grad_norm_median},
            remedy=Remedy("clip_gradients", {"max_norm": float(3.0 * spike.grad_norm_median)}),
        ))  # fmt: skip
    return out


Detector = Callable[[RunSignals, DiagnosisThresholds], list[Finding]]

#: the run-level detectors, in the order they run
DETECTORS: tuple[Detector, ...] = (
    detect_non_finite_loss,
    detect_parameters_not_updated,
    detect_bad_initialization,
    detect_gradient_accumulation,
    detect_negative_sampling,
    detect_unreachable_rows,
    detect_weight_decay_collapse,
    detect_learning_rate,
    detect_no_learning_signal,
    detect_layer_gradients,
)


def run_detectors(
    signals: RunSignals, thresholds: DiagnosisThresholds | None = None
) -> list[Finding]:
    """Every run-level finding for ``signals`` (unranked)."""
    th = thresholds or DiagnosisThresholds()
    out: list[Finding] = []
    for detector in DETECTORS:
        out.extend(detector(signals, th))
    return out
