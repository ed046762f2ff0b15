"""A tampered tracker checkpoint is rejected with the key and value named, and changes nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker
from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy
from gradtracer.embedding.sums import EXPOSED, VELOCITY

POLICY = AutoFixPolicy(warmup_steps=2, min_pairs=2, update_every=2, min_loss_points=3)


def _trained(seed: int, steps: int = 12) -> tuple[nn.Embedding, EmbeddingTracker]:
    torch.manual_seed(seed)
    emb = nn.Embedding(24, 4)
    ctrl = AutoFixController("emb", policy=POLICY, audit=None)
    tracker = EmbeddingTracker(emb, name="emb", auto_fix=ctrl)
    opt = torch.optim.SGD(emb.parameters(), lr=0.2)
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        opt.zero_grad()
        idx = torch.cat([torch.randint(0, 18, (6,), generator=gen), torch.tensor([0])])
        sign = torch.where(idx == 0, -1.0 if t % 2 else 1.0, 1.0)  # row 0 oscillates
        loss = (emb(idx).sum(1) * sign).sum()
        loss.backward()
        tracker.step(loss)
        opt.step()
    return emb, tracker


def _snapshot(tracker: EmbeddingTracker) -> dict[str, Any]:
    state = tracker.state_dict()
    state["summary"] = tracker.summary()
    state["scales"] = tracker.autofix_scales()
    return state


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b or (a != a and b != b)  # NaN == NaN here


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        state[key] = value

    return edit


def _poke(key: str, index: tuple[int, ...], value: float) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        state[key] = state[key].clone()
        state[key][index] = value

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        del state[key]

    return edit


def _poke_intervention(state: dict[str, Any]) -> None:
    inner = dict(state["intervention"])
    inner["scale"] = inner["scale"].clone()
    inner["scale"][3] = float("nan")
    state["intervention"] = inner


TAMPERED = {
    "nan velocity": (_poke("row_floats", (5, 0), float("nan")), r"'row_floats'.*velocity_ema.*nan"),
    "inf grad norm": (_poke("row_floats", (2, 1), float("inf")), r"'row_floats'.*grad_norm_ema"),
    "cosine beyond 1": (_poke("row_floats", (1, 2), 3.0), r"'row_floats'.*cos_ema.*3.0"),
    "negative exposure": (_poke("row_ints", (4, 0), -3), r"'row_ints'.*exposure.*-3 at row 4"),
    "exposure overflow": (_poke("row_ints", (4, 0), 2**31 - 1), r"'row_ints'.*more than the 12"),
    "negative pair count": (_poke("row_ints", (0, 3), -1), r"'row_ints'.*n_disagree"),
    "zombie flag 7": (_poke("row_ints", (0, 4), 7), r"'row_ints'.*zombie"),
    "nan accumulator": (_poke("accumulators", (VELOCITY,), float("nan")), r"'accumulators'"),
    "negative count sum": (_poke("accumulators", (EXPOSED,), -1.0), r"'accumulators'.*exposed"),
    "step overflow": (_set("step", 2**40), r"'step'.*outside"),
    "negative step": (_set("step", -1), r"'step'"),
    "step as float": (_set("step", 12.0), r"'step'.*expected an int"),
    "floats wrong shape": (_set("row_floats", torch.zeros(23, 4)), r"'row_floats'.*\(24, 4\)"),
    "ints wrong dtype": (
        _set("row_ints", torch.zeros(24, 5, dtype=torch.int64)),
        r"'row_ints'.*torch.int32",
    ),
    "sketch missing": (_drop("row_sketch"), r"missing 'row_sketch'"),
    "accumulators missing": (_drop("accumulators"), r"missing 'accumulators'"),
    "history not a list": (_set("history", {"step": 1}), r"'history'"),
    "history from the future": (_set("history", [{"step": 99}]), r"'history\[0\].step'"),
    "scales beyond 1": (_poke("autofix_scales", (2,), 1.5), r"'autofix_scales'"),
    "loss as text": (_set("last_loss", "low"), r"'last_loss'"),
    "intervention NaN factor": (_poke_intervention, r"Auto-Fix state 'scale'.*row 3"),
    "intervention missing key": (
        lambda s: s.__setitem__("intervention", {**s["intervention"], "n_seen": None}),
        r"Auto-Fix state 'n_seen'",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_tampered_checkpoint_is_rejected_and_the_live_state_is_unchanged(case):
    _, source = _trained(seed=1)
    good = source.state_dict()
    source.detach()
    _, live = _trained(seed=2, steps=9)
    before = _snapshot(live)  # also fills the summary cache
    bad = copy.copy(good)
    edit, message = TAMPERED[case]
    edit(bad)
    with pytest.raises(ValueError, match=message):
        live.load_state_dict(bad)
    _assert_same(_snapshot(live), before)
    live.detach()


def test_valid_checkpoint_loads_everything_and_refreshes_the_summary():
    _, source = _trained(seed=1)
    good = source.state_dict()
    expected = source.summary()
    source.detach()
    _, live = _trained(seed=2, steps=9)
    assert live.summary()["step"] == 9  # cached now
    live.load_state_dict(good)
    got = live.summary()
    assert got["step"] == 12
    for key in ("active_rows", "zombie_count", "mean_velocity", "autofix_damped_updates"):
        assert got[key] == expected[key], key
    _assert_same(live.state_dict()["row_ints"], good["row_ints"])
    _assert_same(live.autofix_scales(), good["autofix_scales"])
    live.detach()


def test_checkpoint_of_the_previous_layout_still_loads():
    """A state written before the step counter was renamed (``n_updates``) loads."""
    _, source = _trained(seed=1)
    good = source.state_dict()
    source.detach()
    old = dict(good)
    old["n_updates"] = old.pop("step")
    for key in ("in_optimizer", "backward_passes", "initial_row_norms"):
        del old[key]
    _, live = _trained(seed=2, steps=3)
    live.load_state_dict(old)
    assert live.summary()["step"] == 12
    live.detach()
