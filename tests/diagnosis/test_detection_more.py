"""Detection of gradients reset only every few steps (a sawtooth gradient norm), of terms
that cancel exactly (lookups with no gradient) and of dense weights grown by a too high
rate: hand-built signals and tiny real runs the tests train themselves."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from run_signals import series as _series
from torch import nn

from gradtracer.diagnosis import DiagnosisThresholds, collect_signals, diagnose_signals
from gradtracer.diagnosis.detectors import (
    detect_dense_overshoot,
    detect_gradient_accumulation,
    detect_negative_sampling,
)
from gradtracer.diagnosis.detectors.tables import zero_gradient_share
from gradtracer.diagnosis.detectors.training import gradient_ramps, reset_period
from gradtracer.diagnosis.signals import LayerSignals, RunSignals, TableSignals
from gradtracer.findings import FindingType
from gradtracer.flow.tracker import FlowTracker
from gradtracer.manager import FlowManager

TH = DiagnosisThresholds()
T = FindingType


def _table(name: str = "user_emb", **changes) -> TableSignals:
    """A 100 x 8 table of small rows that moves 1% of its norm per update."""
    base = TableSignals(
        name=name, n_rows=100, dim=8, steps=100, requires_grad=True, in_optimizer=True,
        weight_decay=0.0, learning_rate=0.01, finite=True, coord_rms=0.2, mean_row_norm=0.6,
        rel_velocity=0.01, mean_grad_norm=1e-3, oscillation=0.05,
        exposure=np.full(100, 40.0), grad_pressure=np.full(100, 1e-3), duplicate_share=0.0,
        spectrum=np.array([3.0, 2.5, 2.0, 1.5]), n_pairs=np.full(100, 36.0),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def _run(**changes) -> RunSignals:
    base = RunSignals(
        step=120, tables=(_table(),), layers=(), dead_fractions={},
        losses=_series(np.linspace(0.69, 0.55, 120)), grad_norms=_series(np.full(120, 0.01)),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def _sawtooth(period: int, n: int = 120, seed: int = 0) -> np.ndarray:
    """Norms of gradients summed since the last reset, reset every ``period`` steps."""
    rng = np.random.default_rng(seed)
    out, acc = [], np.zeros(16)
    for step in range(n):
        if step % period == 0:
            acc = np.zeros(16)
        acc = acc + 1.0 + 0.3 * rng.standard_normal(16)  # one batch's gradient
        out.append(float(np.linalg.norm(acc)))
    return np.asarray(out)


# -------------------------------------------------------------------- sawtooth gradients
def test_periodic_resets_make_regular_ramps_and_noise_does_not():
    share, tops = gradient_ramps(_series(_sawtooth(8)), TH)
    assert share > 0.8 and len(tops) >= 10
    assert reset_period(tops) == (8, 1.0)
    noise = np.random.default_rng(1).lognormal(0.0, 0.3, 120)
    share, tops = gradient_ramps(_series(noise), TH)
    assert share < TH.accumulation_ramp_share


def test_sawtooth_gradient_is_named_gradient_accumulation():
    (f,) = detect_gradient_accumulation(_run(grad_norms=_series(_sawtooth(6))), TH)
    assert f.type is T.GRADIENT_ACCUMULATION and f.evidence["reset_period"] == 6
    assert f.remedy is not None and f.remedy.kind == "call_zero_grad"
    # the fault from 30% of the run on: the ramps still cover enough of it
    late = np.concatenate([np.random.default_rng(2).lognormal(0.0, 0.2, 36), _sawtooth(8, 84)])
    assert [f.type for f in detect_gradient_accumulation(_run(grad_norms=_series(late)), TH)] == [
        T.GRADIENT_ACCUMULATION
    ]
    # fresh gradients: nothing to say
    fresh = np.random.default_rng(3).lognormal(0.0, 0.3, 120)
    assert detect_gradient_accumulation(_run(grad_norms=_series(fresh)), TH) == []


def test_irregular_grow_and_collapse_is_not_a_reset_period():
    # a too high rate grows the gradient for a while and collapses it at irregular
    # intervals: ramps, but no period
    values: list[float] = []
    for length in (5, 11, 7, 13, 17, 9, 19, 6, 23, 10, 14):
        values += list(np.geomspace(0.01, 0.01 * 2.0 ** (length / 3), length))
    s = _run(grad_norms=_series(values[:120]))
    share, tops = gradient_ramps(s.grad_norms, TH)
    assert share >= TH.accumulation_ramp_share and len(tops) >= TH.accumulation_min_ramps
    assert reset_period(tops)[1] < TH.accumulation_period_share
    assert detect_gradient_accumulation(s, TH) == []


def _dense_run(reset_every: int, n_steps: int = 120, *, deliberate: bool = False) -> FlowManager:
    """A small MLP regression, tracked by a FlowTracker; gradients reset every
    ``reset_every`` steps (1: every step). ``deliberate``: the optimizer steps only at the
    end of each cycle (gradient accumulation on purpose), the tracker at every batch."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    w = torch.randn(10, 1, generator=gen)
    manager = FlowManager("dense")
    manager.add_tracker("model", FlowTracker(model, optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for step in range(n_steps):
        x = torch.randn(32, 10, generator=gen)
        y = x @ w + 0.1 * torch.randn(32, 1, generator=gen)
        if step % reset_every == 0:
            opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        manager.step(loss=float(loss.detach()))
        if not deliberate or step % reset_every == reset_every - 1:
            opt.step()
    manager.detach()
    return manager


def test_zero_grad_every_few_steps_is_found_in_a_real_run_and_every_step_is_not():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        periodic = collect_signals(_dense_run(8))
        fresh = collect_signals(_dense_run(1))
    (f,) = detect_gradient_accumulation(periodic, TH)
    assert f.type is T.GRADIENT_ACCUMULATION and f.evidence["reset_period"] % 8 == 0
    assert detect_gradient_accumulation(fresh, TH) == []
    assert diagnose_signals(fresh).top is None
    # the same sawtooth when the optimizer steps once per cycle on purpose: no finding
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        deliberate = collect_signals(_dense_run(8, deliberate=True))
    assert gradient_ramps(deliberate.grad_norms, TH)[0] >= TH.accumulation_ramp_share
    assert detect_gradient_accumulation(deliberate, TH) == []


# ------------------------------------------------------------------ cancelling lookups
def test_zero_gradient_share_counts_lookups_without_a_gradient():
    assert zero_gradient_share(_table()) < 0.15  # first lookups pair with nothing
    half = _table(n_pairs=np.full(100, 19.5))
    assert abs(zero_gradient_share(half) - 0.5) < 1e-9
    assert np.isnan(zero_gradient_share(_table(n_pairs=np.zeros(0))))
    # rows that never got a gradient (a padding row looked up at every step) are another
    # fault, not terms that cancel at some lookups
    padded = _table(exposure=np.r_[np.full(99, 40.0), 4000.0], n_pairs=np.r_[np.full(99, 36.0), 0])
    assert zero_gradient_share(padded) < 0.15


def test_lookups_that_get_no_gradient_while_rows_stay_small_are_cancelling_terms():
    half = _run(tables=(_table(n_pairs=np.full(100, 19.5)), _table("item_emb")))
    (f,) = detect_negative_sampling(half, TH)
    assert f.type is T.NEGATIVE_SAMPLING_PROBLEM and f.subject == "user_emb"
    assert f.remedy is not None and f.remedy.kind == "exclude_positives_from_negatives"
    assert detect_negative_sampling(_run(), TH) == []
    # saturated scores also give zero gradients: huge rows, fast rows, dead units behind
    for changes in ({"coord_rms": 5.0}, {"rel_velocity": 0.1}):
        big = _run(tables=(_table(n_pairs=np.full(100, 19.5), **changes),))
        assert detect_negative_sampling(big, TH) == []
    dead = dataclasses.replace(half, dead_fractions={"tower.1": 1.0})
    assert detect_negative_sampling(dead, TH) == []


def _bpr_run(share_positive: float, n_steps: int = 100) -> FlowManager:
    """A tiny BPR matrix factorisation; ``share_positive`` of the negatives is the positive
    item itself."""
    from gradtracer.embedding.tracker import EmbeddingTracker

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n_users, n_items = 80, 60
    user_emb, item_emb = nn.Embedding(n_users, 8), nn.Embedding(n_items, 8)
    for emb in (user_emb, item_emb):
        nn.init.normal_(emb.weight, std=0.1)
    model = nn.ModuleDict({"user_emb": user_emb, "item_emb": item_emb})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    group = torch.randint(0, 4, (n_users,), generator=gen)
    manager = FlowManager("bpr")
    for name, emb in (("user_emb", user_emb), ("item_emb", item_emb)):
        manager.add_tracker(name, EmbeddingTracker(emb, name=name))
    manager.add_tracker("model", FlowTracker(model, optimizer=opt,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for _ in range(n_steps):
        u = torch.randint(0, n_users, (32,), generator=gen)
        pos = group[u] * (n_items // 4) + torch.randint(0, n_items // 4, (32,), generator=gen)
        neg = torch.randint(0, n_items, (32,), generator=gen)
        neg = torch.where(torch.rand(32, generator=gen) < share_positive, pos, neg)
        diff = (user_emb(u) * (item_emb(pos) - item_emb(neg))).sum(1)
        loss = -nn.functional.logsigmoid(diff).mean()
        opt.zero_grad()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    manager.detach()
    return manager


def test_positives_drawn_as_their_own_negatives_are_found_in_a_real_bpr_run():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        cancelling = collect_signals(_bpr_run(0.5))
        healthy = collect_signals(_bpr_run(0.0))
    assert max(zero_gradient_share(t) for t in healthy.tables) < TH.cancelled_lookup_share
    assert max(zero_gradient_share(t) for t in cancelling.tables) >= TH.cancelled_lookup_share
    top = diagnose_signals(cancelling).top
    assert top is not None and top.type is T.NEGATIVE_SAMPLING_PROBLEM
    assert top.remedy is not None and top.remedy.kind == "exclude_positives_from_negatives"
    assert diagnose_signals(healthy).top is None


# ------------------------------------------------------------- dense weights grown large
def _layer(gain: float) -> LayerSignals:
    return LayerSignals(
        name="net.2.weight", module="net.2", numel=256, n_obs=100, fan_in=16, gain=gain,
        all_zero=False, update_ratio=0.02, velocity=0.05, grad_norm=0.1,
        grad_norm_median=0.1, grad_norm_max=8.0, snr=0.05, spikes=1, requires_grad=True,
        in_optimizer=True, weight_decay=0.0, learning_rate=0.03, weight_norm=5.0,
    )  # fmt: skip


def test_dense_weight_grown_past_twice_kaiming_with_a_spike_is_a_too_high_rate():
    moving = _series(np.full(120, 0.1))  # moved 2.4x their norm: grown by the updates
    grown = _run(tables=(), layers=(_layer(3.5),), velocities=moving)
    grown = dataclasses.replace(grown, losses=_series(np.linspace(0.69, 0.2, 120)))
    (f,) = detect_dense_overshoot(grown, TH)
    assert f.type is T.LEARNING_RATE_TOO_HIGH and f.subject == "net.2"
    # a gain a healthy run reaches: nothing
    assert detect_dense_overshoot(dataclasses.replace(grown, layers=(_layer(1.6),)), TH) == []
