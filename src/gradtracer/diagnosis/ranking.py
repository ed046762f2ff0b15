"""Cause-first ranking of findings (the health score is in :mod:`gradtracer.diagnosis.health`).

A run usually raises several findings: the cause and the symptoms it produces downstream
(a table missing from the optimizer also looks frozen and dead; a learning rate that is
too high also makes the loss diverge). :func:`rank_findings` puts causes first, in the
order of :data:`CAUSE_ORDER` (earlier = further upstream in the training pipeline), and
marks each symptom with ``consequence_of`` when one of its possible causes is present
(:data:`CONSEQUENCES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from gradtracer.findings import Finding, FindingType, Severity

__all__ = [
    "CAUSE_ORDER",
    "CONSEQUENCES",
    "rank_findings",
    "regrade_tracker_findings",
]

T = FindingType

#: cause findings, most upstream first: data/input faults, then wiring, then scale, then
#: optimisation dynamics
CAUSE_ORDER: tuple[FindingType, ...] = (
    T.NON_FINITE_LOSS,
    T.PARAMETERS_NOT_UPDATED,
    T.BAD_INITIALIZATION,
    T.GRADIENT_ACCUMULATION,
    T.UNREACHABLE_ROWS,
    T.HASH_COLLISIONS,
    T.NEGATIVE_SAMPLING_PROBLEM,
    T.LOSS_OUTPUT_MISMATCH,
    T.WEIGHT_DECAY_COLLAPSE,
    T.OVERFITTING_ONSET,
    T.LEARNING_RATE_TOO_HIGH,
    T.LEARNING_RATE_TOO_LOW,
    T.EXPLODING_GRADIENT,
    T.VANISHING_GRADIENT,
    T.DEAD_ACTIVATIONS,
    T.NORM_GROWTH,
    T.NON_FINITE_GRADIENT,
    T.NO_LEARNING_SIGNAL,
)

_UPDATE = (T.PARAMETERS_NOT_UPDATED, T.BAD_INITIALIZATION, T.LEARNING_RATE_TOO_LOW)
_DYN = (T.LEARNING_RATE_TOO_HIGH, T.GRADIENT_ACCUMULATION, T.NON_FINITE_LOSS)
#: symptom -> the causes it can be a side effect of (the first present one is named)
CONSEQUENCES: Mapping[FindingType, tuple[FindingType, ...]] = MappingProxyType({
    T.FROZEN_EMBEDDINGS: _UPDATE,
    T.DEAD_EMBEDDINGS: (*_UPDATE, T.UNREACHABLE_ROWS, T.NEGATIVE_SAMPLING_PROBLEM),
    T.STAGNATING_LAYER: (*_UPDATE, T.VANISHING_GRADIENT, T.DEAD_ACTIVATIONS),
    T.TOWER_IMBALANCE: (*_UPDATE, T.LEARNING_RATE_TOO_HIGH),
    T.REPRESENTATION_COLLAPSE: (T.BAD_INITIALIZATION, T.WEIGHT_DECAY_COLLAPSE,
                                T.NEGATIVE_SAMPLING_PROBLEM, *_DYN),
    T.LOW_EFFECTIVE_RANK: (T.BAD_INITIALIZATION, T.WEIGHT_DECAY_COLLAPSE,
                           T.NEGATIVE_SAMPLING_PROBLEM, *_DYN),
    T.LOSS_DIVERGENCE: _DYN + (T.BAD_INITIALIZATION,),
    T.LOSS_PLATEAU: (*_UPDATE, T.NO_LEARNING_SIGNAL, T.NEGATIVE_SAMPLING_PROBLEM,
                     T.VANISHING_GRADIENT, T.DEAD_ACTIVATIONS, T.LOSS_OUTPUT_MISMATCH),
    T.ZOMBIE_EMBEDDINGS: _DYN,
    T.HIGH_UPDATE_RATIO: _DYN + (T.BAD_INITIALIZATION,),
    # units that died leave a gradient median near zero, so the gradient they carried
    # before looks like a spike
    T.EXPLODING_GRADIENT: (T.NON_FINITE_LOSS, T.GRADIENT_ACCUMULATION, T.BAD_INITIALIZATION,
                           T.LEARNING_RATE_TOO_HIGH, T.DEAD_ACTIVATIONS),
    # dead units also stop the gradient while the loss stays put, which reads like
    # positives cancelling their negatives
    # a table shrunk to zero by weight decay scores every pair alike, which reads the same
    T.NEGATIVE_SAMPLING_PROBLEM: (T.DEAD_ACTIVATIONS, T.WEIGHT_DECAY_COLLAPSE),
    T.NON_FINITE_GRADIENT: (T.NON_FINITE_LOSS,),
    T.VANISHING_GRADIENT: (T.BAD_INITIALIZATION, T.PARAMETERS_NOT_UPDATED, T.DEAD_ACTIVATIONS),
    T.LOW_GRADIENT_SNR: (*_DYN, T.NO_LEARNING_SIGNAL),
    T.NORM_POPULARITY_SKEW: (T.NEGATIVE_SAMPLING_PROBLEM,),
    T.POPULARITY_BIAS: (T.NEGATIVE_SAMPLING_PROBLEM, T.UNREACHABLE_ROWS),
    T.DEAD_ACTIVATIONS: (T.BAD_INITIALIZATION, T.LEARNING_RATE_TOO_HIGH),
    # dead units pass no gradient back, so every layer and table behind them moves slowly
    # while the loss stalls: the slow movement then follows from the dead units
    T.LEARNING_RATE_TOO_LOW: (T.DEAD_ACTIVATIONS,),
    T.COLD_START: (T.UNREACHABLE_ROWS, T.PARAMETERS_NOT_UPDATED),
    T.NO_LEARNING_SIGNAL: (*_UPDATE, *_DYN, T.WEIGHT_DECAY_COLLAPSE, T.NEGATIVE_SAMPLING_PROBLEM,
                           T.UNREACHABLE_ROWS, T.VANISHING_GRADIENT, T.DEAD_ACTIVATIONS),
})  # fmt: skip

_RANK = {t.value: i for i, t in enumerate(CAUSE_ORDER)}


def _type(f: Finding) -> str:
    return f.type.value if isinstance(f.type, FindingType) else str(f.type)


def regrade_tracker_findings(
    tracker: Sequence[Finding], causes: Sequence[Finding]
) -> list[Finding]:
    """Tracker findings judged at run level: a symptom with a run-level cause present stays
    as it is (and is marked a consequence by :func:`rank_findings`); a symptom with no
    run-level cause is kept at INFO, because the symptom alone (a large update ratio, an
    oscillating row, a skewed exposure) also occurs in runs that train well."""
    present = {_type(f) for f in causes}
    out = []
    for f in tracker:
        t = _type(f)
        possible = {c.value for c in CONSEQUENCES.get(FindingType(t), ())} if t in _KNOWN else set()
        if f.severity != Severity.INFO and not (possible & present) and t not in _RANK:
            f = dataclasses.replace(f, severity=Severity.INFO)
        elif f.severity != Severity.INFO and t in _RANK and t not in present:
            f = dataclasses.replace(f, severity=Severity.INFO)
        out.append(f)
    return out


_KNOWN = {t.value for t in FindingType}


def rank_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Causes first (by :data:`CAUSE_ORDER`, then severity, then confidence), symptoms after,
    each symptom with ``consequence_of`` set to the first of its possible causes present
    at WARNING or CRITICAL.

    Findings that already carry ``consequence_of`` keep it.
    """
    present = {_type(f) for f in findings if f.severity != Severity.INFO}
    out = []
    for f in findings:
        if getattr(f, "consequence_of", None) is None:
            for cause in CONSEQUENCES.get(FindingType(_type(f)), ()) if _type(f) in {
                    t.value for t in FindingType} else ():  # fmt: skip
                if cause.value in present and cause.value != _type(f):
                    f = dataclasses.replace(f, consequence_of=cause)
                    break
        out.append(f)

    def key(f: Finding) -> tuple[int, int, int, float]:
        consequence = getattr(f, "consequence_of", None) is not None
        return (int(consequence), _RANK.get(_type(f), len(_RANK)), -f.severity.rank,
                -f.confidence)  # fmt: skip

    return sorted(out, key=key)


#: health points lost per cause finding of each severity (symptoms cost a quarter)
SEVERITY_COST: Mapping[Severity, float] = MappingProxyType(
    {Severity.CRITICAL: 60.0, Severity.WARNING: 30.0, Severity.INFO: 0.0}
)
