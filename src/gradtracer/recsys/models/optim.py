"""Optimisers shared by the models: Adagrad with momentum that respects sparse gradients."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["AdagradMomentum"]


class AdagradMomentum(torch.optim.Optimizer):
    """Adagrad with (heavy-ball) momentum; sparse gradients update only their rows.

    ``acc += g**2``; ``m = momentum * m - learning_rate * g / sqrt(acc + eps)``; ``p += m``.
    For a sparse gradient ``acc`` and ``m`` of untouched rows are left as they are (their
    momentum does not decay), as in the official GRU4Rec implementation. The learning rate
    is stored in each param group under torch's usual key ``"lr"``, so schedulers work.

    Args:
        params: parameters (or param groups) to optimise.
        learning_rate: step size (default 0.05).
        momentum: momentum factor, ``>= 0`` (default 0: plain Adagrad).
        eps: added to the accumulator before the square root (default 1e-6).
        lr: deprecated spelling of ``learning_rate``.

    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> opt = AdagradMomentum([p], learning_rate=0.1)
    >>> p.grad = torch.tensor([1.0, -2.0])
    >>> _ = opt.step()
    >>> [round(x, 4) for x in p.detach().tolist()]
    [0.9, 1.1]
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
        learning_rate: float = 0.05,
        momentum: float = 0.0,
        eps: float = 1e-6,
        *,
        lr: float | None = None,
    ) -> None:
        if lr is not None:
            warnings.warn(
                "AdagradMomentum(lr=...) is deprecated; use learning_rate=...",
                DeprecationWarning,
                stacklevel=2,
            )
            learning_rate = lr
        if not learning_rate > 0 or not momentum >= 0 or not eps > 0:
            raise ValueError(
                f"need learning_rate > 0, momentum >= 0, eps > 0; got {learning_rate}, "
                f"{momentum}, {eps}"
            )
        super().__init__(params, dict(lr=learning_rate, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply one update to every parameter with a gradient; return ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["acc"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["mom"] = torch.zeros_like(p)
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    acc = state["acc"][rows] + values.square()
                    state["acc"].index_copy_(0, rows, acc)
                    update = values / (acc + eps).sqrt() * -lr
                    if momentum > 0:
                        update = state["mom"][rows].mul_(momentum).add_(update)
                        state["mom"].index_copy_(0, rows, update)
                    p.index_add_(0, rows, update)
                else:
                    state["acc"].add_(grad.square())
                    denom = (state["acc"] + eps).sqrt_()
                    if momentum > 0:
                        state["mom"].mul_(momentum).addcdiv_(grad, denom, value=-lr)
                        p.add_(state["mom"])
                    else:
                        p.addcdiv_(grad, denom, value=-lr)
        return loss
