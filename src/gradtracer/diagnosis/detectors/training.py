"""Detectors of whole-run training faults: non-finite loss, learning rate too high or
too low, gradients never reset, no learning signal."""

from __future__ import annotations

import math

from gradtracer.diagnosis.detectors._common import T, _make, _modules, _windows
from gradtracer.diagnosis.signals import RunSignals
from gradtracer.diagnosis.thresholds import DiagnosisThresholds
from gradtracer.findings import Finding, Remedy


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
