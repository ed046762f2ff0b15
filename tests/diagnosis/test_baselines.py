"""AUTOTRAINER rules at their published thresholds, and the gradtracer 0.9.0 adapter."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from gradtracer.diagnosis.baselines import AutotrainerProbe, autotrainer_rules
from gradtracer.fault_suite import legacy

FLAT = [1.0] * 30


def _grad_trace(first: float, last: float, n: int = 9, **extra: object) -> dict[str, object]:
    trace: dict[str, object] = {"first_grad_norm": [first] * n, "last_grad_norm": [last] * n}
    trace.update(extra)
    return trace


def _types(losses: list[float], trace: dict[str, object]) -> list[str]:
    return [t for t, _ in autotrainer_rules(losses, trace)]


def _falling(n: int = 30) -> list[float]:
    """A loss that falls by 0.05 per step: neither oscillating nor slowly converging."""
    return [3.0 - 0.05 * i for i in range(n)]


def test_vanishing_gradient_at_beta_1_and_beta_2() -> None:
    # |G_first| / |G_last| = 5e-4 <= 1e-3 and |G_first| = 5e-5 <= 1e-4
    assert _types(_falling(), _grad_trace(5e-5, 0.1)) == ["VANISHING_GRADIENT"]
    # just above beta_2 (ratio still tiny)
    assert _types(_falling(), _grad_trace(1.01e-4, 1.0)) == []
    # just above beta_1 (first norm still tiny)
    assert _types(_falling(), _grad_trace(9e-5, 0.089)) == []


def test_exploding_gradient_at_beta_3_or_nan() -> None:
    assert _types(_falling(), _grad_trace(7.1, 0.1)) == ["EXPLODING_GRADIENT"]
    assert _types(_falling(), _grad_trace(6.9, 0.1)) == []
    nan = _grad_trace(1.0, 1.0, non_finite_grad=[False, False, True])
    assert _types(_falling(), nan) == ["NON_FINITE_GRADIENT"]


def test_dying_relu_at_gamma() -> None:
    assert _types(_falling(), {"zero_grad_share": [0.7] * 3}) == ["DEAD_ACTIVATIONS"]
    assert _types(_falling(), {"zero_grad_share": [0.69] * 3}) == []


def test_gradient_symptoms_are_seen_only_at_checks() -> None:
    # the monitor checks every 3 iterations (alpha = 0): a symptom at steps 1-2 only is missed
    shares = [0.9, 0.9, 0.0, 0.0, 0.0, 0.0]
    assert _types(_falling(), {"zero_grad_share": shares}) == []
    assert autotrainer_rules(_falling(), {"zero_grad_share": shares}, check_every=1) == [
        ("DEAD_ACTIVATIONS", "warning")
    ]


def test_oscillating_loss_at_zeta_and_eta() -> None:
    # per-epoch loss (3 steps an epoch) up by `amplitude` every other epoch: a local
    # maximum over the next minimum by 0.031 >= zeta = 0.03 in 2 of 6 iterations >= eta
    def swinging(amplitude: float) -> list[float]:
        epochs = [1.0 + (amplitude if e % 2 else 0.0) for e in range(12)]
        return [v for v in epochs for _ in range(3)]

    trace = {"steps_per_epoch": 3}
    assert _types(swinging(0.031), trace) == ["LEARNING_RATE_TOO_HIGH"]
    assert _types(swinging(0.029), trace) == []


def test_slow_convergence_at_delta() -> None:
    trace = {"steps_per_epoch": 4}
    slow = [1.0 - 0.009 * (i // 4) for i in range(24)]  # 0.009 per epoch <= delta = 0.01
    assert _types(slow, trace) == ["LEARNING_RATE_TOO_LOW"]
    faster = [1.0 - 0.011 * (i // 4) for i in range(24)]
    assert _types(faster, trace) == []


def test_problems_in_order_of_exposure() -> None:
    trace = {"zero_grad_share": [0.0] * 5 + [0.8] * 4, "steps_per_epoch": 1}
    # slow convergence is exposed at iteration 3, dying ReLU at iteration 6
    assert _types(FLAT, trace) == ["LEARNING_RATE_TOO_LOW", "DEAD_ACTIVATIONS"]


def test_bad_check_every() -> None:
    with pytest.raises(ValueError, match="check_every"):
        autotrainer_rules(FLAT, {}, check_every=0)


def _mlp(bias: float) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 1))  # fmt: skip
    with torch.no_grad():
        for i in (0, 2):
            model[i].bias.fill_(bias)
    return model


def _probe_run(model: nn.Module, steps: int = 6) -> dict[str, object]:
    probe = AutotrainerProbe(model, steps_per_epoch=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(32, 4, generator=gen)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x).squeeze(1), x.sum(1))
        loss.backward()
        probe.record()
        opt.step()
    return probe.trace()


def test_probe_reads_dead_units_from_real_gradients() -> None:
    dead = _probe_run(_mlp(-10.0))  # every hidden ReLU unit is off
    assert min(s for s in dead["zero_grad_share"] if s is not None) >= 0.9  # type: ignore[union-attr]
    assert "DEAD_ACTIVATIONS" in _types(_falling(6), dead)
    alive = _probe_run(_mlp(0.1))
    assert max(s for s in alive["zero_grad_share"] if s is not None) < 0.7  # type: ignore[union-attr]
    assert "DEAD_ACTIVATIONS" not in _types(_falling(6), alive)
    first = alive["first_grad_norm"]
    assert isinstance(first, list) and all(x is not None and x > 0 for x in first)


def test_probe_flags_nan_gradients() -> None:
    model = _mlp(0.1)
    probe = AutotrainerProbe(model)
    model(torch.full((2, 4), math.nan)).sum().backward()
    probe.record()
    assert probe.trace()["non_finite_grad"] == [True]


def test_rename_rewrites_only_import_lines(tmp_path) -> None:
    src = tmp_path / "gradtracer"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text(
        "from gradtracer.sub import x\nimport gradtracer.sub as s\nDIR = '.gradtracer'\n"
    )
    (src / "sub" / "__init__.py").write_text("    from gradtracer import y\nx = 1\n")
    n = legacy._rename(src, tmp_path / legacy.LEGACY_PACKAGE)
    assert n == 3
    text = (tmp_path / legacy.LEGACY_PACKAGE / "__init__.py").read_text()
    assert f"from {legacy.LEGACY_PACKAGE}.sub import x" in text
    assert f"import {legacy.LEGACY_PACKAGE}.sub as s" in text and "'.gradtracer'" in text


def test_missing_install_is_a_clear_error(tmp_path) -> None:
    assert not legacy.legacy_available(tmp_path)
    with pytest.raises(FileNotFoundError, match="--install-legacy"):
        legacy.load_legacy(tmp_path)


needs_legacy = pytest.mark.skipif(
    not legacy.legacy_available(),
    reason=f"gradtracer 0.9.0 is not installed in {legacy.legacy_dir()} "
    "(gradtracer validate diagnosis --install-legacy, or set GRADTRACER_LEGACY_DIR)",
)


class _MF(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.user_emb = nn.Embedding(50, 8)
        self.item_emb = nn.Embedding(200, 8)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(u) * self.item_emb(i)).sum(1)


@needs_legacy
def test_legacy_raises_dead_rows_on_unreachable_items() -> None:
    # only items 0-19 of 200 are ever looked up: 90% of the rows never get a gradient
    model = _MF()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    observer = legacy.LegacyObserver(model, opt)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        u = torch.randint(0, 50, (64,), generator=gen)
        i = torch.randint(0, 20, (64,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(u, i), torch.ones(64))
        loss.backward()
        opt.step()
        observer.step(loss.item())
    out = observer.alarms()
    assert out["error"] is None
    assert ("DEAD_EMBEDDINGS", "warning") in out["report"]
    assert "HIGH DEAD RATE" in out["raw"]["report"]
    assert ("DEAD_EMBEDDINGS", "warning") in out["agent"]  # > 50% dead in its agent export


@needs_legacy
def test_legacy_watches_the_same_run_without_changing_it() -> None:
    from gradtracer.fault_suite.loop import RunSpec, train_run

    spec = RunSpec("mf_bce", random_state=0, fault="frozen_table", intensity=0)
    watched = train_run(replace(spec, legacy=True), n_checkpoints=1)
    plain = train_run(spec, n_checkpoints=1)
    assert watched.losses == plain.losses and watched.quality == plain.quality
    found = watched.baselines["legacy"]
    assert found["error"] is None and found["report"]


@needs_legacy
def test_legacy_failure_on_sparse_gradients_is_reported_not_raised() -> None:
    # 0.9.0's FlowTracker takes the mean of a sparse gradient, which torch does not support
    torch.manual_seed(0)
    table = nn.Embedding(30, 4, sparse=True)
    opt = torch.optim.SparseAdam(table.parameters(), lr=0.01)
    observer = legacy.LegacyObserver(table, opt)
    for _ in range(3):
        opt.zero_grad()
        loss = table(torch.arange(10)).pow(2).sum()
        loss.backward()
        opt.step()
        observer.step(loss.item())
    out = observer.alarms()
    assert out["error"] is not None and out["error"].startswith("NotImplementedError")
    assert "\n" not in out["error"] and out["report"] == []
