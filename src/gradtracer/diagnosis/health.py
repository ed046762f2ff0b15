"""The run health score (0-100): how much of its attainable quality a run is on its way to keep.

The score is 100 x the product of five factors in [0, 1], each the share of health a run
keeps on one count (:class:`HealthBreakdown`):

- ``findings``: every WARNING or CRITICAL finding keeps ``1 - cost``. The cost is
  :data:`FINDING_COST` of its severity, scaled by its confidence
  (``cost * (0.5 + 0.5 * confidence)``), by :data:`CONSEQUENCE_SHARE` for a symptom whose
  cause is also listed (``consequence_of``), by :data:`MEASURED_SHARE` for a finding whose
  damage another factor already measures (:data:`MEASURED_BY_FACTOR`: a parameter no
  optimizer updates, non-finite losses, dead units), and by :data:`REPEAT_SHARE` for each
  further finding of a type already counted (the same cause named on several tables or
  layers is one cause, stronger). A WARNING costs little: most warnings raised early
  in a run are provisional (a learning rate that looks high while the embeddings grow
  out of their small initialisation) and the loss and learning factors carry the
  evidence of the damage they do;
- ``loss``: how far the loss has come down from the run's own start along its robust
  trend (:func:`loss_progress`: a Theil-Sen line through every tracked loss, so that the
  batch-to-batch spread of a short series does not decide it), on a saturating curve: no
  progress keeps :data:`LOSS_FLOOR`, a rise goes below it (:data:`LOSS_RISE_SCALE`), and
  the factor approaches 1 as the progress grows past :data:`LOSS_SCALE`;
- ``finite``: the share of tracked losses that are finite, squared, times the finite share
  of the last :data:`LOSS_WINDOW` of them: a loss that is still non-finite at the end of
  the series means weights that are no longer finite (or a loss that overflows on every
  batch), a run that does not recover without intervention, while a few non-finite
  batches the run has left behind cost only their share;
- ``learning``: every embedding table and every dense tensor earns a credit in [0, 1]:
  none when frozen, missing from the optimizer or never updated, otherwise log-linear in
  its per-update relative movement (relative velocity of a table, update-to-weight ratio
  of a tensor) from :data:`MOVING_STALLED` (0) to :data:`MOVING_OK` (1); the factor is
  ``LEARNING_FLOOR + (1 - LEARNING_FLOOR) * mean``, the mean weighted by parameter count
  (a frozen 10-weight bias costs less than a frozen item table);
- ``activations``: one minus :data:`DEAD_WEIGHT` x the mean share of dead units of the
  tracked activation modules.

The constants were set on the fault-injection suite's tuning seeds (0-1,
:mod:`gradtracer.fault_suite`) by how well the score at 20% of training orders runs by
their final quality (Spearman), and checked on faults left out of the fit; the report
seeds were not used. The score is a pure function of what the diagnosis sees (the ranked
findings and the :class:`~gradtracer.diagnosis.signals.RunSignals`) and is monotone in
each input: one more finding, a higher confidence or severity, a loss that fell less,
a table that moves less, more dead units or more non-finite losses never raise it. It
knows nothing of the model family or of the quality a run will reach, so it orders runs
of one set-up by how training is going, not set-ups by the quality they can reach. It
cannot see a fault that has not entered the run yet, and it cannot tell runs apart that
have not left their initial plateau (an implicit MF with a small initialisation sits at
the uninformed loss for its first steps whether its data is sound or not) until a
detector names the difference.

>>> round(health_score([], loss_progress=0.5), 1)
99.5
>>> health_score([], loss_progress=0.0) < health_score([], loss_progress=0.5)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType

import numpy as np

from gradtracer.diagnosis.signals import RunSignals
from gradtracer.findings import Finding, FindingType, Severity

__all__ = [
    "CONSEQUENCE_SHARE",
    "FINDING_COST",
    "MEASURED_BY_FACTOR",
    "MEASURED_SHARE",
    "REPEAT_SHARE",
    "HealthBreakdown",
    "health_breakdown",
    "health_score",
    "loss_progress",
]

#: share of health a finding of each severity costs at confidence 1. A WARNING costs little
#: (early warnings are often provisional; the loss and learning factors measure the damage
#: a real problem does); a CRITICAL finding (non-finite losses, a saturated
#: initialisation, gradients that accumulate across steps) halves the score
FINDING_COST: Mapping[Severity, float] = MappingProxyType(
    {Severity.CRITICAL: 0.5, Severity.WARNING: 0.02, Severity.INFO: 0.0}
)
#: a symptom whose cause is listed costs this share of its severity's cost
CONSEQUENCE_SHARE = 0.25
#: each further finding of a type already counted costs this share of its own cost
REPEAT_SHARE = 0.5
#: finding types whose damage a factor measures (``learning``, ``finite``,
#: ``activations``): they cost this share of their severity's cost, so that a table left
#: out of the optimizer costs what its size and the stalled loss say, not twice
MEASURED_SHARE = 0.25
#: the finding types :data:`MEASURED_SHARE` applies to
MEASURED_BY_FACTOR: frozenset[FindingType] = frozenset(
    {FindingType.PARAMETERS_NOT_UPDATED, FindingType.NON_FINITE_LOSS,
     FindingType.DEAD_ACTIVATIONS}
)  # fmt: skip
#: share of the loss series whose finite share the ``finite`` factor reads at its end
LOSS_WINDOW = 0.1
#: at most this many points enter the loss trend: a longer series is reduced to the medians
#: of this many runs of consecutive losses (the trend compares every two points, so this
#: bounds its cost; a few hundred points resolve any loss curve's trend)
TREND_POINTS = 200
#: ``loss`` factor of a run whose loss has not moved from its start
LOSS_FLOOR = 0.25
#: relative loss decrease at which the ``loss`` factor has closed 63% of the gap to 1
LOSS_SCALE = 0.1
#: relative loss increase that divides the ``loss`` factor by e below :data:`LOSS_FLOOR`
LOSS_RISE_SCALE = 0.1
#: ``learning`` factor of a run in which nothing the optimizer should move moves
LEARNING_FLOOR = 0.0
#: a table (relative velocity) or dense tensor (update-to-weight ratio) moving this share of
#: its norm per update or more learns fully (healthy Adam / SGD runs move 1e-2 or more)
MOVING_OK = 3e-3
#: ... and one moving this share or less does not learn (credit is log-linear in between)
MOVING_STALLED = 1e-6
#: share of health all-dead activation modules cost (a tracked module's dead share counts
#: linearly)
DEAD_WEIGHT = 0.5


@dataclass(frozen=True)
class HealthBreakdown:
    """The factors of the health score, each the share of health kept (1 = no loss).

    Attributes:
        findings: kept after the WARNING / CRITICAL findings.
        loss: kept for the loss progress so far.
        finite: kept for non-finite losses.
        learning: kept for tables and dense tensors that do not learn.
        activations: kept for dead activation units.
        progress: the relative loss decrease the ``loss`` factor read (None: unknown).
    """

    findings: float = 1.0
    loss: float = 1.0
    finite: float = 1.0
    learning: float = 1.0
    activations: float = 1.0
    progress: float | None = None

    @property
    def score(self) -> float:
        """100 x the product of the factors, in [0, 100]."""
        product = self.findings * self.loss * self.finite * self.learning * self.activations
        return 0.0 if not math.isfinite(product) else max(0.0, min(100.0, 100.0 * product))

    def to_dict(self) -> dict[str, float | None]:
        """The factors, ``progress`` and ``score`` as a JSON-safe dict."""
        return {**asdict(self), "score": self.score}


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def loss_progress(
    losses: Sequence[tuple[int, float]], max_points: int = TREND_POINTS
) -> float | None:
    """Relative decrease of the loss along its robust linear trend, from start to end.

    The trend is the Theil-Sen line through the finite ``(step, loss)`` pairs: its slope is
    the median of the slopes between every two of them and it passes through the median of
    the residuals, so one noisy or outlying batch moves it little (a comparison of the first
    and last few losses is decided by which batches fall there when the series is short).
    The start is the lower of the first finite value (the untrained model's loss, before a
    too-large step can blow it up) and the trend at the first step; the end is the trend at
    the last step. A series longer than ``max_points`` is first reduced to the medians of
    ``max_points`` runs of consecutive losses. None with fewer than 4 finite values, a
    single step or a zero start; negative when the loss rose.

    >>> round(loss_progress([(i, 1.0 - 0.05 * i) for i in range(10)]), 2)
    0.45
    >>> loss_progress([(i, 0.69 + (0.3 if i == 9 else 0.0)) for i in range(10)])
    0.0
    """
    pairs = [(float(x), float(v)) for x, v in losses if math.isfinite(v) and math.isfinite(x)]
    if len(pairs) < 4:
        return None
    steps = np.array([x for x, _ in pairs])
    vals = np.array([v for _, v in pairs])
    first_value, first_step, last_step = float(vals[0]), float(steps[0]), float(steps[-1])
    if steps.size > max(4, max_points):
        chunks = np.array_split(np.arange(steps.size), max(4, max_points))
        steps = np.array([np.median(steps[c]) for c in chunks])
        vals = np.array([np.median(vals[c]) for c in chunks])
    i, j = np.triu_indices(steps.size, 1)
    dx = steps[j] - steps[i]
    ok = dx > 0
    if not ok.any():
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        slopes = (vals[j] - vals[i])[ok] / dx[ok]
        slope = float(np.median(slopes))
        intercept = float(np.median(vals - slope * steps))
        first = min(first_value, intercept + slope * first_step)
        last = intercept + slope * last_step
    if first == 0 or not math.isfinite(first - last):
        return None
    return round((first - last) / abs(first), 12)


def _finding_cost(f: Finding) -> float:
    """The share of health one finding costs before repeats are discounted."""
    cost = FINDING_COST.get(f.severity, 0.0)
    if cost <= 0:
        return 0.0
    conf = f.confidence if math.isfinite(f.confidence) else 1.0
    cost *= 0.5 + 0.5 * conf
    if getattr(f, "consequence_of", None) is not None:
        cost *= CONSEQUENCE_SHARE
    if f.type in MEASURED_BY_FACTOR:
        cost *= MEASURED_SHARE
    return min(1.0, cost)


def _findings_factor(ranked: Sequence[Finding]) -> float:
    by_type: dict[FindingType, list[float]] = {}
    for f in ranked:
        cost = _finding_cost(f)
        if cost > 0:
            by_type.setdefault(f.type, []).append(cost)
    kept = 1.0
    for costs in by_type.values():
        costs.sort(reverse=True)
        kept *= 1.0 - costs[0]
        for cost in costs[1:]:
            kept *= 1.0 - REPEAT_SHARE * cost
    return kept


def _loss_factor(progress: float | None) -> float:
    if progress is None or not math.isfinite(progress):
        return 1.0
    if progress >= 0:
        return LOSS_FLOOR + (1.0 - LOSS_FLOOR) * (1.0 - math.exp(-progress / LOSS_SCALE))
    return LOSS_FLOOR * math.exp(max(-50.0, progress / LOSS_RISE_SCALE))


def _finite_factor(losses: Sequence[tuple[int, float]], window: float = LOSS_WINDOW) -> float:
    """Squared finite share of all losses x the finite share of the last ``window`` of them."""
    if not losses:
        return 1.0
    ok = [math.isfinite(v) for _, v in losses]
    share = sum(ok) / len(ok)
    w = max(2, int(round(window * len(ok))))
    recent = ok[-w:]
    return share * share * (sum(recent) / len(recent))


def _moving(rate: float) -> float:
    """Credit in [0, 1] for a per-update relative movement ``rate`` (log-linear)."""
    if not math.isfinite(rate):
        return 1.0 if rate > 0 else 0.0
    if rate <= MOVING_STALLED:
        return 0.0
    return min(1.0, math.log(rate / MOVING_STALLED) / math.log(MOVING_OK / MOVING_STALLED))


def _learning_share(signals: RunSignals) -> float | None:
    """Mean learning credit of the tables and dense tensors, weighted by parameter count."""
    # a tensor outside the known optimizer that moves is stepped by another one: its
    # movement is what counts
    credit = total = 0.0
    for t in signals.tables:
        size = float(max(1, t.n_rows * t.dim))
        wired = t.requires_grad and t.steps > 0
        credit += size * (_moving(t.rel_velocity) if wired else 0.0)
        total += size
    for ly in signals.layers:
        if ly.numel <= 0:
            continue
        wired = ly.requires_grad and ly.n_obs > 0
        credit += ly.numel * (_moving(ly.update_ratio) if wired else 0.0)
        total += ly.numel
    return credit / total if total > 0 else None


def _activations_factor(dead: Mapping[str, float]) -> float:
    vals = _finite(list(dead.values()))
    if vals.size == 0:
        return 1.0
    return 1.0 - DEAD_WEIGHT * float(np.clip(vals, 0.0, 1.0).mean())


def health_breakdown(
    ranked: Sequence[Finding],
    signals: RunSignals | None = None,
    *,
    loss_progress_value: float | None = None,
) -> HealthBreakdown:
    """The factors of the health score of a run (see the module docstring).

    Args:
        ranked: the run's findings (INFO findings cost nothing).
        signals: the :class:`~gradtracer.diagnosis.signals.RunSignals` the diagnosis read
            (None: only the findings and ``loss_progress_value`` count).
        loss_progress_value: the relative loss decrease, used when ``signals`` is None or
            has no loss series.
    """
    progress = loss_progress_value
    finite = learning = activations = 1.0
    if signals is not None:
        from_signals = loss_progress(signals.losses)
        if from_signals is not None or not signals.losses:
            progress = from_signals if from_signals is not None else progress
        else:
            progress = None
        finite = _finite_factor(signals.losses)
        share = _learning_share(signals)
        if share is not None:
            learning = LEARNING_FLOOR + (1.0 - LEARNING_FLOOR) * share
        activations = _activations_factor(signals.dead_fractions)
    if progress is not None and not math.isfinite(progress):
        progress = None
    return HealthBreakdown(
        findings=_findings_factor(ranked),
        loss=_loss_factor(progress),
        finite=finite,
        learning=learning,
        activations=activations,
        progress=progress,
    )


def health_score(
    ranked: Sequence[Finding],
    loss_progress: float | None = None,
    signals: RunSignals | None = None,
) -> float:
    """The health score (0-100) of a run: 100 x the product of :func:`health_breakdown`'s
    factors.

    Args:
        ranked: the run's findings (INFO findings cost nothing).
        loss_progress: relative loss decrease so far (used when ``signals`` is None).
        signals: the run's :class:`~gradtracer.diagnosis.signals.RunSignals`.
    """
    return health_breakdown(ranked, signals, loss_progress_value=loss_progress).score
