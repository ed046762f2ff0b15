"""Benchmark of the report layer: FlowManager overhead and the cost of every exporter.

Side by side in one run:

1. a two-tower MF training loop (MovieLens-100K shape) with no tracking, with two
   EmbeddingTrackers stepped directly, and with the same trackers stepped through a
   FlowManager -> ratios (the manager should add nothing measurable);
2. building the manager Report (the analysis) versus rendering it as report JSON (with
   and without schema validation), agent JSON, legacy XML and text -> ratios.

Run: ``.venv/bin/python bench/bench_report.py`` (``--quick`` for a small version).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from gradtracer.embedding.tracker import EmbeddingTracker
from gradtracer.export.agent_json import to_agent_json
from gradtracer.export.agent_xml import to_agent_xml
from gradtracer.export.json_report import to_json
from gradtracer.manager import FlowManager
from gradtracer.report.text import render_text

N_USERS, N_ITEMS, DIM = 943, 1682, 32


class MF(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(N_USERS, DIM)
        self.item_emb = nn.Embedding(N_ITEMS, DIM)
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(u) * self.item_emb(i)).sum(dim=1)


def make_batches(n_batches: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """Batches of 256 positives x (1 + 4 negatives), Zipf-popular items."""
    gen = torch.Generator().manual_seed(seed)
    item_p = 1.0 / torch.arange(1, N_ITEMS + 1, dtype=torch.float64) ** 0.9
    out = []
    for _ in range(n_batches):
        users = torch.randint(0, N_USERS, (256,), generator=gen).repeat_interleave(5)
        pos = torch.multinomial(item_p, 256, replacement=True, generator=gen)
        negs = torch.randint(0, N_ITEMS, (256, 4), generator=gen)
        items = torch.cat([pos.unsqueeze(1), negs], dim=1).reshape(-1)
        labels = torch.cat([torch.ones(256, 1), torch.zeros(256, 4)], dim=1).reshape(-1)
        out.append((users, items, labels))
    return out


def train(mode: str, batches: list[tuple[torch.Tensor, ...]]) -> tuple[float, FlowManager | None]:
    """Seconds for one pass over ``batches``; mode: "none", "direct" or "manager"."""
    torch.manual_seed(0)
    model = MF()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    crit = nn.BCEWithLogitsLoss()
    trackers: list[EmbeddingTracker] = []
    manager = None
    if mode != "none":
        trackers = [
            EmbeddingTracker(model.user_emb, name="user_emb", track_interval=20),
            EmbeddingTracker(model.item_emb, name="item_emb", track_interval=20),
        ]
    if mode == "manager":
        manager = FlowManager("two_tower")
        manager.add_tracker("user", trackers[0])
        manager.add_tracker("item", trackers[1])
    start = time.perf_counter()
    for users, items, labels in batches:
        opt.zero_grad()
        loss = crit(model(users, items), labels)
        loss.backward()
        if manager is not None:
            manager.step(loss)
        else:
            for t in trackers:
                t.step(loss)
        opt.step()
    elapsed = time.perf_counter() - start
    if manager is None:
        for t in trackers:
            t.detach()
    return elapsed, manager


def timeit(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small version (seconds)")
    args = parser.parse_args()
    n_batches, repeats, rounds = (60, 5, 1) if args.quick else (216, 20, 3)
    torch.set_num_threads(1)
    batches = make_batches(n_batches)
    print(
        f"two-tower MF {N_USERS}x{N_ITEMS}x{DIM}, {n_batches} batches of 1280 rows, "
        f"torch threads=1, best of {rounds}"
    )

    best: dict[str, float] = {}
    manager = None
    for _ in range(rounds):
        for mode in ("none", "direct", "manager"):
            seconds, m = train(mode, batches)
            best[mode] = min(best.get(mode, float("inf")), seconds)
            if m is not None:
                if manager is not None:
                    manager.detach()
                manager = m
    assert manager is not None
    print("\n1. training loop")
    for mode in ("none", "direct", "manager"):
        ms = 1000 * best[mode] / n_batches
        print(f"  {mode:<8} {ms:7.3f} ms/step   x{best[mode] / best['none']:.3f} vs untracked")
    print(f"  manager / direct tracker steps: x{best['manager'] / best['direct']:.3f}")

    start = time.perf_counter()
    report = manager.to_report()  # first call after training: trackers compute summaries
    cold = time.perf_counter() - start
    cases: dict[str, Callable[[], object]] = {
        "to_report (cached)": manager.to_report,
        "Report.to_dict": report.to_dict,
        "report JSON + schema": lambda: to_json(report),
        "report JSON, no check": lambda: to_json(report, validate=False),
        "agent JSON (manager)": lambda: to_agent_json(report),
        "legacy XML": lambda: to_agent_xml(report),
        "text": lambda: render_text(report),
    }
    print(f"\n2. exporters on the manager report (2 trackers, median of {repeats})")
    print(f"  {'to_report (first)':<22} {1000 * cold:8.3f} ms   x1.000")
    for name, fn in cases.items():
        fn()  # warm caches (schema validator)
        seconds = timeit(fn, repeats)
        print(f"  {name:<22} {1000 * seconds:8.3f} ms   x{seconds / cold:.3f} vs first to_report")
    size = len(to_json(report))
    print(f"  report JSON size: {size / 1024:.1f} KiB")
    manager.detach()


if __name__ == "__main__":
    main()
