"""A table with planted row behaviours for the EmbeddingTracker tests (imported by the tests
and by conftest.py; a uniquely named module, so several test directories can run together)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradtracer.embedding import EmbeddingTracker

N_ROWS, DIM = 200, 16
OSC = torch.arange(0, 20)  # oscillators: linear loss whose sign flips at every exposure
STEADY = torch.arange(20, 100)  # quadratic pull to a fixed target (converges)
NOISY = torch.arange(100, 140)  # linear loss along a fresh random direction each exposure
UNUSED = torch.arange(140, 200)  # never in a batch


def make_optimizer(kind: str, params, sparse: bool) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1)
    if kind == "adam":
        return (
            torch.optim.SparseAdam(params, lr=0.05) if sparse else torch.optim.Adam(params, lr=0.05)
        )
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=0.05, weight_decay=0.01)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=0.1)
    raise ValueError(kind)


@dataclass
class PlantedRun:
    layer: nn.Module
    tracker: EmbeddingTracker
    losses: list[float]


def planted_loss(
    emb_rows: torch.Tensor,
    rows: torch.Tensor,
    signs: torch.Tensor,
    directions: torch.Tensor,
    targets: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """Sum of the planted per-row losses for the batch rows ``rows`` (``emb_rows``: (B, d))."""
    osc = rows < STEADY[0]
    steady = (rows >= STEADY[0]) & (rows < NOISY[0])
    noisy = (rows >= NOISY[0]) & (rows < UNUSED[0])
    lin = (emb_rows * directions[rows]).sum(1) * signs[rows]
    quad = 0.5 * (emb_rows - targets[rows]).pow(2).sum(1)
    rand_dir = torch.randn(rows.numel(), emb_rows.shape[1], generator=gen)
    noise = (emb_rows * rand_dir).sum(1)
    return (lin * osc).sum() + (quad * steady).sum() + (noise * noisy).sum()


def run_planted(
    *,
    optimizer: str = "sgd",
    sparse: bool = False,
    track_interval: int = 1,
    steps: int = 160,
    seed: int = 0,
    bag: bool = False,
    step_before_optimizer: bool = True,
    call_step: bool = True,
    auto_fix=False,
    oscillate: bool = True,
) -> PlantedRun:
    """Train the planted table; each used row is in a batch with probability 1/2 per step."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer: nn.Module
    if bag:
        layer = nn.EmbeddingBag(N_ROWS, DIM, mode="sum", sparse=sparse)
    else:
        layer = nn.Embedding(N_ROWS, DIM, sparse=sparse)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.1, generator=gen)
    directions = torch.randn(N_ROWS, DIM, generator=gen)
    directions = directions / directions.norm(dim=1, keepdim=True)
    targets = torch.randn(N_ROWS, DIM, generator=gen)
    signs = torch.ones(N_ROWS)
    opt = make_optimizer(optimizer, layer.parameters(), sparse)
    tracker = EmbeddingTracker(
        layer, name="planted", track_interval=track_interval, auto_fix=auto_fix
    )
    used = torch.arange(0, UNUSED[0])
    losses: list[float] = []
    for _ in range(steps):
        rows = used[torch.rand(used.numel(), generator=gen) < 0.5]
        opt.zero_grad()
        out = layer(rows[:, None]) if bag else layer(rows)
        loss = planted_loss(out, rows, signs, directions, targets, gen)
        loss.backward()
        if call_step and step_before_optimizer:
            tracker.step(loss)
        opt.step()
        if call_step and not step_before_optimizer:
            tracker.step(loss)
        if oscillate:
            signs[rows] *= -1.0  # oscillators flip at every exposure
        losses.append(float(loss.detach()))
    return PlantedRun(layer=layer, tracker=tracker, losses=losses)


def precision_recall(found: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    found_set, truth_set = set(found.tolist()), set(truth.tolist())
    tp = len(found_set & truth_set)
    precision = tp / len(found_set) if found_set else 0.0
    return precision, tp / len(truth_set)
