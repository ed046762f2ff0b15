"""FlowTracker overhead on a ~10M-parameter MLP on CPU: tracked vs untracked step time.

Both arms run in one process, interleaved in blocks (A B A B ...) so that machine noise
hits both alike; the figures are the ratios of median step times, in wall-clock time and in
process CPU time (the CPU figure is the stable one on a shared machine; default 1 thread).

    python bench/bench_flow.py            # 10.5M parameters, batch 256, Adam
    python bench/bench_flow.py --quick    # small model, a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from gradtracer.flow.tracker import FlowTracker


def make_mlp(width: int, depth: int, d_in: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10, help="steps per block")
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    width, depth, batch, d_in = (256, 4, 128, 128) if args.quick else (1536, 6, 256, 512)
    torch.manual_seed(0)
    model = make_mlp(width, depth, d_in)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, d_in), torch.randn(batch, 1)
    tracker = FlowTracker(
        model, optimizer=opt, track_interval=args.interval, track_activations=False
    )

    def run_block(track: bool) -> list[tuple[float, float]]:
        times = []
        for _ in range(args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=False)
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            opt.step()
            if track:
                tracker.step(loss=loss.detach())
            times.append((time.perf_counter() - t0, time.process_time() - c0))
        return times

    run_block(False)
    run_block(True)  # warm-up both paths
    plain: list[tuple[float, float]] = []
    tracked: list[tuple[float, float]] = []
    for _ in range(args.blocks):
        plain += run_block(False)
        tracked += run_block(True)
    print(
        f"FlowTracker overhead: MLP {n_params / 1e6:.1f}M params, batch {batch}, Adam, "
        f"track_interval={args.interval}, {args.threads} thread(s)"
    )
    for k, label in ((0, "wall"), (1, "cpu ")):
        p = statistics.median(x[k] for x in plain)
        t = statistics.median(x[k] for x in tracked)
        print(
            f"  {label}: untracked {p * 1e3:8.2f} ms  tracked {t * 1e3:8.2f} ms  "
            f"ratio {t / p:.3f}   (target <= 1.05; median of {len(plain)} steps each)"
        )
    t0 = time.perf_counter()
    tracker.summary()
    print(f"  summary() {1e3 * (time.perf_counter() - t0):.1f} ms")


if __name__ == "__main__":
    main()
