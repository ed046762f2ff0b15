"""The run health score: bounds, monotonicity, NaN safety and its use in the diagnosis."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from run_signals import layer, run, series, table
from torch import nn

from gradtracer.diagnosis import Diagnosis, diagnose, diagnose_signals
from gradtracer.diagnosis.health import (
    HealthBreakdown,
    health_breakdown,
    health_score,
    loss_progress,
)
from gradtracer.diagnosis.signals import RunSignals
from gradtracer.findings import Finding, FindingType, Severity


def signals(**changes) -> RunSignals:
    """Two healthy tables and one layer (the shared healthy run otherwise)."""
    return run(**{"tables": (table(), table(name="user_emb")), "layers": (layer(),), **changes})


def finding(kind: FindingType, severity: Severity, confidence: float = 0.9) -> Finding:
    return Finding(kind, severity, subject="item_emb", premise="p.", implies="i.",
                   action="ACT", expected_effect="e.", confidence=confidence)  # fmt: skip


def test_loss_progress_reads_the_trend_from_start_to_end():
    assert loss_progress(series(np.linspace(1.0, 0.5, 50))) == pytest.approx(0.5, abs=1e-9)
    assert loss_progress(series(np.linspace(1.0, 2.0, 50))) < 0
    assert loss_progress(series([1.0, 0.9])) is None  # too short
    assert loss_progress(series([0.0] * 10)) is None  # zero start
    with_nan = series([1.0, math.nan, 0.9, 0.8, math.nan, 0.6, 0.5, 0.4])
    assert math.isfinite(loss_progress(with_nan))


def test_loss_progress_is_not_decided_by_the_batches_at_either_end():
    rng = np.random.default_rng(0)
    steps = np.arange(40)
    noisy = 0.69 - 0.002 * steps + rng.normal(0.0, 0.03, steps.size)
    # the same trend with its first two batches hard and its last two easy
    lucky = noisy.copy()
    lucky[:2] += 0.1
    lucky[-2:] -= 0.1
    true = 0.002 * (steps.size - 1) / 0.69
    for values in (noisy, lucky):
        assert loss_progress(series(values)) == pytest.approx(true, abs=0.05)
    # the four moved batches shift their own windows by 0.2 / 0.69 = 0.29 of the start
    assert loss_progress(series(lucky)) - loss_progress(series(noisy)) < 0.06
    flat = np.full(40, 0.69) + rng.normal(0.0, 0.03, 40)
    flat[-2:] -= 0.1  # two easy batches at the end of a loss that does not fall
    assert loss_progress(series(flat)) < 0.03  # no progress read from them


def test_loss_progress_of_a_long_series_reads_its_reduced_trend():
    rng = np.random.default_rng(1)
    n = 20_000
    values = np.linspace(2.0, 1.0, n) + rng.normal(0.0, 0.2, n)
    assert loss_progress(series(values)) == pytest.approx(0.5, abs=0.01)
    assert loss_progress(series(values), max_points=8) == pytest.approx(0.5, abs=0.02)
    assert loss_progress([(5, 1.0)] * 10) is None  # one step: no trend


def test_runs_whose_loss_trend_falls_less_score_lower_whatever_their_last_batches():
    rng = np.random.default_rng(2)
    steps = np.arange(30)
    noise = rng.normal(0.0, 0.05, steps.size)
    falling = 0.69 - 0.004 * steps + noise
    slower = 0.69 - 0.001 * steps + noise
    slower[-2:] -= 0.15  # easy last batches on the slower run
    s_fast = signals(losses=series(falling))
    s_slow = signals(losses=series(slower))
    assert health_score([], signals=s_slow) < health_score([], signals=s_fast)


def test_loss_that_falls_further_scores_higher():
    scores = [
        health_score([], signals=signals(losses=series(np.linspace(0.69, end, 100))))
        for end in (0.9, 0.69, 0.66, 0.6, 0.4, 0.2)
    ]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert health_score([], loss_progress=0.0) < health_score([], loss_progress=0.5)


def test_critical_cause_costs_more_than_warning_and_symptoms_cost_less():
    warn = finding(FindingType.LEARNING_RATE_TOO_LOW, Severity.WARNING)
    crit = finding(FindingType.PARAMETERS_NOT_UPDATED, Severity.CRITICAL)
    symptom = dataclasses.replace(
        finding(FindingType.FROZEN_EMBEDDINGS, Severity.WARNING),
        consequence_of=FindingType.LEARNING_RATE_TOO_LOW,
    )
    s = signals()
    assert health_score([], signals=s) > health_score([symptom], signals=s)
    assert health_score([symptom], signals=s) > health_score([warn], signals=s)
    assert health_score([warn], signals=s) > health_score([crit], signals=s)
    assert health_score([crit], signals=s) > health_score([crit, warn], signals=s)
    info = finding(FindingType.COLD_START, Severity.INFO)
    assert health_score([info], signals=s) == health_score([], signals=s)


def test_confidence_scales_the_cost():
    s = signals()
    low = finding(FindingType.LEARNING_RATE_TOO_LOW, Severity.WARNING, confidence=0.2)
    high = finding(FindingType.LEARNING_RATE_TOO_LOW, Severity.WARNING, confidence=1.0)
    assert health_score([low], signals=s) > health_score([high], signals=s)


def test_tables_and_layers_that_do_not_learn_cost_health():
    ok = health_breakdown([], signals())
    frozen = health_breakdown([], signals(tables=(table(requires_grad=False), table())))
    missing = health_breakdown(
        [], signals(tables=(table(in_optimizer=False, rel_velocity=0.0), table()))
    )
    still = health_breakdown([], signals(layers=(layer(update_ratio=0.0),)))
    for worse in (frozen, missing, still):
        assert worse.learning < ok.learning and worse.score < ok.score
    none_learn = signals(tables=(table(steps=0), table(rel_velocity=0.0)),
                         layers=(layer(n_obs=0),))  # fmt: skip
    assert health_breakdown([], none_learn).learning < frozen.learning


def test_dead_units_and_non_finite_losses_cost_health():
    ok = health_breakdown([], signals())
    dead = health_breakdown([], signals(dead_fractions={"net.1": 0.9}))
    assert dead.activations < ok.activations and dead.score < ok.score
    vals = np.linspace(0.69, 0.5, 100)
    vals[::4] = math.nan
    nan = health_breakdown([], signals(losses=series(vals)))
    assert nan.finite < 1.0 and nan.score < ok.score


def test_losses_still_non_finite_at_the_end_cost_more_than_ones_the_run_left_behind():
    vals = np.linspace(0.69, 0.5, 100)
    early, late = vals.copy(), vals.copy()
    early[10:20] = math.nan  # ten bad batches, then finite again
    late[90:] = math.nan  # the same count, still non-finite at the end
    kept = health_breakdown([], signals(losses=series(early))).finite
    dead = health_breakdown([], signals(losses=series(late))).finite
    assert kept == pytest.approx(0.9**2)
    assert dead == 0.0 < kept
    # one more non-finite loss in the last window never raises it
    later = late.copy()
    later[89] = math.nan
    assert health_breakdown([], signals(losses=series(later))).finite <= dead
    tail = vals.copy()
    tail[95:] = math.nan
    assert 0.0 < health_breakdown([], signals(losses=series(tail))).finite < 0.95**2


def test_a_cause_named_on_several_subjects_costs_more_but_less_than_as_many_causes():
    s = signals()
    one = finding(FindingType.GRADIENT_ACCUMULATION, Severity.CRITICAL)
    other = finding(FindingType.BAD_INITIALIZATION, Severity.CRITICAL)
    twice = health_score([one, dataclasses.replace(one, subject="user_emb")], signals=s)
    assert health_score([one], signals=s) > twice > health_score([one, other], signals=s)
    # the order the findings come in does not matter, only the strongest counts in full
    weak = dataclasses.replace(one, confidence=0.1, subject="user_emb")
    assert health_score([weak, one], signals=s) == pytest.approx(
        health_score([one, weak], signals=s)
    )


def test_a_finding_whose_damage_a_factor_measures_costs_less_than_another_cause():
    s = signals()
    measured = finding(FindingType.PARAMETERS_NOT_UPDATED, Severity.CRITICAL)
    other = finding(FindingType.GRADIENT_ACCUMULATION, Severity.CRITICAL)
    assert health_score([measured], signals=s) > health_score([other], signals=s)
    # ... because the learning factor charges the table that does not move
    frozen = signals(tables=(table(in_optimizer=False, rel_velocity=0.0), table(name="user_emb")))
    assert health_score([measured], signals=frozen) < health_score([other], signals=s)


def test_early_warnings_cost_little_beside_what_the_loss_says():
    s = signals()
    warn = finding(FindingType.LEARNING_RATE_TOO_HIGH, Severity.WARNING, confidence=1.0)
    assert health_score([warn], signals=s) > 0.97 * health_score([], signals=s)
    rising = signals(losses=series(np.linspace(0.69, 1.5, 100)))
    assert health_score([warn], signals=rising) < 0.5 * health_score([warn], signals=s)


def test_a_large_table_that_does_not_learn_costs_more_than_a_small_tensor():
    ok = health_breakdown([], signals())
    big = health_breakdown(
        [], signals(tables=(table(in_optimizer=False, rel_velocity=0.0), table()))
    )
    small = health_breakdown(
        [], signals(layers=(layer(in_optimizer=False, numel=10, update_ratio=0.0),))
    )
    assert big.learning < small.learning < ok.learning


@pytest.mark.parametrize(
    "worse",
    [
        {"losses": series(np.linspace(0.69, 0.6, 100))},
        {"losses": series(np.linspace(0.69, 0.8, 100))},
        {"tables": (table(rel_velocity=1e-4), table(name="user_emb"))},
        {"tables": (table(requires_grad=False), table(name="user_emb"))},
        {"layers": (layer(update_ratio=1e-5),)},
        {"dead_fractions": {"net.1": 0.6}},
        {"losses": series([*np.linspace(0.69, 0.5, 90), *[math.nan] * 10])},
    ],
)
def test_score_is_monotone_in_each_signal(worse):
    base = signals(dead_fractions={"net.1": 0.2})
    changed = dataclasses.replace(base, **worse)
    crit = finding(FindingType.BAD_INITIALIZATION, Severity.CRITICAL)
    for ranked in ([], [crit]):
        assert health_score(ranked, signals=changed) < health_score(ranked, signals=base)


@pytest.mark.parametrize(
    "kind", [FindingType.BAD_INITIALIZATION, FindingType.PARAMETERS_NOT_UPDATED,
             FindingType.LEARNING_RATE_TOO_HIGH],
)  # fmt: skip
def test_score_is_monotone_in_each_findings_severity_and_confidence(kind):
    s = signals()
    scores = [health_score([finding(kind, sev, conf)], signals=s)
              for sev in (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
              for conf in (0.1, 0.5, 1.0)]  # fmt: skip
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores[3:])) == 6  # INFO is free, WARNING and CRITICAL grade


@pytest.mark.parametrize(
    "changes",
    [
        {"losses": ()},
        {"losses": series([math.nan] * 50)},
        {"losses": series([math.inf, -math.inf, math.nan, 1.0])},
        {"losses": series(np.linspace(1.0, 1e9, 50))},
        {"tables": (), "layers": ()},
        {"tables": (table(rel_velocity=math.inf, coord_rms=math.nan),)},
        {"layers": (layer(update_ratio=math.nan, numel=0),)},
        {"dead_fractions": {"a": math.nan, "b": 2.0}},
    ],
)
def test_score_is_bounded_and_nan_safe(changes):
    crit = finding(FindingType.NON_FINITE_LOSS, Severity.CRITICAL, confidence=1.0)
    for ranked in ([], [crit] * 30):
        parts = health_breakdown(ranked, signals(**changes))
        assert 0.0 <= parts.score <= 100.0 and math.isfinite(parts.score)
        for value in dataclasses.asdict(parts).values():
            assert value is None or math.isfinite(value)
    assert 0.0 <= health_score([], loss_progress=math.nan) <= 100.0
    assert 0.0 <= health_score([crit] * 30, loss_progress=-5.0) <= 100.0


def test_many_findings_still_order_runs():
    warn = finding(FindingType.LEARNING_RATE_TOO_HIGH, Severity.WARNING)
    crit = finding(FindingType.NON_FINITE_LOSS, Severity.CRITICAL)
    s = signals()
    assert health_score([crit] * 4, signals=s) > health_score([crit] * 5, signals=s) > 0.0
    assert health_score([warn] * 6, signals=s) > health_score([warn] * 7, signals=s) > 0.0


def test_breakdown_round_trips_and_diagnosis_exposes_it():
    d = diagnose_signals(signals())
    assert isinstance(d, Diagnosis) and isinstance(d.health_components, HealthBreakdown)
    assert d.health == pytest.approx(d.health_components.score)
    data = d.health_components.to_dict()
    assert data["score"] == pytest.approx(d.health) and set(data) >= {"findings", "loss"}
    stalled = diagnose_signals(signals(losses=series(np.full(100, 0.69))))
    assert stalled.health_components.loss < d.health_components.loss


def _train(
    freeze_items: bool, n_steps: int = 60, *, report: list | None = None, keep: list | None = None
) -> Diagnosis:
    from gradtracer.embedding.tracker import EmbeddingTracker
    from gradtracer.flow.tracker import FlowTracker
    from gradtracer.manager import FlowManager

    gen = torch.Generator().manual_seed(0)
    users, items = nn.Embedding(40, 8), nn.Embedding(60, 8)
    for emb in (users, items):
        nn.init.normal_(emb.weight, std=0.1, generator=gen)
    model = nn.ModuleDict({"user_emb": users, "item_emb": items})
    params = [users.weight] if freeze_items else list(model.parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    manager = FlowManager("mf")
    manager.add_tracker("user_emb", EmbeddingTracker(users, name="user_emb", track_interval=2))
    manager.add_tracker("item_emb", EmbeddingTracker(items, name="item_emb", track_interval=2))
    manager.add_tracker("model", FlowTracker(model, name="mf", optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    pos_u = torch.randint(0, 40, (400,), generator=gen)
    pos_i = (pos_u * 3 + torch.randint(0, 3, (400,), generator=gen)) % 60
    for _ in range(n_steps):
        idx = torch.randint(0, 400, (64,), generator=gen)
        neg = torch.randint(0, 60, (64,), generator=gen)
        u, p = users(pos_u[idx]), items(pos_i[idx])
        scores = torch.cat([(u * p).sum(1), (u * items(neg)).sum(1)])
        labels = torch.cat([torch.ones(64), torch.zeros(64)])
        loss = nn.functional.binary_cross_entropy_with_logits(scores, labels)
        opt.zero_grad()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    d = diagnose(manager)
    if report is not None:
        report.append(manager.to_report())
    manager.detach()
    if keep is not None:
        keep.append(manager)
    return d


def test_a_table_left_out_of_the_optimizer_lowers_a_real_runs_health():
    healthy, broken = _train(False), _train(True)
    assert healthy.health == pytest.approx(healthy.health_components.score)
    assert broken.health_components.learning < healthy.health_components.learning
    assert broken.health < healthy.health


def test_the_managers_report_carries_the_same_run_health():
    reports: list = []
    broken = _train(True, report=reports)
    stats = reports[0].stats
    assert stats["run_health"] == pytest.approx(broken.health)
    assert stats["run_health_components"] == pytest.approx(broken.health_components.to_dict())
    assert stats["run_health"] < 100.0
    # the tracker aggregate is named apart from the run health (and kept as health_score)
    assert stats["tracker_health_score"] == stats["health_score"]


def test_the_manager_names_its_two_health_numbers_apart():
    from gradtracer.manager import FlowManager

    assert FlowManager().run_health() is None and FlowManager().health_score() is None
    managers: list = []
    broken = _train(True, n_steps=30, keep=managers)
    assert managers[0].run_health() == pytest.approx(broken.health)
    assert managers[0].health_score() == managers[0].to_report().stats["tracker_health_score"]


def _record(role: str, quality: float, health: float, *, onset_step: int = 0,
            losses: list | None = None, family: str = "mf_bce", seed: int = 0,
            fault: str | None = None) -> dict:  # fmt: skip
    spec = {"family": family, "variant": "default", "random_state": seed, "data_path": None,
            "fault": fault}  # fmt: skip
    rec = {"spec": spec, "role": role, "quality": quality, "quality_name": "ndcg@10",
           "health_at_20": health, "health_at_20_step": 20, "onset_step": onset_step,
           "losses": losses if losses is not None else [0.69] * 100}  # fmt: skip
    if role == "faulty":
        rec["twin_quality"] = 0.2
    return rec


def test_health_rank_scores_only_faults_that_had_begun_in_the_onset_population():
    from gradtracer.fault_suite.runner import health_rank

    records = [_record("healthy", 0.2 + 0.01 * s, 90.0 + s, seed=0) for s in range(3)]
    records = [dict(r, spec=dict(r["spec"], random_state=s)) for s, r in enumerate(records)]
    for s in range(3):
        # a fault from step 0 the health saw, and a late one it could not see yet
        records.append(_record("faulty", 0.05 + 0.01 * s, 20.0 + s, seed=s, fault="a"))
        records.append(_record("faulty", 0.01 * s, 92.0 + s, onset_step=60, seed=s, fault="b"))
    # built into the model: onset after 20% but the losses already differ from the twin's
    records.append(_record("faulty", 0.0, 10.0, onset_step=60, losses=[0.7] * 100, fault="c"))
    out = health_rank(records, families=["mf_bce"])
    seen = out["pooled_ndcg_onset_before_20pct"]
    assert seen["n"] == 3 + 3 + 1 and out["pooled_ndcg_families"]["n"] == len(records)
    assert seen["rho"] > 0.9 > out["pooled_ndcg_families"]["rho"]
    assert out["pooled_relative_onset_before_20pct"]["n"] == 7
    assert out["mf_bce_onset_before_20pct"]["rho"] == pytest.approx(seen["rho"])
    assert out["no_checkpoint"]["n"] == 0
    untracked = [*records, _record("healthy", 0.2, math.nan, seed=9)]
    assert health_rank(untracked)["no_checkpoint"]["n"] == 1
