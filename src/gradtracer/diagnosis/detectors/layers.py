"""Detectors of dense-layer faults: modules that do not train, bad dense initialisation,
dense weights blown up by too large updates, towers trained at badly different rates,
dead activations, vanishing and exploding gradients."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from gradtracer.diagnosis.detectors._common import (
    T,
    _make,
    _modules,
    _series_drop,
    _upper,
    _windows,
)
from gradtracer.diagnosis.signals import LayerSignals, RunSignals, TableSignals
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
        elif all(ly.in_optimizer is False for ly in group) and not any(
            ly.update_ratio > th.not_moving_rel_velocity or ly.grad_norm_median == 0 for ly in group
        ):  # another optimizer may step it (it moves), or no gradient reaches it (adding it
            # to this optimizer would change nothing)
            kind, why = "add_to_optimizer", "the optimizer does not hold its parameters"
        elif seen_obs >= th.min_steps // 2 and all(ly.n_obs == 0 for ly in group):
            kind, why = "reconnect_gradient", "no gradient reached it in any tracked step"
        elif seen_obs >= th.min_steps and all(
            ly.n_obs < th.lost_gradient_share * seen_obs and math.isfinite(ly.update_ratio)
            and ly.update_ratio <= th.not_moving_rel_velocity for ly in group
        ):  # fmt: skip
            n = max(ly.n_obs for ly in group)
            kind = "reconnect_gradient"
            why = f"its gradient stopped reaching it (a gradient in {n} of {seen_obs} steps)"
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


def movement_share(s: RunSignals) -> float:
    """How far the FlowTracker's tensors moved over the run, relative to their size now.

    The summed per-step displacement (mean over tensors, each tracked displacement counted
    for the steps up to the next tracked one) over the mean current tensor norm (dense
    tensors and embedding tables). Since ``|W_now| <= |W_start| + path``, a tensor of gain
    ``g`` started with a gain of at least ``g * (1 - share)``. NaN when unknown.
    """
    vals = [(st, v) for st, v in s.velocities if math.isfinite(v)]
    norms = [ly.weight_norm for ly in s.layers if math.isfinite(ly.weight_norm)]
    norms += [t.coord_rms * math.sqrt(t.n_rows * t.dim) for t in s.tables if t.finite]
    if len(vals) < 2 or not norms:
        return math.nan
    mean_norm = sum(norms) / len(norms)
    if mean_norm <= 0:
        return math.nan
    path = 0.0
    for (st, v), (nxt, _) in zip(vals, [*vals[1:], (vals[-1][0] + 1, 0.0)]):
        path += v * max(1, nxt - st)
    return path / mean_norm


def _start_gain(ly: LayerSignals, share: float) -> float:
    """Lower bound of the gain a weight had when training started (its gain when the
    movement is unknown)."""
    gain = ly.gain or 0.0
    return gain if not math.isfinite(share) else gain * max(0.0, 1.0 - share)


def detect_dense_initialization(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """All-zero dense weight matrices, or weights whose gain was already far above any
    standard initialisation when training started.

    The starting gain is bounded from below by the current gain and the run's movement
    (:func:`movement_share`): weights that grew to a large gain through their updates are
    a step-size problem (:func:`detect_dense_overshoot`), not an initialisation fault.
    """
    out: list[Finding] = []
    zero = [ly for ly in s.layers if ly.fan_in and ly.all_zero]
    share = movement_share(s)
    big = [
        ly
        for ly in s.layers
        if ly.gain is not None
        and _start_gain(ly, share) > th.huge_start_gain
        and not (math.isfinite(ly.update_ratio) and ly.update_ratio > th.high_update_ratio)
    ]
    if zero:
        how = f"{len(zero)} weight matrices are all zero, so hidden units stay identical"
        out.append(_make(T.BAD_INITIALIZATION, zero[0].module, f"{how} ({zero[0].name}).",
                         0.9, {"zero_weights": len(zero)}, how=how))  # fmt: skip
    elif big:
        worst = max(big, key=lambda ly: ly.gain or 0.0)
        how = f"weight gain rms(W)*sqrt(fan_in) = {worst.gain:.3g} in {len(big)} layers"
        out.append(_make(
            T.BAD_INITIALIZATION, worst.module,
            f"{how} (largest: {worst.name}); the run moved the weights by only "
            f"{share:.2g} of their norm, so they started that large.", 0.85,
            {"gain": worst.gain, "layers": len(big), "movement_share": share}, how=how,
        ))  # fmt: skip
    return out


def _damaged(ly: LayerSignals, s: RunSignals, th: DiagnosisThresholds) -> bool:
    """The weight's gradient exploded or died, its updates are still large for its size
    (``overshoot_update_ratio``), or the loss rose from its best."""
    if ly.grad_norm_max > 0 and math.isfinite(ly.grad_norm_max) and (
        ly.grad_norm_max > th.exploding_ratio * ly.grad_norm_median
    ):  # fmt: skip
        return True
    if math.isfinite(ly.update_ratio) and ly.update_ratio >= th.overshoot_update_ratio:
        return True
    first, last, best = _windows(s.losses, th.window)
    return math.isfinite(last) and last > th.loss_rise * best


def detect_dense_overshoot(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Dense weights blown up by updates too large for them: a gain far above any
    standard initialisation that the run's own movement can account for, with a
    gradient that exploded (or died) on the way, updates still large for the weight's
    size, or a loss that rose from its best.

    When activation units died (``dead_fraction``), weights grown past the
    ``huge_start_gain`` of a bad initialisation are enough: updates that multiplied the
    weights several times over also pushed the pre-activations below zero for every input.

    One LEARNING_RATE_TOO_HIGH named after the module with the largest gain; its remedy
    ``scale_learning_rate`` x ``dense_overshoot_factor`` lists every top-level module with
    a blown-up weight in ``modules`` (comma-separated).
    """
    if s.step < th.min_steps:
        return []
    share = movement_share(s)
    if not math.isfinite(share) or share < th.grown_movement_share:
        return []
    dead = any(f >= th.dead_fraction for f in s.dead_fractions.values())
    limit = th.huge_start_gain if dead else th.huge_gain
    grown = [
        ly for ly in s.layers
        if ly.gain is not None and ly.gain > limit and ly.n_obs >= th.min_steps // 2
        and _start_gain(ly, share) <= th.huge_start_gain and _damaged(ly, s, th)
    ]  # fmt: skip
    if not grown:
        return []
    grown.sort(key=lambda ly: -(ly.gain or 0.0))
    worst = grown[0]
    tops = sorted({ly.name.split(".")[0] for ly in grown})
    return [_make(
        T.LEARNING_RATE_TOO_HIGH, worst.module,
        f"'{worst.name}' grew to a weight gain of {worst.gain:.3g} during training (the "
        f"weights moved {share:.2g} times their norm) and its gradient peaked at "
        f"{worst.grad_norm_max:.3g} (median {worst.grad_norm_median:.3g}): updates too large "
        f"for the layer blew it up ({len(grown)} weight matrices in {', '.join(tops)}).", 0.8,
        {"gain": worst.gain, "movement_share": share, "grad_norm_max": worst.grad_norm_max,
         "grad_norm_median": worst.grad_norm_median, "layers": len(grown)},
        remedy=Remedy("scale_learning_rate", {"subject": worst.module,
                                              "factor": th.dense_overshoot_factor,
                                              "modules": ",".join(tops)}),
    )]  # fmt: skip


