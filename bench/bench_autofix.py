"""Cost of Auto-Fix on top of tracking alone, on a 1M-row item table.

Setup (the tracker benchmark's): users 100k x 64, items 1M x 64, batch 1024 (user, item)
pairs with Zipf item popularity, dot-product logits, BCE. Two configurations:
sparse gradients + SparseAdam, dense gradients + Adam. Three arms per configuration,
interleaved round by round so machine noise hits them alike:

- ``plain``: no tracker;
- ``track``: ``EmbeddingTracker(item_emb, track_interval=20)``;
- ``autofix``: the same plus an ``AutoFixController`` (audit log written to a temp dir;
  ``warmup_steps=10`` so that rows are actually damped while timing).

Prints median step times and the ratio ``autofix / track`` (target <= 1.02), and the
same ratio of mean step times, which includes the policy's decision steps (one in
``update_every`` = 20 steps re-decides the scales of every row touched since the last).

    .venv/bin/python bench/bench_autofix.py            # 100 timed steps per arm
    .venv/bin/python bench/bench_autofix.py --quick    # small and fast
    .venv/bin/python bench/bench_autofix.py --only sparse --steps 600   # steadier means
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn

from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy
from gradtracer.embedding.tracker import EmbeddingTracker


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, sparse: bool) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(u) * self.item_emb(i)).sum(-1)


def make_batches(
    n_users: int, n_items: int, batch: int, n: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    ranks = torch.arange(1, n_items + 1, dtype=torch.float64)
    pop = (1.0 / ranks) / (1.0 / ranks).sum()  # Zipf(1) item popularity
    out = []
    for _ in range(n):
        u = torch.randint(0, n_users, (batch,), generator=gen)
        i = torch.multinomial(pop, batch, replacement=True, generator=gen)
        y = torch.randint(0, 2, (batch,), generator=gen).float()
        out.append((u, i, y))
    return out


class Arm:
    def __init__(
        self, name: str, sparse: bool, sizes: tuple[int, int, int], audit_dir: str
    ) -> None:
        n_users, n_items, dim = sizes
        torch.manual_seed(0)
        self.name = name
        self.model = MF(n_users, n_items, dim, sparse)
        params = list(self.model.parameters())
        self.opt = (
            torch.optim.SparseAdam(params, lr=0.01) if sparse else torch.optim.Adam(params, lr=0.01)
        )
        self.tracker = None
        self.ctrl = None
        if name != "plain":
            if name == "autofix":
                self.ctrl = AutoFixController(
                    "item_emb",
                    policy=AutoFixPolicy(warmup_steps=10),
                    audit=audit_dir,
                    run_id=f"bench-{sparse}",
                )
            self.tracker = EmbeddingTracker(
                self.model.item_emb,
                name="item_emb",
                auto_fix=self.ctrl if self.ctrl else False,
                track_interval=20,
            )
        self.times: list[float] = []

    def step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], timed: bool) -> None:
        u, i, y = batch
        t0 = time.perf_counter()
        self.opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(self.model(u, i), y)
        loss.backward()
        if self.tracker is not None:
            self.tracker.step(loss)
        self.opt.step()
        if timed:
            self.times.append(time.perf_counter() - t0)

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.detach()


def run(
    sparse: bool, sizes: tuple[int, int, int], batch: int, warm: int, timed: int
) -> dict[str, float]:
    batches = make_batches(sizes[0], sizes[1], batch, warm + timed)
    with tempfile.TemporaryDirectory() as audit_dir:
        arms = [Arm(n, sparse, sizes, audit_dir) for n in ("plain", "track", "autofix")]
        for s, b in enumerate(batches):
            order = arms if s % 2 == 0 else arms[::-1]  # interleave, alternate order
            for arm in order:
                arm.step(b, timed=s >= warm)
        damped = arms[2].ctrl.summary()["rows_ever_scaled"] if arms[2].ctrl else 0
        for arm in arms:
            arm.close()
    med = {arm.name: statistics.median(arm.times) for arm in arms}
    for arm in arms:  # means include the decision steps (every policy.update_every steps)
        med[arm.name + "_mean"] = statistics.fmean(arm.times)
    med["rows_damped"] = float(damped)
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller tables, few steps")
    parser.add_argument("--only", choices=("sparse", "dense"), help="run one configuration")
    parser.add_argument("--steps", type=int, help="timed steps per arm (default 100)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.quick:
        sizes, batch, warm, timed = (10_000, 100_000, 64), 1024, 20, 20
    else:
        sizes, batch, warm, timed = (100_000, 1_000_000, 64), 1024, 30, 100
    timed = args.steps or timed
    print(
        f"users {sizes[0]:,} x {sizes[2]}, items {sizes[1]:,} x {sizes[2]}, batch {batch}, "
        f"{warm} warm-up + {timed} timed steps per arm, torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'config':<20}{'plain ms':>10}{'track ms':>10}{'autofix ms':>12}"
        f"{'track/plain':>13}{'autofix/track':>15}{'(means)':>9}{'rows damped':>13}"
    )
    for sparse, label in ((True, "sparse+SparseAdam"), (False, "dense+Adam")):
        if args.only and args.only != ("sparse" if sparse else "dense"):
            continue
        m = run(sparse, sizes, batch, warm, timed)
        print(
            f"{label:<20}{1e3 * m['plain']:>10.2f}{1e3 * m['track']:>10.2f}"
            f"{1e3 * m['autofix']:>12.2f}{m['track'] / m['plain']:>13.3f}"
            f"{m['autofix'] / m['track']:>15.3f}{m['autofix_mean'] / m['track_mean']:>9.3f}"
            f"{int(m['rows_damped']):>13,}"
        )


if __name__ == "__main__":
    main()
