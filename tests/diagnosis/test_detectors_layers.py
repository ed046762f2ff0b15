"""Dense-layer detectors and the cause ranking: hand-built signals, plus tiny real runs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import run_signals
import torch
from run_signals import run, series, table
from torch import nn

from gradtracer.diagnosis import DiagnosisThresholds, diagnose, diagnose_signals, rank_findings
from gradtracer.diagnosis.detectors import (
    detect_dense_initialization,
    detect_dense_overshoot,
    detect_layer_gradients,
    detect_tower_skew,
    movement_share,
)
from gradtracer.diagnosis.ranking import CAUSE_ORDER, regrade_tracker_findings
from gradtracer.diagnosis.signals import LayerSignals, RunSignals
from gradtracer.findings import FindingType, Severity
from gradtracer.report.catalog import make_finding

TH = DiagnosisThresholds()
T = FindingType


def layer(name: str = "net.0.weight", **changes) -> LayerSignals:
    return run_signals.layer(name, **{"n_obs": 100, "weight_norm": 2.0, **changes})


def signals(**changes) -> RunSignals:
    """One healthy layer, no tables, a loss falling to 0.3, steady velocities."""
    base = {"tables": (), "layers": (layer(),), "losses": series(np.linspace(0.69, 0.3, 100)),
            "velocities": series(np.full(100, 0.01))}  # fmt: skip
    return run(**{**base, **changes})


def types(findings) -> list[str]:
    return [f.type.value for f in findings]


# --------------------------------------------------------------- movement and initialisation
def test_movement_share_sums_displacement_over_the_norm():
    # 100 tracked steps of displacement 0.01 against a norm of 2.0
    assert movement_share(signals()) == pytest.approx(0.5)
    # every 4th step tracked: each displacement stands for the 4 steps up to the next one
    sparse = signals(velocities=tuple((4 * i, 0.01) for i in range(1, 26)))
    assert movement_share(sparse) == pytest.approx(0.5, rel=0.05)
    assert math.isnan(movement_share(signals(velocities=())))


def test_large_gain_that_training_grew_is_not_an_initialisation_fault():
    big = layer(gain=12.0, weight_norm=20.0)
    # moved 0.05 of the norm: the weights started that large
    still = signals(layers=(big,), velocities=series(np.full(100, 0.01)))
    (f,) = detect_dense_initialization(still, TH)
    assert f.type is T.BAD_INITIALIZATION and f.remedy.kind == "reinitialize"
    # moved 5x the norm: the size can have come from the updates
    grown = signals(layers=(big,), velocities=series(np.full(100, 1.0)))
    assert detect_dense_initialization(grown, TH) == []
    # unknown movement: judged on the gain alone (trackers without a velocity history)
    assert types(detect_dense_initialization(signals(layers=(big,), velocities=()), TH)) == [
        "BAD_INITIALIZATION"
    ]


def test_dense_overshoot_needs_growth_and_damage():
    spiked = layer("tower.2.weight", gain=12.0, weight_norm=20.0, grad_norm_max=50.0)
    grown = signals(layers=(layer(), spiked), velocities=series(np.full(100, 1.0)))
    (f,) = detect_dense_overshoot(grown, TH)
    assert f.type is T.LEARNING_RATE_TOO_HIGH and f.subject == "tower.2"
    assert f.remedy.kind == "scale_learning_rate"
    assert f.remedy.params == {"subject": "tower.2", "factor": TH.dense_overshoot_factor,
                               "modules": "tower"}  # fmt: skip
    # a dead gradient (median 0 after a spike) also counts as damage
    dead = dataclasses.replace(spiked, grad_norm_median=0.0, grad_norm_max=3.0)
    assert types(detect_dense_overshoot(dataclasses.replace(grown, layers=(dead,)), TH)) == [
        "LEARNING_RATE_TOO_HIGH"
    ]
    # large but calm weights with a falling loss: a model that legitimately grew
    calm = dataclasses.replace(spiked, grad_norm_max=0.5)
    assert detect_dense_overshoot(dataclasses.replace(grown, layers=(calm,)), TH) == []
    # ... unless the grown weights are still pushed by steps large for their size: a
    # learning rate too high before the gradient spikes or the loss rises
    pushed = dataclasses.replace(calm, update_ratio=TH.overshoot_update_ratio)
    assert types(detect_dense_overshoot(dataclasses.replace(grown, layers=(pushed,)), TH)) == [
        "LEARNING_RATE_TOO_HIGH"
    ]
    slower = dataclasses.replace(calm, update_ratio=0.5 * TH.overshoot_update_ratio)
    assert detect_dense_overshoot(dataclasses.replace(grown, layers=(slower,)), TH) == []
    # the same spike without movement is an initialisation problem, not an overshoot
    assert detect_dense_overshoot(dataclasses.replace(grown, velocities=series(
        np.full(100, 0.001))), TH) == []  # fmt: skip
    # normal gains: nothing to say
    assert detect_dense_overshoot(signals(velocities=series(np.full(100, 1.0))), TH) == []


# ------------------------------------------------------------------------------- towers
def towers(item_rate: float, item_lr: float = 0.005, item_grad: float = 0.1) -> RunSignals:
    layers = []
    for tower, rate, lr, grad in (("user", 0.01, 0.005, 0.1), ("item", item_rate, item_lr,
                                                                item_grad)):  # fmt: skip
        for suffix, fan_in in (("0.weight", 16), ("0.bias", None), ("3.weight", 32)):
            layers.append(layer(f"{tower}_tower.{suffix}", fan_in=fan_in, update_ratio=rate,
                                learning_rate=lr, grad_norm_median=grad,
                                gain=0.7 if fan_in else None))  # fmt: skip
    tabs = (table("user_emb", rel_velocity=0.01),
            table("item_emb", rel_velocity=item_rate, learning_rate=item_lr))  # fmt: skip
    return signals(layers=tuple(layers), tables=tabs)


def test_tower_skew_names_the_slow_tower_with_the_learning_rate_ratio():
    (f,) = detect_tower_skew(towers(item_rate=1e-5, item_lr=0.005 / 300), TH)
    assert f.type is T.LEARNING_RATE_TOO_LOW and f.subject == "item"
    assert f.remedy.kind == "scale_learning_rate"
    assert f.remedy.params["factor"] == pytest.approx(300.0)
    assert f.remedy.params["modules"] == "item_emb,item_tower"
    # the optimizer unknown: the factor is the measured rate ratio
    (g,) = detect_tower_skew(towers(item_rate=1e-4, item_lr=0.0), TH)
    assert g.remedy.params["factor"] == pytest.approx(100.0)


def test_tower_skew_is_silent_on_balanced_dead_or_unrelated_modules():
    assert detect_tower_skew(towers(item_rate=0.006), TH) == []
    # a tower whose units died is slow for another reason (dead activations)
    assert detect_tower_skew(towers(item_rate=1e-5, item_grad=0.0), TH) == []
    # modules of different architectures are not towers of one model
    gru = signals(layers=(layer("gru.weight_ih_l0", fan_in=24, update_ratio=0.01),
                          layer("out.weight", fan_in=32, numel=768, update_ratio=1e-5)))  # fmt: skip
    assert detect_tower_skew(gru, TH) == []


def test_tower_skew_names_a_fast_tower_that_overshoots():
    s = towers(item_rate=0.4, item_lr=0.5)
    (f,) = detect_tower_skew(s, TH)
    assert f.type is T.LEARNING_RATE_TOO_HIGH and f.subject == "item"
    assert f.remedy.params["factor"] == pytest.approx(0.01)


# ------------------------------------------------------------------------------ ranking
def test_tower_imbalance_is_a_symptom_of_the_skewed_learning_rate():
    assert T.TOWER_IMBALANCE not in CAUSE_ORDER
    symptom = make_finding(T.TOWER_IMBALANCE, subject="item_emb vs user_emb", premise="p.",
                           confidence=0.9, slow="item_emb", fast="user_emb")  # fmt: skip
    d = diagnose_signals(towers(item_rate=1e-5, item_lr=0.005 / 300), [symptom])
    assert d.top is not None and d.top.type is T.LEARNING_RATE_TOO_LOW
    imb = next(f for f in d.findings if f.type is T.TOWER_IMBALANCE)
    assert imb.consequence_of is T.LEARNING_RATE_TOO_LOW and imb.severity is not Severity.INFO
    # alone (no run-level cause) the tracker symptom is reported at INFO
    (alone,) = regrade_tracker_findings([symptom], [])
    assert alone.severity is Severity.INFO


def test_symptoms_of_an_overshoot_rank_after_it():
    cause = make_finding(T.LEARNING_RATE_TOO_HIGH, subject="net.2", premise="p.",
                         confidence=0.5, who="net.2", who_upper="NET_2")  # fmt: skip
    found = [make_finding(t, subject="net", premise="p.", confidence=0.99)
             for t in (T.EXPLODING_GRADIENT, T.DEAD_ACTIVATIONS, T.HIGH_UPDATE_RATIO)]  # fmt: skip
    ranked = rank_findings([*found, cause])
    assert ranked[0] is cause
    assert all(f.consequence_of is T.LEARNING_RATE_TOO_HIGH for f in ranked[1:])


def test_vanishing_gradient_behind_dead_units_is_their_consequence():
    dead = signals(
        dead_fractions={"net.1": 1.0},
        layers=(layer("net.0.weight", grad_norm_median=0.0),
                layer("net.2.weight", grad_norm_median=0.05),
                layer("net.4.weight", grad_norm_median=0.1)),
    )  # fmt: skip
    found = detect_layer_gradients(dead, TH)
    assert set(types(found)) == {"DEAD_ACTIVATIONS", "VANISHING_GRADIENT"}
    ranked = rank_findings(found)
    assert ranked[0].type is T.DEAD_ACTIVATIONS
    assert ranked[1].consequence_of is T.DEAD_ACTIVATIONS


# ---------------------------------------------------------------------- tiny real runs
class _TwoTower(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        for t in (self.user_emb, self.item_emb):
            nn.init.normal_(t.weight, std=0.1)
        self.user_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.item_tower = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = self.user_tower(self.user_emb(users))
        v = self.item_tower(self.item_emb(items))
        return u @ v.T / 0.2  # in-batch softmax logits


def _two_tower_run(item_lr_factor: float, steps: int = 120):
    from gradtracer.embedding.tracker import EmbeddingTracker
    from gradtracer.flow.tracker import FlowTracker
    from gradtracer.manager import FlowManager

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 80
    users = rng.integers(0, n_users, 3000)
    items = (users * 7 + rng.integers(0, 5, 3000)) % n_items  # learnable user -> item pattern
    model = _TwoTower(n_users, n_items)
    groups = [{"params": list(getattr(model, n).parameters()), "lr": 0.01 * (
        item_lr_factor if n.startswith("item") else 1.0)}
        for n in ("user_emb", "user_tower", "item_emb", "item_tower")]  # fmt: skip
    opt = torch.optim.Adam(groups)
    manager = FlowManager("two_tower")
    for name in ("user_emb", "item_emb"):
        manager.add_tracker(name, EmbeddingTracker(getattr(model, name), name=name,
                                                   track_interval=3))  # fmt: skip
    manager.add_tracker("model", FlowTracker(model, optimizer=opt, track_activations=True,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for _ in range(steps):
        idx = rng.integers(0, len(users), 64)
        u, i = torch.from_numpy(users[idx]), torch.from_numpy(items[idx])
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(u, i), torch.arange(len(idx)))
        loss.backward()
        manager.step(loss=loss.item())
        opt.step()
    d = diagnose(manager)
    manager.detach()
    return d


def test_real_two_tower_run_with_a_slow_item_tower_is_named_and_its_twin_is_not():
    torch.set_num_threads(1)
    healthy = _two_tower_run(1.0)
    assert healthy.top is None, healthy.top
    skewed = _two_tower_run(1.0 / 500)
    assert skewed.top is not None
    assert skewed.top.type is T.LEARNING_RATE_TOO_LOW and skewed.top.subject == "item"
    assert skewed.top.remedy.params["factor"] == pytest.approx(500.0)


def _mlp_run(learning_rate: float, steps: int = 150):
    from gradtracer.flow.tracker import FlowTracker
    from gradtracer.manager import FlowManager

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 20, generator=gen)
    y = (x[:, :5].sum(1) > 0).float()
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 1))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    manager = FlowManager("mlp")
    manager.add_tracker("model", FlowTracker(model, optimizer=opt, track_activations=True,
                                             history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    for _ in range(steps):
        idx = torch.randint(0, 2000, (64,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]).squeeze(-1), y[idx])
        loss.backward()
        manager.step(loss=loss.item())
        opt.step()
    d = diagnose(manager)
    manager.detach()
    return d


def test_real_mlp_with_a_far_too_high_learning_rate_is_an_overshoot_not_a_bad_init():
    torch.set_num_threads(1)
    healthy = _mlp_run(0.003)
    assert healthy.top is None, healthy.top
    high = _mlp_run(0.3)
    assert high.top is not None and high.top.type is T.LEARNING_RATE_TOO_HIGH, high.findings[:3]
    assert T.BAD_INITIALIZATION not in {f.type for f in high.findings}


# ------------------------------------------------------- wiring, spikes, dead units
def test_a_module_cut_off_from_the_gradient_mid_run_is_named_for_reconnection():
    from gradtracer.diagnosis.detectors import detect_modules_not_updated

    cut = layer("tower.0.weight", n_obs=30, update_ratio=0.0)
    s = signals(layers=(layer("other.0.weight"), cut))
    (f,) = detect_modules_not_updated(s, TH)
    assert f.type is T.PARAMETERS_NOT_UPDATED and f.subject == "tower.0"
    assert f.remedy.kind == "reconnect_gradient"
    # gradients every step but no movement: the optimizer does not hold it
    held = dataclasses.replace(cut, n_obs=100)
    (g,) = detect_modules_not_updated(signals(layers=(layer("other.0.weight"), held)), TH)
    assert g.remedy.kind == "add_to_optimizer"


def test_a_blip_in_a_vanishing_layer_is_not_an_explosion():
    vanishing = signals(layers=(
        layer("net.0.weight", grad_norm_median=1e-6, grad_norm_max=1e-3),
        layer("net.2.weight", grad_norm_median=1e-4, grad_norm_max=1e-3),
        layer("net.4.weight", grad_norm_median=0.1, grad_norm_max=0.3),
    ))  # fmt: skip
    assert types(detect_layer_gradients(vanishing, TH)) == ["VANISHING_GRADIENT"]
    spike = signals(layers=(layer("net.0.weight", grad_norm_median=0.1, grad_norm_max=20.0),))
    assert types(detect_layer_gradients(spike, TH)) == ["EXPLODING_GRADIENT"]


def test_units_killed_by_grown_weights_are_an_overshoot():
    # gain 2.8 alone is no overshoot, but with every unit dead behind weights that grew 4x
    # through their updates it is
    grown = layer("tower.0.weight", gain=2.8, weight_norm=4.0, grad_norm_median=0.0,
                  grad_norm_max=2.0)  # fmt: skip
    s = signals(layers=(grown,), velocities=series(np.full(100, 0.1)))
    assert detect_dense_overshoot(s, TH) == []
    dead = dataclasses.replace(s, dead_fractions={"tower.1": 1.0})
    d = diagnose_signals(dead)
    assert d.top is not None and d.top.type is T.LEARNING_RATE_TOO_HIGH
    assert next(f for f in d.findings if f.type is T.DEAD_ACTIVATIONS).consequence_of is (
        T.LEARNING_RATE_TOO_HIGH
    )
    # dead units behind weights that never grew (a bad bias): the dead units are the cause
    still = dataclasses.replace(dead, layers=(dataclasses.replace(grown, gain=0.6),))
    top = diagnose_signals(still).top
    assert top is not None and top.type is T.DEAD_ACTIVATIONS


def test_embedding_only_towers_need_a_learning_rate_gap_as_well():
    mf = signals(layers=(), tables=(table("user_emb", rel_velocity=0.01),
                                    table("item_emb", rel_velocity=2e-5,
                                          learning_rate=0.01 / 300)))  # fmt: skip
    (f,) = detect_tower_skew(mf, TH)
    assert f.type is T.LEARNING_RATE_TOO_LOW and f.subject == "item"
    assert f.remedy.params["factor"] == pytest.approx(300.0)
    assert f.remedy.params["modules"] == "item_emb"
    # the same rate gap with equal learning rates: tables move at different rates for
    # other reasons (exposure, popularity), so no verdict
    same_lr = signals(layers=(), tables=(table("user_emb", rel_velocity=0.01),
                                         table("item_emb", rel_velocity=2e-5)))  # fmt: skip
    assert detect_tower_skew(same_lr, TH) == []


def test_tower_skew_remedy_is_dated_when_the_slow_towers_tables_slowed_mid_run():
    s = towers(item_rate=1e-5, item_lr=0.005 / 300)
    cut = tuple((4 * i, 0.01 if i < 15 else 0.01 / 300) for i in range(50))
    dated = dataclasses.replace(s, tables=(
        s.tables[0], dataclasses.replace(s.tables[1], velocity_series=cut)))  # fmt: skip
    (f,) = detect_tower_skew(dated, TH)
    assert f.remedy.params["from_step"] == 56  # the snapshot before the cut
    assert f.remedy.params["factor"] == pytest.approx(300.0)
    # a slow tower from the start has no cut to date
    (g,) = detect_tower_skew(s, TH)
    assert "from_step" not in g.remedy.params
