"""What an :class:`~gradtracer.embedding.tracker.EmbeddingTracker` hands to an intervention.

The tracker measures each optimizer step's actual per-row displacement for the rows the
step touched and passes a :class:`RowEvidence` to its intervention (Auto-Fix), which
returns per-row factors in ``(0, 1]`` that the tracker applies to that displacement
(``w[rows] = w_before + factor * (w_after - w_before)``). Damping the *applied* update
works under every optimizer, adaptive ones included; scaling the gradient does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = ["Intervention", "RowEvidence"]


@dataclass(frozen=True)
class RowEvidence:
    """Per-row evidence for the rows one optimizer step touched (all tensors shape ``(R,)``).

    Attributes:
        step: the tracker's step counter (1-based, counts optimizer steps seen).
        layer: tracker name.
        rows: row ids touched by this step (int64, unique, on the layer's device).
        n_agree: cumulative count of consecutive update pairs with positive cosine.
        n_disagree: cumulative count of consecutive update pairs with negative cosine.
        cos_ema: EMA of the cosine between consecutive updates, in [-1, 1].
        grad_norm_ema: EMA of the row's gradient L2 norm.
        velocity_ema: EMA of the row's actual displacement L2 norm (per step).
        exposure: cumulative number of steps in which the row was touched.
        loss: training loss reported for this step (``None`` when not passed to ``step``).
    """

    step: int
    layer: str
    rows: torch.Tensor
    n_agree: torch.Tensor
    n_disagree: torch.Tensor
    cos_ema: torch.Tensor
    grad_norm_ema: torch.Tensor
    velocity_ema: torch.Tensor
    exposure: torch.Tensor
    loss: float | None


class Intervention(Protocol):
    """Something the tracker consults after each optimizer step (Auto-Fix implements it)."""

    def on_update(self, evidence: RowEvidence) -> torch.Tensor | None:
        """Return per-row factors in ``(0, 1]`` aligned with ``evidence.rows``, or ``None``.

        ``None`` means "leave every row alone" and costs the tracker nothing further.
        """
        ...

    def close(self) -> None:
        """Flush and release resources (audit files); called by ``tracker.detach()``."""
        ...
