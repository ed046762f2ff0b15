"""DistillationTracker: minibatch CKA against full-batch CKA, hint MSE, the flagged layer."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from gradtracer.compress import DistillationTracker, linear_cka, topk_overlap
from gradtracer.compress.distill_study import (
    BottleneckConfig,
    TwoTower,
    planted_bottleneck_study,
    summarize_bottleneck,
    train_two_tower,
)
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


def _two_students(full: torch.Tensor, narrow: torch.Tensor, y: torch.Tensor) -> DistillationTracker:
    student_full, student_narrow, teacher = nn.Identity(), nn.Identity(), nn.Identity()
    both = nn.ModuleDict({"full": student_full, "narrow": student_narrow})
    tr = DistillationTracker(nn.ModuleDict({"t": teacher}), both, {"full": "t", "narrow": "t"})
    for start in range(0, y.shape[0], 256):
        student_full(full[start : start + 256])
        student_narrow(narrow[start : start + 256])
        teacher(y[start : start + 256])
        tr.step()
    tr.detach()
    return tr


def test_linear_probe_sees_missing_directions_cka_misses() -> None:
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2048, 8, generator=g)  # the teacher layer
    mix = torch.randn(8, 8, generator=g) * torch.logspace(0, -1, 8)
    full = y @ mix  # an invertible, badly conditioned linear view: all information kept
    narrow = y[:, :2]  # two of the eight directions
    tr = _two_students(full, narrow, y)
    h_full, h_narrow = tr.history["full"], tr.history["narrow"]
    assert h_full.fit == pytest.approx(1.0, abs=1e-3)
    assert h_narrow.fit == pytest.approx(0.25, abs=0.05)  # 2 of 8 unit-variance directions
    assert h_full.cka < 0.9  # CKA alone would call the lossless view dissimilar
    cov, s_rank, t_rank = h_narrow.coverage()
    assert (s_rank, t_rank) == (2, 8) and cov == pytest.approx(0.25, abs=0.02)
    assert h_full.coverage()[0] == pytest.approx(1.0, abs=0.01)
    (finding,) = tr.findings()
    assert finding.subject == "narrow" and finding.evidence["target"] == "narrow"
    assert finding.evidence["action"] == "widen" and finding.evidence["student_width"] == 2
    assert "widen narrow to the teacher's width (8)" in finding.premise


def test_coverage_counts_low_variance_directions() -> None:
    # the teacher's variance sits in one direction: a 1-wide student reproduces 90% of it
    # (fit and CKA look fine) but only one of its five directions (coverage 0.2)
    g = torch.Generator().manual_seed(4)
    y = torch.randn(4096, 5, generator=g) * torch.tensor([3.0, 0.5, 0.5, 0.5, 0.5])
    tr = _two_students(y.clone(), y[:, :1].clone(), y)
    h = tr.history["narrow"]
    assert h.fit > 0.85 and h.cka > 0.9
    assert h.coverage()[0] == pytest.approx(0.2, abs=0.02)
    (finding,) = tr.findings()
    assert finding.subject == "narrow" and finding.evidence["action"] == "widen"


def test_equal_width_gap_calls_for_a_hint_loss() -> None:
    g = torch.Generator().manual_seed(3)
    y = torch.randn(1024, 4, generator=g)
    noisy = y + 2.0 * torch.randn(1024, 4, generator=g)
    s, t = nn.Identity(), nn.Identity()
    tr = DistillationTracker(t, s, {"": ""})
    for start in range(0, 1024, 128):
        s(noisy[start : start + 128])
        t(y[start : start + 128])
        tr.step()
    (finding,) = tr.findings()
    assert finding.evidence["action"] == "hint_loss"
    pair = tr.summary()["pairs"][""]
    assert pair["fit"] == pytest.approx(0.2, abs=0.05)  # 1 / (1 + 4)
    assert pair["student_rank"] == pair["teacher_rank"] == 4


def test_hint_loss_trains_the_regressor_and_student() -> None:
    w = load_workload("synthetic", random_state=0)
    teacher = TwoTower(w.n_users, w.n_items, random_state=0)
    train_two_tower(teacher, w.train, n_epochs=1, random_state=0)
    student = TwoTower(w.n_users, w.n_items, item_hidden=2, random_state=1)
    before = student.item_tower[0].weight.detach().clone()
    train_two_tower(
        student, w.train, n_epochs=1, random_state=0, teacher=teacher,
        hints={"item_tower.0": "item_tower.0"},
    )  # fmt: skip
    assert not torch.equal(before, student.item_tower[0].weight)
    assert not student.item_tower[0]._forward_hooks  # the hint hooks are removed
    with pytest.raises(ValueError, match="hints need a teacher"):
        train_two_tower(student, w.train, n_epochs=1, hints={"item_tower.0": "item_tower.0"})


def test_planted_bottleneck_is_flagged() -> None:
    w = load_workload("synthetic", random_state=0)
    cfg = BottleneckConfig(
        bottleneck=1, n_epochs=10, teacher_epochs=10, batch_size=512, learning_rate=0.005,
        teacher_batch_size=512, teacher_learning_rate=0.005,
    )  # fmt: skip
    res = planted_bottleneck_study(w, seed=0, config=cfg)
    assert res.flagged is not None and res.flagged.startswith("item_tower")
    assert res.action in ("widen", "hint_loss")
    assert math.isfinite(res.widened_ndcg) and math.isfinite(res.acted_ndcg)
    # the user tower has the teacher's width: its representation is closer to the teacher's
    assert res.cka["item_tower.0"] < res.cka["user_tower.0"]
    assert res.coverage["item_tower.0"] < res.coverage["user_tower.0"]
    assert res.acted_per_user is not None and res.distilled_per_user is not None
    assert res.acted_per_user.shape == res.distilled_per_user.shape == (w.n_users,)
    assert float(np.mean(res.distilled_per_user)) == pytest.approx(res.distilled_ndcg)
    summary = summarize_bottleneck([res, res])
    assert summary["n_seeds"] == 2 and summary["flagged_planted"] == 2
    assert summary["n_users"] == w.n_users and len(summary["per_seed_user_t_p"]) == 2
    assert summary["per_user_mean_diff"] == pytest.approx(res.acted_ndcg - res.distilled_ndcg)
    collapsed = dataclasses.replace(res, distilled_ndcg=0.0)
    assert math.isnan(collapsed.lift)
    summary = summarize_bottleneck([res, res, collapsed])
    assert summary["n_lift_defined"] == 2 and summary["lift_mean"] == pytest.approx(res.lift)
