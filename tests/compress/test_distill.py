"""DistillationTracker: minibatch CKA against full-batch CKA, hint MSE, the flagged layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradtracer.compress import DistillationTracker, linear_cka, topk_overlap
from gradtracer.compress.distill_study import planted_bottleneck_study
from gradtracer.compress.workloads import load_workload


def test_minibatch_cka_matches_full_batch() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    mix = torch.randn(16, 8, generator=g)
    y = torch.tanh(x @ mix) + 0.5 * torch.randn(4096, 8, generator=g)
    teacher, student = nn.Identity(), nn.Identity()
    tr = DistillationTracker(teacher, student, {"": ""})
    for start in range(0, 4096, 256):
        student(x[start : start + 256])
        teacher(y[start : start + 256])
        tr.step()
    full = linear_cka(x, y)
    assert 0.1 < full < 0.95
    assert abs(tr.history[""].cka - full) < 0.02
    tr.detach()


def test_identical_layers_have_cka_one_and_zero_mse() -> None:
    net = nn.Sequential(nn.Linear(4, 4))
    tr = DistillationTracker(net, net, {"0": "0"})
    net(torch.randn(64, 4, generator=torch.Generator().manual_seed(1)))
    tr.step()
    h = tr.history["0"]
    assert h.cka == pytest.approx(1.0, abs=1e-9) and h.mse == 0.0
    assert tr.findings() == []
    with pytest.raises(KeyError, match="student has no module 'nope'"):
        DistillationTracker(net, net, {"nope": "0"})


def test_topk_overlap() -> None:
    a = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert topk_overlap(a, a, 2) == 1.0
    assert topk_overlap(a, -a, 2) == 0.0


def test_planted_bottleneck_is_flagged() -> None:
    w = load_workload("synthetic", random_state=0)
    res = planted_bottleneck_study(w, seed=0, bottleneck=1, n_epochs=10)
    assert res.flagged is not None and res.flagged.startswith("item_tower")
    assert math.isfinite(res.widened_ndcg)
    # the user tower has the teacher's width: its representation is closer to the teacher's
    assert res.cka["item_tower.0"] < res.cka["user_tower.0"]
