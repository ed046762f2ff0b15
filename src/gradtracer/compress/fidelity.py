"""How faithfully a compressed model reproduces the float model's rankings.

A held-out item per user is a noisy judge among a few dozen compression plans: most
plans differ in a handful of users' hits. Fidelity instead compares each plan's
ranking with the float model's for **every** user, so it needs no held-out data and
its noise is small; it cannot see a plan that ranks *better* than the float model,
only how far it departs from it.

Measures (per user, in ``[0, 1]``, 1 = the float model's ranking at the top):

- ``ndcg``: NDCG@K of the candidate's top-K with the reference's top-K as the
  relevant items (binary relevance).
- ``overlap``: share of the reference's top-K in the candidate's top-K.
- ``expected``: the expected NDCG@K of the candidate if the held-out item were drawn
  from the reference model's softmax over the rankable items (``temperature``
  divides the scores), divided by the same expectation for the reference's own
  ranking.

Excluded items (usually each user's training items) are never ranked.

>>> import torch
>>> user, item = torch.randn(20, 4), torch.randn(30, 4)
>>> ref = scores_fn((user, item))
>>> float(topk_fidelity(ref, ref, range(20), k=5).mean())
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["FIDELITY_MEASURES", "ScoreFn", "fidelity_score", "scores_fn", "topk_fidelity"]

#: ``scores(user_idx: LongTensor (B,)) -> (B, n_items)`` float scores.
ScoreFn = Callable[[torch.Tensor], torch.Tensor]
#: Names :func:`topk_fidelity` accepts as ``measure``.
FIDELITY_MEASURES: tuple[str, ...] = ("ndcg", "overlap", "expected")


def scores_fn(model: Any) -> ScoreFn:
    """A score function of ``model``: a ``(user, item)`` factor pair, an object with a
    ``scorer()`` method (``DotMF``, ``CompressedMF``) or a score callable as is."""
    method = getattr(model, "scorer", None)
    if callable(method):
        model = method()
    if isinstance(model, (tuple, list)):
        if len(model) != 2:
            raise ValueError(f"a factor pair must have 2 tables, got {len(model)}")
        u = torch.as_tensor(model[0]).detach().to("cpu", torch.float32)
        i = torch.as_tensor(model[1]).detach().to("cpu", torch.float32)
        if u.ndim != 2 or i.ndim != 2 or u.shape[1] != i.shape[1]:
            raise ValueError(
                f"factor shapes must be (n_users, d) and (n_items, d), got {tuple(u.shape)} and {tuple(i.shape)}"
            )
        it = i.T.contiguous()

        def factor_scores(idx: torch.Tensor) -> torch.Tensor:
            return u[idx] @ it

        return factor_scores
    if callable(model):
        return model
    raise TypeError(
        f"model must be a (user, item) pair, have scorer(), or be callable; got {type(model).__name__}"
    )


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return int(k)


def _mask(scores: torch.Tensor, exclude: sp.csr_matrix | None, batch: np.ndarray) -> torch.Tensor:
    if exclude is None:
        return scores
    block = exclude[batch]
    counts = np.diff(block.indptr)
    if counts.sum() == 0:
        return scores
    rows = torch.from_numpy(np.repeat(np.arange(batch.size, dtype=np.int64), counts))
    cols = torch.from_numpy(block.indices.astype(np.int64))
    scores[rows, cols] = -torch.inf
    return scores


def topk_fidelity(
    reference: ScoreFn,
    candidate: ScoreFn,
    users: Iterable[int] | np.ndarray,
    *,
    k: int = 10,
    exclude: sp.spmatrix | None = None,
    measure: str = "ndcg",
    temperature: float = 1.0,
    batch_size: int = 512,
) -> np.ndarray:
    """Per-user fidelity of ``candidate``'s top-``k`` to ``reference``'s (see the module).

    Args:
        reference: score function of the float model (``users -> (B, n_items)``).
        candidate: score function of the compressed model, same shape.
        users: user (or query) indices to compare; every one is used.
        k: cutoff (default 10).
        exclude: optional ``(n_users, n_items)`` sparse matrix of items never ranked
            (e.g. the training items); at least ``k`` items per user must remain.
        measure: ``"ndcg"`` (default), ``"overlap"`` or ``"expected"``.
        temperature: softmax temperature of ``"expected"`` (score units, default 1).
        batch_size: users scored at once (memory ~ ``3 * batch_size * n_items * 4`` bytes).

    Returns:
        ``(len(users),)`` float64 array in ``[0, 1]``, in the order of ``users``.
    """
    k = _check_k(k)
    if measure not in FIDELITY_MEASURES:
        raise ValueError(f"measure must be one of {FIDELITY_MEASURES}, got {measure!r}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    idx = np.asarray(list(users) if not isinstance(users, np.ndarray) else users, dtype=np.int64)
    if idx.ndim != 1:
        raise ValueError(f"users must be 1-D, got shape {idx.shape}")
    excl = None if exclude is None else sp.csr_matrix(exclude)
    if excl is not None and idx.size and (idx.min() < 0 or idx.max() >= excl.shape[0]):
        raise ValueError(f"users must be in [0, {excl.shape[0]}) (the rows of exclude)")
    disc = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    out = np.empty(idx.size, dtype=np.float64)
    for lo in range(0, idx.size, batch_size):
        batch = idx[lo : lo + batch_size]
        bt = torch.from_numpy(batch)
        with torch.no_grad():
            ref = reference(bt).detach().to(torch.float64).clone()
            cand = candidate(bt).detach().to(torch.float64).clone()
        if ref.shape != cand.shape or ref.ndim != 2 or ref.shape[0] != batch.size:
            raise ValueError(
                f"reference and candidate scores must both be ({batch.size}, n_items), "
                f"got {tuple(ref.shape)} and {tuple(cand.shape)}"
            )
        if excl is not None and excl.shape[1] != ref.shape[1]:
            raise ValueError(
                f"exclude has {excl.shape[1]} items but the scores have {ref.shape[1]}"
            )
        ref, cand = _mask(ref, excl, batch), _mask(cand, excl, batch)
        n_rankable = torch.isfinite(ref).sum(1)
        if int(n_rankable.min()) < k:
            raise ValueError(f"a user has fewer than k={k} rankable items after exclusion")
        cand_top = cand.topk(k, dim=1).indices  # (B, k)
        if measure == "expected":
            p = torch.softmax(ref / temperature, dim=1)
            got = (p.gather(1, cand_top) * disc).sum(1)
            best = (p.topk(k, dim=1).values * disc).sum(1)
            out[lo : lo + batch.size] = (got / best.clamp_min(1e-300)).numpy()
            continue
        ref_top = ref.topk(k, dim=1).indices
        member = torch.zeros_like(ref, dtype=torch.bool)
        member.scatter_(1, ref_top, True)
        hit = member.gather(1, cand_top).to(torch.float64)  # (B, k)
        if measure == "overlap":
            out[lo : lo + batch.size] = (hit.sum(1) / k).numpy()
        else:
            out[lo : lo + batch.size] = ((hit * disc).sum(1) / disc.sum()).numpy()
    return out


def fidelity_score(
    reference: Any,
    candidate: Any,
    users: Sequence[int] | np.ndarray | None = None,
    *,
    k: int = 10,
    exclude: sp.spmatrix | None = None,
    measure: str = "ndcg",
    temperature: float = 1.0,
) -> float:
    """Mean :func:`topk_fidelity` of two models (anything :func:`scores_fn` accepts).

    ``users`` defaults to every row of ``exclude`` (or of the reference's user table
    when it is a factor pair).
    """
    if users is None:
        if exclude is not None:
            users = np.arange(exclude.shape[0])
        else:
            pair = reference.scorer() if callable(getattr(reference, "scorer", None)) else reference
            if not isinstance(pair, (tuple, list)):
                raise ValueError("users must be given when the reference is a score callable")
            users = np.arange(int(np.shape(pair[0])[0]))
    per_user = topk_fidelity(
        scores_fn(reference),
        scores_fn(candidate),
        users,
        k=k,
        exclude=exclude,
        measure=measure,
        temperature=temperature,
    )
    return float(per_user.mean())
