"""Named thresholds of the run-level detectors, each with the reasoning behind its default.

>>> DiagnosisThresholds().min_steps
10
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DiagnosisThresholds"]


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
            Linear default ~0.58); weights that grew past it through their own updates
            were blown up by too large steps. 3 (about 2x Kaiming): healthy runs of the
            tuning seeds end at gains <= 1.6, weights under a 30x dense learning rate grew
            to 4.0-5.8 (a threshold of 4 left such runs a margin of a few percent).
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
        cancelled_gradient_drop: a gradient norm that falls by this factor (10x, an order of
            magnitude) while the loss stays at its starting level means positive and negative
            terms cancel: the cancelling terms pull the scores to the point where they
            balance and the gradient shrinks with them, whereas noise in the targets keeps the
            gradient at its scale (healthy runs' gradient norms grow or hold).
        cancelled_lookup_share: a table whose looked-up rows get an exactly zero gradient at
            this share of their lookups or more (30%; healthy runs of the tuning seeds <= 11%,
            from first lookups and the tracker's bookkeeping) while the rows are small, slow
            and alive has terms that cancel exactly (the positive drawn as its own negative).
        decay_budget: ``lr * weight_decay * steps`` above which decoupled weight decay alone
            would have shrunk the weights by ``exp(-budget)`` (the few-directions form).
        decay_shrunk_norm: a table under a budget of at least ``decay_shrunk_budget``
            whose mean row norm fell below this share of its initial value has collapsed
            towards zero (coupled L2 decay under Adam holds weights near
            ``-gradient / decay`` and, its gradient being normalised, shrinks them by ~lr
            per step whatever the budget); only from a start whose coordinate RMS is at most
            ``huge_coord_rms``.
        decay_shrunk_budget: the least ``lr * weight_decay * steps`` for the shrink form
            (0.1: decoupled decay alone would take 10% off; below it no decay explains a
            collapse).
        stepped_share: a table outside the optimizer the FlowTracker knows counts as
            stepped by another one when it moves and an optimizer stepped it in at least
            this share of the run's steps (the tracker sees every optimizer's steps; a table
            taken out of the optimizer mid-run stops being stepped).
        unreachable_share: never-looked-up share of a table above which a block matters.
        unreachable_run_factor: the longest contiguous never-looked-up block must be this
            many times longer than the longest block random cold rows would form.
        dead_fraction: share of dead units of an activation module that kills the layer.
        vanishing_ratio: first-layer over last-layer gradient norm under which the
            gradient vanishes on its way back through depth.
        exploding_ratio: a gradient-norm maximum this many times its median is an explosion.
        unreachable_stale_share: a row not looked up during this last share of the tracked
            steps (25%) counts as unreachable like a never-seen one: an id mapping that
            broke mid-run (a bad reload, a new vocabulary) leaves rows last seen before it.
        accumulation_snr: median temporal gradient signal-to-noise ratio (weight matrices
            and tables) above which successive gradients repeat themselves, as summed (never
            reset) gradients do: each step adds one batch's gradient to the sum. Per-batch
            gradients of a healthy run are dominated by their noise (SNR well below 1, also
            while a model starts to learn and its gradients grow).
        accumulation_ramp_rises, accumulation_ramp_drop: a ramp of the per-step gradient
            norm is at least this many consecutive rises (3) ending in a fall by this factor
            (2x): a gradient summed since the last reset climbs at every step and falls back
            at the reset (fresh per-batch gradients rise and fall at random).
        accumulation_ramp_share, accumulation_min_ramps: ramps covering at least this share
            of the steps (20%; healthy runs of the tuning seeds <= 7%, a 30x dense learning
            rate up to 17%, resets every 8 steps 24-98%), at least this many of them (4),
            mark gradients reset only every few steps.
        accumulation_period_share: share of the gaps between successive ramp tops that must
            be a multiple of the most common gap (75%): resets come at a fixed period (the
            tuning seeds' resets every 8 steps: 75-100%), a too high rate's growing and
            collapsing gradient does not (0-40%).
        healthy_rel_velocity: movement per update, as a share of the norm, that a
            well-tuned run's fastest table or weight matrix shows (3%: 1-3% on the tuning
            seeds' healthy runs, whose weights have grown; a run that barely moved still has
            its initial, smaller norms and larger gradients, so it moves ~2x more than the
            healthy run scaled down by the rate): the target of the learning-rate factor
            prescribed for LEARNING_RATE_TOO_LOW (movement per update scales with the
            learning rate).
        min_lr_factor, max_lr_factor: bounds of that factor (x10 to x10^4); for a rate too
            high, the factor is between ``1 / max_lr_factor`` and ``1 / min_lr_factor``.
        healthy_init_displacement: mean displacement of a table's rows per update, as a share
            of their mean norm when training started, that a well-tuned run shows (3%: the
            median of healthy tables on the tuning seeds is 1-4%, up to 16% for sparse
            Adagrad); the target of the factor prescribed for LEARNING_RATE_TOO_HIGH on a
            table (movement per update scales with the learning rate, so the ratio is the
            overshoot; the factor is that ratio, not rounded to a power of ten).
        high_init_displacement: rows moving by more than this share of their initial norm per
            update (10x ``healthy_init_displacement``; healthy tables stay below 0.16) overshoot
            even when their movement relative to their current, blown-up norm looks modest.
        lr_raise_ratio: a table whose rows move this many times faster after the change
            point of their velocity history than before it (geometric means of the two
            segments) had its learning rate raised there (3x: training alone slows rows
            down after their first steps); LEARNING_RATE_TOO_HIGH's remedy then starts at
            that step (``from_step``).
        runaway_rel_velocity: rows that move by more than half their current norm at every
            update cannot hold what they learned: LEARNING_RATE_TOO_HIGH whatever the loss
            does (healthy tables move 0.1-3.5% per update).
        overfit_min_points: validation values needed before an overfitting verdict (fewer
            cannot tell a trend from one noisy evaluation).
        overfit_patience: the validation metric must have stayed worse than its best for
            at least this share of the steps recorded so far (20%: the span early
            stopping's usual patience covers), so a single bad evaluation is not a trend;
            also the share of the points averaged per window (at least 3).
        overfit_worsening: relative distance of the latest validation level (mean of the
            last ``overfit_patience`` of the points, at least 3) from the best such window
            (5% of the best level: beyond the evaluation noise of a held-out set of a few
            hundred users or examples).
        overfit_noise_z: the worsening must also exceed this many standard errors of a
            window mean, estimated from the series' own point-to-point noise (its second
            differences, blind to a steady trend): 3 standard errors, so a noisy
            evaluation that drifts within its noise is not a trend.
        overfit_train_drop: relative decrease of the training loss from the best
            validation step to the end that counts as "still falling" (1%): a falling
            training loss with a worsening validation metric is memorisation; both getting
            worse is a step-size problem.
        huge_start_gain: a dense weight whose gain was at least this when training started
            (bounded from below by its current gain and the run's movement) was initialised
            badly: 1.4x Kaiming's ~1.4 and over 3x PyTorch's Linear/GRU default ~0.58.
        grown_movement_share: dense weights whose run moved them by at least this share of
            their current norm (summed displacement over norm) can have grown to their size
            through their updates, so a large gain is not read as an initialisation fault
            (the starting gain is at least ``gain * (1 - share)``).
        overshoot_update_ratio: a weight grown past ``huge_gain`` through its updates that
            still moves this share of its norm per step (10x the usual 1e-3) is being pushed
            by steps too large for it, even before its gradient spikes or the loss rises.
        dense_overshoot_factor: learning-rate factor prescribed for a dense module whose
            weights were blown up by its updates (one order of magnitude).
        tower_skew_ratio: two towers of the same architecture whose median relative
            movement per update differs by more than this factor (slow / fast below it)
            train at badly skewed rates; healthy twin towers stay within a factor of ~2,
            and a 20x gap means one side barely learns within the run.
        lost_gradient_share: a dense module that got a gradient in fewer than this share of
            the tracked steps the busiest tensor got, and no longer moves, was cut off from
            the gradient mid-run (a ``detach()`` or ``no_grad`` that appeared).
    """

    min_steps: int = 10
    window: float = 0.1
    huge_coord_rms: float = 3.0
    huge_gain: float = 3.0
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
    cancelled_gradient_drop: float = 10.0
    cancelled_lookup_share: float = 0.3
    decay_budget: float = 3.0
    decay_shrunk_norm: float = 0.02
    decay_shrunk_budget: float = 0.1
    stepped_share: float = 0.9
    unreachable_share: float = 0.05
    unreachable_run_factor: float = 4.0
    dead_fraction: float = 0.9
    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 50.0
    unreachable_stale_share: float = 0.25
    accumulation_snr: float = 1.0
    accumulation_ramp_rises: int = 3
    accumulation_ramp_drop: float = 2.0
    accumulation_ramp_share: float = 0.2
    accumulation_min_ramps: int = 4
    accumulation_period_share: float = 0.75
    healthy_rel_velocity: float = 0.03
    min_lr_factor: float = 10.0
    max_lr_factor: float = 1e4
    healthy_init_displacement: float = 0.03
    high_init_displacement: float = 0.3
    runaway_rel_velocity: float = 0.5
    lr_raise_ratio: float = 3.0
    overfit_min_points: int = 5
    overfit_patience: float = 0.2
    overfit_worsening: float = 0.05
    overfit_noise_z: float = 3.0
    overfit_train_drop: float = 0.01
    huge_start_gain: float = 2.0
    grown_movement_share: float = 0.5
    overshoot_update_ratio: float = 0.01
    dense_overshoot_factor: float = 0.1
    tower_skew_ratio: float = 0.05
    lost_gradient_share: float = 0.5
