"""Diagnosis of a run tracked by embedding trackers alone (no FlowTracker): the tables'
gradient-norm history stands in for the FlowTracker's, so a missing ``zero_grad()`` is
still named."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gradtracer import EmbeddingTracker, FlowManager
from gradtracer.diagnosis import collect_signals, diagnose
from gradtracer.findings import FindingType


def _run(zero_grad: bool) -> FlowManager:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_users, n_items = 100, 120
    taste = rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items))
    user_emb, item_emb = nn.Embedding(n_users, 16), nn.Embedding(n_items, 16)
    for t in (user_emb, item_emb):
        nn.init.normal_(t.weight, 0.0, 0.1)
    opt = torch.optim.Adam([user_emb.weight, item_emb.weight], lr=0.01)
    manager = FlowManager()
    manager.add_tracker("user", EmbeddingTracker(user_emb, name="user_emb", track_interval=5))
    manager.add_tracker("item", EmbeddingTracker(item_emb, name="item_emb", track_interval=5))
    for _ in range(300):
        u = torch.from_numpy(rng.integers(0, n_users, 128))
        pos = torch.from_numpy(np.argmax(taste[u.numpy()] + rng.gumbel(size=(128, n_items)), 1))
        neg = torch.from_numpy(rng.integers(0, n_items, 128))
        eu = user_emb(u)
        loss = -F.logsigmoid((eu * item_emb(pos)).sum(-1) - (eu * item_emb(neg)).sum(-1)).mean()
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        opt.step()
    return manager


def test_tables_alone_supply_the_gradient_norm_series():
    signals = collect_signals(_run(zero_grad=True))
    assert len(signals.grad_norms) >= 50
    assert all(v > 0 for _, v in signals.grad_norms)


def test_missing_zero_grad_is_named_without_a_flow_tracker():
    top = diagnose(_run(zero_grad=False)).top
    assert top is not None and top.type is FindingType.GRADIENT_ACCUMULATION
    healthy = diagnose(_run(zero_grad=True))
    assert not any(f.type is FindingType.GRADIENT_ACCUMULATION for f in healthy.findings)
