"""Running statistics of one parameter tensor for :class:`~gradtracer.flow.tracker.FlowTracker`.

Everything is O(``sample_size``): a fixed random subset of coordinates (contiguous chunks)
stands in for the tensor in displacement and signal-to-noise estimates.
"""

from __future__ import annotations

import math
import zlib
from collections import deque

import torch

__all__ = ["LayerState", "dense"]

_CHUNK = 128  # elements per contiguous sampled chunk


class LayerState:
    """Running statistics of one parameter tensor (all small: O(sample_size))."""

    def __init__(self, name: str, param: torch.Tensor, sample_size: int, window: int) -> None:
        self.name = name
        self.param = param
        self.numel = param.numel()
        if self.numel > sample_size:
            # contiguous chunks at random offsets: cache-friendly gathers (scattered single
            # coordinates cost a cache miss each), still an unbiased squared-norm estimate
            chunk = min(_CHUNK, sample_size)
            n_chunks = max(1, sample_size // chunk)
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            starts = torch.randperm(self.numel // chunk, generator=gen)[:n_chunks].sort().values
            idx = (starts[:, None] * chunk + torch.arange(chunk)).reshape(-1)
            self.index: torch.Tensor | None = idx.to(param.device)
            self.scale = math.sqrt(self.numel / idx.numel())
        else:
            self.index = None
            self.scale = 1.0
        self.prev: torch.Tensor | None = None  # sampled weights one step earlier
        self.g_mean: torch.Tensor | None = None  # EMA of sampled gradient
        self.g_sq: torch.Tensor | None = None  # EMA of sampled squared gradient
        self.n_obs = 0
        self.non_finite = 0
        self.grad_norms: deque[float] = deque(maxlen=window)
        self.velocities: deque[float] = deque(maxlen=window)
        self.ratios: deque[float] = deque(maxlen=window)
        self.grad_norm_max = 0.0
        self.spikes = 0  # steps whose gradient norm jumped above the running median
        self.weight_norm = math.nan

    def sample(self, t: torch.Tensor) -> torch.Tensor:
        flat = t.detach().reshape(-1)
        picked = flat if self.index is None else flat[self.index]
        return picked.to(torch.float32, copy=True)


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a dense tensor (sparse gradients of ``nn.Embedding(sparse=True)``)."""
    return t.to_dense() if t.is_sparse else t
