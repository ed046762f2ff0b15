"""Whole-run detectors (overfitting against the metric's own noise, gradients that are never
reset): hand-built signals, plus a tiny real run where it is cheap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from run_signals import layer, run, series, table
from torch import nn

from gradtracer.diagnosis import DiagnosisThresholds, collect_signals, diagnose_signals
from gradtracer.diagnosis.detectors import (
    detect_gradient_accumulation,
    detect_learning_rate,
    detect_overfitting,
)
from gradtracer.diagnosis.signals import ValidationSignals
from gradtracer.findings import FindingType
from gradtracer.flow.tracker import FlowTracker
from gradtracer.manager import FlowManager

TH = DiagnosisThresholds()


def accuracy(values, steps=None) -> tuple[ValidationSignals, ...]:
    steps = steps or tuple(int(x) for x in np.linspace(6, 120, len(values)))
    return (ValidationSignals("valid_accuracy", True, tuple(steps), tuple(map(float, values))),)


# ----------------------------------------------------------------------------- overfitting
def _noisy_plateau(drift: float, noise: float, *, n: int = 40, random_state: int = 0):
    """Validation accuracy that rises to 0.75 by a third of the run, then drifts by ``drift``
    (per point, negative: worse) with white evaluation noise of std ``noise``."""
    rng = np.random.default_rng(random_state)
    k = n // 3
    rise = np.linspace(0.55, 0.75, k)
    rest = 0.75 + drift * np.arange(1, n - k + 1)
    return np.concatenate([rise, rest]) + rng.normal(0.0, noise, n)


@pytest.mark.parametrize("random_state", range(8))
def test_a_noisy_plateau_is_not_overfitting(random_state):
    # evaluation noise of 2.5 points on a flat plateau: single values fall 5-7% below the
    # best one by chance, but the level does not move beyond its noise
    values = _noisy_plateau(0.0, 0.025, random_state=random_state)
    s = run(validation=accuracy(values), losses=series(np.linspace(0.69, 0.45, 125)))
    assert detect_overfitting(s, TH) == []


@pytest.mark.parametrize("random_state", range(4))
def test_a_sustained_decline_beyond_the_noise_is_overfitting(random_state):
    values = _noisy_plateau(-0.004, 0.01, random_state=random_state)
    s = run(validation=accuracy(values), losses=series(np.linspace(0.69, 0.2, 125)))
    (f,) = detect_overfitting(s, TH)
    assert f.type is FindingType.OVERFITTING_ONSET
    ev = f.evidence
    assert ev["relative_worsening"] >= TH.overfit_worsening
    assert ev["latest_value"] < ev["best_value"]
    # the best level comes from the window at the end of the rise, not from a late outlier
    assert 6 <= f.remedy.params["at_step"] <= 80


def test_a_decline_within_the_noise_is_not_overfitting():
    # the last window is 6% below the best one, but single evaluations scatter by 8%
    rng = np.random.default_rng(3)
    values = np.concatenate([np.full(20, 0.75), np.full(20, 0.705)]) + rng.normal(0, 0.06, 40)
    values = np.clip(values, 0.0, 1.0)
    s = run(validation=accuracy(values), losses=series(np.linspace(0.69, 0.45, 125)))
    assert detect_overfitting(s, TH) == []


def test_overfitting_noise_threshold_is_a_named_field():
    values = _noisy_plateau(-0.004, 0.01, random_state=0)
    s = run(validation=accuracy(values), losses=series(np.linspace(0.69, 0.2, 125)))
    assert detect_overfitting(s, TH)
    strict = dataclasses.replace(TH, overfit_noise_z=1e6)
    assert detect_overfitting(s, strict) == []


# ------------------------------------------------------------------- gradient accumulation
def _growing(n: int = 100) -> tuple[tuple[int, float], ...]:
    return series(np.linspace(0.01, 0.5, n))


def test_accumulation_needs_repeating_gradients_also_with_tables():
    # a GRU that starts to learn: its gradient norm grows 50x, Adam's momentum makes its row
    # updates agree (cosine 0.7), but each step's gradient is fresh (SNR 0.2)
    learning = run(tables=(table(oscillation=0.7, grad_snr=0.2),),
                   layers=tuple(layer(f"gru.{i}.weight", snr=0.2) for i in range(3)),
                   grad_norms=_growing())  # fmt: skip
    assert detect_gradient_accumulation(learning, TH) == []
    summed = run(tables=(table(oscillation=0.98, grad_snr=3.0),),
                 layers=tuple(layer(f"gru.{i}.weight", snr=3.5) for i in range(3)),
                 grad_norms=_growing())  # fmt: skip
    (f,) = detect_gradient_accumulation(summed, TH)
    assert f.type is FindingType.GRADIENT_ACCUMULATION and f.remedy.kind == "call_zero_grad"
    assert f.evidence["gradient_snr"] >= TH.accumulation_snr


def test_accumulation_of_a_table_only_model_reads_the_table_snr():
    fresh = run(tables=(table(oscillation=0.9, grad_snr=0.1),), grad_norms=_growing())
    assert detect_gradient_accumulation(fresh, TH) == []
    summed = dataclasses.replace(fresh, tables=(table(oscillation=0.9, grad_snr=4.0),))
    assert len(detect_gradient_accumulation(summed, TH)) == 1
    # unknown SNR (no FlowTracker): the growth and the repeating row updates decide
    unknown = dataclasses.replace(fresh, tables=(table(oscillation=0.9),))
    assert len(detect_gradient_accumulation(unknown, TH)) == 1


def _embedding_run(zero_grad: bool, *, random_state: int = 0) -> FlowManager:
    """A tiny embedding + linear model on a fixed regression target, tracked by a
    FlowTracker (which measures the tables' gradient SNR as well)."""
    gen = torch.Generator().manual_seed(random_state)
    torch.manual_seed(random_state)
    model = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 50, (400, 2), generator=gen)
    y = torch.randn(400, 1, generator=gen)
    manager = FlowManager("acc")
    manager.add_tracker("model", FlowTracker(model, optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for _ in range(80):
        if zero_grad:
            opt.zero_grad()
        idx = torch.randint(0, 400, (32,), generator=gen)
        loss = nn.functional.mse_loss(model(ids[idx]), y[idx])
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    manager.detach()
    return manager


def test_collect_signals_reads_the_flow_trackers_gradient_snr_of_a_table():
    from gradtracer.embedding.tracker import EmbeddingTracker

    torch.manual_seed(0)
    emb = nn.Embedding(20, 4)
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    manager = FlowManager("snr")
    manager.add_tracker("emb", EmbeddingTracker(emb, name="emb"))
    manager.add_tracker("model", FlowTracker(model, optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for _ in range(30):
        opt.zero_grad()
        loss = model(torch.randint(0, 20, (16, 2))).pow(2).mean()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    manager.detach()
    (t,) = collect_signals(manager).tables
    assert np.isfinite(t.grad_snr) and t.grad_snr >= 0.0


def test_dense_gradients_that_are_never_reset_have_a_high_snr_in_a_real_run():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        summed = collect_signals(_embedding_run(False))
        fresh = collect_signals(_embedding_run(True))
    snr = {s: float(np.median([ly.snr for ly in sig.layers if ly.fan_in]))
           for s, sig in (("summed", summed), ("fresh", fresh))}  # fmt: skip
    assert snr["summed"] >= TH.accumulation_snr > snr["fresh"]


# ------------------------------------------------------------------ learning rate too high
def _rising() -> tuple[tuple[int, float], ...]:
    return series(np.concatenate([np.linspace(0.69, 0.5, 40), np.linspace(0.5, 1.2, 60)]))


@pytest.mark.parametrize(("moved", "factor"), [(0.6, 0.05), (2.2, 0.014), (30.0, 1e-3), (0.2, 0.1)])
def test_too_high_rate_factor_follows_the_displacement_over_the_initial_norm(moved, factor):
    # Adam moves rows by about lr per coordinate, and the rows' norm grows with it, so the
    # movement relative to the current norm saturates near 4%; relative to the initial norm
    # it keeps the overshoot (30x: ~0.6, 100x: ~2.2 on rows whose healthy value is ~0.03)
    t = table(rel_velocity=0.045, mean_row_norm=moved / 0.045 * 0.4, init_mean_row_norm=0.4)
    (f,) = detect_learning_rate(run(tables=(t,), losses=_rising()), TH)
    assert f.type is FindingType.LEARNING_RATE_TOO_HIGH
    assert f.evidence["init_displacement"] == pytest.approx(moved)
    assert f.remedy.params["factor"] == pytest.approx(factor)  # 0.03 / moved, at most 0.1


def test_rows_blown_up_past_their_initial_norm_overshoot_below_the_relative_threshold():
    # 3.9% of the current norm per update (under high_rel_velocity) but 70% of the initial one
    t = table(rel_velocity=0.039, mean_row_norm=7.2, init_mean_row_norm=0.4)
    (f,) = detect_learning_rate(run(tables=(t,), losses=_rising()), TH)
    assert f.type is FindingType.LEARNING_RATE_TOO_HIGH
    assert f.remedy.params["factor"] == pytest.approx(0.043)  # 0.03 / 0.70
    grown = table(rel_velocity=0.039, mean_row_norm=1.2, init_mean_row_norm=0.4)
    assert detect_learning_rate(run(tables=(grown,), losses=_rising()), TH) == []


def test_runaway_rows_are_too_high_whatever_the_loss_does():
    exposure = np.full(200, 50.0)
    norms = np.full(200, 0.8)
    fast = table(rel_velocity=1.2, mean_row_norm=0.8, init_mean_row_norm=0.4, exposure=exposure,
                 row_norms=norms, row_velocity=np.full(200, 0.96))  # fmt: skip
    falling = series(np.linspace(0.70, 0.67, 100))  # the loss still falls a little
    (f,) = detect_learning_rate(run(tables=(fast,), losses=falling), TH)
    assert f.type is FindingType.LEARNING_RATE_TOO_HIGH
    assert f.remedy.params["factor"] == pytest.approx(0.0125, rel=0.05)  # 0.03 / (0.96 / 0.4)
    # rarely seen rows of a table initialised near zero move by a large share of their tiny
    # norm; the busy rows decide
    cold = np.concatenate([np.full(100, 50.0), np.full(100, 1.0)])
    tiny = np.concatenate([np.full(100, 0.8), np.full(100, 1e-3)])
    vel = np.concatenate([np.full(100, 0.008), np.full(100, 0.004)])
    healthy = table(rel_velocity=0.9, mean_row_norm=0.4, init_mean_row_norm=0.01,
                    exposure=cold, row_norms=tiny, row_velocity=vel)  # fmt: skip
    for f in detect_learning_rate(run(tables=(healthy,), losses=falling), TH):
        assert f.type is not FindingType.LEARNING_RATE_TOO_HIGH


# ------------------------------------------------------------------- learning rate too low
def test_a_cut_rate_is_dated_by_the_change_point_and_sized_by_the_flow_displacement():
    # per-step displacement of the FlowTracker: a noisy start, then a 1e4 cut at step 60
    rng = np.random.default_rng(0)
    vel = np.where(np.arange(100) < 60, 0.01, 1e-6) * np.exp(rng.normal(0, 0.3, 100))
    vel[1] = 1e-4  # one early dip is no cut
    flat_late = np.concatenate([np.linspace(0.69, 0.55, 60), np.full(40, 0.55)])
    slow_now = table(rel_velocity=2e-5, row_velocity=np.full(200, 2.4e-5))
    layers = (layer("net.0.weight", update_ratio=1e-6), layer("net.0.bias", fan_in=None,
                                                              update_ratio=0.05))  # fmt: skip
    s = run(tables=(slow_now,), layers=layers, losses=series(flat_late),
            velocities=series(vel))  # fmt: skip
    (f,) = detect_learning_rate(s, TH)
    assert f.type is FindingType.LEARNING_RATE_TOO_LOW
    assert f.remedy.params["from_step"] == 60  # the snapshot before the cut (steps 1, 2, ...)
    assert f.remedy.params["factor"] == pytest.approx(1e4)
    # a bias near zero (update ratio 5%) does not count as a fast part of the model
    assert f.evidence["max_rel_velocity"] < TH.low_rel_velocity


def test_a_rate_raised_mid_run_is_dated_even_when_the_rows_slowed_down_before():
    # sparse Adagrad: large first steps that shrink, then a 30x rate at step 60 that the
    # accumulated squares damp again, so late rows move only ~3-5x faster than at the start
    early = 0.05 * 0.95 ** np.arange(30)
    late = 30 * 0.05 * 0.95**30 * 0.93 ** np.arange(20)
    history = tuple((2 * i + 2, float(v)) for i, v in enumerate(np.concatenate([early, late])))
    t = table(rel_velocity=0.09, velocity_series=history)
    (f,) = detect_learning_rate(run(tables=(t,), losses=_rising()), TH)
    # one snapshot before the last slow one: the first fast snapshot is a partial EMA
    assert f.remedy.params["from_step"] == 58
    # rows that only slow down (training) carry no date
    slowing = dataclasses.replace(t, velocity_series=tuple((2 * i + 2, 0.05 * 0.97**i)
                                                           for i in range(50)))  # fmt: skip
    (g,) = detect_learning_rate(run(tables=(slowing,), losses=_rising()), TH)
    assert "from_step" not in g.remedy.params


def _mf_run(learning_rate: float, *, random_state: int = 0, n_steps: int = 80,
            zero_grad: bool = True) -> FlowManager:  # fmt: skip
    """A tiny implicit MF (users like the items of their group, BCE with random negatives,
    Adam), both tables tracked by EmbeddingTrackers and the model by a FlowTracker;
    ``zero_grad=False`` never resets the gradients."""
    from gradtracer.embedding.tracker import EmbeddingTracker

    torch.manual_seed(random_state)
    gen = torch.Generator().manual_seed(random_state)
    n_users, n_items = 120, 90
    user_emb, item_emb = nn.Embedding(n_users, 8), nn.Embedding(n_items, 8)
    for emb in (user_emb, item_emb):
        nn.init.normal_(emb.weight, std=0.1)
    model = nn.ModuleDict({"user_emb": user_emb, "item_emb": item_emb})
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    group = torch.randint(0, 4, (n_users,), generator=gen)
    manager = FlowManager("mf")
    for name, emb in (("user_emb", user_emb), ("item_emb", item_emb)):
        manager.add_tracker(name, EmbeddingTracker(emb, name=name, track_interval=2))
    manager.add_tracker("model", FlowTracker(model, optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    ones, zeros = torch.ones(64), torch.zeros(64)
    for _ in range(n_steps):
        u = torch.randint(0, n_users, (64,), generator=gen)
        pos = group[u] * (n_items // 4) + torch.randint(0, n_items // 4, (64,), generator=gen)
        neg = torch.randint(0, n_items, (64,), generator=gen)
        scores = torch.cat([(user_emb(u) * item_emb(pos)).sum(1),
                            (user_emb(u) * item_emb(neg)).sum(1)])  # fmt: skip
        loss = nn.functional.binary_cross_entropy_with_logits(scores, torch.cat([ones, zeros]))
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    manager.detach()
    return manager


def test_measured_too_high_factor_on_real_tiny_runs_and_a_silent_healthy_twin():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        runs = {lr: collect_signals(_mf_run(lr)) for lr in (0.01, 0.3, 1.0)}
    assert detect_learning_rate(runs[0.01], TH) == []
    for lr, (lo, hi) in ((0.3, (1 / 60, 1 / 12)), (1.0, (1 / 200, 1 / 40))):
        found = detect_learning_rate(runs[lr], TH)
        assert {f.subject for f in found} == {"user_emb", "item_emb"}
        for f in found:  # 30x and 100x the healthy rate: cut by about that much
            assert f.type is FindingType.LEARNING_RATE_TOO_HIGH
            assert lo <= f.remedy.params["factor"] <= hi


def test_tables_whose_gradients_are_never_reset_repeat_them_in_a_real_tiny_run():
    from gradtracer.diagnosis.detectors import detect_bad_initialization

    with torch.random.fork_rng():
        torch.set_num_threads(1)
        summed = collect_signals(_mf_run(0.01, zero_grad=False, n_steps=120))
        fresh = collect_signals(_mf_run(0.01, n_steps=120))
    assert min(t.grad_snr for t in summed.tables) >= TH.accumulation_snr
    assert max(t.grad_snr for t in fresh.tables) < TH.accumulation_snr
    (f,) = detect_gradient_accumulation(summed, TH)
    assert f.type is FindingType.GRADIENT_ACCUMULATION
    assert detect_gradient_accumulation(fresh, TH) == []
    # the summed gradients grow the tables through their own updates: no initialisation fault
    assert detect_bad_initialization(summed, TH) == []


def test_small_noisy_suite_runs_overfit_only_when_trained_past_their_epochs():
    from gradtracer.fault_suite.loop import RunSpec, train_run

    def overfit_findings(**spec) -> list[str]:
        run = train_run(RunSpec("mlp", variant="small_noisy", **spec), latency_probes=False)
        last = run.checkpoints[-1].findings
        return [f["type"] for f in last if f["type"] == "OVERFITTING_ONSET"
                and f["severity"] != "info"]  # fmt: skip

    with torch.random.fork_rng():
        torch.set_num_threads(1)
        # noisy validation accuracy (400 examples, 20% label noise) on healthy runs
        for seed in (7, 8):
            assert overfit_findings(random_state=seed) == []
        assert overfit_findings(random_state=0, fault="overfitting") == ["OVERFITTING_ONSET"]


def test_slow_movement_behind_dead_units_ranks_after_them():
    # every unit of net.1 outputs zero: no gradient reaches net.0 or the table, all move
    # slowly and the loss stalls, which alone reads as a learning rate that is too low
    flat = series(np.full(100, 0.69))
    slow = table(rel_velocity=2e-5, row_velocity=np.full(200, 2e-5))
    layers = (layer("net.0.weight", update_ratio=2e-5), layer("net.2.weight", update_ratio=3e-5))
    s = run(tables=(slow,), layers=layers, losses=flat, velocities=series(np.full(100, 2e-5)),
            dead_fractions={"net.1": 1.0})  # fmt: skip
    d = diagnose_signals(s)
    assert d.top is not None and d.top.type is FindingType.DEAD_ACTIVATIONS
    low = next(f for f in d.findings if f.type is FindingType.LEARNING_RATE_TOO_LOW)
    assert low.consequence_of is FindingType.DEAD_ACTIVATIONS
    # the same run without dead units is named a learning rate that is too low
    alive = diagnose_signals(dataclasses.replace(s, dead_fractions={}))
    assert alive.top is not None and alive.top.type is FindingType.LEARNING_RATE_TOO_LOW
