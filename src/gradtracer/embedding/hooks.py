"""Hook capture: which rows of a table received gradient, and which optimizer steps count.

Three hooks observe one optimizer step of an embedding table:

1. a forward hook on the layer (dense gradients only) hooks the lookup's *output*: when
   the backward reaches it, the lookup's indices are the rows that received gradient. A
   lookup whose output never reaches the loss therefore exposes no row;
2. a post-accumulate-grad hook on the weight (after ``loss.backward()``) turns them into
   the touched rows: the coalesced sparse gradient's indices (sparse), or the hooked
   lookups' unique indices (dense). Gradient that reaches the weight outside the lookups
   (a tied output layer ``h @ emb.weight.T``, a penalty on the whole table) is found by
   probing a few rotating rows outside the lookups every step; once seen, the dense
   gradient's non-zero rows are scanned on every step;
3. optimizer step post-hooks (the global ``register_optimizer_step_post_hook``, filtered to
   optimizers that hold the weight, or the one optimizer given).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = [
    "OptimizerWatch",
    "PendingStep",
    "RowCapture",
    "attach_tracker",
    "detach_tracker",
    "install",
    "live_tracker",
]

# id(weight) -> (weak weight, weak tracker): one live tracker per weight, nothing kept alive
_ATTACHED: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[Any]]] = {}

#: rows outside the lookups whose gradient is checked per step (dense gradients)
N_PROBE = 16


def live_tracker(weight: torch.Tensor) -> Any | None:
    """The tracker attached to ``weight``, or None."""
    entry = _ATTACHED.get(id(weight))
    if entry is None or entry[0]() is not weight:
        return None
    return entry[1]()


def attach_tracker(weight: torch.Tensor, tracker: Any) -> None:
    """Record ``tracker`` as the live tracker of ``weight`` (weak references only)."""
    _ATTACHED[id(weight)] = (weakref.ref(weight), weakref.ref(tracker))


def detach_tracker(weight: torch.Tensor, tracker: Any) -> None:
    """Forget ``tracker`` as the live tracker of ``weight`` (if it is)."""
    if live_tracker(weight) is tracker:
        del _ATTACHED[id(weight)]


@dataclass
class PendingStep:
    """Touched rows of the current (not yet applied) optimizer step."""

    rows: torch.Tensor  # (R,) int64, unique
    grad: torch.Tensor  # (R, d) gradient rows
    before: torch.Tensor  # (R, d) weight rows before the update
    version: int  # weight._version when the snapshot was taken


class RowCapture:
    """The rows of one table that received gradient in the current backward pass(es).

    Args:
        weight: the table's weight.
        padding_idx: the layer's padding row (never counted), or None.
    """

    def __init__(self, weight: torch.Tensor, padding_idx: int | None) -> None:
        self._weight = weight
        self._padding_idx = padding_idx
        self._used: list[torch.Tensor] = []  # indices of lookups whose output got gradient
        n_rows = int(weight.shape[0])
        self._n_rows = n_rows
        stride = max(n_rows // N_PROBE, 1)
        self._probe = (torch.arange(min(N_PROBE, n_rows)) * stride).to(weight.device)
        self._probe_offset = 0
        #: True once gradient was seen outside the lookups: dense gradients are scanned
        self.scan_dense = False
        self.backward_passes = 0  # gradients accumulated into the weight so far

    def clear(self) -> None:
        """Drop lookups recorded but not yet turned into a step."""
        self._used = []

    def on_forward(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        """Forward hook: hook the lookup's output so its indices count once it gets gradient."""
        if not torch.is_grad_enabled() or not self._weight.requires_grad:
            return
        idx = args[0] if args else kwargs.get("input")
        if not isinstance(idx, torch.Tensor) or not isinstance(output, torch.Tensor):
            return
        if not output.requires_grad:
            return
        used = self._used
        ids = idx.detach()

        def reached(_grad: torch.Tensor) -> None:
            used.append(ids)

        output.register_hook(reached)

    def touched(
        self, grad: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, grad_rows)``: unique rows that received gradient and their gradient.

        ``previous`` are the rows of an earlier backward pass into the same (accumulated)
        gradient, or None.
        """
        self.backward_passes += 1
        if grad.is_sparse:
            if not grad.is_coalesced():
                grad = grad.coalesce()
            # the raw accessors: no coalesced check and no autograd alias (a step's few
            # microseconds; the values are detached where they carry a graph)
            ids = grad._indices()[0]
            values = grad._values()
            if values.requires_grad:
                values = values.detach()
            if self._padding_idx is not None:
                keep = ids != self._padding_idx
                ids, values = ids[keep], values[keep]
            self._used = []
            return ids, values
        g = grad.detach()
        device = g.device
        parts = [p.reshape(-1).to(device=device, dtype=torch.long) for p in self._used]
        self._used = []
        if previous is not None:  # gradient accumulation: union with earlier micro-batches
            parts = [previous, *parts]
        rows: torch.Tensor | None = None
        if parts and not self.scan_dense:
            rows = torch.unique(torch.cat(parts)) if len(parts) > 1 else torch.unique(parts[0])
            if self._gradient_outside(g, rows):
                self.scan_dense = True
                rows = None
        if rows is None:  # gradient outside the lookups (or no lookup): scan the gradient
            nonzero = torch.nonzero(g.abs().sum(dim=1)).reshape(-1)
            rows = torch.unique(torch.cat([nonzero, *parts])) if parts else nonzero
        if self._padding_idx is not None:
            rows = rows[rows != self._padding_idx]
        return rows, g.index_select(0, rows)

    def _gradient_outside(self, grad: torch.Tensor, rows: torch.Tensor) -> bool:
        """True when a probed row outside ``rows`` has a non-zero (or NaN) gradient."""
        probe = self._probe
        if probe.numel() == 0:
            return False
        self._probe_offset = (self._probe_offset + 7919) % self._n_rows
        probe = (probe + self._probe_offset) % self._n_rows
        hit = grad.index_select(0, probe).ne(0).any(dim=1)
        if not bool(hit.any()):
            return False
        return not bool(torch.isin(probe[hit], rows).all())


class OptimizerWatch:
    """Which optimizers hold the weight, and whether one of them stepped."""

    def __init__(self, weight: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> None:
        self._weight = weight
        # optimizer -> (holds the weight, its number of parameter groups then): a group
        # added or removed (``param_groups`` edited mid-run) makes the answer stale
        self._cache: weakref.WeakKeyDictionary[torch.optim.Optimizer, tuple[bool, int]] = (
            weakref.WeakKeyDictionary()
        )
        self.only = optimizer
        # the optimizer last found to hold the weight (weak) and its group count: the
        # per-step check is one call and one len()
        self._last: weakref.ref[torch.optim.Optimizer] | None = None
        self._last_groups = -1
        if optimizer is not None:  # the optimizer given holds it (until its groups change)
            self._cache[optimizer] = (True, len(optimizer.param_groups))
        #: an optimizer holding the weight has stepped at least once
        self.stepped = False

    def owns(self, optimizer: torch.optim.Optimizer) -> bool:
        """True when ``optimizer`` holds the tracked weight (cached per optimizer)."""
        n_groups = len(optimizer.param_groups)
        last = self._last
        if last is not None and last() is optimizer and n_groups == self._last_groups:
            self.stepped = True
            return True
        cached = self._cache.get(optimizer)
        if cached is None or cached[1] != n_groups:
            owned = any(
                p is self._weight for group in optimizer.param_groups for p in group["params"]
            )
            self._cache[optimizer] = (owned, n_groups)
        else:
            owned = cached[0]
        if owned:
            self._last = weakref.ref(optimizer)
            self._last_groups = n_groups
            self.stepped = True
        elif last is not None and last() is optimizer:
            self._last = None
        return owned


def install(
    layer: nn.Module,
    weight: torch.Tensor,
    capture: RowCapture,
    watch: OptimizerWatch,
    on_grad: Callable[[torch.Tensor], None],
    on_optimizer_step: Callable[[torch.optim.Optimizer, Any, Any], None],
    *,
    sparse: bool,
) -> list[Any]:
    """Register the three hooks; returns their handles (``handle.remove()`` undoes each).

    A weight that does not require gradient (a frozen table) gets no gradient hook: it
    can never receive gradient, and its tracker reports ``requires_grad`` False.
    """
    handles: list[Any] = []
    if not sparse:
        handles.append(layer.register_forward_hook(capture.on_forward, with_kwargs=True))
    if weight.requires_grad:
        handles.append(weight.register_post_accumulate_grad_hook(on_grad))
    if watch.only is not None:
        handles.append(watch.only.register_step_post_hook(on_optimizer_step))
    else:
        handles.append(register_optimizer_step_post_hook(on_optimizer_step))
    return handles
