"""Auto-Fix through the real EmbeddingTracker: damped rows move less under every optimizer."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from gradtracer.cli import main
from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy
from gradtracer.embedding.tracker import EmbeddingTracker
from gradtracer.errors import GradTracerWarning

FAST = AutoFixPolicy(warmup_steps=3, min_pairs=3, update_every=1, min_loss_points=3)
STEPS = 30

OPTIMIZERS = [
    pytest.param(False, lambda p: torch.optim.SGD(p, lr=0.1), id="dense-sgd"),
    pytest.param(False, lambda p: torch.optim.Adam(p, lr=0.05), id="dense-adam"),
    pytest.param(
        False, lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.01), id="dense-adamw"
    ),
    pytest.param(False, lambda p: torch.optim.Adagrad(p, lr=0.1), id="dense-adagrad"),
    pytest.param(True, lambda p: torch.optim.SGD(p, lr=0.1), id="sparse-sgd"),
    pytest.param(True, lambda p: torch.optim.SparseAdam(p, lr=0.05), id="sparse-sparseadam"),
    pytest.param(True, lambda p: torch.optim.Adagrad(p, lr=0.1), id="sparse-adagrad"),
]


def _train(
    sparse: bool, make_opt, auto_fix: bool | AutoFixController
) -> tuple[torch.Tensor, EmbeddingTracker]:
    """Row 0 gets a gradient that flips sign every step; row 1 a steady one; rows 2..7 idle.

    Returns the per-step path length of rows 0 and 1, shape ``(STEPS, 2)``.
    """
    torch.manual_seed(0)
    emb = nn.Embedding(8, 4, sparse=sparse)
    direction = torch.tensor([1.0, -2.0, 0.5, 1.0])
    opt = make_opt(emb.parameters())
    tracker = EmbeddingTracker(emb, name="item_emb", auto_fix=auto_fix, track_interval=5)
    moves = []
    for t in range(STEPS):
        before = emb.weight.detach().clone()
        opt.zero_grad()
        w = emb(torch.tensor([0, 1]))
        sign = 1.0 if t % 2 == 0 else -1.0
        loss = sign * (w[0] @ direction) + w[1] @ direction
        loss.backward()
        tracker.step(loss=1.0 / (t + 1))
        opt.step()
        moves.append((emb.weight.detach() - before)[:2].norm(dim=1))
    tracker.detach()
    return torch.stack(moves), tracker


@pytest.mark.parametrize(("sparse", "make_opt"), OPTIMIZERS)
def test_damped_row_moves_less(sparse: bool, make_opt, tmp_path: Path) -> None:
    base, _ = _train(sparse, make_opt, auto_fix=False)
    ctrl = AutoFixController("item_emb", policy=FAST, audit=tmp_path)
    fixed, tracker = _train(sparse, make_opt, auto_fix=ctrl)
    late = slice(STEPS // 2, STEPS)
    # the oscillating row travels clearly less once Auto-Fix has evidence ...
    assert fixed[late, 0].sum() < 0.9 * base[late, 0].sum()
    # ... and the steadily moving row is left alone
    torch.testing.assert_close(fixed[:, 1], base[:, 1])
    scales = tracker.autofix_scales()
    assert scales[0] < 1.0 and scales[1] == 1.0
    assert torch.equal(ctrl.scales(n_rows=8)[:2], scales[:2])
    assert main(["audit", "replay", str(tmp_path)]) == 0


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        ctrl = AutoFixController("item_emb", policy=FAST, audit=None)
        moves, tracker = _train(False, lambda p: torch.optim.Adam(p, lr=0.05), auto_fix=ctrl)
        runs.append((moves, tracker.autofix_scales()))
        del i
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_auto_fix_true_writes_default_audit_in_gradtracer_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADTRACER_DIR", str(tmp_path / "gt"))
    torch.manual_seed(0)
    emb = nn.Embedding(50, 8)
    opt = torch.optim.Adam(emb.parameters(), lr=0.05)
    tracker = EmbeddingTracker(emb, name="item_emb", auto_fix=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):  # noisy targets: rows see gradients of random sign
        opt.zero_grad()
        idx = torch.randint(0, 50, (16,), generator=gen)
        target = torch.randn(16, 8, generator=gen)
        loss = ((emb(idx) - target) ** 2).mean()
        loss.backward()
        tracker.step(loss)
        opt.step()
    assert tracker.summary()["autofix_damped_rows"] > 0
    tracker.detach()
    assert (tmp_path / "gt" / "audit.jsonl").exists()
    assert main(["audit", "replay", str(tmp_path / "gt")]) == 0


def test_unwritable_audit_dir_one_warning_and_report_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    ctrl = AutoFixController("item_emb", policy=FAST, audit=blocker / "audit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moves, tracker = _train(False, lambda p: torch.optim.Adam(p, lr=0.05), auto_fix=ctrl)
    assert (
        len(
            [
                w
                for w in caught
                if issubclass(w.category, GradTracerWarning) and "audit" in str(w.message)
            ]
        )
        == 1
    )
    assert tracker.autofix_scales()[0] < 1.0  # training and damping went on
    assert not ctrl.audit_complete
    assert "AUDIT_INCOMPLETE" in {f.type for f in tracker.findings()}
    del moves


def test_tracker_reports_one_autofix_finding(tmp_path: Path) -> None:
    controller = AutoFixController("item_emb", policy=FAST, audit=tmp_path)
    _, tracker = _train(False, lambda p: torch.optim.SGD(p, lr=0.1), auto_fix=controller)
    applied = [f for f in tracker.findings() if f.type == "AUTOFIX_APPLIED"]
    assert len(applied) == 1
    assert applied[0].subject == "item_emb"


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_every_backend_gives_the_same_damping(sparse, tmp_path):
    """The three backends give the same decisions, weights and state: the compiled
    damping kernel (CPU default), the NumPy update with torch damping, and the batched
    fold (the accelerator path) with torch damping."""
    policy = AutoFixPolicy(warmup_steps=5, min_pairs=4, update_every=3, min_loss_points=3)
    results = []
    for backend in ("numba", "numpy", "batched"):
        ctrl = AutoFixController("emb", policy=policy, audit=None)
        torch.manual_seed(0)
        emb = nn.Embedding(30, 6, sparse=sparse)
        tracker = EmbeddingTracker(emb, name="emb", auto_fix=ctrl, backend=backend)
        opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(emb.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(1)
        direction = torch.randn(30, 6, generator=gen)
        for t in range(40):
            idx = torch.unique(
                torch.cat([torch.randint(0, 30, (10,), generator=gen), torch.tensor([0, 1, 2])])
            )
            opt.zero_grad()
            w = emb(idx)
            flip = torch.where(idx < 3, -1.0 if t % 2 else 1.0, 1.0)  # rows 0-2 oscillate
            loss = (flip[:, None] * w * direction[idx]).sum()
            loss.backward()
            tracker.step(loss=1.0 / (t + 1))
            opt.step()
        results.append(
            (
                emb.weight.detach().clone(),
                tracker.autofix_scales(),
                tracker.row_state.ints.clone(),
                tracker.row_state.floats.clone(),
                ctrl.n_interventions,
                ctrl.scales(30),
            )
        )
        tracker.detach()
    ref = results[0]
    assert ref[4] > 0 and bool((ref[5][:3] < 1).all())  # the oscillating rows were damped
    assert torch.equal(ref[1], ref[5])  # autofix_scales(): the controller's current factors
    assert torch.equal(ref[1], results[1][1])
    for got in results[1:]:
        torch.testing.assert_close(ref[0], got[0], rtol=1e-5, atol=1e-6)
        assert torch.equal(ref[2], got[2])
        torch.testing.assert_close(ref[3], got[3], rtol=1e-5, atol=1e-6)
        assert ref[4] == got[4]
        assert torch.equal(ref[5], got[5])


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_checkpoint_resume_continues_the_same_damping(tmp_path: Path, sparse: bool) -> None:
    """Train 40 steps straight, or 23 + save/load (weights_only) + 17 with a fresh controller:
    the same weights, factors, counters and audit decisions. SGD keeps no optimizer state."""
    policy = AutoFixPolicy(warmup_steps=3, min_pairs=3, update_every=4, min_loss_points=3)
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randint(0, 12, (6,), generator=gen) for _ in range(40)]
    signs = torch.ones(12)

    def run(layer, tracker, part, signs):
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        for rows in part:
            opt.zero_grad()
            out = layer(rows)
            osc = rows < 4  # rows 0-3 oscillate, the rest move steadily
            loss = (out.sum(1) * signs[rows] * osc).sum() + (out.sum(1) * ~osc).sum()
            loss.backward()
            tracker.step(loss=float(loss.detach()))
            opt.step()
            signs[rows] *= -1.0

    def fresh(audit):
        torch.manual_seed(0)
        layer = nn.Embedding(12, 4, sparse=sparse)
        ctrl = AutoFixController("emb", policy=policy, audit=audit, run_id="r1")
        return layer, ctrl

    layer, ctrl = fresh(tmp_path / "straight")
    straight = EmbeddingTracker(layer, name="emb", auto_fix=ctrl, track_interval=5)
    run(layer, straight, batches, signs.clone())
    ref_w, ref_scales, ref_summary = layer.weight.detach().clone(), ctrl.scales(12), ctrl.summary()
    straight.detach()
    assert ref_summary["rows_ever_scaled"] > 0  # the comparison is about real damping

    layer, ctrl = fresh(tmp_path / "resumed")
    first = EmbeddingTracker(layer, name="emb", auto_fix=ctrl, track_interval=5)
    s = signs.clone()
    run(layer, first, batches[:23], s)
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    first.detach()
    ctrl2 = AutoFixController("emb", policy=policy, audit=tmp_path / "resumed")
    resumed = EmbeddingTracker(layer, name="emb", auto_fix=ctrl2, track_interval=5)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert ctrl2.run_id == "r1"
    run(layer, resumed, batches[23:], s)
    torch.testing.assert_close(layer.weight.detach(), ref_w, rtol=0, atol=1e-6)
    assert torch.equal(ctrl2.scales(12), ref_scales)
    got = ctrl2.summary()
    for key in ("n_decisions", "n_interventions", "rows_scaled", "rows_ever_scaled", "step"):
        assert got[key] == ref_summary[key], key
    resumed.detach()
    assert main(["audit", "replay", str(tmp_path / "resumed")]) == 0


def test_load_state_dict_names_policy_mismatch_and_warns_on_missing_state(tmp_path: Path) -> None:
    layer = nn.Embedding(5, 2)
    ctrl = AutoFixController("emb", policy=AutoFixPolicy(floor=0.5), audit=None)
    tracker = EmbeddingTracker(layer, name="emb", auto_fix=ctrl)
    state = tracker.state_dict()
    tracker.detach()
    other = EmbeddingTracker(layer, name="emb", auto_fix=AutoFixController("emb", audit=None))
    with pytest.raises(ValueError, match="floor"):
        other.load_state_dict(state)
    other.detach()
    plain = EmbeddingTracker(layer, name="emb")
    with pytest.warns(GradTracerWarning, match="no intervention"):
        plain.load_state_dict(state)
    bare = plain.state_dict()
    plain.detach()
    fixed = EmbeddingTracker(layer, name="emb", auto_fix=AutoFixController("emb", audit=None))
    with pytest.warns(GradTracerWarning, match="starts afresh"):
        fixed.load_state_dict(bare)
    fixed.detach()
