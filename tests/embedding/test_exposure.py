"""Exposure comes from the rows that received gradient; per-row columns; cause statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradtracer.embedding import EmbeddingTracker
from gradtracer.findings import FindingType


def _types(tracker: EmbeddingTracker) -> set[FindingType]:
    return {f.type for f in tracker.findings()}


@pytest.mark.parametrize("backend", ["numba", "numpy", "batched"])
def test_tied_output_layer_exposes_every_row(backend):
    """``h @ emb.weight.T`` gives every row a gradient: every row moves and is exposed."""
    torch.manual_seed(0)
    n_rows = 60
    emb = nn.Embedding(n_rows, 8)
    tracker = EmbeddingTracker(emb, name="tied", backend=backend)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    before = emb.weight.detach().clone()
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        opt.zero_grad()
        context = torch.randint(0, n_rows, (4,), generator=gen)  # 4 of 60 rows looked up
        logits = emb(context).mean(0) @ emb.weight.T
        F.cross_entropy(logits[None], torch.randint(0, n_rows, (1,), generator=gen)).backward()
        opt.step()
    moved = (emb.weight.detach() - before).norm(dim=1) > 0
    assert bool(moved.all())  # the premise: every row really moved
    s = tracker.summary()
    assert s["unexposed_count"] == 0 and s["active_rows"] == n_rows
    assert int(tracker.row_state.col("exposure").min()) == 6
    assert FindingType.DEAD_EMBEDDINGS not in _types(tracker)
    tracker.detach()


@pytest.mark.parametrize("backend", ["numba", "numpy", "batched"])
def test_lookup_whose_output_is_unused_exposes_nothing(backend):
    emb = nn.Embedding(30, 4)
    tracker = EmbeddingTracker(emb, name="emb", backend=backend)
    opt = torch.optim.Adam(emb.parameters(), lr=0.05)
    for _ in range(4):
        opt.zero_grad()
        used = emb(torch.tensor([1, 2]))
        emb(torch.tensor([10, 11, 12]))  # grad-enabled lookup, never reaches the loss
        used.pow(2).sum().backward()
        opt.step()
    exposure = tracker.row_state.col("exposure")
    assert torch.nonzero(exposure).reshape(-1).tolist() == [1, 2]
    assert tracker.summary()["active_rows"] == 2
    tracker.detach()


def test_used_lookup_with_zero_gradient_counts_as_exposed_with_zero_gradient():
    """A looked-up row in the loss whose gradient is exactly zero is exposed; the summary
    reports the share of such rows."""
    emb = nn.Embedding(20, 4)
    tracker = EmbeddingTracker(emb, name="emb")
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        out = emb(torch.tensor([1, 2, 3, 4]))
        (out * torch.tensor([1.0, 1.0, 0.0, 0.0])[:, None]).sum().backward()  # rows 3, 4: 0
        opt.step()
    s = tracker.summary()
    assert s["active_rows"] == 4
    assert s["zero_grad_row_share"] == pytest.approx(0.5)
    tracker.detach()


def test_gradient_accumulation_unions_the_micro_batches():
    emb = nn.Embedding(20, 4)
    tracker = EmbeddingTracker(emb, name="emb")
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    opt.zero_grad()
    emb(torch.tensor([1, 2])).sum().backward()
    emb(torch.tensor([2, 5])).sum().backward()
    opt.step()
    assert torch.nonzero(tracker.row_state.col("exposure")).reshape(-1).tolist() == [1, 2, 5]
    assert tracker.summary()["backward_passes"] == 2
    tracker.detach()


def test_row_stats_columns_follow_the_row_state():
    torch.manual_seed(0)
    emb = nn.Embedding(40, 6)
    tracker = EmbeddingTracker(emb, name="emb")
    opt = torch.optim.SGD(emb.parameters(), lr=0.2)
    for t in range(30):
        opt.zero_grad()
        out = emb(torch.tensor([0, 1, 2, 3, 4, 5]))
        sign = -1.0 if t % 2 else 1.0  # row 0 is pulled back and forth
        weights = torch.tensor([sign * 5.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        (out.sum(1) * weights).sum().backward()
        opt.step()
    cols = tracker.row_stats()
    st = tracker.row_state
    assert set(cols) == {
        "exposure",
        "last_seen",
        "velocity_ema",
        "grad_norm_ema",
        "grad_norm_peak",
        "cos_ema",
        "n_pairs",
        "disagree_rate",
        "zombie",
    }
    assert all(isinstance(v, np.ndarray) and v.shape == (40,) for v in cols.values())
    np.testing.assert_array_equal(cols["exposure"], st.col("exposure").numpy())
    np.testing.assert_array_equal(cols["velocity_ema"], st.col("velocity_ema").numpy())
    assert cols["exposure"][:6].tolist() == [30] * 6 and cols["exposure"][6:].sum() == 0
    assert cols["last_seen"][:6].tolist() == [30] * 6
    assert cols["disagree_rate"][0] > 0.9 and cols["disagree_rate"][1] < 0.1
    assert cols["n_pairs"][0] == 29 and cols["n_pairs"][10] == 0
    assert cols["zombie"].dtype == bool
    assert np.flatnonzero(cols["zombie"]).tolist() == tracker.zombie_rows().tolist() == [0]
    tracker.detach()


def test_cause_statistics_in_the_summary():
    torch.manual_seed(0)
    emb = nn.Embedding(300, 8)
    with torch.no_grad():
        emb.weight[:] = emb.weight[0]  # identical initialisation
        emb.weight.mul_(3.0)
    init_norm = float(emb.weight.detach()[0].norm())
    frozen = nn.Embedding(10, 4)
    frozen.weight.requires_grad_(False)
    tracker = EmbeddingTracker(emb, name="emb")
    untracked_opt = EmbeddingTracker(nn.Embedding(10, 4), name="no_opt")
    opt = torch.optim.SGD(emb.parameters(), lr=0.5)
    first = tracker.summary()
    assert first["in_optimizer"] is False and first["initial_mean_row_norm"] is None
    for _ in range(3):
        opt.zero_grad()
        emb(torch.arange(0, 300, 7)).sum().backward()
        untracked_opt.layer(torch.tensor([1, 2])).sum().backward()  # in no optimizer
        opt.step()
    s = tracker.summary()
    assert s["in_optimizer"] is True and s["requires_grad"] is True
    assert s["near_identical_row_share"] > 0.5  # most rows still equal
    assert s["initial_mean_row_norm"] == pytest.approx(init_norm, rel=1e-5)
    assert s["initial_std_row_norm"] == pytest.approx(0.0, abs=1e-5)
    assert s["initial_max_row_norm"] == pytest.approx(s["initial_mean_row_norm"], rel=1e-6)
    assert s["std_row_norm"] > 0.0 and s["max_row_norm"] >= s["mean_row_norm"]
    other = untracked_opt.summary()  # gets gradients, but no optimizer ever steps it
    assert other["in_optimizer"] is False and other["backward_passes"] == 3
    assert other["step"] == 0 and other["requires_grad"] is True
    assert other["near_identical_row_share"] == 0.0  # random initialisation
    frozen_tracker = EmbeddingTracker(frozen, name="frozen")
    assert frozen_tracker.summary()["requires_grad"] is False
    for t in (tracker, untracked_opt, frozen_tracker):
        t.detach()
