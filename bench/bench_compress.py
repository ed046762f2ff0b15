"""Benchmark quantized embedding lookups against the float32 table, side by side in one run.

A table of ``--rows`` x ``--dim`` (default 200,000 x 64) is stored in float32 and, from
the same weights, at INT8 / INT4 / INT2 (``torch.ops.quantized`` row-wise layouts) and as
a mixed-precision table (5% fp16, 15% int8, 50% int4, 25% int2, 5% dropped rows, each row's
precision drawn at random, so every batch touches every precision).

Two workloads, each at every ``--batches`` size (default 512, 4,096 and 16,384):

- ``lookup``: ``B`` uniformly random rows, one row per output (``F.embedding`` for
  float32, ``QuantizedTable.lookup`` for the others: kernels per precision plus a
  scatter back, where rows live read from the stored index map by the compiled kernels);
- ``pooled``: ``B`` bags of ``--bag`` random rows summed (``F.embedding_bag`` for float32,
  ``QuantizedTable.embedding_bag``).

Mixed tables run three ways: ``mixed`` (the stored index map and rank directory read by
the compiled kernels, no extra memory), ``mixed+map`` (``accelerate()``: a decoded per-row
map, 5 bytes a row more, counted in its bytes) and ``mixed/ref`` (the tensor-op path used
without numba). Each round times every storage back to back on the same batches; the
ratio is the median over ``--repeats`` rounds of float32 time / storage time (>= 1 means
at least as fast as float32). Bytes are everything the table holds. Run:
``.venv/bin/python bench/bench_compress.py [--rows N] [--dim D] [--batches 512,4096]
[--threads T]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gradtracer.compress import QuantizedTable

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _seconds(fn: Fn, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    t0 = time.perf_counter()
    for idx, off in batches:
        fn(idx, off)
    return time.perf_counter() - t0


def _compare(
    fns: dict[str, Fn], batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int
) -> dict[str, tuple[float, float]]:
    """``{name: (rows per second, median ratio to fp32)}``; every round times every
    storage back to back, so load changes on a shared machine hit both sides of a ratio."""
    for fn in fns.values():
        _seconds(fn, batches[:2])
    secs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            secs[k].append(_seconds(fn, batches))
    n = sum(idx.numel() for idx, _ in batches)
    out = {}
    for k in fns:
        ratios = [f / q for f, q in zip(secs["fp32"], secs[k])]
        out[k] = (n / statistics.median(secs[k]), statistics.median(ratios))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batches", default="512,4096,16384", help="Batch sizes (rows or bags).")
    p.add_argument("--bag", type=int, default=20, help="Rows per bag of the pooled workload.")
    p.add_argument("--rows-per-round", type=int, default=200_000, help="Rows looked up per round.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(args.rows, args.dim, generator=g)
    tables: dict[str, QuantizedTable] = {
        p: QuantizedTable.from_weight(weight, p, name=p) for p in ("int8", "int4", "int2")
    }
    rng = np.random.default_rng(0)
    prec = rng.choice(
        ["fp16", "int8", "int4", "int2", "drop"], p=[0.05, 0.15, 0.5, 0.25, 0.05], size=args.rows
    )
    mixed = QuantizedTable.from_weight(weight, prec, name="mixed")
    fast = QuantizedTable.from_weight(weight, prec, name="mixed").accelerate()
    nbytes = {"fp32": weight.numel() * 4, **{k: t.nbytes() for k, t in tables.items()}}
    nbytes.update({"mixed": mixed.nbytes(), "mixed+map": fast.resident_bytes()})
    nbytes["mixed/ref"] = mixed.nbytes()
    check = torch.randint(0, args.rows, (4096,), generator=g)
    assert torch.equal(mixed.lookup(check), mixed.lookup_reference(check))

    lookup: dict[str, Fn] = {"fp32": lambda i, o: F.embedding(i, weight)}
    pooled: dict[str, Fn] = {"fp32": lambda i, o: F.embedding_bag(i, weight, o, mode="sum")}
    for k, t in {**tables, "mixed": mixed, "mixed+map": fast}.items():
        lookup[k] = lambda i, o, t=t: t.lookup(i)
        pooled[k] = lambda i, o, t=t: t.embedding_bag(i, o)
    lookup["mixed/ref"] = lambda i, o: mixed.lookup_reference(i)

    print(f"table {args.rows} x {args.dim}, threads {args.threads}, {args.repeats} rounds")
    head = f"{'workload':8s} {'batch':>6s} {'storage':10s} {'Mrows/s':>8s} {'x fp32':>7s} {'bytes':>11s} {'x smaller':>9s}"
    print(head)
    for size in (int(s) for s in args.batches.split(",")):
        for name, fns, per in (("lookup", lookup, 1), ("pooled", pooled, args.bag)):
            n_batches = max(2, args.rows_per_round // (size * per))
            batches = []
            for _ in range(n_batches):
                idx = torch.randint(0, args.rows, (size * per,), generator=g)
                batches.append((idx, torch.arange(0, size * per, per)))
            for k, (rate, r) in _compare(fns, batches, args.repeats).items():
                print(
                    f"{name:8s} {size:6d} {k:10s} {rate / 1e6:8.2f} {r:7.2f} "
                    f"{nbytes[k]:11d} {nbytes['fp32'] / nbytes[k]:9.1f}"
                )


if __name__ == "__main__":
    main()
