"""Bit allocation: per-row precisions that meet a byte budget at the least estimated loss.

For every row ``r`` and candidate precision ``p`` the quantization error is measured (the
row is really packed and unpacked): ``e[r, p] = delta^T M delta`` with ``delta = x_r -
q_p(x_r)`` and ``M`` a metric (identity: plain squared error; the Gram matrix of the
other tower: squared error of the dot-product scores over all its rows). The estimated
loss of a plan is ``sum_r w_r e[r, p_r]`` with row weights ``w`` (all ones: unweighted;
or a saliency signal). The plan minimises it subject to ``sum bytes <= budget``: a
multiple-choice knapsack solved by bisection on the Lagrange multiplier (every row picks
``argmin_p w_r e[r, p] + lambda * bytes(p)``), then the remaining bytes upgrade the rows
with the best loss reduction per byte.

Several tables share one budget when their errors are in the same units (one multiplier
for all rows of all tables).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gradtracer.compress.rowwise import PRECISIONS, dequantize_rows, pack_rows, packed_width
from gradtracer.compress.table import BLOCK_ROWS, _code_bits

__all__ = [
    "BudgetError",
    "TableCosts",
    "allocate",
    "index_overhead",
    "table_costs",
]


class BudgetError(ValueError):
    """A byte budget that no allowed configuration meets (names the budget and the minimum)."""


@dataclass(frozen=True)
class TableCosts:
    """Per-row errors and bytes of one table under each candidate precision.

    Attributes:
        name: table name.
        precisions: candidate precisions (columns of ``error``).
        error: ``(n_rows, len(precisions))`` estimated loss of each choice (weights applied).
        row_bytes: ``(len(precisions),)`` bytes a row costs at each precision.
        overhead: bytes of the index map, rank directory and fallback row if every
            candidate is used (an upper bound).
    """

    name: str
    precisions: tuple[str, ...]
    error: np.ndarray
    row_bytes: np.ndarray
    overhead: int
    dim: int = 0

    def restrict(self, columns: Sequence[int]) -> TableCosts:
        """The same costs with only ``columns`` of the candidates (overhead recomputed)."""
        cols = list(columns)
        precs = tuple(self.precisions[j] for j in cols)
        return TableCosts(
            self.name,
            precs,
            self.error[:, cols],
            self.row_bytes[cols],
            index_overhead(self.n_rows, self.dim, precs),
            self.dim,
        )

    @property
    def n_rows(self) -> int:
        return int(self.error.shape[0])


def index_overhead(n_rows: int, dim: int, precisions: Sequence[str]) -> int:
    """Upper bound of the bytes beside the rows: index map, rank directory, fallback row."""
    n_levels = len(set(precisions))
    bits = _code_bits(n_levels)
    if not bits:
        return 0
    n_blocks = -(-n_rows // BLOCK_ROWS)
    out = -(-n_rows * bits // 8) + n_blocks * n_levels * 4
    if "drop" in precisions:
        out += dim * 4
    return out


def table_costs(
    name: str,
    weight: torch.Tensor | np.ndarray,
    precisions: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    metric: np.ndarray | torch.Tensor | None = None,
    optimized_qparams: bool = True,
) -> TableCosts:
    """Measure the error of every row of ``weight (n, d)`` under each of ``precisions``.

    Args:
        name: table name.
        weight: the float table.
        precisions: candidates, e.g. ``("fp16", "int8", "int4", "int2", "drop")``.
        weights: ``(n,)`` non-negative row importance (default all ones).
        metric: ``(d, d)`` positive semi-definite error metric (default identity).
        optimized_qparams: as in :func:`~gradtracer.compress.rowwise.pack_rows`.
    """
    w = torch.as_tensor(weight).detach().to("cpu", torch.float32)
    n, d = w.shape
    precisions = tuple(dict.fromkeys(precisions))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ValueError(f"table {name!r}: unknown precisions {bad}; allowed {PRECISIONS}")
    m = None if metric is None else torch.as_tensor(np.asarray(metric), dtype=torch.float64)
    if m is not None and tuple(m.shape) != (d, d):
        raise ValueError(f"table {name!r}: metric must be ({d}, {d}), got {tuple(m.shape)}")
    err = np.empty((n, len(precisions)), dtype=np.float64)
    for j, p in enumerate(precisions):
        if p == "drop":
            approx = w.mean(0, keepdim=True).expand(n, d)
        else:
            approx = dequantize_rows(pack_rows(w, p, optimized_qparams=optimized_qparams), p, d)
        delta = (w - approx).double()
        if m is None:
            err[:, j] = (delta * delta).sum(1).numpy()
        else:
            err[:, j] = ((delta @ m) * delta).sum(1).numpy()
    if weights is not None:
        wt = np.asarray(weights, dtype=np.float64).reshape(-1)
        if wt.shape != (n,):
            raise ValueError(f"table {name!r}: weights must have {n} values, got {wt.shape}")
        if not (np.isfinite(wt).all() and (wt >= 0).all()):
            raise ValueError(f"table {name!r}: weights must be finite and >= 0")
        err *= wt[:, None]
    row_b = np.asarray([packed_width(p, d) for p in precisions], dtype=np.int64)
    return TableCosts(name, precisions, err, row_b, index_overhead(n, d, precisions), d)


def _choose(costs: Sequence[TableCosts], lam: float) -> list[np.ndarray]:
    return [np.argmin(c.error + lam * c.row_bytes[None, :], axis=1) for c in costs]


def _total(costs: Sequence[TableCosts], choice: Sequence[np.ndarray]) -> int:
    return int(sum(c.row_bytes[ch].sum() + c.overhead for c, ch in zip(costs, choice)))


def allocate(costs: Sequence[TableCosts], budget_bytes: int) -> dict[str, np.ndarray]:
    """Per-row precisions of every table, within ``budget_bytes`` in total.

    Fewer distinct precisions need a smaller index map (none for one), so the allocation
    is solved with every single candidate, every pair, and all of them; the plan with the
    least estimated loss that fits wins.

    Returns ``{table name: (n_rows,) precision names}``.

    Raises:
        BudgetError: when even the cheapest choice for every row exceeds the budget.
    """
    if not costs:
        raise ValueError("allocate needs at least one table")
    n_cand = len(costs[0].precisions)
    if any(c.precisions != costs[0].precisions for c in costs):
        raise ValueError("every table must have the same candidate precisions")
    subsets: list[tuple[int, ...]] = [(j,) for j in range(n_cand)]
    subsets += list(itertools.combinations(range(n_cand), 2)) if n_cand > 2 else []
    subsets.append(tuple(range(n_cand)))
    best: tuple[float, list[np.ndarray], tuple[int, ...]] | None = None
    floor = None
    for cols in dict.fromkeys(subsets):
        sub = [c.restrict(cols) for c in costs]
        plan = _solve(sub, budget_bytes)
        if plan is None:
            cheapest = _total(sub, [np.full(c.n_rows, int(np.argmin(c.row_bytes))) for c in sub])
            floor = cheapest if floor is None else min(floor, cheapest)
            continue
        loss = float(sum(c.error[np.arange(c.n_rows), ch].sum() for c, ch in zip(sub, plan)))
        if best is None or loss < best[0]:
            best = (loss, plan, cols)
    if best is None:
        names = ", ".join(c.name for c in costs)
        raise BudgetError(
            f"budget of {budget_bytes} bytes cannot be met for {names}: the cheapest allowed "
            f"precision for every row needs {floor} bytes"
        )
    _, plan, cols = best
    out = {}
    for c, ch in zip(costs, plan):
        names_arr = np.asarray([c.precisions[j] for j in cols])
        out[c.name] = names_arr[ch].astype(str)
    return out


def _solve(costs: Sequence[TableCosts], budget_bytes: int) -> list[np.ndarray] | None:
    """Lagrangian solution plus greedy fill, or None when nothing fits."""
    cheapest = [np.full(c.n_rows, int(np.argmin(c.row_bytes))) for c in costs]
    if _total(costs, cheapest) > budget_bytes:
        return None
    if _total(costs, _choose(costs, 0.0)) <= budget_bytes:
        return _choose(costs, 0.0)
    lo, hi = 0.0, 1.0
    while _total(costs, _choose(costs, hi)) > budget_bytes and hi < 1e30:
        hi *= 4.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _total(costs, _choose(costs, mid)) > budget_bytes:
            lo = mid
        else:
            hi = mid
    choice = _choose(costs, hi)
    if _total(costs, choice) > budget_bytes:  # pragma: no cover - numerical corner
        choice = cheapest
    for _ in range(8):  # each pass makes single-step upgrades; repeat while bytes remain
        before = _total(costs, choice)
        choice = _fill(costs, choice, budget_bytes - before)
        if _total(costs, choice) == before:
            break
    return choice


def _fill(costs: Sequence[TableCosts], choice: list[np.ndarray], slack: int) -> list[np.ndarray]:
    """Spend ``slack`` bytes on single-step upgrades with the largest loss drop per byte."""
    cand_gain: list[np.ndarray] = []
    cand_cost: list[np.ndarray] = []
    cand_id: list[tuple[int, np.ndarray, np.ndarray]] = []
    for t, (c, ch) in enumerate(zip(costs, choice)):
        rows = np.arange(c.n_rows)
        cur_err = c.error[rows, ch]
        cur_b = c.row_bytes[ch]
        extra = c.row_bytes[None, :] - cur_b[:, None]  # (n, P)
        gain = cur_err[:, None] - c.error
        ok = (extra > 0) & (gain > 0)
        ratio = np.where(ok, gain / np.maximum(extra, 1), -np.inf)
        j = np.argmax(ratio, axis=1)
        good = np.isfinite(ratio[rows, j])
        cand_gain.append(ratio[rows, j][good])
        cand_cost.append(extra[rows, j][good])
        cand_id.append((t, rows[good], j[good]))
    if not cand_gain:
        return choice
    gains = np.concatenate(cand_gain)
    cost = np.concatenate(cand_cost)
    owner = np.concatenate([np.full(ids.size, t) for t, ids, _ in cand_id])
    rows = np.concatenate([ids for _, ids, _ in cand_id])
    target = np.concatenate([j for _, _, j in cand_id])
    order = np.argsort(-gains, kind="stable")
    out = [ch.copy() for ch in choice]
    left = slack
    for k in order:
        if cost[k] <= left:
            out[owner[k]][rows[k]] = target[k]
            left -= int(cost[k])
    return out
