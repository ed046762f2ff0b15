"""Ways to shrink the two tables of a dot-product model to a byte budget.

Each function takes the float tables ``user (n_u, d)`` and ``item (n_i, d)`` and returns a
:class:`~gradtracer.compress.model.CompressedMF` whose :meth:`nbytes` is at most the
budget (or, for :func:`uniform`, the bytes that precision needs). The per-table methods
give each table the same share of the budget (proportional to its float32 size).

- :func:`uniform`: every row at one precision.
- :func:`prune`: keep the rows with the largest signal (L2 norm, frequency) in float32,
  the rest read one fallback row.
- :func:`table_svd`: truncated SVD of each table (``factors @ basis``).
- :func:`mixed`: per-row precisions from :func:`~gradtracer.compress.allocate.allocate`
  with optional row weights and a score metric.
- :func:`score_svd`: the best rank-``r`` approximation of the *score matrix*
  ``user @ item.T`` (both towers re-factored at dimension ``r``), then quantized.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gradtracer.compress.allocate import BudgetError, allocate, index_overhead, table_costs
from gradtracer.compress.model import CompressedMF
from gradtracer.compress.rowwise import packed_width
from gradtracer.compress.table import LowRankTable, QuantizedTable

__all__ = [
    "MIXED_PRECISIONS",
    "fp32_bytes",
    "gram",
    "mixed",
    "prune",
    "score_svd",
    "table_svd",
    "uniform",
]

#: Candidate precisions of the mixed-precision allocation.
MIXED_PRECISIONS: tuple[str, ...] = ("fp16", "int8", "int4", "int2", "drop")


def _f32(x: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if t.ndim != 2:
        raise ValueError(f"{what} table must be 2-D (n, d), got shape {tuple(t.shape)}")
    return t


def fp32_bytes(user: Any, item: Any) -> int:
    """Bytes of both tables in float32."""
    return 4 * (int(np.prod(np.shape(user))) + int(np.prod(np.shape(item))))


def _shares(user: torch.Tensor, item: torch.Tensor, budget: int) -> tuple[int, int]:
    nu, ni = user.numel(), item.numel()
    bu = int(budget * nu / (nu + ni))
    return bu, int(budget) - bu


def gram(x: Any) -> np.ndarray:
    """``x.T @ x`` in float64: the metric that turns a row error into squared score error."""
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    return (t.T @ t).numpy()


def uniform(
    user: Any, item: Any, precision: str, *, optimized_qparams: bool = True
) -> CompressedMF:
    """Every row of both tables at ``precision``."""
    u, i = _f32(user, "user"), _f32(item, "item")
    return CompressedMF(
        QuantizedTable.from_weight(u, precision, name="user", optimized_qparams=optimized_qparams),
        QuantizedTable.from_weight(i, precision, name="item", optimized_qparams=optimized_qparams),
        name=f"uniform_{precision}",
        info={"method": "uniform", "precision": precision},
    )


def _prune_table(w: torch.Tensor, signal: np.ndarray, budget: int, name: str) -> QuantizedTable:
    n, d = w.shape
    sig = np.asarray(signal, dtype=np.float64).reshape(-1)
    if sig.shape != (n,):
        raise ValueError(f"table {name!r}: signal must have {n} values, got {sig.shape}")
    over = index_overhead(n, d, ("fp32", "drop"))
    keep = (budget - over) // packed_width("fp32", d)
    if keep < 0:
        raise BudgetError(
            f"table {name!r}: budget {budget} bytes is below the {over}-byte index map"
        )
    keep = int(min(keep, n))
    prec = np.full(n, "drop", dtype=object)
    prec[np.argsort(-sig, kind="stable")[:keep]] = "fp32"
    if keep == n:
        return QuantizedTable.from_weight(w, "fp32", name=name)
    return QuantizedTable.from_weight(w, prec.astype(str), name=name)


def prune(
    user: Any,
    item: Any,
    budget_bytes: int,
    *,
    user_signal: np.ndarray,
    item_signal: np.ndarray,
    label: str = "prune",
) -> CompressedMF:
    """Keep the rows with the largest signal in float32 within the budget; drop the rest."""
    u, i = _f32(user, "user"), _f32(item, "item")
    bu, bi = _shares(u, i, budget_bytes)
    return CompressedMF(
        _prune_table(u, user_signal, bu, "user"),
        _prune_table(i, item_signal, bi, "item"),
        name=label,
        info={"method": label, "budget_bytes": int(budget_bytes)},
    )


def _svd_rank(n: int, d: int, budget: int, precision: str) -> int:
    best = 0
    for r in range(1, d + 1):
        if n * packed_width(precision, r) + 4 * r * d <= budget:
            best = r
    return best


def table_svd(user: Any, item: Any, budget_bytes: int, *, precision: str = "fp32") -> CompressedMF:
    """Truncated SVD of each table at the largest rank its share of the budget holds."""
    u, i = _f32(user, "user"), _f32(item, "item")
    tables = []
    for w, b, name in (
        (u, _shares(u, i, budget_bytes)[0], "user"),
        (i, _shares(u, i, budget_bytes)[1], "item"),
    ):
        r = _svd_rank(w.shape[0], w.shape[1], b, precision)
        if r < 1:
            raise BudgetError(
                f"table {name!r}: {b} bytes hold no rank-1 factorisation at {precision}"
            )
        tables.append(LowRankTable.from_weight(w, r, name=name, precision=precision))
    return CompressedMF(
        tables[0],
        tables[1],
        name=f"table_svd_{precision}",
        info={"method": "table_svd", "precision": precision, "ranks": [t.rank for t in tables]},
    )


def mixed(
    user: Any,
    item: Any,
    budget_bytes: int,
    *,
    user_weights: np.ndarray | None = None,
    item_weights: np.ndarray | None = None,
    metric: str = "identity",
    precisions: Sequence[str] = MIXED_PRECISIONS,
    label: str = "mixed",
) -> CompressedMF:
    """Per-row precisions of both tables from one joint allocation.

    Args:
        user, item: the float tables.
        budget_bytes: total bytes of both compressed tables.
        user_weights, item_weights: row weights (default all ones: unweighted).
        metric: ``"identity"`` (squared row error) or ``"score"`` (squared error of the
            dot products against every row of the other table).
        precisions: candidate precisions.
        label: the method name in results.
    """
    u, i = _f32(user, "user"), _f32(item, "item")
    if metric not in ("identity", "score"):
        raise ValueError(f"metric must be 'identity' or 'score', got {metric!r}")
    mu = gram(i) if metric == "score" else None
    mi = gram(u) if metric == "score" else None
    costs = [
        table_costs("user", u, precisions, weights=_norm(user_weights), metric=mu),
        table_costs("item", i, precisions, weights=_norm(item_weights), metric=mi),
    ]
    plan = allocate(costs, budget_bytes)
    return CompressedMF(
        QuantizedTable.from_weight(u, plan["user"], name="user"),
        QuantizedTable.from_weight(i, plan["item"], name="item"),
        name=label,
        info={"method": label, "metric": metric, "budget_bytes": int(budget_bytes)},
    )


def _norm(w: np.ndarray | None) -> np.ndarray | None:
    """Weights scaled to mean 1 (so tables with and without weights stay comparable)."""
    if w is None:
        return None
    a = np.asarray(w, dtype=np.float64).reshape(-1)
    mean = float(a.mean()) if a.size else 0.0
    return a / mean if mean > 0 else np.ones_like(a)


def score_factors(user: Any, item: Any, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-``rank`` factors ``(U_r, V_r)`` with ``U_r @ V_r.T`` the best approximation of
    ``user @ item.T`` in the Frobenius norm (singular values split evenly)."""
    u, i = _f32(user, "user").double(), _f32(item, "item").double()
    qu, ru = torch.linalg.qr(u)
    qi, ri = torch.linalg.qr(i)
    a, s, bh = torch.linalg.svd(ru @ ri.T)
    root = s[:rank].sqrt()
    return (qu @ a[:, :rank] * root).float(), (qi @ bh[:rank].T * root).float()


def score_svd(user: Any, item: Any, budget_bytes: int, *, precision: str = "int8") -> CompressedMF:
    """Best low-rank approximation of the score matrix at the largest rank the budget holds."""
    u, i = _f32(user, "user"), _f32(item, "item")
    n = u.shape[0] + i.shape[0]
    rank = 0
    for r in range(1, u.shape[1] + 1):
        if n * packed_width(precision, r) <= budget_bytes:
            rank = r
    if rank < 1:
        raise BudgetError(f"budget {budget_bytes} bytes holds no rank-1 model at {precision}")
    uf, vf = score_factors(u, i, rank)
    return CompressedMF(
        QuantizedTable.from_weight(uf, precision, name="user"),
        QuantizedTable.from_weight(vf, precision, name="item"),
        name=f"score_svd_{precision}",
        info={"method": "score_svd", "precision": precision, "rank": rank},
    )