_TOKEN = re.compile(r"[._]")


def _tower_of(name: str) -> str:
    """The tower a parameter belongs to: the first word of its name (``user_tower.0.weight``
    and ``user_emb`` -> ``user``)."""
    return _TOKEN.split(name, maxsplit=1)[0]


def _architecture(group: Sequence[LayerSignals]) -> tuple[tuple[str, int, int | None], ...]:
    """Shapes of a tower's dense tensors (names without the tower's own top-level name)."""
    return tuple(sorted((ly.name.split(".", 1)[-1], ly.numel, ly.fan_in) for ly in group))


def _rate(layers: Sequence[LayerSignals], tables: Sequence[TableSignals]) -> float:
    """Median relative movement per update of a tower's weight matrices and tables."""
    rates = [ly.update_ratio for ly in layers if ly.fan_in and math.isfinite(ly.update_ratio)
             and ly.n_obs > 0]  # fmt: skip
    rates += [t.rel_velocity for t in tables if t.finite and math.isfinite(t.rel_velocity)]
    if not rates:
        return math.nan
    rates.sort()
    mid = len(rates) // 2
    return rates[mid] if len(rates) % 2 else 0.5 * (rates[mid - 1] + rates[mid])


def _skew_finding(
    s: RunSignals,
    th: DiagnosisThresholds,
    rates: dict[str, float],
    lrs: dict[str, list[float]],
    modules: dict[str, list[str]],
    *,
    need_lr: bool,
) -> Finding | None:
    """The finding for the slowest and fastest of ``rates`` (tower -> relative movement)
    when they differ by more than ``1 / tower_skew_ratio`` (and, with ``need_lr``, their
    optimizer learning rates do too)."""
    fast = max(rates, key=lambda k: rates[k])
    slow = min(rates, key=lambda k: rates[k])
    ratio = rates[slow] / rates[fast]
    if ratio >= th.tower_skew_ratio:
        return None
    lr_ratio = max(lrs[fast]) / min(lrs[slow]) if lrs.get(fast) and lrs.get(slow) else math.nan
    if need_lr and not (math.isfinite(lr_ratio) and lr_ratio * th.tower_skew_ratio >= 1.0):
        return None
    too_high = rates[fast] > th.high_update_ratio
    named = fast if too_high else slow
    if math.isfinite(lr_ratio) and lr_ratio > 1.0:
        factor = 1.0 / lr_ratio if too_high else lr_ratio
    else:
        factor = ratio if too_high else 1.0 / ratio
    factor = float(min(max(factor, 1e-4), 1e4))
    lower = f"; its learning rate is {lr_ratio:.3g}x lower" if lr_ratio > 1.0 else ""
    params: dict[str, float | int | str | bool | None] = {
        "subject": named,
        "factor": factor,
        "modules": ",".join(sorted(modules[named])),
    }
    if not too_high:  # a rate cut mid-run: the slow tower's tables slowed down at the cut
        cuts = [d[0] for d in (_series_drop(t.velocity_series) for t in s.tables
                               if t.name in modules[named]) if d is not None]  # fmt: skip
        if cuts:
            params["from_step"] = min(cuts)
    return _make(
        T.LEARNING_RATE_TOO_HIGH if too_high else T.LEARNING_RATE_TOO_LOW, named,
        f"Tower '{slow}' moves {rates[slow]:.2g} of its norm per update, {1 / ratio:.3g}x "
        f"slower than tower '{fast}' ({rates[fast]:.2g}){lower}.", 0.85,
        {"slow_tower": slow, "fast_tower": fast, "slow_rate": rates[slow],
         "fast_rate": rates[fast], "rate_ratio": ratio, "learning_rate_ratio": lr_ratio},
        remedy=Remedy("scale_learning_rate", params),
    )  # fmt: skip


