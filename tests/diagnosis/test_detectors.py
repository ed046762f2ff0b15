"""Run-level detectors, ranking and health score on hand-built signals (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from run_signals import layer, run, table
from run_signals import series as losses

from gradtracer.diagnosis import DiagnosisThresholds, diagnose_signals, rank_findings
from gradtracer.diagnosis.detectors import (
    detect_bad_initialization,
    detect_dense_initialization,
    detect_gradient_accumulation,
    detect_learning_rate,
    detect_modules_not_updated,
    detect_non_finite_loss,
    detect_parameters_not_updated,
    detect_unreachable_rows,
)
from gradtracer.diagnosis.health import health_score
from gradtracer.diagnosis.ranking import regrade_tracker_findings
from gradtracer.findings import FindingType, Severity
from gradtracer.report.catalog import make_finding

TH = DiagnosisThresholds()


signals = run


def types(findings) -> list[str]:
    return [f.type.value for f in findings]


def test_healthy_signals_raise_nothing():
    d = diagnose_signals(signals())
    assert d.top is None and d.health >= 90


def test_non_finite_loss_names_first_step():
    s = signals(losses=losses([0.7, 0.6, math.nan, math.nan]))
    (f,) = detect_non_finite_loss(s, TH)
    assert f.type is FindingType.NON_FINITE_LOSS and f.evidence["first_step"] == 3
    assert f.severity is Severity.CRITICAL and f.remedy.kind == "skip_non_finite_batches"


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"requires_grad": False}, "set_requires_grad"),
        ({"in_optimizer": False, "steps": 0, "rel_velocity": 0.0}, "add_to_optimizer"),
        ({"in_optimizer": None, "steps": 0, "mean_grad_norm": 0.0}, "reconnect_gradient"),
        ({"in_optimizer": None, "rel_velocity": 0.0}, "add_to_optimizer"),
    ],
)
def test_parameters_not_updated_picks_the_remedy(changes, kind):
    s = signals(tables=(table(name="user_emb"), table(**changes)))
    (f,) = detect_parameters_not_updated(s, TH)
    assert f.subject == "item_emb" and f.remedy.kind == kind
    assert f.remedy.params["subject"] == "item_emb"


def test_a_moving_table_outside_the_known_optimizer_is_stepped_by_another_one():
    s = signals(tables=(table(name="user_emb"), table(in_optimizer=False)))
    assert detect_parameters_not_updated(s, TH) == []
    # taken out of the optimizer at 30% of the run: no optimizer stepped it since, and its
    # velocity EMAs kept their last values
    (f,) = detect_parameters_not_updated(
        signals(tables=(table(name="user_emb"), table(in_optimizer=False, steps=30))), TH)  # fmt: skip
    assert f.subject == "item_emb" and f.remedy.kind == "add_to_optimizer"


def test_dense_module_missing_from_optimizer():
    left_out = {"in_optimizer": False, "update_ratio": 0.0}
    s = signals(layers=(layer("net.0.weight", **left_out),
                        layer("net.0.bias", fan_in=None, gain=None, **left_out),
                        layer("net.2.weight")))  # fmt: skip
    (f,) = detect_modules_not_updated(s, TH)
    assert f.subject == "net.0" and f.remedy.kind == "add_to_optimizer"
    # moving: another optimizer steps it; no gradient: adding it would change nothing
    for other in ({"in_optimizer": False}, {**left_out, "grad_norm_median": 0.0}):
        s = signals(layers=(layer("net.0.weight", **other), layer("net.2.weight")))
        assert detect_modules_not_updated(s, TH) == []


def test_bad_initialization_zero_huge_and_scaled_layers():
    zero = detect_bad_initialization(signals(tables=(table(coord_rms=0.0),)), TH)
    assert types(zero) == ["BAD_INITIALIZATION"] and "all zero" in zero[0].premise
    huge = detect_bad_initialization(
        signals(tables=(table(coord_rms=20.0, rel_velocity=2e-4),)), TH
    )
    assert types(huge) == ["BAD_INITIALIZATION"] and huge[0].remedy.kind == "reinitialize"
    # a large table that moves fast has grown by training: not an initialisation problem
    assert (
        detect_bad_initialization(signals(tables=(table(coord_rms=20.0, rel_velocity=0.05),)), TH)
        == []
    )
    big_gain = detect_dense_initialization(signals(layers=(layer(gain=12.0),)), TH)
    assert types(big_gain) == ["BAD_INITIALIZATION"]


def test_unreachable_block_is_found_but_scattered_cold_rows_are_not():
    rng = np.random.default_rng(0)
    scattered = np.where(rng.random(400) < 0.2, 0.0, 30.0)
    assert detect_unreachable_rows(signals(tables=(table(exposure=scattered),)), TH) == []
    block = np.full(400, 30.0)
    block[300:] = 0.0
    (f,) = detect_unreachable_rows(signals(tables=(table(exposure=block),)), TH)
    assert f.evidence["block_start"] == 300 and f.evidence["block_length"] == 100
    assert f.remedy.kind == "fix_id_mapping"


def test_learning_rate_too_low_and_too_high():
    slow = signals(tables=(table(rel_velocity=1e-5),), losses=losses(np.full(100, 0.693)))
    (low,) = detect_learning_rate(slow, TH)
    assert low.type is FindingType.LEARNING_RATE_TOO_LOW and low.remedy.params["factor"] > 1
    # a part no gradient reaches (it does not move at all) does not hide the slow rest
    still = signals(tables=(table(rel_velocity=1e-5), table(name="unused", rel_velocity=0.0)),
                    losses=losses(np.full(100, 0.693)))  # fmt: skip
    (low,) = detect_learning_rate(still, TH)
    assert low.type is FindingType.LEARNING_RATE_TOO_LOW
    assert detect_learning_rate(signals(tables=(table(rel_velocity=0.0),),
                                        losses=losses(np.full(100, 0.693))), TH) == []  # fmt: skip
    rising = np.r_[np.linspace(0.69, 0.6, 30), np.linspace(0.6, 1.2, 70)]
    fast = signals(tables=(table(rel_velocity=0.09),), losses=losses(rising))
    (high,) = detect_learning_rate(fast, TH)
    assert high.type is FindingType.LEARNING_RATE_TOO_HIGH and high.remedy.params["factor"] < 1
    # the same fast rows with a falling loss are fine
    assert detect_learning_rate(signals(tables=(table(rel_velocity=0.09),)), TH) == []


def test_gradient_accumulation_needs_growth_and_repeated_updates():
    growing = losses(np.linspace(0.01, 1.0, 100))
    (f,) = detect_gradient_accumulation(
        signals(tables=(table(oscillation=0.95),), grad_norms=growing), TH)  # fmt: skip
    assert f.type is FindingType.GRADIENT_ACCUMULATION and f.remedy.kind == "call_zero_grad"
    assert detect_gradient_accumulation(signals(tables=(table(oscillation=0.1),),
                                                grad_norms=growing), TH) == []  # fmt: skip


def test_ranking_puts_the_cause_first_and_marks_consequences():
    symptom = make_finding(FindingType.FROZEN_EMBEDDINGS, subject="item_emb", premise="p.",
                           confidence=0.9)  # fmt: skip
    s = signals(tables=(table(in_optimizer=False, steps=0, rel_velocity=0.0),))
    d = diagnose_signals(s, [symptom])
    assert d.top is not None and d.top.type is FindingType.PARAMETERS_NOT_UPDATED
    frozen = next(f for f in d.findings if f.type is FindingType.FROZEN_EMBEDDINGS)
    assert frozen.consequence_of is FindingType.PARAMETERS_NOT_UPDATED
    assert rank_findings([symptom, d.top])[0].type is FindingType.PARAMETERS_NOT_UPDATED


def test_uncorroborated_tracker_symptoms_become_info():
    symptom = make_finding(FindingType.HIGH_UPDATE_RATIO, subject="model", premise="p.",
                           confidence=0.9)  # fmt: skip
    (regraded,) = regrade_tracker_findings([symptom], [])
    assert regraded.severity is Severity.INFO


def test_health_orders_by_severity():
    warn = make_finding(FindingType.LEARNING_RATE_TOO_LOW, subject="m", premise="p.",
                        confidence=0.9, who="m", who_upper="M")  # fmt: skip
    crit = make_finding(FindingType.NON_FINITE_LOSS, subject="loss", premise="p.", confidence=1.0)
    assert health_score([]) > health_score([warn]) > health_score([crit])
    assert health_score([], loss_progress=0.0) < health_score([], loss_progress=0.5)
