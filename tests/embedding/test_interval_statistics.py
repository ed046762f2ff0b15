"""Sparse tables at a long track_interval: every statistic equals the step-by-step reference.

The fast path (compiled update, a snapshot every 100 steps) is compared with the slow way
(the NumPy update at every step, a snapshot every step) and with the compiled update at
interval 1, on identical training runs of a sparse table with SparseAdam.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker, row_kernel

N_ROWS, DIM, STEPS = 300, 16, 240
OSCILLATOR = 7  # pulled back and forth every step


def _train(
    interval: int, backend: str, *, padding_idx: int | None = None
) -> tuple[EmbeddingTracker, dict]:
    torch.manual_seed(0)
    layer = nn.Embedding(N_ROWS, DIM, sparse=True, padding_idx=padding_idx)
    tracker = EmbeddingTracker(layer, name="items", track_interval=interval, backend=backend)
    opt = torch.optim.SparseAdam(list(layer.parameters()), lr=0.05)
    gen = torch.Generator().manual_seed(5)
    target = torch.randn(N_ROWS, DIM, generator=gen)
    for step in range(STEPS):
        # head-heavy popularity over the first 250 rows (the last 50 never appear), plus
        # the oscillating row in every batch
        popular = (250 * torch.rand(64, generator=gen).pow(3)).long()
        idx = torch.cat([popular, torch.tensor([OSCILLATOR, 0])])
        pull = target.clone()
        pull[OSCILLATOR] = (1.0 if step % 2 else -1.0) * 5.0
        opt.zero_grad()
        loss = (layer(idx) - pull[idx]).pow(2).sum()
        loss.backward()
        tracker.step(loss)
        opt.step()
    st = tracker.row_state
    state = {
        "ints": st.ints.clone(),
        "floats": st.floats.clone(),
        "sketch": st.sketch.clone(),
        "acc": tracker._acc.clone(),
    }
    return tracker, state


_VARYING = {"track_interval", "tracker_seconds", "tracker_ms_per_step", "backend"}


@pytest.mark.skipif(not row_kernel.available(), reason="numba unavailable")
@pytest.mark.parametrize("padding_idx", [None, 0], ids=["no_padding", "padding_idx"])
def test_interval_100_statistics_equal_the_step_by_step_reference(padding_idx):
    fast, fast_state = _train(100, "numba", padding_idx=padding_idx)
    every, every_state = _train(1, "numba", padding_idx=padding_idx)
    slow, slow_state = _train(1, "numpy", padding_idx=padding_idx)
    assert fast.backend == "numba" and slow.backend == "numpy"

    # the row state: the same update at interval 1 and 100, bit for bit ...
    for key in fast_state:
        assert torch.equal(fast_state[key], every_state[key]), key
    # ... and the NumPy reference's (integers and sketches exactly, floats to rounding)
    assert torch.equal(fast_state["ints"], slow_state["ints"])
    assert torch.equal(fast_state["sketch"], slow_state["sketch"])
    torch.testing.assert_close(fast_state["floats"], slow_state["floats"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_state["acc"], slow_state["acc"], rtol=1e-5, atol=1e-5)

    # every row was counted once per step it was looked up in
    exposure = fast_state["ints"][:, 0]
    assert int(exposure[OSCILLATOR]) == STEPS
    assert int(exposure[250:].sum()) == 0
    if padding_idx is not None:
        assert int(exposure[padding_idx]) == 0  # the padding row never counts

    # summaries, per-row columns and verdicts: identical at both intervals
    s_fast, s_every, s_slow = fast.summary(), every.summary(), slow.summary()
    for key in s_fast.keys() - _VARYING:
        assert s_fast[key] == s_every[key], key
    assert s_fast["zombie_count"] == s_slow["zombie_count"]
    assert s_fast["active_rows"] == s_slow["active_rows"]
    assert s_fast["mean_velocity"] == pytest.approx(s_slow["mean_velocity"], rel=1e-5)
    assert OSCILLATOR in fast.zombie_rows().tolist()
    assert torch.equal(fast.zombie_rows(), slow.zombie_rows())
    cols_fast, cols_every = fast.row_stats(), every.row_stats()
    for key, col in cols_fast.items():
        assert (col == cols_every[key]).all(), key

    # the snapshots every 100 steps are the interval-1 snapshots of those steps
    assert [h["step"] for h in fast.history] == [100, 200]
    by_step = {h["step"]: h for h in every.history}
    slow_by_step = {h["step"]: h for h in slow.history}
    for h in fast.history:
        assert h == by_step[h["step"]]
        ref = slow_by_step[h["step"]]
        assert h["active_rows"] == ref["active_rows"] and h["zombie_count"] == ref["zombie_count"]
        assert h["mean_velocity"] == pytest.approx(ref["mean_velocity"], rel=1e-5)
        assert h["loss"] == ref["loss"]
    for tracker in (fast, every, slow):
        tracker.detach()
