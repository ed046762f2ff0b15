"""The compiled per-step row update gives the state of the NumPy and batched torch paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker, row_kernel
from gradtracer.embedding.state import COUNT_MAX

pytestmark = pytest.mark.skipif(not row_kernel.available(), reason="numba unavailable")


def _run(
    path: str,
    *,
    sparse: bool,
    sketch_bits: int,
    nan_step: int | None = None,
    preset: dict[int, list[int]] | None = None,
):
    """Train one table with a planted oscillating row; return the tracker's state.

    ``preset`` maps rows to integer columns (exposure, last seen, agree, disagree, zombie)
    written into the state before training.
    """
    torch.manual_seed(0)
    layer = nn.Embedding(50, 12, sparse=sparse)
    tracker = EmbeddingTracker(layer, name="emb", sketch_bits=sketch_bits, backend=path)
    if preset:
        tracker.row_state.write_ints(
            torch.tensor(list(preset)), torch.tensor(list(preset.values()))
        )
    assert tracker.backend == path
    opt = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(layer.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(3)
    target = torch.randn(50, 12, generator=gen)
    for step in range(60):
        idx = torch.cat([torch.randint(0, 40, (16,), generator=gen), torch.tensor([7])])
        opt.zero_grad()
        sign = 1.0 if step % 2 else -1.0  # row 7 is pulled back and forth
        pull = target.clone()
        pull[7] = sign * 5.0
        loss = (layer(idx) - pull[idx]).pow(2).sum()
        loss.backward()
        if step == nan_step:  # one row gets a NaN gradient
            if sparse:
                layer.weight.grad = layer.weight.grad.coalesce()
                layer.weight.grad.values()[0, 0] = float("nan")
            else:
                layer.weight.grad[int(idx[0]), 0] = float("nan")
        opt.step()
        if step == nan_step:
            with torch.no_grad():  # keep the table finite for the following steps
                layer.weight.nan_to_num_(0.0)
    summary = tracker.summary()
    st = tracker.row_state
    out = (st.ints.clone(), st.floats.clone(), st.sketch.clone(), tracker._acc.clone(), summary)
    tracker.detach()
    return out


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("sketch_bits", [8, 32, 40, 64])
def test_compiled_update_equals_numpy_and_batched_paths(sparse, sketch_bits):
    ref = _run("numba", sparse=sparse, sketch_bits=sketch_bits)
    for path in ("numpy", "batched"):
        got = _run(path, sparse=sparse, sketch_bits=sketch_bits)
        assert torch.equal(ref[0], got[0]), path  # exposure, last seen, counts, zombie flags
        assert torch.equal(ref[2], got[2]), path  # sketches
        torch.testing.assert_close(ref[1], got[1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ref[3][:6], got[3][:6], rtol=1e-5, atol=1e-5)
    assert int(ref[0][7, 3]) > int(ref[0][7, 2])  # the planted row disagrees more than it agrees
    assert int(ref[0][:, 0].sum()) == 60 * 17 - _repeats()  # one exposure per row and step


def _repeats() -> int:
    """Duplicate indices inside the batches of :func:`_run` (a row counts once per step)."""
    gen = torch.Generator().manual_seed(3)
    torch.randn(50, 12, generator=gen)
    dup = 0
    for _ in range(60):
        idx = torch.cat([torch.randint(0, 40, (16,), generator=gen), torch.tensor([7])])
        dup += int(idx.numel() - torch.unique(idx).numel())
    return dup


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_compiled_update_leaves_non_finite_rows_out(sparse):
    ref = _run("numba", sparse=sparse, sketch_bits=32, nan_step=30)
    got = _run("numpy", sparse=sparse, sketch_bits=32, nan_step=30)
    # (Adam carries the NaN in its moments: the row stays non-finite when touched again)
    assert float(ref[3][6]) == float(got[3][6]) >= 1.0  # non-finite rows ...
    assert float(ref[3][7]) == float(got[3][7]) >= 1.0  # ... and steps, counted alike
    assert torch.isfinite(ref[1]).all()
    assert torch.equal(ref[0], got[0])
    torch.testing.assert_close(ref[1], got[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_pair_counts_at_the_16_bit_cap_halve_alike_on_every_path(sparse):
    # row 7 oscillates (disagrees every step), row 3 is pulled steadily (mostly agrees)
    preset = {7: [100, 0, 20_001, COUNT_MAX - 5, 0], 3: [100, 0, COUNT_MAX - 3, 11, 0]}
    ref = _run("numba", sparse=sparse, sketch_bits=32, preset=preset)
    for path in ("numpy", "batched"):
        got = _run(path, sparse=sparse, sketch_bits=32, preset=preset)
        assert torch.equal(ref[0], got[0]), path
        torch.testing.assert_close(ref[1], got[1], rtol=1e-5, atol=1e-6)
    agree, disagree = (int(x) for x in ref[0][7, 2:4])
    # the disagree count reached the cap and both counts were halved (ratio kept)
    assert COUNT_MAX // 2 < disagree < COUNT_MAX - 5
    assert 10_000 <= agree < 20_001
    assert abs(disagree / agree - (COUNT_MAX - 5) / 20_001) < 0.05
    assert int(ref[0][:, 2:4].max()) <= COUNT_MAX


def test_float64_tables_take_the_numpy_path():
    assert EmbeddingTracker(nn.Embedding(10, 4), name="f32").backend == "numba"  # auto
    layer = nn.Embedding(10, 4).double()
    tracker = EmbeddingTracker(layer, name="emb")
    assert tracker.backend == "numpy"
    with pytest.raises(ValueError, match="numba"):
        EmbeddingTracker(nn.Embedding(10, 4).double(), backend="numba")
    with pytest.raises(ValueError, match="backend must be one of"):
        EmbeddingTracker(nn.Embedding(10, 4), backend="fast")  # type: ignore[arg-type]
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.tensor([1, 2])).sum().backward()
        opt.step()
    assert int(tracker.row_state.col("exposure")[1]) == 3
    tracker.detach()


_STEP_IN_A_FRESH_PROCESS = """
import torch
from torch import nn
from gradtracer.embedding import EmbeddingTracker, _jit_rows
layer = nn.Embedding(40, 8, sparse=True)
tracker = EmbeddingTracker(layer, name="emb", backend="numba")
opt = torch.optim.SparseAdam(layer.parameters(), lr=0.01)
layer(torch.arange(10)).sum().backward()
opt.step()
assert tracker.summary()["active_rows"] == 10
stats = _jit_rows.kernel.stats
print(len(stats.cache_hits), len(stats.cache_misses))
"""


def test_compiled_kernels_load_from_numbas_cache_in_a_new_process():
    import subprocess
    import sys

    def run() -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", _STEP_IN_A_FRESH_PROCESS],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        hits, misses = (int(x) for x in out.stdout.split())
        return hits, misses

    run()  # compiles (and writes the cache) if nothing was cached yet
    hits, misses = run()
    assert hits == 1 and misses == 0  # the second process loaded the machine code
