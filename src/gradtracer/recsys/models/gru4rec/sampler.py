"""Popularity-based negative sampling shared by a mini-batch (inverse CDF from a buffer)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["NegativeSampler"]


class NegativeSampler:
    """Draws ``n_sample`` shared negatives per step with probability ``count ** alpha``.

    Samples are drawn by inverse-CDF in buffers of ``cache`` items, one buffer refill at a
    time, from the torch generator ``gen`` (seeded by the caller).

    Args:
        counts: ``(n_items,)`` training event counts.
        n_sample: negatives per draw (``>= 1``).
        alpha: popularity exponent (0 = uniform over items, 1 = proportional to counts).
        cache: items drawn per buffer refill.
        gen: CPU torch generator the uniforms are drawn from.
        device: where the returned indices live.
    """

    def __init__(
        self,
        counts: np.ndarray,
        n_sample: int,
        alpha: float,
        cache: int,
        gen: torch.Generator,
        device: torch.device,
    ) -> None:
        if n_sample < 1:
            raise ValueError(f"n_sample must be >= 1, got {n_sample}")
        weights = torch.as_tensor(counts, dtype=torch.float64) ** alpha
        cdf = torch.cumsum(weights, 0) / weights.sum()
        cdf[-1] = 1.0
        self.cdf = cdf.to(device)
        self.n_sample = n_sample
        self.rows = max(1, cache // max(n_sample, 1))
        self.gen = gen
        self.device = device
        self._buffer = torch.empty(0, n_sample, dtype=torch.long, device=device)
        self._next = 0

    def draw(self) -> torch.Tensor:
        """Return ``(n_sample,)`` int64 item indices."""
        if self._next >= len(self._buffer):
            u = torch.rand(self.rows * self.n_sample, generator=self.gen, dtype=torch.float64)
            idx = torch.searchsorted(self.cdf, u.to(self.device), right=True)
            self._buffer = idx.clamp_(max=len(self.cdf) - 1).view(self.rows, self.n_sample)
            self._next = 0
        out = self._buffer[self._next]
        self._next += 1
        return out
