"""Embedding-side and validation detectors on hand-built signals, the validation-metric API
of FlowManager, and tiny real training runs with and without the fault."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from run_signals import run, table
from run_signals import series as losses
from torch import nn

from gradtracer.diagnosis import DiagnosisThresholds, collect_signals, diagnose_signals
from gradtracer.diagnosis.detectors import (
    detect_gradient_accumulation,
    detect_learning_rate,
    detect_negative_sampling,
    detect_no_learning_signal,
    detect_overfitting,
    detect_unreachable_rows,
)
from gradtracer.diagnosis.detectors.training import recent_rel_velocity
from gradtracer.diagnosis.signals import (
    LayerSignals,
    TableSignals,
    ValidationSignals,
)
from gradtracer.findings import FindingType, Severity
from gradtracer.manager import FlowManager

TH = DiagnosisThresholds()


signals = run


def valid(values, *, higher_is_better=False, name="valid_loss") -> tuple[ValidationSignals, ...]:
    steps = tuple(int(x) for x in np.linspace(10, 100, len(values)))
    return (ValidationSignals(name, higher_is_better, steps, tuple(float(v) for v in values)),)


# --------------------------------------------------------------------- unreachable rows
def _user_table(last_seen: np.ndarray) -> TableSignals:
    exposure = np.where(last_seen > 0, np.maximum(last_seen / 2, 1), 0)
    return table(name="user_emb", n_rows=last_seen.size, exposure=exposure, last_seen=last_seen)


def test_rows_that_stop_being_looked_up_mid_run_form_an_unreachable_block():
    rng = np.random.default_rng(0)
    last_seen = rng.integers(85, 101, size=200).astype(float)  # seen near the end
    last_seen[150:] = rng.integers(20, 31, size=50)  # mapping broke at step ~30
    (f,) = detect_unreachable_rows(signals(tables=(_user_table(last_seen),)), TH)
    assert f.type is FindingType.UNREACHABLE_ROWS and f.remedy.kind == "fix_id_mapping"
    assert f.evidence["block_start"] == 150 and f.evidence["block_length"] == 50
    assert 20 <= f.evidence["last_seen_step"] <= 30


def test_scattered_stale_rows_and_recently_seen_rows_are_not_unreachable():
    rng = np.random.default_rng(1)
    last_seen = rng.integers(85, 101, size=200).astype(float)
    last_seen[rng.choice(200, size=30, replace=False)] = 20  # cold rows, scattered
    assert detect_unreachable_rows(signals(tables=(_user_table(last_seen),)), TH) == []
    recent = np.full(200, 99.0)
    recent[150:] = 80.0  # a block last seen 20% before the end: still reachable
    assert detect_unreachable_rows(signals(tables=(_user_table(recent),)), TH) == []


# ---------------------------------------------------------------- learning rate too low
def test_learning_rate_cut_mid_run_is_too_low_not_a_missing_signal():
    exposure = np.concatenate([np.full(100, 60.0), np.full(100, 3.0)])
    # busy rows move 1e-5 now; rarely seen rows still carry their early 1e-2 updates
    velocity = np.concatenate([np.full(100, 1.2e-5), np.full(100, 1.2e-2)])
    t = table(exposure=exposure, row_velocity=velocity, rel_velocity=0.005)
    assert recent_rel_velocity(t) == pytest.approx(1e-5)
    falling_then_flat = np.concatenate([np.linspace(0.693, 0.68, 30), np.full(70, 0.68)])
    s = signals(tables=(t,), losses=losses(falling_then_flat))
    (f,) = detect_learning_rate(s, TH)
    assert f.type is FindingType.LEARNING_RATE_TOO_LOW and f.remedy.kind == "scale_learning_rate"
    assert f.remedy.params["factor"] == pytest.approx(1000.0)  # 1e-5 -> healthy 1e-2
    assert "from_step" not in f.remedy.params  # no velocity history: the cut is not dated
    assert detect_no_learning_signal(s, TH) == []
    # with the velocity history the cut is dated and the pre-cut rate restored
    series = tuple((2 * i, 0.02 * 0.99**i if i < 30 else 2e-5) for i in range(50))
    dated = dataclasses.replace(s, tables=(dataclasses.replace(t, velocity_series=series),))
    (f,) = detect_learning_rate(dated, TH)
    assert f.remedy.params["from_step"] == 58 and f.remedy.params["factor"] == 1000.0
    healthy = dataclasses.replace(t, row_velocity=np.full(200, 6e-3))
    assert detect_learning_rate(dataclasses.replace(s, tables=(healthy,)), TH) == []


def test_learning_rate_raised_mid_run_is_dated_in_the_remedy():
    rising = np.concatenate([np.linspace(0.69, 0.5, 40), np.linspace(0.5, 1.2, 60)])
    series = tuple((2 * i, 0.01 * 0.99**i if i < 20 else 0.3) for i in range(50))
    fast = table(rel_velocity=0.09, velocity_series=series)
    (f,) = detect_learning_rate(signals(tables=(fast,), losses=losses(rising)), TH)
    assert f.type is FindingType.LEARNING_RATE_TOO_HIGH
    assert f.remedy.params == {"subject": "item_emb", "factor": 0.1, "from_step": 36}
    (g,) = detect_learning_rate(signals(tables=(table(rel_velocity=0.09),),
                                        losses=losses(rising)), TH)  # fmt: skip
    assert "from_step" not in g.remedy.params


# ------------------------------------------------------- no signal, cancelled negatives
def test_a_loss_that_falls_back_to_its_start_and_stays_there_has_no_signal():
    learned_then_lost = np.concatenate([np.linspace(0.69, 0.2, 30), np.full(70, 0.69)])
    (f,) = detect_no_learning_signal(signals(losses=losses(learned_then_lost)), TH)
    assert f.type is FindingType.NO_LEARNING_SIGNAL and f.evidence["fell_back"] is True
    assert f.remedy.kind == "check_labels"
    partly_lost = np.concatenate([np.linspace(0.69, 0.2, 30), np.full(70, 0.45)])
    assert detect_no_learning_signal(signals(losses=losses(partly_lost)), TH) == []


def test_a_loss_identical_on_every_batch_with_zero_gradients_is_cancelled_negatives():
    s = signals(losses=losses(np.full(100, math.log(2.0))), grad_norms=losses(np.zeros(100)))
    (f,) = detect_negative_sampling(s, TH)
    assert f.remedy.kind == "exclude_positives_from_negatives"
    noisy = signals(losses=losses(0.69 + 0.01 * np.sin(np.arange(100))),
                    grad_norms=losses(np.zeros(100)))  # fmt: skip
    assert detect_negative_sampling(noisy, TH) == []


# ------------------------------------------------------- gradient accumulation, dense only
def _dense(snr: float) -> tuple[LayerSignals, ...]:
    return tuple(
        LayerSignals(
            name=f"net.{i}.weight",
            module=f"net.{i}",
            numel=640,
            n_obs=50,
            fan_in=20,
            gain=0.7,
            all_zero=False,
            update_ratio=0.01,
            velocity=0.01,
            grad_norm=0.1,
            grad_norm_median=0.1,
            grad_norm_max=0.3,
            snr=snr,
            spikes=0,
            requires_grad=True,
            in_optimizer=True,
            weight_decay=0.0,
            learning_rate=0.003,
        )  # fmt: skip
        for i in range(3)
    )


def test_dense_only_accumulation_needs_growth_and_repeating_gradients():
    growing = losses(np.linspace(0.01, 0.5, 100))
    summed = signals(tables=(), layers=_dense(snr=5.0), grad_norms=growing)
    (f,) = detect_gradient_accumulation(summed, TH)
    assert f.type is FindingType.GRADIENT_ACCUMULATION and f.remedy.kind == "call_zero_grad"
    # a learning rate too high also grows the gradient norm, but its gradients are noise
    overshoot = dataclasses.replace(summed, layers=_dense(snr=0.05))
    assert detect_gradient_accumulation(overshoot, TH) == []


# ----------------------------------------------------------------------- overfitting
def test_overfitting_fires_on_rising_validation_loss_with_falling_training_loss():
    s = signals(validation=valid([0.60, 0.52, 0.48, 0.47, 0.49, 0.52, 0.55, 0.58, 0.61, 0.64]))
    (f,) = detect_overfitting(s, TH)
    assert f.type is FindingType.OVERFITTING_ONSET and f.severity is Severity.WARNING
    assert f.evidence["best_step"] == 40
    assert f.remedy is not None and f.remedy.kind == "early_stop"
    assert f.remedy.params["at_step"] == 40
    assert "step 40" in f.implies and "round" not in f.implies
    assert diagnose_signals(s).top.type is FindingType.OVERFITTING_ONSET


def test_overfitting_reads_quality_metrics_the_right_way_round():
    rising = [0.05, 0.08, 0.10, 0.12, 0.13, 0.14, 0.15, 0.155, 0.16, 0.16]
    falling = [0.05, 0.10, 0.14, 0.15, 0.14, 0.13, 0.12, 0.11, 0.10, 0.09]
    assert detect_overfitting(signals(validation=valid(rising, higher_is_better=True)), TH) == []
    (f,) = detect_overfitting(signals(validation=valid(falling, higher_is_better=True)), TH)
    assert f.evidence["best_step"] == 40 and f.evidence["higher_is_better"] is True


@pytest.mark.parametrize(
    "values",
    [
        [0.60, 0.55, 0.52, 0.50, 0.49, 0.48, 0.48, 0.47, 0.47, 0.46],  # still improving
        [0.60, 0.55, 0.52, 0.50, 0.49, 0.48, 0.47, 0.46, 0.45, 0.47],  # one late bad point
        [0.60, 0.55, 0.52, 0.50, 0.49, 0.50, 0.49, 0.50, 0.495, 0.5],  # noise at the plateau
        [0.60, 0.70, 0.80],  # too few points for a trend
    ],
)
def test_overfitting_stays_silent_without_a_sustained_worsening(values):
    assert detect_overfitting(signals(validation=valid(values)), TH) == []


def test_overfitting_needs_the_training_loss_to_keep_falling():
    rising_val = [0.60, 0.52, 0.48, 0.47, 0.49, 0.52, 0.55, 0.58, 0.61, 0.64]
    flat_after = np.concatenate([np.linspace(0.69, 0.5, 40), np.linspace(0.5, 0.56, 60)])
    s = signals(validation=valid(rising_val), losses=losses(flat_after))
    assert detect_overfitting(s, TH) == []
    assert detect_overfitting(signals(validation=valid([math.nan] * 8)), TH) == []


# ------------------------------------------------------------- FlowManager.record_validation
def test_record_validation_series_and_report():
    m = FlowManager("run")
    m.record_validation(0.5)
    m.step()
    m.record_validation(torch.tensor(0.4))
    m.record_validation(float("nan"), step=5)
    m.record_validation(0.2, name="ndcg@10", higher_is_better=True, step=5)
    series = m.validation["valid_loss"]
    assert series.steps == (0, 1, 5) and series.best_step == 1
    assert series.values[1] == pytest.approx(0.4) and math.isnan(series.values[2])
    stats = m.to_report().stats["validation"]
    assert stats["valid_loss"]["values"][2] is None
    assert stats["ndcg@10"] == {"higher_is_better": True, "steps": [5], "values": [0.2],
                                "best_step": 5, "best_value": 0.2}  # fmt: skip
    assert FlowManager().to_report().stats.get("validation") is None


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.record_validation("0.3"), TypeError, "real number"),
        (lambda m: m.record_validation(True), TypeError, "real number"),
        (lambda m: m.record_validation(torch.ones(2)), TypeError, "real number"),
        (lambda m: m.record_validation(0.3, name=""), ValueError, "non-empty"),
        (lambda m: m.record_validation(0.3, step=-1), ValueError, ">= 0"),
        (lambda m: m.record_validation(0.3, step=1.5), TypeError, "step must be an int"),
        (lambda m: m.record_validation(0.3, step=2), ValueError, "before its last"),
        (lambda m: m.record_validation(0.3, higher_is_better=True), ValueError, "recorded with"),
    ],
)
def test_record_validation_rejects_bad_input(call, error, match):
    m = FlowManager()
    m.record_validation(0.5, step=3)
    with pytest.raises(error, match=match):
        call(m)
    assert m.validation["valid_loss"].values == (0.5,)  # nothing recorded lost


def _overfit_run(hidden: int, *, n_train: int = 80, random_state: int = 0) -> FlowManager:
    """A small MLP regression on noisy linear data, tracked through a FlowManager, with the
    validation loss recorded every 10 steps.

    With 128 hidden units for 80 training examples the MLP first learns the linear part and
    then memorises the noise (the validation loss rises again); with 4 it generalises."""
    from gradtracer.flow.tracker import FlowTracker

    gen = torch.Generator().manual_seed(random_state)
    torch.manual_seed(random_state)
    w_true = torch.randn(10, 1, generator=gen)
    x_tr = torch.randn(n_train, 10, generator=gen)
    y_tr = x_tr @ w_true + torch.randn(n_train, 1, generator=gen)
    x_va = torch.randn(500, 10, generator=gen)
    y_va = x_va @ w_true + torch.randn(500, 1, generator=gen)
    model = nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 1))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    manager = FlowManager("overfit")
    manager.add_tracker("model", FlowTracker(model, optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for step in range(200):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x_tr), y_tr)
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
        if (step + 1) % 10 == 0:
            with torch.no_grad():
                manager.record_validation(float(nn.functional.mse_loss(model(x_va), y_va)))
    manager.detach()
    return manager


def test_overfitting_on_a_real_run_and_its_healthy_twin():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        faulty = collect_signals(_overfit_run(128))
        healthy = collect_signals(_overfit_run(4))
    (f,) = detect_overfitting(faulty, TH)
    assert f.remedy is not None and f.remedy.kind == "early_stop"
    assert 0 < f.remedy.params["at_step"] < 100
    assert detect_overfitting(healthy, TH) == []


# ------------------------------------------------------------- large tables: init or growth
def test_a_table_that_grew_large_through_its_updates_is_not_badly_initialised():
    from gradtracer.diagnosis.detectors import detect_bad_initialization

    # started at a normal scale (row norm 0.4), now RMS 5, moving 0.4% per update over 2000
    # steps: its own path (8x its norm) accounts for the growth (summed gradients)
    grown = table(coord_rms=5.0, mean_row_norm=20.0, rel_velocity=0.004, steps=2000,
                  init_mean_row_norm=0.4)  # fmt: skip
    assert detect_bad_initialization(signals(tables=(grown,)), TH) == []
    # the same scale reached in 100 steps: a jump the updates cannot account for (a table
    # re-initialised mid-run), and one that started large
    jumped = dataclasses.replace(grown, steps=100)
    started = dataclasses.replace(grown, init_mean_row_norm=19.0)
    unknown = dataclasses.replace(grown, init_mean_row_norm=None)
    for t in (jumped, started, unknown):
        (f,) = detect_bad_initialization(signals(tables=(t,)), TH)
        assert f.type is FindingType.BAD_INITIALIZATION
