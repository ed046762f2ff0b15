"""The CPU per-step update (NumPy) agrees with the torch reference pieces it mirrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtracer.embedding.diagnose import ZombieThresholds, pressure_threshold, zombie_mask
from gradtracer.embedding.fold import zombie_mask_np
from gradtracer.embedding.state import RowState, SignSketch


@pytest.mark.parametrize("n_bits", [8, 16, 24, 32, 64])
def test_numpy_sketch_words_hold_the_torch_sketch_bytes(n_bits):
    gen = torch.Generator().manual_seed(n_bits)
    sk = SignSketch(16, n_bits, seed=1)
    x = torch.randn(300, 16, generator=gen)
    x[::7] = 0.0  # zero rows encode to "no direction"
    words = sk.encode_numpy(x)
    assert words.dtype == np.int32 and words.shape == (300, sk.n_words)
    as_bytes = torch.from_numpy(words.copy()).view(torch.uint8)
    assert torch.equal(as_bytes[:, : n_bits // 8], sk.encode(x))
    assert not as_bytes[:, n_bits // 8 :].any()  # padding bytes stay zero
    assert not as_bytes[::7].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_zombie_mask_gives_the_torch_verdicts(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 5000
    agree = torch.randint(0, 12, (n,), generator=gen, dtype=torch.int32)
    disagree = torch.randint(0, 12, (n,), generator=gen, dtype=torch.int32)
    cos = torch.rand(n, generator=gen) * 2 - 1
    gn = torch.rand(n, generator=gen) * 2
    peak = gn + torch.rand(n, generator=gen) * 2
    zt = ZombieThresholds()
    pressure = pressure_threshold(0.7, zt)
    ref = zombie_mask(agree, disagree, cos, gn, peak, pressure, zt)
    got = zombie_mask_np(
        agree.numpy(),
        disagree.numpy(),
        cos.numpy(),
        gn.numpy(),
        peak.numpy(),
        np.float32(pressure),
        zt,
    )
    assert 50 < int(ref.sum()) < n  # both verdicts occur
    assert np.array_equal(got, ref.numpy())


def test_packed_row_state_views_share_one_tensor():
    st = RowState.zeros(10, 4, "cpu")
    st.write_ints(torch.tensor([3]), torch.tensor([[7, 11, 65535, 40000, 1]]))
    st.floats[3, 1] = 2.5
    st.sketch[3] = torch.tensor([1, 2, 3, 4], dtype=torch.uint8)
    assert st.packed is not None and st.nbytes() == 10 * 8 * 4  # 32 bytes a row
    row = st.packed[3]
    assert int(row[0]) == 7
    assert st.ints[3].tolist() == [7, 11, 65535, 40000, 1]  # decoded: bit 31 of word 1 is the flag
    assert st.col("zombie")[3] == 1 and st.col("last_seen")[3] == 11
    assert st.col("n_disagree").tolist() == [0, 0, 0, 40000] + [0] * 6
    assert float(row[4:5].view(torch.float32)) == 2.5
    assert row[7:8].view(torch.uint8).tolist() == [1, 2, 3, 4]
    saved = st.to_dict()
    assert all(t.is_contiguous() for t in saved.values())
    other = RowState.zeros(10, 4, "cpu")
    other.load_dict(saved)
    assert torch.equal(other.packed, st.packed)
