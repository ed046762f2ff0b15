"""The Auto-Fix hook: an Intervention's factors scale the applied update of its rows."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker, Intervention, RowEvidence
from gradtracer.findings import FindingType


class HalveRows:
    """A tiny real Intervention: damp the update of ``rows`` by 0.5, leave the rest alone."""

    def __init__(self, rows: list[int]) -> None:
        self.rows = torch.tensor(rows)
        self.table = torch.ones(int(self.rows.max()) + 1)  # rows beyond the table get 1
        self.table[self.rows] = 0.5
        self.evidence: list[RowEvidence] = []
        self.closed = False

    def on_step(self, step, rows, loss, read) -> torch.Tensor | None:
        self.evidence.append(read(rows))
        return self.table

    def close(self) -> None:
        self.closed = True


def _optimizer(kind: str, params, sparse: bool) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1)
    if kind == "adam":
        return (torch.optim.SparseAdam if sparse else torch.optim.Adam)(params, lr=0.1)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=0.1)
    return torch.optim.Adagrad(params, lr=0.1)


CASES = [
    ("sgd", False),
    ("sgd", True),
    ("adam", False),
    ("adam", True),
    ("adamw", False),
    ("adagrad", False),
    ("adagrad", True),
]


@pytest.mark.parametrize(
    ("kind", "sparse"), CASES, ids=[f"{k}-{'sparse' if s else 'dense'}" for k, s in CASES]
)
def test_factors_scale_the_applied_update(kind, sparse):
    torch.manual_seed(0)
    tracked = nn.Embedding(20, 4, sparse=sparse)
    plain = copy.deepcopy(tracked)
    opt_t = _optimizer(kind, tracked.parameters(), sparse)
    opt_p = _optimizer(kind, plain.parameters(), sparse)
    halve = HalveRows([2, 5])
    tracker = EmbeddingTracker(tracked, name="emb", auto_fix=halve)
    idx = torch.tensor([1, 2, 5, 7])
    before = tracked.weight.detach().clone()
    for layer, opt in ((tracked, opt_t), (plain, opt_p)):
        opt.zero_grad()
        layer(idx).pow(2).sum().mul(0.5).add(layer(idx).sum()).backward()
    tracker.step(loss=3.25)
    opt_t.step()
    opt_p.step()
    full = plain.weight.detach() - before
    applied = tracked.weight.detach() - before
    torch.testing.assert_close(applied[[2, 5]], 0.5 * full[[2, 5]])
    torch.testing.assert_close(applied[[1, 7]], full[[1, 7]])
    untouched = [r for r in range(20) if r not in (1, 2, 5, 7)]
    torch.testing.assert_close(applied[untouched], full[untouched])
    scales = tracker.autofix_scales()
    assert scales.shape == (20,)
    assert scales[[2, 5]].tolist() == [0.5, 0.5] and scales[[1, 7]].tolist() == [1.0, 1.0]
    ev = halve.evidence[-1]
    assert ev.step == 1 and ev.layer == "emb" and ev.loss == 3.25
    assert sorted(ev.rows.tolist()) == [1, 2, 5, 7]
    for t in (
        ev.n_agree,
        ev.n_disagree,
        ev.cos_ema,
        ev.grad_norm_ema,
        ev.velocity_ema,
        ev.exposure,
    ):
        assert t.shape == ev.rows.shape
    # the velocity EMA records the damped displacement
    vel = tracker.row_state.col("velocity_ema")
    torch.testing.assert_close(vel[[2, 5]], applied[[2, 5]].norm(dim=1))
    # a few more steps run and the finding reports the damping
    for _ in range(3):
        opt_t.zero_grad()
        tracked(idx).pow(2).sum().backward()
        opt_t.step()
    s = tracker.summary()
    assert s["autofix_damped_updates"] == 8 and s["autofix_damped_rows"] == 2
    applied_f = [f for f in tracker.findings() if f.type == FindingType.AUTOFIX_APPLIED.value]
    assert applied_f and set(applied_f[0].sample_ids) == {2, 5}
    tracker.detach()
    assert halve.closed


def test_intervention_returning_wrong_shape_is_rejected():
    class Bad:
        def on_step(self, step, rows, loss, read) -> torch.Tensor:
            return torch.ones(rows.numel(), 2)

        def close(self) -> None:
            pass

    layer = nn.Embedding(5, 2)
    tracker = EmbeddingTracker(layer, name="emb", auto_fix=Bad())
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match=r"returned a \(1, 2\) .* expected a 1-D"):
        opt.step()
    tracker.detach()


def test_protocol_is_satisfied_by_the_test_class():
    halve: Intervention = HalveRows([0])
    assert callable(halve.on_step)


def test_auto_fix_true_uses_the_default_controller(tmp_path, monkeypatch):
    pytest.importorskip("gradtracer.embedding.autofix")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADTRACER_DIR", str(tmp_path))
    layer = nn.Embedding(30, 4)
    tracker = EmbeddingTracker(layer, name="item_emb", auto_fix=True, track_interval=20)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        loss = layer(torch.tensor([1, 2, 3])).pow(2).sum()
        loss.backward()
        tracker.step(loss)
        opt.step()
    assert type(tracker._intervention).__name__ == "AutoFixController"
    assert tracker.summary()["autofix"] is True
    tracker.detach()


def test_auto_fix_rejects_other_objects():
    with pytest.raises(TypeError, match="Intervention"):
        EmbeddingTracker(nn.Embedding(3, 2), auto_fix="yes")  # type: ignore[arg-type]
