"""Detectors of dense-layer faults: modules that do not train, bad dense initialisation,
dead activations, vanishing and exploding gradients."""

from __future__ import annotations

import math

from gradtracer.diagnosis.detectors._common import T, _make, _modules, _upper
from gradtracer.diagnosis.signals import RunSignals
from gradtracer.diagnosis.thresholds import DiagnosisThresholds
from gradtracer.findings import Finding, Remedy


def detect_modules_not_updated(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """A dense module that never changes: frozen, missing from the optimizer, or cut off
    from the gradient."""
    if s.step < th.min_steps or not s.layers:
        return []
    out: list[Finding] = []
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


def detect_dense_initialization(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """All-zero or badly scaled dense weight matrices that the run never escapes."""
    out: list[Finding] = []
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
