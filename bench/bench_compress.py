"""Benchmark quantized embedding lookups against the float32 table, side by side in one run.

A table of ``--rows`` x ``--dim`` (default 200,000 x 64) is stored in float32 and, from
the same weights, at INT8 / INT4 / INT2 (``torch.ops.quantized`` row-wise layouts) and as
a mixed-precision table (fp16/int8/int4/int2/drop rows with the rank-directory index
map). Each timed call looks up ``--batch`` uniformly random rows (default 4,096): float32
through ``F.embedding``, quantized through the kernels (both return a fresh float32
tensor). Throughput is rows per second, the median of
``--repeats`` rounds; each round times every storage back to back and the ratio is the
median over rounds of float32 time / quantized time (>= 1 means at least as fast).
Bytes are the table's own bytes; ``mixed+map`` also keeps the decoded
per-row map of ``QuantizedTable.accelerate()`` (5 bytes a row more, counted). Run: ``.venv/bin/python bench/bench_compress.py
[--rows N] [--dim D] [--batch B] [--threads T]``.
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
from gradtracer.compress.rowwise import lookup_rows


def _seconds(fn: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor]) -> float:
    t0 = time.perf_counter()
    for b in batches:
        fn(b)
    return time.perf_counter() - t0


def _compare(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    batches: list[torch.Tensor],
    repeats: int,
) -> dict[str, tuple[float, float]]:
    """``{name: (rows per second, median ratio to fp32)}``; every round times every
    storage back to back, so load changes on a shared machine hit both sides of a ratio."""
    for fn in fns.values():
        _seconds(fn, batches[:3])
    secs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            secs[k].append(_seconds(fn, batches))
    n = sum(b.numel() for b in batches)
    out = {}
    for k in fns:
        ratios = [f / q for f, q in zip(secs["fp32"], secs[k])]
        out[k] = (n / statistics.median(secs[k]), statistics.median(ratios))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--n-batches", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(args.rows, args.dim, generator=g)
    batches = [
        torch.randint(0, args.rows, (args.batch,), generator=g) for _ in range(args.n_batches)
    ]

    def fp32(idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, weight)

    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"fp32": fp32}
    nbytes = {"fp32": weight.numel() * 4}
    for precision in ("int8", "int4", "int2"):
        table = QuantizedTable.from_weight(weight, precision, name="t")
        packed = table.blocks[precision]

        def kernel(
            idx: torch.Tensor, packed: torch.Tensor = packed, precision: str = precision
        ) -> torch.Tensor:
            return lookup_rows(packed, precision, args.dim, idx)

        fns[precision] = kernel
        nbytes[precision] = table.nbytes()
    rng = np.random.default_rng(0)
    prec = rng.choice(
        ["fp16", "int8", "int4", "int2", "drop"], p=[0.05, 0.15, 0.5, 0.25, 0.05], size=args.rows
    )
    mixed = QuantizedTable.from_weight(weight, prec, name="mixed")
    fns["mixed"] = mixed.lookup
    nbytes["mixed"] = mixed.nbytes()
    fast = QuantizedTable.from_weight(weight, prec, name="mixed").accelerate()
    fns["mixed+map"] = fast.lookup
    nbytes["mixed+map"] = fast.resident_bytes()
    results = _compare(fns, batches, args.repeats)
    print(f"table {args.rows} x {args.dim}, batch {args.batch}, threads {args.threads}")
    print(
        f"{'storage':10s} {'Mrows/s':>9s} {'ratio vs fp32':>14s} {'bytes':>12s} {'x smaller':>10s}"
    )
    for k, (rate, ratio) in results.items():
        print(
            f"{k:10s} {rate / 1e6:9.2f} {ratio:14.2f} {nbytes[k]:12d} {nbytes['fp32'] / nbytes[k]:10.1f}"
        )


if __name__ == "__main__":
    main()
