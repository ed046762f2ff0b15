"""A model stepped by two optimizers (SparseAdam for the tables, Adam for the dense layers)
while the FlowTracker knows only one of them: what the other one steps is not reported as
left out of the optimizer; a layer no optimizer steps still is."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gradtracer import EmbeddingTracker, FlowManager, FlowTracker
from gradtracer.diagnosis import diagnose
from gradtracer.findings import FindingType


def _train(*, step_dense: bool) -> object:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_users, n_items, d = 100, 120, 16
    taste = rng.normal(size=(n_users, 4)) @ rng.normal(size=(4, n_items))
    model = nn.ModuleDict({
        "user_emb": nn.Embedding(n_users, d, sparse=True),
        "item_emb": nn.Embedding(n_items, d, sparse=True),
        "head": nn.Linear(d, d),
    })  # fmt: skip
    tables = [model["user_emb"].weight, model["item_emb"].weight]
    sparse_opt = torch.optim.SparseAdam(tables, lr=0.01)
    dense_opt = torch.optim.Adam(model["head"].parameters(), lr=0.01)
    manager = FlowManager()
    manager.add_tracker("user", EmbeddingTracker(model["user_emb"], name="user_emb"))
    manager.add_tracker("item", EmbeddingTracker(model["item_emb"], name="item_emb"))
    manager.add_tracker("model", FlowTracker(model, name="mf", optimizer=sparse_opt))
    for _ in range(150):
        u = torch.from_numpy(rng.integers(0, n_users, 64))
        pos = torch.from_numpy(np.argmax(taste[u.numpy()] + rng.gumbel(size=(64, n_items)), 1))
        neg = torch.from_numpy(rng.integers(0, n_items, 64))
        eu = model["head"](model["user_emb"](u))
        score = (eu * model["item_emb"](pos)).sum(-1) - (eu * model["item_emb"](neg)).sum(-1)
        loss = -F.logsigmoid(score).mean()
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        loss.backward()
        manager.step(loss=float(loss.detach()))
        sparse_opt.step()
        if step_dense:
            dense_opt.step()
    return diagnose(manager)


def _not_updated(diagnosis: object) -> list[str]:
    return [f.subject for f in diagnosis.findings  # type: ignore[attr-defined]
            if f.type is FindingType.PARAMETERS_NOT_UPDATED]  # fmt: skip


def test_a_layer_another_optimizer_steps_is_not_reported_as_left_out():
    stepped, left_out = _train(step_dense=True), _train(step_dense=False)
    assert _not_updated(stepped) == []
    assert _not_updated(left_out) == ["head"]
    # its movement counts towards the health score like any other layer's
    assert stepped.health > left_out.health + 10  # type: ignore[attr-defined]