def detect_tower_skew(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Two towers whose weights move at very different relative rates: the slow tower's
    learning rate is too low for it (or the fast one's too high when the fast tower itself
    overshoots).

    A tower is the set of modules and tables named after one word (``user_tower`` and
    ``user_emb`` -> ``user``). Towers with dense modules are compared when their dense
    tensors have the same shapes; towers made of embedding tables only (MF) when their
    tables have the same width and the optimizer's learning rates differ by the same
    factor as well (tables of one model move at different rates for other reasons).

    The remedy scales the named tower's learning rate by the optimizer's learning-rate
    ratio between the towers when it is known and above 1, else by the measured ratio.
    """
    if s.step < th.min_steps:
        return []
    dense: dict[str, list[LayerSignals]] = {}
    for ly in s.layers:
        dense.setdefault(_tower_of(ly.name), []).append(ly)
    by_arch: dict[tuple[tuple[str, int, int | None], ...], list[str]] = {}
    for tower, group in dense.items():
        by_arch.setdefault(_architecture(group), []).append(tower)
    out: list[Finding] = []
    for towers in by_arch.values():
        if len(towers) < 2:
            continue
        rates, lrs, modules = {}, {}, {}
        for tower in towers:
            tables = [t for t in s.tables if _tower_of(t.name) == tower]
            r = _rate(dense[tower], tables)
            # a tower whose gradient died (dead units) is slow for another reason
            alive = all(ly.grad_norm_median > 0 for ly in dense[tower] if ly.fan_in)
            if math.isfinite(r) and r > th.not_moving_rel_velocity and alive:
                rates[tower] = r
                lrs[tower] = [ly.learning_rate for ly in dense[tower] if ly.learning_rate]
                modules[tower] = sorted({ly.name.split(".")[0] for ly in dense[tower]}
                                        | {t.name for t in tables})  # fmt: skip
        if len(rates) >= 2:
            f = _skew_finding(s, th, rates, lrs, modules, need_lr=False)
            if f is not None:
                out.append(f)
    by_dim: dict[int, dict[str, list[TableSignals]]] = {}
    for t in s.tables:
        word = _tower_of(t.name)
        if word in dense or not t.finite or t.steps < th.min_steps:
            continue
        if math.isfinite(t.rel_velocity) and t.rel_velocity > th.not_moving_rel_velocity:
            by_dim.setdefault(t.dim, {}).setdefault(word, []).append(t)
    for words in by_dim.values():
        if len(words) < 2:
            continue
        rates = {w: _rate((), ts) for w, ts in words.items()}
        lrs = {w: [t.learning_rate for t in ts if t.learning_rate] for w, ts in words.items()}
        modules = {w: [t.name for t in ts] for w, ts in words.items()}
        f = _skew_finding(s, th, rates, lrs, modules, need_lr=True)
        if f is not None:
            out.append(f)
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
    # a spike counts when it is large against the weight's own median and also beyond what
    # any layer carries typically: a blip in a layer whose gradient vanished is no explosion;
    # weight matrices only (a bias's small gradient makes its spike ratio noisy)
    typical = max((ly.grad_norm_median for ly in s.layers), default=0.0)
    spiky = [ly for ly in s.layers if ly.fan_in and ly.grad_norm_median > 0 and math.isfinite(
        ly.grad_norm_max) and ly.grad_norm_max > th.exploding_ratio * ly.grad_norm_median
        and ly.grad_norm_max > typical]  # fmt: skip
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
