"""Detectors of whole-run training faults: non-finite loss, learning rate too high or
too low, gradients never reset, no learning signal, overfitting (a validation metric that
worsens while the training loss falls)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from gradtracer.diagnosis.detectors._common import (
    T,
    _change_point,
    _make,
    _modules,
    _series_drop,
    _windows,
    init_displacement,
)
from gradtracer.diagnosis.signals import RunSignals, TableSignals
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


def recent_rel_velocity(t: TableSignals) -> float:
    """Movement per update of the table's most exposed half of rows, relative to its mean
    row norm: their per-row velocity EMAs reflect the recent updates (the EMA forgets per
    exposure), so a learning rate that dropped mid-run shows here while the run-long
    ``rel_velocity`` still carries the rarely seen rows' early, fast updates."""
    v, e = t.row_velocity, t.exposure
    if v.size == 0 or v.size != e.size or t.mean_row_norm <= 0:
        return t.rel_velocity
    seen = e > 0
    if not seen.any():
        return t.rel_velocity
    busy = seen & (e >= np.median(e[seen]))
    return min(t.rel_velocity, float(np.median(v[busy])) / t.mean_row_norm)


def _slowdown(t: TableSignals) -> tuple[int, float] | None:
    """(step, before / now) when the table's mean row velocity fell by 10x or more
    (:func:`_series_drop`); ``before`` is the velocity just before the change point and
    ``now`` the velocity EMA of the most exposed tenth of the rows (the least
    contaminated by pre-cut updates). None without such a drop."""
    drop = _series_drop(t.velocity_series)
    if drop is None:
        return None
    step, before, late = drop
    now = late
    v, e = t.row_velocity, t.exposure
    if v.size and v.size == e.size and (e > 0).any():
        busy = e >= np.quantile(e[e > 0], 0.9)
        now = min(late, float(np.median(v[busy & (e > 0)])))
    return step, before / max(now, 1e-30)


def _speedup(t: TableSignals, th: DiagnosisThresholds) -> int | None:
    """The second snapshot before the change point of the table's log velocity history (the
    split into two segments with the largest size-weighted rise of their means) when the later
    segment moves ``lr_raise_ratio`` times faster than the earlier one (geometric means): a
    learning rate raised mid-run. None otherwise (training alone slows rows down after
    their first steps)."""
    vals = [(st, v) for st, v in t.velocity_series if math.isfinite(v) and v > 0]
    if len(vals) < 10:
        return None
    lv = np.log(np.asarray([v for _, v in vals], dtype=np.float64))
    i = _change_point(lv, rising=True)
    if lv[i:].mean() - lv[:i].mean() < math.log(th.lr_raise_ratio):
        return None
    # the snapshots are per-exposure EMAs: the first one after the raise carries only part of
    # it and can fall into the earlier segment, so the date is one snapshot earlier (a few
    # steps at the reduced rate cost little; a few at the raised one blow the rows up)
    return int(vals[max(0, i - 2)][0])


def _busy_rel_velocity(t: TableSignals) -> float:
    """Median of velocity EMA / row norm over the most exposed half of the rows (rarely seen
    rows of a table initialised near zero move by a large share of their tiny norm in a
    healthy run too); ``rel_velocity`` when per-row data is missing."""
    v, e, n = t.row_velocity, t.exposure, t.row_norms
    if not (v.size and v.size == e.size == n.size and (e > 0).any()):
        return t.rel_velocity
    seen = e > 0
    busy = seen & (e >= np.median(e[seen])) & (n > 0)
    if not busy.any():
        return t.rel_velocity
    return float(np.median(v[busy] / n[busy]))


def high_lr_factor(t: TableSignals, th: DiagnosisThresholds) -> float:
    """Learning-rate factor for a table whose rate is too high: the ratio that brings its
    displacement per update back to ``healthy_init_displacement`` of its initial row norm
    (two significant digits), between ``1 / max_lr_factor`` and ``1 / min_lr_factor``
    (x0.1 at least). The displacement grows a little slower than the rate (a 30x rate moves
    rows ~20x more, a 100x one ~60x), so the measured ratio errs on the cautious side."""
    d = init_displacement(t)
    if not (math.isfinite(d) and d > 0):
        return 1.0 / th.min_lr_factor
    factor = float(f"{th.healthy_init_displacement / d:.2g}")
    return float(min(max(factor, 1.0 / th.max_lr_factor), 1.0 / th.min_lr_factor))


