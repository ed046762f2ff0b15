"""FlowTracker on small models with planted pathologies (each has an obvious right answer)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from gradtracer.findings import FindingType, Severity
from gradtracer.flow.history import layer_differences
from gradtracer.flow.tracker import FlowTracker


def _data(seed: int = 0, n: int = 256, d: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x[:, :1] * 1.5 - x[:, 1:2]
    return x, y


def _mlp(seed: int = 0, d: int = 10, h: int = 32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1))


def _train(model, tracker, opt, steps=40, *, before=False, grad_fn=None, x=None, y=None):
    if x is None:
        x, y = _data()
    for i in range(steps):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        if grad_fn is not None:
            grad_fn(i)
        if before:
            tracker.step(loss)
            opt.step()
        else:
            opt.step()
            tracker.step(loss)


def _types(tracker, layer=None):
    return {f.type for f in tracker.findings() if layer is None or layer in (f.sample_ids or ("",))}


def test_healthy_training_has_no_critical_findings_and_falling_loss():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tr = FlowTracker(model, optimizer=opt)
    _train(model, tr, opt, steps=60)
    s = tr.summary()
    assert s["tracked_steps"] == 60
    assert s["loss_slope"] < 0 and s["loss_slope_p"] < 0.01  # a significantly falling loss
    assert s["lr"] == pytest.approx(1e-2)
    assert not [f for f in tr.findings() if f.severity is Severity.CRITICAL]
    # at most a mild symptom (e.g. noisy gradients, -10) on a layer or two: the overall score
    # is min(mean, min + 25), so one stagnating (-30) or exploding (-40) layer would fall below
    assert s["health"] >= 70


def test_layer_with_zero_lr_is_flagged_stagnating_and_only_that_layer():
    model = _mlp()
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.0},
            {"params": model[2].parameters(), "lr": 0.01},
        ]
    )
    tr = FlowTracker(model)
    _train(model, tr, opt, steps=30)
    stagnating = {
        f.sample_ids[0] for f in tr.findings() if f.type == FindingType.STAGNATING_LAYER.value
    }
    assert stagnating == {"0.weight", "0.bias"}
    layers = tr.summary()["layers"]
    assert layers["0.weight"]["update_ratio"] == 0.0
    assert layers["2.weight"]["update_ratio"] > 0


def test_gradient_spike_and_nan_are_exploding_findings():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    tr = FlowTracker(model)

    def spike(i):
        if i == 29:  # the last step, so the spike cannot disturb other layers later
            model[2].weight.grad.mul_(1e4)

    _train(model, tr, opt, steps=30, grad_fn=spike)
    found = [f for f in tr.findings() if f.type == FindingType.EXPLODING_GRADIENT.value]
    assert [f.sample_ids[0] for f in found] == ["2.weight"]
    assert found[0].evidence["spikes"] == 1

    model2 = _mlp(1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=1e-3)
    tr2 = FlowTracker(model2)

    def poison(i):
        if i == 11:  # the last step: the NaN must not spread to later steps
            model2[0].bias.grad[0] = math.nan

    _train(model2, tr2, opt2, steps=12, grad_fn=poison)
    crit = [f for f in tr2.findings() if f.severity is Severity.CRITICAL]
    assert any(f.sample_ids == ("0.bias",) and f.evidence["non_finite_steps"] == 1 for f in crit)
    # the NaN step did not poison the stored statistics of the layer
    assert math.isfinite(tr2.summary()["layers"]["0.bias"]["grad_norm_median"])


def test_early_large_gradients_that_shrink_are_not_explosions():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tr = FlowTracker(model)
    _train(model, tr, opt, steps=80)
    assert FindingType.EXPLODING_GRADIENT.value not in _types(tr)


class _Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor


def test_vanishing_gradient_is_flagged():
    torch.manual_seed(0)
    model = nn.Sequential(_Scaled(nn.Linear(10, 8), 1e-9), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tr = FlowTracker(model)
    _train(model, tr, opt, steps=10)
    vanishing = {
        f.sample_ids[0] for f in tr.findings() if f.type == FindingType.VANISHING_GRADIENT.value
    }
    assert "0.inner.weight" in vanishing
    assert "1.bias" not in vanishing  # its gradient does not pass through the scaled branch


def test_dead_relu_units_are_measured():
    model = _mlp(h=16)
    with torch.no_grad():
        model[0].bias[:12] = -1e3  # 12 of 16 units can never fire
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    tr = FlowTracker(model, track_activations=True)
    _train(model, tr, opt, steps=5)
    dead = tr.summary()["layers"]["1"]["dead_fraction"]
    assert dead == pytest.approx(12 / 16)
    assert FindingType.DEAD_ACTIVATIONS.value in _types(tr)
    tr.detach()
    assert not model[1]._forward_hooks


def test_sampled_displacement_matches_exact_norm_on_a_large_layer():
    torch.manual_seed(0)
    layer = nn.Linear(512, 256)  # 131k weights, sampled with 4096 coordinates
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    tr = FlowTracker(layer, sample_size=4096)
    x = torch.randn(64, 512)
    exact = []
    for _ in range(6):
        before = layer.weight.detach().clone()
        opt.zero_grad()
        layer(x).pow(2).mean().backward()
        opt.step()
        tr.step()
        exact.append((layer.weight.detach() - before).norm().item())
    est = tr._layers[0].velocities
    assert len(est) == 5  # the first step has no earlier sample
    for e, x_ in zip(est, exact[1:]):
        assert e == pytest.approx(x_, rel=0.1)
    assert tr.summary()["layers"]["weight"]["weight_norm"] == pytest.approx(
        layer.weight.norm().item(), rel=0.05
    )


def test_step_before_or_after_optimizer_step_sees_the_same_updates():
    runs = []
    for before in (False, True):
        model = _mlp(3)
        opt = torch.optim.SGD(model.parameters(), lr=0.02)
        tr = FlowTracker(model)
        _train(model, tr, opt, steps=12, before=before)
        runs.append(list(tr._layers[0].velocities))
    after_v, before_v = runs
    # called before optimizer.step, step t measures the update of step t-1
    assert before_v[1:] == pytest.approx(after_v[: len(before_v) - 1], rel=1e-5)


def test_interval_measures_single_step_displacement():
    vel = {}
    for interval in (1, 4):
        model = _mlp(5)
        opt = torch.optim.SGD(model.parameters(), lr=0.02)
        tr = FlowTracker(model, track_interval=interval)
        _train(model, tr, opt, steps=16)
        vel[interval] = list(tr._layers[0].velocities)
        assert tr.summary()["tracked_steps"] == 16 // interval
    # interval 4 measures steps 4, 8, 12, 16 -> the same one-step displacements
    assert vel[4] == pytest.approx([vel[1][i] for i in (2, 6, 10, 14)], rel=1e-5)


def test_state_dict_round_trip_resumes_identically():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    tr = FlowTracker(model, run_id="r1")
    _train(model, tr, opt, steps=10)
    state = tr.state_dict()
    clone = FlowTracker(model, run_id="other")
    clone.load_state_dict(state)
    a, b = tr.summary(), clone.summary()
    assert a == b
    with pytest.raises(ValueError, match="layers differ"):
        FlowTracker(_Scaled(nn.Linear(2, 2), 1.0)).load_state_dict(state)


def test_loss_divergence_and_plateau():
    model = _mlp()
    tr = FlowTracker(model)
    for i in range(30):
        tr.step(loss=1.0 + 0.1 * i)
    assert FindingType.LOSS_DIVERGENCE.value in _types(tr)
    tr2 = FlowTracker(_mlp())
    for _ in range(30):
        tr2.step(loss=0.5)
    assert FindingType.LOSS_PLATEAU.value in _types(tr2)
    tr3 = FlowTracker(_mlp())
    tr3.step(loss=float("nan"))
    for _ in range(5):
        tr3.step(loss=1.0)
    crit = [f for f in tr3.findings() if f.type == FindingType.LOSS_DIVERGENCE.value]
    assert crit and crit[0].severity is Severity.CRITICAL


def test_run_history_flags_the_layer_that_changed(tmp_path):
    for k, lr in enumerate((0.01, 0.01, 1.0)):
        model = _mlp(k)
        opt = torch.optim.SGD(
            [
                {"params": model[0].parameters(), "lr": 0.01},
                {"params": model[2].parameters(), "lr": lr},
            ]
        )
        tr = FlowTracker(model, name="mlp", run_id=f"run{k}", history_dir=tmp_path)
        _train(model, tr, opt, steps=20)
        if k < 2:
            tr.save_run()
    regressions = tr.compare_runs()
    changed = {f.sample_ids[0] for f in regressions}
    assert "2.weight" in changed
    assert all(f.type == FindingType.RUN_REGRESSION.value for f in regressions)
    assert len(list(tmp_path.glob("mlp__run*.json"))) == 2


def test_layer_differences_on_constructed_summaries():
    def run(ratio_a, ratio_b, health_b=100.0):
        return {
            "layers": {
                "a": {"grad_norm_median": 1.0, "update_ratio": ratio_a, "health": 100.0},
                "b": {"grad_norm_median": 1.0, "update_ratio": ratio_b, "health": health_b},
            }
        }

    earlier = [run(1e-3, 1e-3), run(1.2e-3, 0.9e-3)]
    diffs = layer_differences(run(1.1e-3, 5e-3), earlier)
    assert [(d.layer, d.metric) for d in diffs] == [("b", "update_ratio")]
    assert diffs[0].ratio == pytest.approx(5e-3 / np.median([1e-3, 0.9e-3]))
    assert layer_differences(run(1.1e-3, 1e-3, health_b=50.0), earlier)[0].metric == "health"
    assert layer_differences(run(1e-3, 1e-3), []) == []


def test_bad_input_errors():
    with pytest.raises(TypeError, match="Tensor"):
        FlowTracker(torch.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="track_interval"):
        FlowTracker(_mlp(), track_interval=0)
    frozen = _mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        FlowTracker(frozen)


def test_step_without_backward_is_harmless():
    tr = FlowTracker(_mlp())
    tr.step()
    tr.step()
    s = tr.summary()
    assert s["step"] == 2 and s["health"] == 100.0
    assert tr.findings() == []


def test_report_is_the_rendered_report_and_prints_nothing(capsys):
    from gradtracer.report.text import ReportText, render_text

    model = _mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.0}], lr=0.0)
    tr = FlowTracker(model, name="mlp")
    _train(model, tr, opt, steps=10)
    text = tr.report()
    assert capsys.readouterr().out == ""
    assert isinstance(text, ReportText) and text == render_text(tr.to_report())
    assert repr(text) == text  # a notebook cell shows the text, not a quoted string
    assert text.startswith("GradTracer flow report: mlp (step 10)")
    # findings in Report order: the rendered types follow sorted_findings()
    shown = re.findall(r"^\s+\[(?:INFO|WARNING|CRITICAL)\] (\S+) on ", text, re.M)
    assert shown == [f.type.value for f in tr.to_report().sorted_findings()] and shown
