"""Row-wise quantized tables: real packed bytes, kernel lookups, dropped rows, low rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtracer.compress import LowRankTable, QuantizedTable, row_bytes
from gradtracer.compress.rowwise import dequantize_rows, lookup_rows, pack_rows


@pytest.fixture()
def weight() -> torch.Tensor:
    return torch.randn(300, 30, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4", "int2"])
def test_uniform_table_bytes_and_error(weight: torch.Tensor, precision: str) -> None:
    t = QuantizedTable.from_weight(weight, precision, name="t")
    # a single precision needs no index map: bytes are exactly rows x packed width
    assert t.nbytes() == 300 * row_bytes(precision, 30)
    assert t.byte_breakdown()["index_map"] == 0
    err = float(((t.dequantize() - weight) ** 2).mean())
    bound = {"fp32": 0.0, "fp16": 1e-6, "int8": 1e-4, "int4": 0.02, "int2": 0.3}[precision]
    assert err <= bound
    if precision == "int2":
        assert err > 0.01  # two bits per value cannot be near-exact


def test_padding_for_odd_dims_is_counted() -> None:
    # 30 columns: int4 pads to 30 (even), int2 to 32 (multiple of 4): 8 code bytes + 4 qparams
    assert row_bytes("int4", 30) == 15 + 4
    assert row_bytes("int2", 30) == 8 + 4
    packed = pack_rows(torch.ones(2, 30), "int2")
    assert tuple(packed.shape) == (2, 12)


def test_kernel_lookup_equals_unpack(weight: torch.Tensor) -> None:
    for p in ("int8", "int4", "int2"):
        packed = pack_rows(weight, p)
        slots = torch.tensor([5, 0, 299, 5])
        assert torch.equal(lookup_rows(packed, p, 30, slots), dequantize_rows(packed, p, 30)[slots])


def test_mixed_table_lookup_and_index_map(weight: torch.Tensor) -> None:
    rng = np.random.default_rng(1)
    prec = rng.choice(["fp16", "int8", "int4", "int2", "drop"], size=300)
    t = QuantizedTable.from_weight(weight, prec, name="mixed")
    dense = t.dequantize()
    rows = torch.from_numpy(rng.integers(0, 300, 1000))
    assert torch.equal(t.lookup(rows), dense[rows])
    dropped = np.flatnonzero(prec == "drop")
    # every dropped row reads the fallback: the mean of the dropped rows
    fallback = weight[torch.from_numpy(dropped)].mean(0)
    assert torch.allclose(dense[torch.from_numpy(dropped)], fallback.expand(len(dropped), -1))
    counts = t.level_counts()
    assert counts == {p: int((prec == p).sum()) for p in ("fp16", "int8", "int4", "int2", "drop")}
    parts = t.byte_breakdown()
    # 5 levels -> 4-bit codes; directory: 5 blocks x 5 levels x int32; fallback: 30 float32
    assert (
        parts["index_map"] == 150
        and parts["rank_directory"] == 5 * 5 * 4
        and parts["fallback"] == 120
    )
    assert t.nbytes() == sum(parts.values())
    assert parts["rows/int8"] == counts["int8"] * row_bytes("int8", 30)


def test_out_of_range_lookup_and_bad_precision(weight: torch.Tensor) -> None:
    t = QuantizedTable.from_weight(weight, "int8", name="t")
    with pytest.raises(IndexError, match="300 rows"):
        t.lookup(torch.tensor([300]))
    with pytest.raises(ValueError, match="unknown precisions"):
        QuantizedTable.from_weight(weight, np.array(["int3"] * 300), name="t")
    with pytest.raises(ValueError, match="one precision per row"):
        QuantizedTable.from_weight(weight, np.array(["int8"] * 3), name="t")


def test_arrays_round_trip_and_shape_check(weight: torch.Tensor) -> None:
    prec = np.where(np.arange(300) % 3 == 0, "int4", "drop")
    t = QuantizedTable.from_weight(weight, prec, name="t")
    meta, arrays = t.to_arrays("x/")
    back = QuantizedTable.from_arrays(meta, arrays, "x/")
    assert torch.equal(back.dequantize(), t.dequantize())
    arrays["x/rows_int4"] = arrays["x/rows_int4"][:-1]
    with pytest.raises(ValueError, match="int4 block has shape"):
        QuantizedTable.from_arrays(meta, arrays, "x/")


def test_low_rank_table(weight: torch.Tensor) -> None:
    lr = LowRankTable.from_weight(weight, 30, name="t")
    assert torch.allclose(lr.dequantize(), weight, atol=1e-4)
    small = LowRankTable.from_weight(weight, 4, name="t", precision="int8")
    assert small.nbytes() == 300 * row_bytes("int8", 4) + 4 * 4 * 30
    rows = torch.tensor([1, 2, 3])
    assert torch.allclose(small.lookup(rows), small.dequantize()[rows], atol=1e-5)


def test_accelerated_lookup_matches_compact(weight: torch.Tensor) -> None:
    rng = np.random.default_rng(2)
    prec = rng.choice(["fp16", "int4", "int2", "drop"], size=300)
    t = QuantizedTable.from_weight(weight, prec, name="m")
    rows = torch.from_numpy(rng.integers(0, 300, 500))
    compact = t.lookup(rows)
    t.accelerate()
    assert torch.equal(t.lookup(rows), compact)
    assert t.resident_bytes() == t.nbytes() + 300 * 5


@pytest.mark.parametrize("dim", [64, 8, 30, 7])  # 8-column kernels for 64 and 8
def test_compiled_lookup_equals_kernel_path_bit_for_bit(dim: int) -> None:
    g = torch.Generator().manual_seed(dim)
    w = torch.randn(3000, dim, generator=g) * torch.rand(3000, 1, generator=g) * 4
    rng = np.random.default_rng(dim)
    prec = rng.choice(["fp32", "fp16", "int8", "int4", "int2", "drop"], size=3000)
    t = QuantizedTable.from_weight(w, prec, name="m")
    rows = torch.from_numpy(rng.integers(0, 3000, 5000))
    ref = t.lookup_reference(rows)  # one torch.ops.quantized kernel per precision
    assert torch.equal(t.lookup(rows), ref)
    assert torch.equal(ref, t.dequantize()[rows])
    t.accelerate()
    assert torch.equal(t.lookup(rows), ref)
    with pytest.raises(IndexError, match="3000 rows"):
        t.lookup(torch.tensor([0, 3000]))
    with pytest.raises(IndexError, match="3000 rows"):
        t.lookup(torch.tensor([-1]))


@pytest.mark.parametrize("levels", [["int4"], ["fp16", "int8", "int2", "drop"], ["int8", "drop"]])
def test_embedding_bag_matches_float_embedding_bag(
    levels: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.nn.functional as F

    from gradtracer.compress import index_kernel

    g = torch.Generator().manual_seed(3)
    w = torch.randn(500, 12, generator=g)
    prec = np.random.default_rng(3).choice(levels, size=500)
    t = QuantizedTable.from_weight(w, prec, name="m")
    dense = t.dequantize()
    idx = torch.randint(0, 500, (400,), generator=g)
    offsets = torch.tensor([0, 0, 3, 100, 101, 250, 400])  # empty bags first and last
    for mode in ("sum", "mean"):
        want = F.embedding_bag(idx, dense, offsets, mode=mode, include_last_offset=True)
        got = t.embedding_bag(idx, offsets, mode=mode, include_last_offset=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    starts = offsets[:-1]
    torch.testing.assert_close(
        t.embedding_bag(idx, starts), F.embedding_bag(idx, dense, starts, mode="sum")
    )
    monkeypatch.setattr(index_kernel, "available", lambda: False)  # the path without numba
    torch.testing.assert_close(
        t.embedding_bag(idx, starts), F.embedding_bag(idx, dense, starts, mode="sum")
    )
    assert torch.equal(t.lookup(idx), dense[idx])
    with pytest.raises(ValueError, match="offsets must start at 0"):
        t.embedding_bag(idx, torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="mode must be"):
        t.embedding_bag(idx, starts, mode="max")


def test_low_rank_embedding_bag() -> None:
    w = torch.randn(200, 16, generator=torch.Generator().manual_seed(4))
    lr = LowRankTable.from_weight(w, 4, name="t", precision="int4")
    idx = torch.tensor([1, 5, 7, 199, 0])
    got = lr.embedding_bag(idx, torch.tensor([0, 2]))
    dense = lr.dequantize()
    torch.testing.assert_close(got, torch.stack([dense[idx[:2]].sum(0), dense[idx[2:]].sum(0)]))


@pytest.mark.parametrize(
    "levels",
    [["int4", "int2"], ["fp16", "int8", "drop"], ["fp32", "fp16", "int8", "int4", "int2", "drop"]],
)
@pytest.mark.parametrize("n_rows", [1000, 64, 1])
def test_index_map_words_every_code_width(levels: list[str], n_rows: int) -> None:
    # 2, 3 and 6 levels: 1-, 2- and 4-bit index maps read as 64-bit words by the kernel
    g = torch.Generator().manual_seed(n_rows)
    w = torch.randn(n_rows, 10, generator=g)
    prec = np.random.default_rng(n_rows).choice(levels, size=n_rows)
    t = QuantizedTable.from_weight(w, prec, name="m")
    packed = -(-n_rows * t.bits // 8)  # bits is 0 when a table holds a single level
    assert t.byte_breakdown()["index_map"] == packed
    edges = [0, n_rows - 1, min(63, n_rows - 1), min(64, n_rows - 1)]
    rows = torch.cat([torch.tensor(edges), torch.randint(0, n_rows, (3000,), generator=g)])
    want = t.dequantize()[rows]
    assert torch.equal(t.lookup(rows), want)
    assert torch.equal(t.lookup_reference(rows), want)
    meta, arrays = t.to_arrays("x/")  # the stored index map is exactly its packed bytes
    assert arrays["x/codes"].size == packed
    back = QuantizedTable.from_arrays(meta, arrays, "x/")
    assert torch.equal(back.lookup(rows), want) and back.nbytes() == t.nbytes()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4", "int2"])
def test_uniform_lookup_both_kernels_bit_equal(precision: str) -> None:
    from gradtracer.compress.table import FBGEMM_MIN_BATCH

    g = torch.Generator().manual_seed(5)
    w = torch.randn(5000, 30, generator=g) * 3
    t = QuantizedTable.from_weight(w, precision, name="u")
    dense = t.dequantize()
    for size in (7, FBGEMM_MIN_BATCH - 1, FBGEMM_MIN_BATCH):  # compiled gather, then FBGEMM
        rows = torch.randint(0, 5000, (size,), generator=g)
        assert torch.equal(t.lookup(rows), dense[rows])
    assert torch.equal(t.lookup(np.array([[1, 2], [3, 4]])), dense[torch.tensor([1, 2, 3, 4])])
    with pytest.raises(IndexError, match="5000 rows"):
        t.lookup(torch.tensor([5000]))


def test_pooled_kernel_adds_in_index_order() -> None:
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(6)
    w = torch.randn(700, 16, generator=g)
    prec = np.random.default_rng(6).choice(["int8", "int4", "int2", "drop"], size=700)
    t = QuantizedTable.from_weight(w, prec, name="m")
    idx = torch.randint(0, 700, (2000,), generator=g)
    offsets = torch.tensor([0, 0, 1, 130, 131, 900, 2000])  # bags across kernel chunks
    dense = t.dequantize()
    want = torch.stack(
        [
            dense[idx[a:b]].sum(0) if b > a else torch.zeros(16)
            for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())
        ]
    )
    got = t.embedding_bag(idx, offsets, include_last_offset=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    ref = F.embedding_bag(idx, dense, offsets, mode="sum", include_last_offset=True)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexError, match="700 rows"):
        t.embedding_bag(torch.tensor([0, 700]), torch.tensor([0]))


@pytest.mark.parametrize("bits", [8, 4, 2, 3, 5, 6])
@pytest.mark.parametrize("dim", [16, 7])
def test_two_scale_kernel_equals_tensor_decode(
    bits: int, dim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradtracer.compress import index_kernel
    from gradtracer.compress.methods import TwoScaleTable

    g = torch.Generator().manual_seed(bits * dim)
    w = torch.randn(400, dim, generator=g) * torch.rand(400, 1, generator=g) * 4
    ts = TwoScaleTable.from_weight(w, bits, name="t")
    rows = torch.randint(0, 400, (1000,), generator=g)
    out = np.empty((1000, dim), np.float32)
    step, col = ts._step_t.numpy(), ts._col_t.numpy()
    index_kernel.two_scale_gather(rows.numpy(), ts.codes, step, col, bits, out)
    assert torch.equal(torch.from_numpy(out), ts.dequantize()[rows])  # the tensor decode
    assert torch.equal(ts.lookup(rows), ts.dequantize()[rows])  # the table calls the kernel
    assert torch.equal(ts.lookup(rows.reshape(50, 20)), ts.dequantize()[rows].reshape(50, 20, dim))
    with pytest.raises(IndexError, match="outside"):
        index_kernel.two_scale_gather(np.array([400]), ts.codes, step, col, bits, out[:1])
    monkeypatch.setattr(index_kernel, "available", lambda: False)  # the path without numba
    assert torch.equal(ts.lookup(rows), torch.from_numpy(out))


@pytest.mark.parametrize(
    "levels",
    [["int4", "int2"], ["fp32", "fp16", "int8", "int4", "int2", "drop"], ["fp16", "drop"]],
)
@pytest.mark.parametrize("dim", [64, 24, 8, 16, 128, 30])
def test_pooled_bags_bit_equal_to_index_order_float32_sum(levels: list[str], dim: int) -> None:
    # dims divisible by 8 take the eight-columns-at-a-time kernels (8, 16, 64 and 128 the
    # per-bag register sums, 24 the per-row adds), 30 the chunk-buffer one; all must equal
    # adding the dequantized rows in index order in float32, bit for bit
    from gradtracer.compress import index_kernel

    if not index_kernel.available():
        pytest.skip("compiled kernels unavailable")
    rng = np.random.default_rng(dim)
    w = torch.randn(900, dim, generator=torch.Generator().manual_seed(dim)) * 2
    t = QuantizedTable.from_weight(w, rng.choice(levels, size=900), name="m")
    lens = rng.integers(0, 45, 120)
    lens[[0, 7, -1]] = 0  # empty bags first, inside and last
    offsets = np.concatenate([[0], np.cumsum(lens)])
    idx = rng.integers(0, 900, int(offsets[-1]))
    dense = t.dequantize().numpy()
    want = np.zeros((lens.size, dim), np.float32)
    for k in range(lens.size):
        for i in idx[offsets[k] : offsets[k + 1]]:
            want[k] += dense[i]
    got = t.embedding_bag(
        torch.from_numpy(idx), torch.from_numpy(offsets), include_last_offset=True
    )
    assert np.array_equal(got.numpy().view(np.uint32), want.view(np.uint32))
    buffered = np.zeros_like(want)  # the chunk-buffer kernel, whatever the width
    from gradtracer.compress import _jit_lookup

    _jit_lookup.pool_rows(idx, offsets, *t._kernel_args(), buffered)
    assert np.array_equal(buffered.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("dim", [24, 10])
def test_two_scale_pool_bit_equal_to_index_order_sum(bits: int, dim: int) -> None:
    from gradtracer.compress import index_kernel
    from gradtracer.compress.methods import TwoScaleTable

    if not index_kernel.available():
        pytest.skip("compiled kernels unavailable")
    rng = np.random.default_rng(bits + dim)
    w = torch.randn(300, dim, generator=torch.Generator().manual_seed(bits)) * 3
    ts = TwoScaleTable.from_weight(w, bits, name="t")
    lens = rng.integers(0, 30, 60)
    lens[[0, 9, -1]] = 0
    offsets = np.concatenate([[0], np.cumsum(lens)])
    idx = rng.integers(0, 300, int(offsets[-1]))
    dense = ts.dequantize().numpy()
    want = np.zeros((lens.size, dim), np.float32)
    for k in range(lens.size):
        for i in idx[offsets[k] : offsets[k + 1]]:
            want[k] += dense[i]
    got = np.zeros_like(want)
    step, col = ts._step_t.numpy(), ts._col_t.numpy()
    index_kernel.two_scale_pool(idx, offsets, ts.codes, step, col, bits, got)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    with pytest.raises(IndexError, match="outside"):
        index_kernel.two_scale_pool(
            np.array([0, 300]), np.array([0, 2]), ts.codes, step, col, bits, got[:1]
        )
    with pytest.raises(ValueError, match="offsets"):
        index_kernel.two_scale_pool(idx, offsets[:-1], ts.codes, step, col, bits, got)
