"""torch.distributed: 2 and 3 gloo ranks on CPU, aggregated statistics equal a single-process run."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gradtracer.embedding import EmbeddingTracker

N_ROWS, DIM, STEPS, INTERVAL = 90, 8, 60, 10  # N_ROWS divisible by every world size tested
COMPARED = (
    "step",
    "active_rows",
    "unexposed_count",
    "zombie_count",
    "popularity_gini",
    "mean_velocity",
    "mean_grad_norm",
    "oscillation_mean",
    "dead_count",
)


def _rank_rows(rank: int, world: int, step: int, gen: torch.Generator) -> torch.Tensor:
    """Rows rank ``rank`` trains at ``step``: disjoint id ranges; the last rank idles 2 steps in 3."""
    span = N_ROWS // world
    rows = torch.arange(span * rank, span * (rank + 1))[torch.rand(span, generator=gen) < 0.6]
    if rank == world - 1 and step % 3 != 0:
        return rows[:0]
    return rows


def _row_loss(
    out: torch.Tensor, rows: torch.Tensor, signs: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    osc = (rows % 15) < 3  # 3 rows in every 15 oscillate
    lin = (out.sum(1) * signs[rows]) * osc
    quad = 0.5 * (out - target[rows]).pow(2).sum(1) * ~osc
    return lin.sum() + quad.sum()


def _setup() -> tuple[nn.Embedding, torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(0)
    layer = nn.Embedding(N_ROWS, DIM)
    target = torch.randn(N_ROWS, DIM)
    return layer, torch.optim.Adam(layer.parameters(), lr=0.05), target


def _train(layer, opt, target, world: int, ranks: list[int]) -> EmbeddingTracker:
    tracker = EmbeddingTracker(layer, name="dist", track_interval=INTERVAL)
    gens = {r: torch.Generator().manual_seed(100 + r) for r in range(world)}
    signs = torch.ones(N_ROWS)
    for step in range(STEPS):
        rows = torch.cat([_rank_rows(r, world, step, gens[r]) for r in range(world)])
        rows = torch.cat([rows[rows // (N_ROWS // world) == r] for r in ranks])
        opt.zero_grad()
        # an idle rank still runs forward/backward (empty batch), as under DDP
        _row_loss(layer(rows), rows, signs, target).backward()
        opt.step()
        signs[rows] *= -1.0
    return tracker


def _worker(rank: int, out_dir: str, world: int) -> None:
    torch.set_num_threads(1)
    # A file store has no server thread on rank 0 that could vanish while rank 1 still
    # talks to it, and no port that another process could take first.
    dist.init_process_group(
        "gloo",
        init_method=f"file://{Path(out_dir, 'store')}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=90),
    )
    try:
        layer, opt, target = _setup()
        tracker = _train(layer, opt, target, world, [rank])
        summary = tracker.summary()  # collective
        zombies = tracker.zombie_rows().tolist()  # collective
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps({"summary": summary, "history": tracker.history, "zombies": zombies})
        )
        tracker.detach()
        dist.barrier()  # every rank is done before any tears its group down
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_gloo_ranks_match_single_process(tmp_path, world):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(str(tmp_path), world), nprocs=world, join=True)
    results = [json.loads(Path(tmp_path, f"rank{r}.json").read_text()) for r in range(world)]

    layer, opt, target = _setup()
    single = _train(layer, opt, target, world, list(range(world)))
    ref = single.summary()
    ref_zombies = single.zombie_rows().tolist()
    assert ref["zombie_count"] >= 10  # the planted oscillators are found
    for res in results:
        for key in COMPARED:
            assert res["summary"][key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), key
        assert res["summary"]["world_size"] == world
        assert res["zombies"] == ref_zombies
        hist = res["history"]
        assert [h["step"] for h in hist] == [h["step"] for h in single.history]
        for h, r in zip(hist, single.history):
            for key in ("active_rows", "mean_velocity", "mean_grad_norm", "oscillation_mean"):
                assert h[key] == pytest.approx(r[key], rel=1e-5, abs=1e-7), key
    single.detach()
