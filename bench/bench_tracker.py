"""EmbeddingTracker overhead: tracked vs untracked MF training steps, side by side in one run.

Usage: .venv/bin/python bench/bench_tracker.py [--quick] [--threads N] [--steps S] [--only sparse|dense]

CPU matrix factorisation, a 100k x 64 user table and a 1,000,000 x 64 item table
(``--quick``: 10k / 100k rows), batches of 1024 (user, item) pairs with Zipf-like item
popularity, BCE loss. Two identical models are trained on the same batches, the second
with its item table tracked (``tracker.step()`` before ``optimizer.step()``); their steps
alternate (order swapped every step) so machine load hits both alike, and the ratio of the
median per-step times is printed. Targets (issue 3): dense + Adam <= 1.03
at track_interval 1; sparse + SparseAdam <= 1.15 at interval 1 and <= 1.05 at interval
100; tracker state <= 0.25 x the item table's bytes; summary() on the item table < 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, sparse: bool) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(users) * self.item_emb(items)).sum(1)


def make_batches(n_users: int, n_items: int, n_batches: int, batch: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # Zipf-like popularity: item = floor(n_items * u^3) for uniform u (head-heavy)
    out = []
    for _ in range(n_batches):
        users = torch.randint(0, n_users, (batch,), generator=gen)
        items = (n_items * torch.rand(batch, generator=gen).pow(3)).long().clamp_(max=n_items - 1)
        labels = (torch.rand(batch, generator=gen) < 0.2).float()
        out.append((users, items, labels))
    return out


def one_step(model, opt, batch, loss_fn, tracker=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one training step."""
    users, items, labels = batch
    t0, c0 = time.perf_counter(), time.process_time()
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(users, items), labels)
    loss.backward()
    if tracker is not None:
        tracker.step()  # before optimizer.step(), like the published notebook
    opt.step()
    return time.perf_counter() - t0, time.process_time() - c0


def bench_config(args, *, sparse: bool, interval: int) -> dict[str, float]:
    """Two identical models, one tracked; their steps alternate (order swapped every step)."""
    models, opts = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = MF(args.n_users, args.n_items, 64, sparse)
        params = list(model.parameters())
        opt = (
            torch.optim.SparseAdam(params, lr=1e-3) if sparse else torch.optim.Adam(params, lr=1e-3)
        )
        models.append(model)
        opts.append(opt)
    tracker = EmbeddingTracker(models[1].item_emb, name="item_emb", track_interval=interval)
    loss_fn = nn.BCEWithLogitsLoss()
    batches = make_batches(args.n_users, args.n_items, args.steps + 3, 1024)
    wall: list[list[float]] = [[], []]
    cpu: list[list[float]] = [[], []]
    for i, batch in enumerate(batches):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            w, c = one_step(models[which], opts[which], batch, loss_fn, tracker if which else None)
            if i >= 3:  # warm-up: optimizer state allocation
                wall[which].append(w)
                cpu[which].append(c)
    t0 = time.perf_counter()
    summary = tracker.summary()
    t_summary = time.perf_counter() - t0
    tracker.detach()
    base, tracked = wall
    mb, mt = statistics.median(base), statistics.median(tracked)
    return {
        "untracked_ms": 1e3 * mb,
        "tracked_ms": 1e3 * mt,
        "ratio": mt / mb,
        "mean_ratio": statistics.fmean(tracked) / statistics.fmean(base),
        "cpu_untracked_ms": 1e3 * statistics.fmean(cpu[0]),
        "cpu_tracked_ms": 1e3 * statistics.fmean(cpu[1]),
        "cpu_ratio": sum(cpu[1]) / sum(cpu[0]),
        "state_ratio": summary["state_memory_ratio"],
        "summary_s": t_summary,
        "own_ms": summary["tracker_ms_per_step"],
        "steps": summary["step"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k x 64 users, 100k x 64 items")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument(
        "--steps", type=int, default=0, help="timed steps per model (default 60; quick 100)"
    )
    parser.add_argument("--only", choices=("sparse", "dense"), help="run one configuration")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.n_users, args.n_items = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    args.steps = args.steps or (100 if args.quick else 60)
    print(
        f"MF {args.n_users} users x {args.n_items} items x 64, batch 1024, torch threads "
        f"{torch.get_num_threads()}, {args.steps} timed steps per model (tracked and untracked alternate)"
    )
    print("wall: median per-step ms and ratio, ratio of means; cpu: mean process CPU ms per step")
    print(
        f"{'config':34s} {'wall untr':>9s} {'wall tr':>8s} {'median':>7s} {'mean':>6s} "
        f"{'cpu untr':>8s} {'cpu tr':>7s} {'cpu ratio':>9s} {'target':>6s}"
    )
    rows = [
        ("dense + Adam, interval 1", False, 1, 1.03),
        ("sparse + SparseAdam, interval 1", True, 1, 1.15),
        ("sparse + SparseAdam, interval 100", True, 100, 1.05),
    ]
    last = {}
    for label, sparse, interval, target in rows:
        if args.only and args.only != ("sparse" if sparse else "dense"):
            continue
        res = bench_config(args, sparse=sparse, interval=interval)
        last = res
        print(
            f"{label:34s} {res['untracked_ms']:9.2f} {res['tracked_ms']:8.2f} {res['ratio']:7.3f} "
            f"{res['mean_ratio']:6.3f} {res['cpu_untracked_ms']:8.2f} {res['cpu_tracked_ms']:7.2f} "
            f"{res['cpu_ratio']:9.3f} {target:6.2f}"
        )
    print(
        f"tracker's own time per step (summary()['tracker_ms_per_step'], last config): "
        f"{last['own_ms']:.3f} ms"
    )
    print(f"tracker state / item table bytes: {last['state_ratio']:.3f} (target <= 0.25)")
    print(
        f"summary() on the {args.n_items}-row item table: {last['summary_s']:.3f} s (target < 1 s)"
    )


if __name__ == "__main__":
    main()
