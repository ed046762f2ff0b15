"""Benchmark compressed embedding lookups against the float32 table, side by side in one run.

A table of ``--rows`` x ``--dim`` (default 200,000 x 64) is stored in float32 and, from
the same weights, as:

- ``int8`` / ``int4`` / ``int2``: one precision for every row (FBGEMM row-wise layouts);
- ``recipe``: the mix the compression recipes produce (60% int4, 40% int2, rows drawn at
  random: a 1-bit index map);
- ``mixed5``: five levels (5% fp16, 15% int8, 50% int4, 25% int2, 5% dropped rows: a
  4-bit index map), the hardest case for the index map; ``mixed5+map`` is the same table
  with ``accelerate()`` (a decoded per-row map, 5 bytes a row more, counted in its bytes);
- ``twoscale4``: ``methods.TwoScaleTable`` at 4 bits (per-column fp16 scale, per-row
  1-byte exponent);
- ``int4/fbgemm`` and ``mixed5/ref``: the ``torch.ops.quantized`` paths (one FBGEMM call
  per precision), what the tables use without numba;
- ``twoscale4/k``: the same two-scale table read by calling ``index_kernel.two_scale_gather``
  (the compiled kernel for that layout, which ``TwoScaleTable.lookup`` uses when numba is
  available) and, pooled, ``index_kernel.two_scale_pool`` directly; ``twoscale3/k``,
  ``twoscale5/k``, ``twoscale6/k``: the same at 3, 5 and 6 bits (``--two-scale-bits``).

Two workloads, each at every ``--batches`` size (default 512, 4,096 and 16,384):

- ``lookup``: ``B`` uniformly random rows, one row per output (``F.embedding`` for
  float32, ``table.lookup`` for the others);
- ``pooled``: ``B`` bags of ``--bag`` random rows summed (``F.embedding_bag`` for float32,
  ``table.embedding_bag`` (a table without one: its lookup followed by a sum over each
  bag); the ``/k`` rows call the pooled kernel that ``TwoScaleTable.embedding_bag`` uses
  directly).

Each round times every storage back to back on the same batches; the ratio is the median
over ``--repeats`` rounds of float32 time / storage time (>= 1 means at least as fast as
float32). ``--clock cpu`` (default) times the process's CPU time, which on a shared
machine leaves out the time other processes hold the core; ``--clock wall`` times
elapsed time. Bytes are everything the table holds. Before timing, every storage's
``lookup`` is checked bit for bit against its reference decode, and the mixed and
two-scale pooled kernels against ``F.embedding_bag`` over the decoded table. Run:
``.venv/bin/python bench/bench_compress.py [--rows N] [--dim D] [--batches 512,4096]
[--threads T] [--clock cpu|wall]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradtracer.compress import QuantizedTable, index_kernel
from gradtracer.compress.methods import TwoScaleTable
from gradtracer.compress.rowwise import lookup_rows

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batches = list[tuple[torch.Tensor, torch.Tensor]]


def _seconds(fn: Fn, batches: Batches, clock: Callable[[], float]) -> float:
    t0 = clock()
    for idx, off in batches:
        fn(idx, off)
    return clock() - t0


def _compare(
    fns: dict[str, Fn], batches: Batches, repeats: int, clock: Callable[[], float]
) -> dict[str, tuple[float, float]]:
    """``{name: (rows per second, median ratio to fp32)}``; every round times every
    storage back to back, so load changes on a shared machine hit both sides of a ratio."""
    for fn in fns.values():
        _seconds(fn, batches[:2], clock)
    secs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            secs[k].append(_seconds(fn, batches, clock))
    n = sum(idx.numel() for idx, _ in batches)
    out = {}
    for k in fns:
        ratios = [f / max(q, 1e-9) for f, q in zip(secs["fp32"], secs[k])]
        out[k] = (n / max(statistics.median(secs[k]), 1e-9), statistics.median(ratios))
    return out


def _tables(
    weight: torch.Tensor, rows: int, two_bits: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, int]]:
    rng = np.random.default_rng(0)
    tables: dict[str, Any] = {
        p: QuantizedTable.from_weight(weight, p, name=p) for p in ("int8", "int4", "int2")
    }
    recipe = rng.choice(["int4", "int2"], p=[0.6, 0.4], size=rows)
    tables["recipe"] = QuantizedTable.from_weight(weight, recipe, name="recipe")
    five = rng.choice(
        ["fp16", "int8", "int4", "int2", "drop"], p=[0.05, 0.15, 0.5, 0.25, 0.05], size=rows
    )
    tables["mixed5"] = QuantizedTable.from_weight(weight, five, name="mixed5")
    tables["mixed5+map"] = QuantizedTable.from_weight(weight, five, name="mixed5").accelerate()
    tables["twoscale4"] = TwoScaleTable.from_weight(weight, 4, name="twoscale4")
    extra = {b: TwoScaleTable.from_weight(weight, b, name=f"ts{b}") for b in two_bits if b != 4}
    nbytes = {"fp32": weight.numel() * 4}
    for k, t in tables.items():
        nbytes[k] = t.resident_bytes() if k.endswith("+map") else t.nbytes()
    nbytes["int4/fbgemm"] = nbytes["int4"]
    nbytes["mixed5/ref"] = nbytes["mixed5"]
    nbytes["twoscale4/k"] = nbytes["twoscale4"]
    for b, t in extra.items():
        tables[f"twoscale{b}/k"] = t
        nbytes[f"twoscale{b}/k"] = t.nbytes()
    return tables, nbytes


def _check(tables: dict[str, Any], rows: int, g: torch.Generator) -> None:
    """Every lookup path equals its reference decode bit for bit."""
    check = torch.randint(0, rows, (4096,), generator=g)
    for k, t in tables.items():
        want = t.lookup_reference(check) if hasattr(t, "lookup_reference") else None
        if want is None:
            want = t.dequantize()[check]
        if not torch.equal(t.lookup(check), want):
            raise AssertionError(f"{k}: lookup differs from its reference decode")
    idx = torch.randint(0, rows, (64 * 20,), generator=g)
    starts = torch.arange(0, idx.numel(), 20)
    for k in ("recipe", "mixed5"):  # pooled: index-order float32 sums of the decoded rows
        t = tables[k]
        if not torch.equal(
            t.embedding_bag(idx, starts), F.embedding_bag(idx, t.dequantize(), starts, mode="sum")
        ):
            raise AssertionError(f"{k}: pooled sums differ from F.embedding_bag of its decode")
    for k, t in tables.items():
        if k.startswith("twoscale"):
            out = np.zeros((64, t.dim), np.float32)
            step, col = t._step_t.numpy(), t._col_t.numpy()
            ends = np.arange(0, idx.numel() + 1, 20)
            index_kernel.two_scale_pool(idx.numpy(), ends, t.codes, step, col, t.bits, out)
            want = F.embedding_bag(idx, t.dequantize(), starts, mode="sum")
            if not torch.equal(torch.from_numpy(out), want):
                raise AssertionError(
                    f"{k}: pooled kernel differs from F.embedding_bag of its decode"
                )
    int4 = tables["int4"]
    if not torch.equal(
        lookup_rows(int4.blocks["int4"], "int4", int4.dim, check), int4.lookup(check)
    ):
        raise AssertionError("int4: compiled lookup differs from the FBGEMM kernel")


def _fns(
    weight: torch.Tensor, tables: dict[str, Any], bag: int
) -> tuple[dict[str, Fn], dict[str, Fn]]:
    lookup: dict[str, Fn] = {"fp32": lambda i, o: F.embedding(i, weight)}
    pooled: dict[str, Fn] = {"fp32": lambda i, o: F.embedding_bag(i, weight, o, mode="sum")}
    for k, t in tables.items():
        if k.endswith("/k"):
            continue
        lookup[k] = lambda i, o, t=t: t.lookup(i)
        if hasattr(t, "embedding_bag"):
            pooled[k] = lambda i, o, t=t: t.embedding_bag(i, o)
        else:
            pooled[k] = lambda i, o, t=t: t.lookup(i).view(-1, bag, t.dim).sum(1)
    int4, mixed = tables["int4"], tables["mixed5"]
    lookup["int4/fbgemm"] = lambda i, o: lookup_rows(int4.blocks["int4"], "int4", int4.dim, i)
    q = torch.ops.quantized
    pooled["int4/fbgemm"] = lambda i, o: q.embedding_bag_4bit_rowwise_offsets(
        int4.blocks["int4"], i, o, mode=0
    )
    lookup["mixed5/ref"] = lambda i, o: mixed.lookup_reference(i)
    two_scale = {"twoscale4/k": tables["twoscale4"]}
    two_scale.update({k: t for k, t in tables.items() if k.endswith("/k")})
    for k, two in two_scale.items():
        lookup[k], pooled[k] = _two_scale_fns(two)
    return lookup, pooled


def _two_scale_fns(two: Any) -> tuple[Fn, Fn]:
    """Lookup and pooling of a two-scale table through the compiled kernels directly."""
    step, col = two._step_t.numpy(), two._col_t.numpy()

    def gather(i: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        out = torch.empty(i.numel(), two.dim)
        index_kernel.two_scale_gather(i.numpy(), two.codes, step, col, two.bits, out.numpy())
        return out

    def pool(i: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        ends = torch.cat([o, torch.tensor([i.numel()])])
        out = torch.zeros(o.numel(), two.dim)
        index_kernel.two_scale_pool(
            i.numpy(), ends.numpy(), two.codes, step, col, two.bits, out.numpy()
        )
        return out

    return gather, pool


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batches", default="512,4096,16384", help="Batch sizes (rows or bags).")
    p.add_argument("--bag", type=int, default=20, help="Rows per bag of the pooled workload.")
    p.add_argument("--rows-per-round", type=int, default=200_000, help="Rows looked up per round.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--two-scale-bits", default="3,4,5,6", help="Widths of the two-scale /k rows.")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(args.rows, args.dim, generator=g)
    two_bits = tuple(int(b) for b in args.two_scale_bits.split(",") if b)
    tables, nbytes = _tables(weight, args.rows, two_bits)
    _check(tables, args.rows, g)
    lookup, pooled = _fns(weight, tables, args.bag)

    print(
        f"table {args.rows} x {args.dim}, threads {args.threads}, {args.repeats} rounds, "
        f"{args.clock} clock"
    )
    print(
        f"{'workload':8s} {'batch':>6s} {'storage':12s} {'Mrows/s':>8s} {'x fp32':>7s} "
        f"{'bytes':>11s} {'x smaller':>9s}"
    )
    for size in (int(s) for s in args.batches.split(",")):
        for name, fns, per in (("lookup", lookup, 1), ("pooled", pooled, args.bag)):
            n_batches = max(2, args.rows_per_round // (size * per))
            batches = []
            for _ in range(n_batches):
                idx = torch.randint(0, args.rows, (size * per,), generator=g)
                batches.append((idx, torch.arange(0, size * per, per)))
            for k, (rate, r) in _compare(fns, batches, args.repeats, clock).items():
                print(
                    f"{name:8s} {size:6d} {k:12s} {rate / 1e6:8.2f} {r:7.2f} "
                    f"{nbytes[k]:11d} {nbytes['fp32'] / nbytes[k]:9.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
