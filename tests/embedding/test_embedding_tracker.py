"""EmbeddingTracker contract: hooks, order independence, references, errors, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker
from gradtracer.errors import TrackerError
from gradtracer.findings import FindingType, Report

REQUIRED_KEYS = {
    "layer",
    "num_embeddings",
    "embedding_dim",
    "step",
    "active_coverage_pct",
    "popularity_gini",
    "zombie_count",
    "zombie_ratio",
    "dead_count",
    "dead_ratio",
    "frozen_count",
    "mean_velocity",
    "effective_rank",
}


def _batches(n_rows: int, n_steps: int, batch: int = 12, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # rows 0..n_rows/2 are popular, the top quarter is never used
    return [torch.randint(0, n_rows * 3 // 4, (batch,), generator=gen) for _ in range(n_steps)]


def _train(
    layer: nn.Module,
    tracker: EmbeddingTracker | None,
    batches: list[torch.Tensor],
    *,
    opt_kind: str = "adam",
    order: str = "before",
    lr: float = 0.05,
) -> list[float]:
    """Train with a loss pulling rows to a fixed target; ``order`` places ``tracker.step``."""
    torch.manual_seed(1)
    target = torch.randn(layer.weight.shape)
    sparse = bool(getattr(layer, "sparse", False))
    if opt_kind == "manual":
        opt = None
    elif opt_kind == "sgd":
        opt = torch.optim.SGD(layer.parameters(), lr=lr)
    else:
        opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(layer.parameters(), lr=lr)
    losses = []
    for idx in batches:
        if opt is not None:
            opt.zero_grad()
        else:
            layer.weight.grad = None
        loss = (layer(idx) - target[idx]).pow(2).sum()
        loss.backward()
        if tracker is not None and order == "before":
            tracker.step(loss)
        if opt is not None:
            opt.step()
        else:
            with torch.no_grad():
                layer.weight -= lr * layer.weight.grad
        if tracker is not None and order == "after":
            tracker.step(loss)
        losses.append(float(loss.detach()))
    return losses


def _fresh(n_rows: int = 64, dim: int = 8, sparse: bool = False, seed: int = 0) -> nn.Embedding:
    torch.manual_seed(seed)
    return nn.Embedding(n_rows, dim, sparse=sparse)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_step_order_and_absence_give_identical_statistics(sparse):
    batches = _batches(64, 30)
    results = {}
    for order in ("before", "after", "never"):
        layer = _fresh(sparse=sparse)
        tracker = EmbeddingTracker(layer, name="emb", track_interval=5)
        losses = _train(layer, tracker, batches, order=order)
        st = tracker.row_state
        results[order] = (st.ints.clone(), st.floats.clone(), tracker.history, losses)
        tracker.detach()
    for order in ("after", "never"):
        assert torch.equal(results[order][0], results["before"][0])
        assert torch.equal(results[order][1], results["before"][1])
    strip = [{k: v for k, v in h.items() if k != "loss"} for h in results["before"][2]]
    for order in ("after", "never"):
        assert [{k: v for k, v in h.items() if k != "loss"} for h in results[order][2]] == strip
    # the loss of step k is attached to history step k whichever order step() is called in
    for order in ("before", "after"):
        losses = results[order][3]
        assert [h["loss"] for h in results[order][2]] == pytest.approx(
            [losses[h["step"] - 1] for h in results[order][2]]
        )
    assert all(h["loss"] is None for h in results["never"][2])


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_exposure_and_velocity_match_naive_reference(sparse):
    batches = _batches(64, 25)
    layer = _fresh(sparse=sparse)
    tracker = EmbeddingTracker(layer, name="emb", track_interval=7, ema_decay=0.8)
    opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(layer.parameters(), lr=0.05)
    target = torch.randn(64, 8)
    exposure = torch.zeros(64, dtype=torch.int64)
    last_seen = torch.zeros(64, dtype=torch.int64)
    vel = torch.zeros(64, dtype=torch.float64)
    gnorm = torch.zeros(64, dtype=torch.float64)
    for step, idx in enumerate(batches, start=1):
        opt.zero_grad()
        (layer(idx) - target[idx]).pow(2).sum().backward()
        before = layer.weight.detach().clone()
        grad = layer.weight.grad.to_dense() if sparse else layer.weight.grad.clone()
        opt.step()
        moved = (layer.weight.detach() - before).double().norm(dim=1)
        for r in torch.unique(idx).tolist():
            g = grad[r].double().norm()
            if exposure[r] == 0:
                vel[r], gnorm[r] = moved[r], g
            else:
                vel[r] = 0.8 * vel[r] + 0.2 * moved[r]
                gnorm[r] = 0.8 * gnorm[r] + 0.2 * g
            exposure[r] += 1
            last_seen[r] = step
    st = tracker.row_state
    assert torch.equal(st.col("exposure").long(), exposure)
    assert torch.equal(st.col("last_seen").long(), last_seen)
    torch.testing.assert_close(st.col("velocity_ema").double(), vel, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(st.col("grad_norm_ema").double(), gnorm, rtol=1e-4, atol=1e-7)
    s = tracker.summary()
    assert s["active_rows"] == int((exposure > 0).sum())
    assert s["mean_velocity"] == pytest.approx(float(vel[exposure > 0].mean()), rel=1e-4)
    # the O(1) history snapshot agrees with the full recomputation
    last = tracker.history[-1]
    assert last["step"] == 21
    tracker.detach()


def test_manual_updates_without_optimizer_match_sgd():
    batches = _batches(64, 20)
    states = []
    for kind in ("sgd", "manual"):
        layer = _fresh()
        tracker = EmbeddingTracker(layer, name="emb")
        _train(layer, tracker, batches, opt_kind=kind, order="never", lr=0.1)
        states.append(tracker.row_state.floats.clone())
        assert tracker.n_steps == 20
        tracker.detach()
    torch.testing.assert_close(states[0], states[1])


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_gradient_accumulation_counts_one_step_per_optimizer_step(sparse):
    layer = _fresh(sparse=sparse)
    tracker = EmbeddingTracker(layer, name="emb")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(4):
        opt.zero_grad()
        layer(torch.tensor([1, 2])).sum().backward()
        layer(torch.tensor([2, 3])).sum().backward()
        opt.step()
    st = tracker.row_state
    assert tracker.n_steps == 4
    assert st.col("exposure")[[1, 2, 3, 4]].tolist() == [4, 4, 4, 0]
    # row 2 got both micro-batch gradients: norm sqrt(8 * 2^2) for dim 8
    assert float(st.col("grad_norm_ema")[2]) == pytest.approx(2 * 8**0.5, rel=1e-5)
    tracker.detach()


def test_embedding_bag_and_padding_idx():
    bag = nn.EmbeddingBag(30, 4, mode="mean")
    tracker = EmbeddingTracker(bag, name="bag")
    opt = torch.optim.SGD(bag.parameters(), lr=0.1)
    opt.zero_grad()
    bag(torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2])).sum().backward()
    opt.step()
    assert tracker.row_state.col("exposure")[:6].tolist() == [0, 1, 1, 1, 1, 0]
    tracker.detach()

    emb = nn.Embedding(10, 4, padding_idx=0)
    tracker = EmbeddingTracker(emb, name="padded")
    opt = torch.optim.Adam(emb.parameters(), lr=0.1)
    opt.zero_grad()
    emb(torch.tensor([0, 0, 5])).sum().backward()
    opt.step()
    assert tracker.row_state.col("exposure")[[0, 5]].tolist() == [0, 1]
    tracker.detach()


def test_not_an_embedding_raises_type_error_naming_the_type():
    with pytest.raises(TypeError, match="Linear"):
        EmbeddingTracker(nn.Linear(3, 3))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_track_interval(bad):
    with pytest.raises(ValueError, match="track_interval"):
        EmbeddingTracker(_fresh(), track_interval=bad)


def test_two_trackers_on_one_layer_raise_and_detach_releases():
    layer = _fresh()
    first = EmbeddingTracker(layer, name="a")
    with pytest.raises(TrackerError, match="already has a tracker"):
        EmbeddingTracker(layer, name="b")
    first.detach()
    second = EmbeddingTracker(layer, name="b")
    second.detach()


def test_step_before_any_backward_is_a_noop():
    layer = _fresh()
    tracker = EmbeddingTracker(layer, name="emb")
    tracker.step()
    tracker.step(loss=1.5)
    assert tracker.n_steps == 0
    assert tracker.history == []
    s = tracker.summary()
    assert s["step"] == 0 and s["active_rows"] == 0 and s["zombie_count"] == 0
    tracker.detach()


def test_detach_removes_every_hook():
    layer = _fresh()
    n_fwd = len(layer._forward_hooks)
    tracker = EmbeddingTracker(layer, name="emb")
    assert len(layer._forward_hooks) == n_fwd + 1
    _train(layer, tracker, _batches(64, 3))
    tracker.detach()
    assert len(layer._forward_hooks) == n_fwd
    frozen = tracker.row_state.ints.clone()
    _train(layer, None, _batches(64, 3, seed=5))
    assert torch.equal(tracker.row_state.ints, frozen)
    assert tracker.n_steps == 3


def test_context_manager_detaches():
    layer = _fresh()
    with EmbeddingTracker(layer, name="emb") as tracker:
        _train(layer, tracker, _batches(64, 2))
    EmbeddingTracker(layer, name="again").detach()  # would raise if still attached


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_non_finite_gradients_do_not_poison_statistics(sparse):
    layer = _fresh(sparse=sparse)
    tracker = EmbeddingTracker(layer, name="emb")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for step in range(6):
        opt.zero_grad()
        idx = torch.tensor([1, 2, 3])
        out = layer(idx)
        scale = torch.tensor([1.0, float("nan") if step == 3 else 1.0, 1.0])[:, None]
        (out * scale).sum().backward()
        opt.step()
    s = tracker.summary()
    for key in ("mean_velocity", "mean_grad_norm", "oscillation_mean", "effective_rank"):
        assert s[key] is not None and s[key] == s[key], key  # finite, not NaN
    # row 2's weight is NaN from step 4 on, so each later step reports it again
    assert s["non_finite_rows"] == 3 and s["non_finite_steps"] == 3
    st = tracker.row_state
    assert torch.isfinite(st.floats).all()
    assert st.col("exposure")[[1, 2, 3]].tolist() == [6, 3, 6]  # row 2's NaN steps are left out
    types = {f.type for f in tracker.findings()}
    assert FindingType.NON_FINITE_GRADIENT.value in types
    json.dumps(tracker.to_report().to_dict(), allow_nan=False)
    tracker.detach()


def test_summary_report_and_findings_shapes():
    layer = _fresh(n_rows=200)
    tracker = EmbeddingTracker(layer, name="item_emb", track_interval=4)
    _train(layer, tracker, _batches(200, 12))
    s = tracker.summary()
    assert REQUIRED_KEYS <= set(s)
    assert s["layer"] == "item_emb" and s["num_embeddings"] == 200 and s["embedding_dim"] == 8
    assert s["step"] == 12
    assert s["dead_count"] >= 50  # the top quarter of rows is never used
    json.dumps(s, allow_nan=False)
    report = tracker.to_report()
    assert (
        isinstance(report, Report) and report.kind == "embedding" and report.subject == "item_emb"
    )
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.stats["zombie_count"] == s["zombie_count"]
    assert {f.type for f in again.findings} == {f.type for f in tracker.findings()}
    text = tracker.report()  # the shared renderer (gradtracer.report.text), not printed
    assert "item_emb" in text and "zombie_count" in text
    assert all(f.action in text for f in tracker.findings())
    assert [h["step"] for h in tracker.history] == [4, 8, 12]
    for key in (
        "step",
        "loss",
        "mean_velocity",
        "mean_grad_norm",
        "active_rows",
        "oscillation_mean",
        "zombie_count",
    ):
        assert key in tracker.history[-1]
    tracker.detach()


@pytest.mark.parametrize("dim", [32, 64, 200])
def test_state_memory_within_a_quarter_of_the_table(dim):
    layer = nn.Embedding(5000, dim)
    tracker = EmbeddingTracker(layer, name="emb")
    s = tracker.summary()
    assert s["state_bytes"] <= 0.25 * s["table_bytes"]
    assert s["state_bytes"] == 5000 * 32  # 32 bytes a row with the default 32-bit sketch
    assert tracker.row_state.nbytes() == s["state_bytes"]
    tracker.detach()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_state_dict_round_trip_resumes_exactly(tmp_path, sparse):
    batches = _batches(64, 20)
    layer = _fresh(sparse=sparse)
    full = EmbeddingTracker(layer, name="emb", track_interval=3)
    _train(layer, full, batches, opt_kind="sgd")
    reference = (full.row_state.ints.clone(), full.row_state.floats.clone(), list(full.history))
    full.detach()

    layer = _fresh(sparse=sparse)
    first = EmbeddingTracker(layer, name="emb", track_interval=3)
    _train(layer, first, batches[:11], opt_kind="sgd")
    path = tmp_path / "tracker.pt"
    torch.save(first.state_dict(), path)
    first.detach()
    resumed = EmbeddingTracker(layer, name="emb", track_interval=3)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    _train(layer, resumed, batches[11:], opt_kind="sgd")
    assert torch.equal(resumed.row_state.ints, reference[0])
    torch.testing.assert_close(resumed.row_state.floats, reference[1])
    assert [h["step"] for h in resumed.history] == [h["step"] for h in reference[2]]
    resumed.detach()


def test_load_state_dict_rejects_another_shape():
    a = EmbeddingTracker(_fresh(n_rows=10), name="a")
    state = a.state_dict()
    a.detach()
    b = EmbeddingTracker(_fresh(n_rows=11), name="b")
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(state)
    b.detach()


def test_explicit_optimizer_argument_ignores_other_optimizers():
    layer = _fresh()
    other = nn.Linear(2, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    tracker = EmbeddingTracker(layer, name="emb", optimizer=opt)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.tensor([1])).sum().backward()
        other_opt.step()  # must not count
        opt.step()
    assert tracker.n_steps == 3
    tracker.detach()


def test_a_table_taken_out_of_the_optimizer_mid_run_stops_counting_steps():
    """Removing the table's parameter group (or adding it back) is seen at the next step,
    though the optimizer's ownership is cached."""
    layer = _fresh()
    other = nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": layer.parameters()}, {"params": other.parameters()}], lr=0.1)
    tracker = EmbeddingTracker(layer, name="emb")
    table_group = opt.param_groups[0]

    def train(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            (layer(torch.tensor([1])).sum() + other(torch.ones(2)).sum()).backward()
            opt.step()

    train(3)
    opt.param_groups.remove(table_group)
    train(4)
    assert tracker.n_steps == 3
    opt.add_param_group(table_group)
    train(2)
    assert tracker.n_steps == 5
    tracker.detach()


def test_global_hook_counts_only_optimizers_holding_the_weight():
    """Interleaved steps of an optimizer without the weight never count, also after the
    owning optimizer is replaced by a new one (the last owner is only a shortcut)."""
    layer = _fresh()
    other = nn.Linear(2, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    tracker = EmbeddingTracker(layer, name="emb")
    for opt_round in range(2):
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            layer(torch.tensor([1, 2])).sum().backward()
            other_opt.step()  # must not count
            opt.step()
            other_opt.step()
        assert tracker.n_steps == 3 * (opt_round + 1)
        del opt
    assert int(tracker.row_stats()["exposure"][1]) == 6
    tracker.detach()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_batched_fold_equals_step_by_step(sparse):
    """Steps folded in batches (fold.fold_steps, the accelerator path) give the state of
    applying each step in place (fold.apply_step, the CPU path)."""
    batches = _batches(64, 40, batch=30)
    states = []
    for interval, backend in ((1, "numpy"), (50, "batched")):
        layer = _fresh(sparse=sparse)
        tracker = EmbeddingTracker(layer, name="emb", track_interval=interval, backend=backend)
        _train(layer, tracker, batches, opt_kind="sgd", order="never", lr=0.3)
        st = tracker.row_state
        states.append((st.ints.clone(), st.floats.clone(), st.sketch.clone()))
        tracker.detach()
    assert torch.equal(states[0][0], states[1][0])
    assert torch.equal(states[0][2], states[1][2])
    torch.testing.assert_close(states[0][1], states[1][1], rtol=1e-5, atol=1e-6)
    assert int(states[0][0][:, 2:4].sum()) > 100  # many consecutive-exposure pairs were formed


@pytest.mark.parametrize("interval", [1, 7, 100])
def test_history_running_sums_agree_with_full_recomputation(interval):
    """The O(1) history snapshot equals the summary recomputed from the whole row state."""
    layer = _fresh(n_rows=120)
    tracker = EmbeddingTracker(layer, name="emb", track_interval=interval)
    _train(layer, tracker, _batches(120, 70, batch=25), opt_kind="sgd", lr=0.2)
    tracker.step(loss=0.5)  # no-op apart from the loss, still after the last optimizer step
    s = tracker.summary()
    assert len(tracker.history) == 70 // interval
    if interval in (1, 7):
        last = tracker.history[-1]
        assert last["active_rows"] == s["active_rows"]
        assert last["mean_velocity"] == pytest.approx(s["mean_velocity"], rel=1e-5)
        assert last["mean_grad_norm"] == pytest.approx(s["mean_grad_norm"], rel=1e-5)
        assert last["oscillation_mean"] == pytest.approx(s["oscillation_mean"], rel=1e-4, abs=1e-6)
        assert last["zombie_count"] == int(tracker.row_state.col("zombie").sum())
        assert last["loss"] == 0.5
    tracker.detach()


def test_history_is_thinned_beyond_max_history():
    layer = _fresh()
    tracker = EmbeddingTracker(layer, name="emb", max_history=10)
    _train(layer, tracker, _batches(64, 25), opt_kind="sgd")
    steps = [h["step"] for h in tracker.history]
    assert len(steps) <= 10 and steps == sorted(steps) and steps[0] == 1
    tracker.detach()


def test_tracker_reports_its_own_time_per_step():
    layer = nn.Embedding(200, 16, sparse=True)
    tracker = EmbeddingTracker(layer, name="emb")
    opt = torch.optim.SparseAdam(layer.parameters(), lr=0.01)
    assert tracker.summary()["tracker_seconds"] == 0.0  # nothing recorded yet
    for _ in range(20):
        opt.zero_grad()
        layer(torch.randint(0, 200, (64,))).sum().backward()
        opt.step()
    first = tracker.summary()
    assert 0.0 < first["tracker_seconds"] < 20.0
    assert first["tracker_ms_per_step"] == pytest.approx(1e3 * first["tracker_seconds"] / 20)
    for _ in range(5):  # summaries and reports are not counted, further steps are
        tracker.summary()
        tracker.report()
    opt.zero_grad()
    layer(torch.randint(0, 200, (64,))).sum().backward()
    opt.step()
    assert tracker.summary()["tracker_seconds"] > first["tracker_seconds"]
    tracker.detach()


def test_num_steps_is_a_deprecated_alias_of_n_steps():
    emb = nn.Embedding(10, 4)
    tracker = EmbeddingTracker(emb)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        emb(torch.tensor([1, 2])).sum().backward()
        opt.step()
    with pytest.warns(DeprecationWarning, match="n_steps"):
        assert tracker.num_steps == tracker.n_steps == 2
