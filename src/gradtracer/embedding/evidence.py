"""The intervention protocol of :class:`~gradtracer.embedding.tracker.EmbeddingTracker`.

After each optimizer step the tracker calls its intervention (Auto-Fix) with the step's
touched row ids and a function that reads those rows' evidence (:class:`RowEvidence`) from
the live row state. The intervention returns a per-row factor table (or ``None``); the
tracker applies each touched row's factor to the displacement the optimizer just applied
(``w[r] = w_before + table[r] * (w_after - w_before)``). Damping the *applied* update works
under every optimizer, adaptive ones included; scaling the gradient does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = ["Intervention", "RowEvidence", "checked_table", "make_intervention"]


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

    def on_step(
        self,
        step: int,
        rows: torch.Tensor,
        loss: float | None,
        read: Callable[[torch.Tensor], RowEvidence],
    ) -> torch.Tensor | None:
        """Return the current per-row factor table, or ``None`` (every factor is 1).

        Args:
            step: the tracker's step counter (1-based, optimizer steps seen).
            rows: the unique row ids this step touched (int64, on the layer's device).
            loss: the loss given to ``tracker.step`` for this step, or None.
            read: ``read(ids)`` returns the current :class:`RowEvidence` of the unique
                row ids ``ids`` (one gather of the row state; call it only when needed).

        The table is a 1-D float tensor indexed by row id: row ``r`` gets ``table[r]``
        (NaN counts as 1, values are clipped to ``[0, 1]``) and rows at or beyond its end
        get 1. The tracker keeps the latest table as ``autofix_scales()``.
        """
        ...

    def close(self) -> None:
        """Flush and release resources (audit files); called by ``tracker.detach()``."""
        ...


def make_intervention(auto_fix: Any, layer_name: str) -> Intervention | None:
    """The tracker's intervention for its ``auto_fix`` argument (see ``EmbeddingTracker``).

    Raises:
        TypeError: ``auto_fix`` is neither a bool nor an :class:`Intervention`.
    """
    if auto_fix is False or auto_fix is None:
        return None
    if auto_fix is True:
        from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy

        return AutoFixController(layer_name=layer_name, policy=AutoFixPolicy())
    if not callable(getattr(auto_fix, "on_step", None)):
        raise TypeError(
            "auto_fix must be a bool or an Intervention (with on_step(step, rows, loss, read) "
            f"and close()), got {type(auto_fix).__name__}"
        )
    return auto_fix


def checked_table(table: Any, intervention: object) -> torch.Tensor:
    """An intervention's factor table as a 1-D float tensor.

    Raises:
        ValueError: the table is not 1-D float (the intervention and the shape are named).
    """
    if not isinstance(table, torch.Tensor):
        table = torch.as_tensor(table, dtype=torch.float32)
    if table.ndim != 1 or not (table.is_floating_point() or table.numel() == 0):
        raise ValueError(
            f"intervention {type(intervention).__name__} returned a {tuple(table.shape)} "
            f"{table.dtype} factor table; expected a 1-D float tensor indexed by row id"
        )
    return table
