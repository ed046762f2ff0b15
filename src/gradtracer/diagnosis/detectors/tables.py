"""Detectors of embedding-table faults: tables that do not train, bad initialisation,
unreachable rows, negative sampling, weight-decay collapse."""

from __future__ import annotations

import math

import numpy as np

from gradtracer.diagnosis.detectors._common import T, _make, _upper, _windows, init_displacement
from gradtracer.diagnosis.signals import RunSignals, TableSignals
from gradtracer.diagnosis.thresholds import DiagnosisThresholds
from gradtracer.embedding.state import COUNT_MAX
from gradtracer.findings import Finding


def detect_parameters_not_updated(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """An embedding table that never changes: frozen, missing from the optimizer, or cut off
    from the gradient."""
    if s.step < th.min_steps:
        return []
    out: list[Finding] = []
    for t in s.tables:
        if t.coord_rms == 0.0 or not t.finite:
            continue  # all-zero tables are a bad initialisation; NaN ones a NaN loss
        kind, why = None, ""
        if not t.requires_grad:
            kind, why = "set_requires_grad", "its weight has requires_grad=False"
        elif t.in_optimizer is False and not (
            t.rel_velocity > th.not_moving_rel_velocity and t.steps >= th.stepped_share * s.step
        ):  # (moving at nearly every step: another optimizer than the one known steps it)
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
    return out


def _started_large(t: TableSignals, th: DiagnosisThresholds) -> bool:
    """The table's scale did not come from its updates: its initial mean row norm is at
    least half of ``huge_coord_rms * sqrt(dim)`` (or unknown), or its norm grew by more than
    the path its updates can account for (``rel_velocity * norm * steps``: a table
    re-initialised mid-run jumps). A table that grew large through its own updates (summed
    gradients, a rate too high) was not initialised badly."""
    init = t.init_mean_row_norm
    if init is None or not math.isfinite(init):
        return True
    if init >= 0.5 * th.huge_coord_rms * math.sqrt(max(t.dim, 1)):
        return True
    path = t.rel_velocity * t.mean_row_norm * t.steps
    return t.mean_row_norm - init > path


def detect_bad_initialization(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """All-zero, identical-row or badly scaled embedding tables that the run never escapes."""
    out: list[Finding] = []
    for t in s.tables:
        if not t.finite:
            continue
        how = ""
        if t.coord_rms == 0.0:
            how = "all zero: every score and every gradient through it is zero"
        elif t.duplicate_share >= 0.5:
            how = f"{t.duplicate_share:.0%} of sampled rows are identical to another row"
        elif (t.coord_rms > th.huge_coord_rms and t.rel_velocity < th.saturated_rel_velocity
              and _started_large(t, th)):  # fmt: skip
            how = (f"weights have RMS {t.coord_rms:.3g}, so scores saturate; rows move "
                   f"{t.rel_velocity:.2g} of their norm per update")  # fmt: skip
        if how:
            out.append(_make(
                T.BAD_INITIALIZATION, t.name, f"Table '{t.name}': {how}.", 0.9,
                {"coord_rms": t.coord_rms, "duplicate_share": t.duplicate_share,
                 "rel_velocity": t.rel_velocity}, how=how,
            ))  # fmt: skip
    return out


def zero_gradient_share(t: TableSignals) -> float:
    """Share of a table's repeat lookups whose row got an exactly zero gradient.

    The embedding tracker counts every step a row is touched (``exposure``) and a
    consecutive-gradient pair (``n_pairs``) only when the row's gradient is nonzero, so
    ``1 - sum(n_pairs) / sum(exposure - 1)`` over rows touched at least twice is the share
    of lookups that carried no gradient at all. Rows that never got a gradient are left
    out: a row that never learns (a padding row, a frozen or cut-off table) is another
    fault than terms that cancel at some of a row's lookups. NaN when the per-row columns
    are missing or no row qualifies.
    """
    e, n = t.exposure, t.n_pairs
    if e.size == 0 or n.size != e.size:
        return math.nan
    ok = (e > 1) & (e <= COUNT_MAX) & (n > 0)
    repeats = float(np.sum(e[ok] - 1))
    if repeats <= 0:
        return math.nan
    return max(0.0, 1.0 - float(np.sum(n[ok])) / repeats)


def _cancelling_tables(s: RunSignals, th: DiagnosisThresholds) -> list[tuple[TableSignals, float]]:
    """Tables whose looked-up rows got an exactly zero gradient at ``cancelled_lookup_share``
    or more of their lookups although the rows are small, slow and alive: the terms that use
    a row cancel exactly (BPR with the positive as its own negative gives the pair's score
    difference 0 and no gradient to the user or item row).

    A zero gradient also comes from saturated scores (huge or fast-growing rows: a rate too
    high, a bad initialisation) and from dead units behind the table; those runs are left
    to their own detectors.
    """
    if any(f >= th.dead_fraction for f in s.dead_fractions.values()):
        return []
    out = []
    for t in s.tables:
        if not t.finite or t.coord_rms <= 0 or t.mean_grad_norm <= 0 or t.steps < th.min_steps:
            continue
        share = zero_gradient_share(t)
        if not (math.isfinite(share) and share >= th.cancelled_lookup_share):
            continue
        if t.coord_rms > th.huge_coord_rms or t.rel_velocity > th.high_rel_velocity:
            continue  # scores can saturate: a zero gradient need not be a cancellation
        if init_displacement(t) > th.high_init_displacement:
            continue
        out.append((t, share))
    return out


def detect_negative_sampling(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Negatives that are trivially easy (a tiny pool: the loss collapses to ~0 while rows
    fold onto few directions) or that include the positive (gradients cancel: the loss
    stays at its starting level, or many lookups of small, slow rows get exactly no
    gradient, :func:`zero_gradient_share`)."""
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
    vals = [v for _, v in s.losses if math.isfinite(v)]
    # a loss identical on every batch with exactly zero gradients: the positive and negative
    # terms cancel exactly (any loss that depends on the batch's scores varies)
    exact = (g_first == 0.0 and g_last == 0.0 and len(vals) >= th.min_steps
             and max(vals) - min(vals) <= 1e-6 * max(abs(first), 1e-12))  # fmt: skip
    if exact or (stalled and g_first > 0 and g_last * th.cancelled_gradient_drop < g_first):
        how = (f"the gradient norm fell {g_first / max(g_last, 1e-30):.3g}x while the loss stayed "
               f"at {last:.4g}") if not exact else (
               f"the loss is {last:.6g} on every batch and no gradient reaches the weights")  # fmt: skip
        out.append(_make(
            T.NEGATIVE_SAMPLING_PROBLEM, s.tables[-1].name,
            f"Positive and negative terms cancel: {how}.", 0.7,
            {"remedy_kind": "exclude_positives_from_negatives", "grad_drop": g_first / max(
                g_last, 1e-30)}, how="positives drawn as their own negatives",
            action_text="EXCLUDE_POSITIVES_FROM_NEGATIVES",
        ))  # fmt: skip
        return out
    cancelling = _cancelling_tables(s, th)
    if cancelling:
        t, share = max(cancelling, key=lambda x: x[1])
        out.append(_make(
            T.NEGATIVE_SAMPLING_PROBLEM, t.name,
            f"Positive and negative terms cancel: {share:.0%} of the lookups of '{t.name}' "
            f"got exactly no gradient while its rows stay small (RMS {t.coord_rms:.3g}) and "
            f"move {t.rel_velocity:.2g} of their norm per update.", 0.7,
            {"remedy_kind": "exclude_positives_from_negatives", "zero_gradient_share": share,
             "tables": [c.name for c, _ in cancelling]},
            how="positives drawn as their own negatives",
            action_text="EXCLUDE_POSITIVES_FROM_NEGATIVES",
        ))  # fmt: skip
    return out


def detect_weight_decay_collapse(s: RunSignals, th: DiagnosisThresholds) -> list[Finding]:
    """Weight decay large enough to pull a table onto a few directions, or all the way to
    zero.

    Decoupled decay shrinks every weight by ``exp(-lr * weight_decay * steps)`` apart from
    the gradient; a budget of at least ``decay_budget`` with rows that span few directions
    (s3/s1 < ``collapsed_spectrum``) is a collapse onto the few directions the gradient
    still supports. Coupled (L2) decay under Adam instead holds every weight near
    ``-gradient / weight_decay``: the rows end at a small share of their starting norm
    (mean row norm < ``decay_shrunk_norm`` x its initial value) in every direction at once.
    Adam normalises the decay's gradient like any other, so it shrinks the rows by ~lr per
    step whatever ``lr * weight_decay`` is: this form needs only ``decay_shrunk_budget``.
    """
    out = []
    for t in s.tables:
        if t.weight_decay is None or t.learning_rate is None or not t.finite:
            continue
        budget = t.weight_decay * t.learning_rate * t.steps
        if budget < th.decay_shrunk_budget:
            continue  # too little decay to have shrunk anything, coupled or not
        ratio = (t.spectrum[2] / t.spectrum[0]) if t.spectrum.size >= 3 and t.spectrum[0] > 0 \
            else 1.0  # fmt: skip
        init = t.init_mean_row_norm
        now = float(np.mean(t.row_norms)) if t.row_norms.size else math.nan
        # measured from a sane start only: a table initialised huge shrinks a lot under any
        # decay without collapsing
        sane = init is not None and init / math.sqrt(max(t.dim, 1)) <= th.huge_coord_rms
        shrink = now / init if sane and init and math.isfinite(now) else math.nan
        if ratio < th.collapsed_spectrum and budget >= th.decay_budget:
            how = f"its rows now span few directions (s3/s1 = {ratio:.2g}, RMS {t.coord_rms:.3g})"
        elif shrink < th.decay_shrunk_norm:
            how = (f"its rows shrank to {shrink:.2g} of their initial norm (mean row norm "
                   f"{now:.3g} from {init:.3g})")  # fmt: skip
        else:
            continue
        out.append(_make(
            T.WEIGHT_DECAY_COLLAPSE, t.name,
            f"Weight decay {t.weight_decay:g} at lr {t.learning_rate:g} over {t.steps} "
            f"steps (lr x decay x steps = {budget:.3g}) pulls '{t.name}' towards zero; "
            f"{how}.", 0.8,
            {"decay_budget": budget, "spectrum_ratio": float(ratio), "coord_rms": t.coord_rms,
             "norm_shrink": shrink},
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
    """A contiguous block of rows not looked up (never, or not since some step while the
    run went on): an id-mapping bug, not a cold tail (cold rows are scattered over the id
    space)."""
    if s.step < 3 * th.min_steps:
        return []
    out = []
    for t in s.tables:
        if t.steps < th.min_steps or t.exposure.size < 20:
            continue
        unseen = t.exposure == 0
        stale_before = t.steps - th.unreachable_stale_share * t.steps
        if t.last_seen.size == t.exposure.size:
            unseen = unseen | (t.last_seen < stale_before)
        share = float(unseen.mean())
        if share < th.unreachable_share or share >= 0.98:
            continue
        length, start = _longest_run(unseen)
        n = unseen.size
        # longest run of a Bernoulli(share) sequence of length n: ~ log(n (1 - p)) / log(1/p)
        expected = math.log(max(n * (1 - share), 2.0)) / math.log(1.0 / share)
        if length < max(8.0, th.unreachable_run_factor * expected):
            continue
        block = slice(start, start + length)
        last = int(t.last_seen[block].max()) if t.last_seen.size == n else 0
        when = "never looked up" if last == 0 else f"not looked up after step {last}"
        out.append(_make(
            T.UNREACHABLE_ROWS, t.name,
            f"{share:.0%} of the rows of '{t.name}' were {when} (of {t.steps}), including "
            f"the contiguous block {start}-{start + length - 1} ({length} rows; random cold "
            f"rows would form blocks of ~{expected:.1f}).", 0.8,
            {"unseen_share": share, "block_start": start, "block_length": length,
             "last_seen_step": last},
            sample_ids=list(range(start, start + min(length, 16))),
        ))  # fmt: skip
    return out
