"""GRU4Rec's losses over ``(B, C)`` logits whose diagonal holds each row's target (pure)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["bpr_max_loss", "cross_entropy_loss", "logq_correction"]


def logq_correction(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    n_targets: int,
    counts: torch.Tensor,
    *,
    sample_alpha: float,
    logq: float,
) -> torch.Tensor:
    """Return ``logits - logq * log(q)`` where ``q`` is each candidate's sampling weight.

    Columns ``[:n_targets]`` are the batch's targets (in-batch negatives, drawn with
    probability proportional to ``count``); the rest are sampled negatives (drawn
    proportional to ``count ** sample_alpha``). ``logits``: ``(B, C)``; ``candidates``:
    ``(C,)`` item indices; ``counts``: ``(n_items,)`` training counts (all > 0).
    """
    if logq == 0.0:
        return logits
    q = counts[candidates].to(logits.dtype)
    q = torch.cat([q[:n_targets], q[n_targets:] ** sample_alpha])
    return logits - logq * torch.log(q)


def cross_entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Return the summed softmax cross-entropy with row ``i``'s target in column ``i``.

    ``logits``: ``(B, C)`` with ``C >= B``; the diagonal holds the positives.
    """
    n = logits.shape[0]
    logp = torch.log_softmax(logits, dim=1)
    return -logp[torch.arange(n), torch.arange(n)].sum()


def bpr_max_loss(logits: torch.Tensor, *, bpreg: float, elu_param: float) -> torch.Tensor:
    """Return the summed BPR-max loss (Hidasi & Karatzoglou, 2018, eq. 6 + score regulariser).

    For row ``i`` (target in column ``i``) with softmax weights ``s_ij`` over the negatives
    ``j != i``: ``-log(sum_j s_ij * sigmoid(r_ii - r_ij)) + bpreg * sum_j s_ij * r_ij ** 2``,
    where ``r = elu(logits, elu_param)`` when ``elu_param > 0``.
    """
    if elu_param > 0:
        logits = nn.functional.elu(logits, elu_param)
    n = logits.shape[0]
    eye = torch.zeros_like(logits)
    eye[torch.arange(n), torch.arange(n)] = 1.0
    negative = 1.0 - eye
    masked = logits * negative
    weights = torch.exp(masked - masked.max(dim=1, keepdim=True)[0]) * negative
    weights = weights / weights.sum(dim=1, keepdim=True)
    target = logits.diagonal().unsqueeze(1)
    ranking = -torch.log((torch.sigmoid(target - logits) * weights).sum(dim=1) + 1e-24)
    reg = bpreg * (logits.square() * weights).sum(dim=1)
    return (ranking + reg).sum()