def _recently_stalled(losses: Sequence[tuple[int, float]], th: DiagnosisThresholds) -> bool:
    """The loss moved by at most ``stalled_loss_drop`` over the second half of the run."""
    vals = np.asarray([v for _, v in losses if math.isfinite(v)], dtype=np.float64)
    if vals.size < 8:
        return False
    w = max(2, int(round(th.window * vals.size)))
    tail = vals[vals.size // 2 :]
    if tail.size < 2 * w:
        return False
    start, end = float(tail[:w].mean()), float(tail[-w:].mean())
    return (start - end) <= th.stalled_loss_drop * abs(start)


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
    tracked = [t for t in s.tables if t.finite and t.steps >= th.min_steps]
    fast_tables = [t for t in tracked if t.rel_velocity > th.high_rel_velocity
                   or init_displacement(t) > th.high_init_displacement]  # fmt: skip
    # rows that move by more than a share of their own norm at every update cannot hold
    # what they learned, whatever the loss does
    runaway = [t for t in tracked if min(t.rel_velocity, _busy_rel_velocity(t))
               > th.runaway_rel_velocity]  # fmt: skip
    # weight matrices only: a bias near zero has a meaningless update-to-weight ratio
    fast_layers = [
        ly for ly in s.layers
        if ly.fan_in and ly.n_obs >= th.min_steps // 2 and math.isfinite(ly.update_ratio)
        and ly.update_ratio > th.high_update_ratio
    ]  # fmt: skip
    if runaway and not (risen and (fast_tables or fast_layers)):
        fast_tables, fast_layers = runaway, []
    if (risen and (fast_tables or fast_layers)) or runaway:
        for t in fast_tables:
            since = _speedup(t, th)
            params: dict[str, float | int | str | bool | None] = {
                "subject": t.name, "factor": high_lr_factor(t, th)}  # fmt: skip
            if since is not None:
                params["from_step"] = since
            out.append(_make(
                T.LEARNING_RATE_TOO_HIGH, t.name,
                f"Rows of '{t.name}' move {t.rel_velocity:.3g} of their norm per update "
                f"({init_displacement(t):.3g} of their initial norm) and the loss went from "
                f"its best {best:.4g} to {last:.4g}"
                + (f"; they sped up at step {since}" if since is not None else "") + ".", 0.85,
                {"rel_velocity": t.rel_velocity, "loss_best": best, "loss_last": last,
                 "speedup_step": since, "init_displacement": init_displacement(t)},
                remedy=Remedy("scale_learning_rate", params),
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
    if not (stalled or _recently_stalled(s.losses, th)):
        return out
    moving = [t for t in s.tables if t.finite and t.coord_rms > 0 and t.steps >= th.min_steps]
    # weight matrices only: a bias near zero has a meaningless update-to-weight ratio
    layers = [ly for ly in s.layers if ly.fan_in and ly.n_obs >= th.min_steps // 2
              and math.isfinite(ly.update_ratio) and not ly.all_zero]  # fmt: skip
    # parts that do not move at all (no gradient reaches them, or they are frozen) are
    # another finding's subject: the rate is judged on the parts that move
    rates = [r for r in [recent_rel_velocity(t) for t in moving] + [ly.update_ratio for ly in layers]
             if r > th.not_moving_rel_velocity]  # fmt: skip
    if rates and max(rates) < th.low_rel_velocity:
        # movement per update scales with the learning rate (Adam and SGD alike): the factor
        # that brings the fastest part to a healthy rate, to the nearest power of ten
        factor = 10.0 ** round(math.log10(th.healthy_rel_velocity / max(rates)))
        factor = min(max(factor, th.min_lr_factor), th.max_lr_factor)
        params = {"subject": "*", "factor": factor}
        drops = [x for x in (_slowdown(t) for t in moving) if x is not None]
        # the FlowTracker's per-step displacement (tables and layers) falls at a cut by the
        # cut's full factor; the tables' per-exposure EMAs still carry pre-cut updates
        flow = _series_drop(s.velocities)
        if flow is not None:
            drops.append((flow[0], flow[1] / max(flow[2], 1e-30)))
        if drops:  # the rate was cut mid-run: restore the rate the run had before the cut
            params["from_step"] = min(st for st, _ in drops)
            ratio = max(r for _, r in drops)
            factor = 10.0 ** round(math.log10(ratio))
            params["factor"] = min(max(factor, th.min_lr_factor), th.max_lr_factor)
        out.append(_make(
            T.LEARNING_RATE_TOO_LOW, "model",
            f"The fastest table or layer moves only {max(rates):.2g} of its norm per update "
            f"and the loss changed from {first:.4g} to {last:.4g}"
            + (f"; the rows slowed down at step {params['from_step']}" if drops else "") + ".",
            0.85,
            {"max_rel_velocity": max(rates), "loss_first": first, "loss_last": last,
             "slowdown_step": params.get("from_step")},
            remedy=Remedy("scale_learning_rate", params),
        ))  # fmt: skip
    return out


def gradient_ramps(
    grad_norms: Sequence[tuple[int, float]], th: DiagnosisThresholds
) -> tuple[float, list[int]]:
    """(share of the step-to-step changes that lie on a ramp, step of each ramp's top) of a
    per-step gradient-norm series.

    A ramp is a run of at least ``accumulation_ramp_rises`` consecutive rises of the norm
    that ends in a fall by ``accumulation_ramp_drop`` x or more. A gradient reset only every
    few steps is the sum of the batch gradients since the last reset: its norm climbs at
    every step of a cycle and falls back at the reset (a sawtooth). Fresh per-batch
    gradients rise and fall at random, so long climbs that end in a sharp fall are rare.
    """
    pts = [(st, v) for st, v in grad_norms if math.isfinite(v) and v > 0]
    if len(pts) < 2 * th.min_steps:
        return 0.0, []
    g = np.asarray([v for _, v in pts], dtype=np.float64)
    up = np.diff(g) > 0
    covered, tops, i, n = 0, [], 0, up.size
    while i < n:
        if not up[i]:
            i += 1
            continue
        j = i
        while j < n and up[j]:
            j += 1
        # g[i] < ... < g[j], then g[j + 1] < g[j]
        if (
            j - i >= th.accumulation_ramp_rises
            and j < n
            and g[j] >= (th.accumulation_ramp_drop * g[j + 1])
        ):
            covered += j - i + 1
            tops.append(int(pts[j][0]))
        i = j
    return covered / n, tops


def reset_period(tops: Sequence[int]) -> tuple[int, float]:
    """(period, share of the gaps between successive ramp tops that are a multiple of it):
    the most common gap (the smallest on ties). Resets every ``k`` steps put the tops ``k``
    steps apart (or a multiple, when a cycle's climb was interrupted); a too high rate
    makes the gradient grow and collapse at irregular intervals. ``(0, 0.0)`` with fewer
    than two gaps."""
    gaps = [int(b - a) for a, b in zip(tops, tops[1:]) if b > a]
    if len(gaps) < 2:
        return 0, 0.0
    values, counts = np.unique(np.asarray(gaps, dtype=np.int64), return_counts=True)
    period = int(values[int(np.argmax(counts))])
    return period, sum(g % period == 0 for g in gaps) / len(gaps)


def detect_gradient_accumulation(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Gradients summed over steps (``zero_grad()`` missing or called only every few
    steps): the gradient norm keeps growing and successive gradients repeat each other, or
    it climbs for a few steps at a time and falls back at each reset.

    A gradient that is never reset is the running sum of the batch gradients; two successive
    values differ by one batch's gradient, so the gradient's temporal mean dominates its
    fluctuation: median temporal gradient SNR of the weight matrices and tables >=
    ``accumulation_snr``, where fresh per-batch gradients are noise-dominated (SNR well
    below 1, also in a model whose gradients grow because it starts to learn). Tables must
    also show repeating row updates (mean cosine > ``accumulation_cosine``).

    A gradient reset only every few steps is a sawtooth instead (:func:`gradient_ramps`):
    at least ``accumulation_min_ramps`` ramps covering ``accumulation_ramp_share`` of the
    steps, whose tops are one period apart (:func:`reset_period`: at least
    ``accumulation_period_share`` of the gaps are a multiple of the most common one). Its
    SNR stays low: the resets make the gradient vary a lot. Not when the weights stood
    still at half the tracked steps or more: an optimizer that steps once per accumulation
    cycle (deliberate gradient accumulation, tracked at every micro-batch) sees the same
    sawtooth.
    """
    if s.step < th.min_steps or len(s.grad_norms) < 6:
        return []
    share, tops = gradient_ramps(s.grad_norms, th)
    period, regular = reset_period(tops)
    moved = [v for _, v in s.velocities if math.isfinite(v)]
    # deliberate accumulation: the optimizer steps once per cycle, so the weights stand
    # still at most tracked steps (a missing reset moves them at every step)
    deliberate = bool(moved) and sum(v == 0 for v in moved) >= 0.5 * len(moved)
    if (share >= th.accumulation_ramp_share and len(tops) >= th.accumulation_min_ramps
            and regular >= th.accumulation_period_share and not deliberate):  # fmt: skip
        return [_make(
            T.GRADIENT_ACCUMULATION, "optimizer",
            f"The gradient norm climbed for {th.accumulation_ramp_rises} or more steps in a "
            f"row and then fell {th.accumulation_ramp_drop:g}x or more, {len(tops)} times "
            f"({share:.0%} of the steps), every {period} steps or a multiple of it: "
            "gradients summed between periodic resets.", 0.8,
            {"ramp_share": share, "ramps": len(tops), "reset_period": period,
             "period_share": regular},
        )]  # fmt: skip
    g_first, g_last, _ = _windows(s.grad_norms, th.window)
    growth = g_last / g_first if g_first and g_first > 0 else math.inf
    first, last, _ = _windows(s.losses, th.window)
    easy = math.isfinite(first) and last < th.easy_loss_share * first
    repeated = [t for t in s.tables if t.oscillation > th.accumulation_cosine]
    if growth < th.accumulation_growth or easy:
        return []
    if s.tables and not repeated:
        return []
    snrs = [ly.snr for ly in s.layers if ly.fan_in and math.isfinite(ly.snr)]
    snrs += [t.grad_snr for t in s.tables if math.isfinite(t.grad_snr)]
    snr = float(np.median(snrs)) if snrs else math.nan
    if math.isfinite(snr) and snr < th.accumulation_snr:
        return []  # fresh, noise-dominated gradients: they are reset every step
    if not s.tables and not math.isfinite(snr):
        return []
    cos = max((t.oscillation for t in repeated), default=math.nan)
    return [_make(
        T.GRADIENT_ACCUMULATION, "optimizer",
        f"The mean gradient norm grew {growth:.3g}x over the run"
        + (f" while successive row updates agree (mean cosine {cos:.2f})" if repeated else "")
        + (f"; successive gradients repeat each other (median SNR {snr:.3g})"
           if math.isfinite(snr) else "")
        + ".", 0.85, {"grad_norm_growth": growth, "update_cosine": cos, "gradient_snr": snr},
    )]  # fmt: skip


def detect_no_learning_signal(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """The loss stays at its start (or falls back to it and stays there: the targets lost
    their relation to the inputs mid-run) although rows and layers move at a normal rate."""
    if s.step < 3 * th.min_steps:
        return []
    first, last, best = _windows(s.losses, th.window)
    if not math.isfinite(first):
        return []
    flat = (first - best) <= 2 * th.stalled_loss_drop * abs(first)
    # learned (at least 4x the stall margin below the start), then back at the start level
    lost = (first - best) > 4 * th.stalled_loss_drop * abs(first) and (
        last >= first - 2 * th.stalled_loss_drop * abs(first))  # fmt: skip
    if not (flat or lost):
        return []
    if flat and last > th.loss_rise * best:
        return []  # a rising loss is a step-size problem, not a missing signal
    rates = [recent_rel_velocity(t) for t in s.tables if t.finite and t.steps >= th.min_steps] + [
        ly.update_ratio for ly in s.layers if math.isfinite(ly.update_ratio)]  # fmt: skip
    g_first, g_last, _ = _windows(s.grad_norms, th.window)
    if g_first > 0 and g_last * th.cancelled_gradient_drop < g_first:
        return []  # cancelling gradients: a negative-sampling problem
    if not rates or max(rates) < th.low_rel_velocity:
        return []  # nothing moves: a learning-rate or update problem
    return [_make(
        T.NO_LEARNING_SIGNAL, "loss",
        f"The loss {'fell back to' if lost else 'stayed at'} {last:.4g} (start {first:.4g}, "
        f"best {best:.4g}) while weights moved up to {max(rates):.2g} of their norm per "
        "update.", 0.7,
        {"loss_first": first, "loss_last": last, "max_rel_velocity": max(rates),
         "fell_back": lost},
    )]  # fmt: skip


def _loss_near(losses: Sequence[tuple[int, float]], lo: int, hi: int) -> float:
    """Mean finite training loss over steps ``lo..hi`` (NaN when there is none)."""
    vals = [v for step, v in losses if lo <= step <= hi and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _noise(values: Sequence[float] | np.ndarray) -> float:
    """Evaluation noise of a series: robust standard deviation of its second differences
    (``x[i+1] - 2 x[i] + x[i-1]`` has variance ``6 sigma^2`` for white noise and is blind to
    a linear trend), so a steady rise or fall is not counted as noise."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 3:
        return 0.0
    d2 = x[2:] - 2.0 * x[1:-1] + x[:-2]
    return float(np.median(np.abs(d2)) / 0.6745 / math.sqrt(6.0))


def detect_overfitting(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """A validation metric (``FlowManager.record_validation``) that has been getting worse
    than its best for a sustained stretch while the training loss keeps falling: the model
    memorises the training data instead of generalising.

    The metric's level is read in windows of ``overfit_patience`` of its points (at least 3):
    the best window against the last one, which must come after it. The last window must be
    worse by ``overfit_worsening`` of the best level and by ``overfit_noise_z`` times the
    noise of a window mean (the series' own evaluation noise, :func:`_noise`), and the
    training loss must have fallen by ``overfit_train_drop`` from the best window to the end.
    """
    out: list[Finding] = []
    for v in s.validation:
        pts = [(st, x) for st, x in zip(v.steps, v.values) if math.isfinite(x)]
        if len(pts) < th.overfit_min_points:
            continue
        sign = -1.0 if v.higher_is_better else 1.0  # sign * value: lower is better
        m = max(3, int(round(th.overfit_patience * len(pts))))
        if len(pts) < 2 * m:
            continue
        y = np.asarray([sign * x for _, x in pts], dtype=np.float64)
        means = np.convolve(y, np.ones(m) / m, mode="valid")
        lo = int(np.argmin(means[: len(means) - m]))  # the best window ends before the last
        best_level = float(means[lo])
        b = lo + int(np.argmin(y[lo : lo + m]))  # the best point inside the best window
        best_step, best = pts[b]
        last_step = pts[-1][0]
        if last_step <= 0 or (last_step - best_step) < th.overfit_patience * last_step:
            continue
        latest = sign * float(means[-1])
        gap = float(means[-1]) - best_level
        worse = gap / max(abs(best_level), 1e-12)
        noise = _noise(y) * math.sqrt(2.0 / m)
        if worse < th.overfit_worsening or gap <= th.overfit_noise_z * noise:
            continue
        span = max(1, int(round(th.window * last_step)))
        train_at_best = _loss_near(s.losses, best_step - span, best_step + span)
        train_last = _loss_near(s.losses, last_step - span, last_step)
        if not (math.isfinite(train_at_best) and math.isfinite(train_last)):
            continue
        drop = (train_at_best - train_last) / max(abs(train_at_best), 1e-12)
        if drop < th.overfit_train_drop:
            continue
        f = _make(
            T.OVERFITTING_ONSET, v.name,
            f"Validation '{v.name}' was best ({best:.4g}) at step {best_step}; its last "
            f"{m} values average {latest:.4g} (to step {last_step}), {worse:.1%} worse than "
            f"its best {m} ({sign * best_level:.4g}) and {gap / max(noise, 1e-12):.3g}x the "
            f"noise of such a mean, while the training loss kept falling "
            f"({train_at_best:.4g} -> {train_last:.4g}).", 0.8,
            {"metric": v.name, "best_step": best_step, "best_value": best,
             "latest_value": latest, "relative_worsening": worse, "train_loss_drop": drop,
             "higher_is_better": v.higher_is_better, "window_points": m,
             "noise": noise},
            remedy=Remedy("early_stop", {"at_step": int(best_step), "metric": v.name}),
            onset=best_step,
        )  # fmt: skip
        out.append(dataclasses.replace(
            f,
            implies=f"The model started overfitting after step {best_step}: it fits the "
            "training data better while its held-out quality falls.",
            action=f"STOP_AT_STEP_{best_step}_OR_ADD_WEIGHT_DECAY_OR_DROPOUT",
            expected_effect=f"Keeping the weights of step {best_step} (or training with more "
            "regularisation) keeps the best validation score.",
        ))  # fmt: skip
    return out
