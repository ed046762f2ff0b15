"""Weight decay that collapses a table: onto a few directions (decoupled decay) or towards
zero in every direction (coupled L2 decay under Adam), on hand-built signals and on real
tracked training runs."""

from __future__ import annotations

import numpy as np
import torch
from run_signals import run, table
from torch import nn
from torch.nn import functional as F

from gradtracer import EmbeddingTracker, FlowManager, FlowTracker
from gradtracer.diagnosis import DiagnosisThresholds, diagnose
from gradtracer.diagnosis.detectors import detect_weight_decay_collapse
from gradtracer.findings import FindingType

TH = DiagnosisThresholds()
ISOTROPIC = np.array([1.0, 0.95, 0.9, 0.85])


def _decayed(shrink: float, **changes: object) -> object:
    fields: dict[str, object] = {
        "weight_decay": 0.5, "learning_rate": 0.01, "steps": 1000, "spectrum": ISOTROPIC,
        "init_mean_row_norm": 1.0, "row_norms": np.full(200, shrink), **changes}  # fmt: skip
    return table(**fields)


def test_rows_shrunk_towards_zero_under_a_large_decay_budget_are_a_collapse():
    (f,) = detect_weight_decay_collapse(run(tables=(_decayed(0.001),)), TH)
    assert f.type is FindingType.WEIGHT_DECAY_COLLAPSE
    assert f.evidence["norm_shrink"] < TH.decay_shrunk_norm


def test_rows_shrunk_towards_zero_under_a_budget_below_decoupled_decays_are_a_collapse():
    # Adam normalises the coupled decay's gradient: lr x decay x steps ~1 already empties
    # the table (0.3 x 0.005 x 776 = 1.16 on MovieLens-100K)
    coupled = _decayed(1e-6, weight_decay=0.3, learning_rate=0.005, steps=776)
    (f,) = detect_weight_decay_collapse(run(tables=(coupled,)), TH)
    assert f.evidence["decay_budget"] < TH.decay_budget
    # few directions still needs the full decoupled budget
    narrow = _decayed(0.5, weight_decay=0.3, learning_rate=0.005, steps=776,
                      spectrum=np.array([1.0, 0.5, 0.05, 0.01]))  # fmt: skip
    assert detect_weight_decay_collapse(run(tables=(narrow,)), TH) == []


def test_no_collapse_when_rows_keep_their_norm_or_the_budget_is_small():
    assert detect_weight_decay_collapse(run(tables=(_decayed(0.5),)), TH) == []
    small = _decayed(0.001, weight_decay=1e-4)  # budget 1e-3: the decay cannot explain it
    assert detect_weight_decay_collapse(run(tables=(small,)), TH) == []


def _train(weight_decay: float) -> tuple[object, float]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_users, n_items, d = 120, 150, 16
    taste = rng.normal(size=(n_users, 4)) @ rng.normal(size=(4, n_items))
    user_emb, item_emb = nn.Embedding(n_users, d), nn.Embedding(n_items, d)
    for t in (user_emb, item_emb):
        nn.init.normal_(t.weight, 0.0, 0.1)
    model = nn.ModuleDict({"user_emb": user_emb, "item_emb": item_emb})
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=weight_decay)
    manager = FlowManager()
    manager.add_tracker("user", EmbeddingTracker(user_emb, name="user_emb", track_interval=5))
    manager.add_tracker("item", EmbeddingTracker(item_emb, name="item_emb", track_interval=5))
    manager.add_tracker("model", FlowTracker(model, name="mf", optimizer=opt))
    for _ in range(700):  # decay budget 0.5 x 0.01 x 700 = 3.5
        u = torch.from_numpy(rng.integers(0, n_users, 128))
        pos = torch.from_numpy(np.argmax(taste[u.numpy()] + rng.gumbel(size=(128, n_items)), 1))
        neg = torch.from_numpy(rng.integers(0, n_items, 128))
        eu = user_emb(u)
        loss = -F.logsigmoid((eu * item_emb(pos)).sum(-1) - (eu * item_emb(neg)).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    return diagnose(manager), float(item_emb.weight.detach().norm(dim=1).mean())


def test_coupled_l2_decay_under_adam_is_named_before_its_side_effects():
    diagnosis, norm = _train(0.5)
    assert norm < 0.01  # the table really collapsed (from ~0.4)
    assert diagnosis.top is not None
    assert diagnosis.top.type is FindingType.WEIGHT_DECAY_COLLAPSE
    mild, _ = _train(1e-5)
    assert not any(f.type is FindingType.WEIGHT_DECAY_COLLAPSE for f in mild.findings)
