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
- :func:`score_svd_twoscale`: the same factors in a :class:`TwoScaleTable` (codes with a
  1-byte row exponent and fp16 column scales instead of 4-8 bytes of scale and bias per
  row), which buys up to twice the rank at the same bytes.
- :func:`score_svd_mixed`: the score-matrix factors at 1-2x the uniform int4 rank with
  per-row precisions (int8/int4/int2/drop) from the score-metric allocation.
- :func:`prune_quantize`: keep the rows with the largest signal at int8/int4, drop the rest.

:func:`build_extra` rebuilds the plan kinds the recipe module does not know
(:data:`EXTRA_METHODS`). The module runs past 400 lines because :class:`TwoScaleTable`, a
storage kind the low-rank plans need, lives beside the plans that use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch

from gradtracer.compress import index_kernel
from gradtracer.compress.allocate import BudgetError, allocate, index_overhead, table_costs
from gradtracer.compress.model import CompressedMF
from gradtracer.compress.rowwise import packed_width
from gradtracer.compress.table import LowRankTable, QuantizedTable

__all__ = [
    "EXTRA_METHODS",
    "EXTRA_TABLES",
    "MIXED_PRECISIONS",
    "TWO_SCALE_BITS",
    "TwoScaleTable",
    "build_extra",
    "fp32_bytes",
    "gram",
    "mixed",
    "mixed_ranks",
    "prune",
    "prune_quantize",
    "refit_quantized",
    "score_svd",
    "score_svd_mixed",
    "score_svd_twoscale",
    "table_svd",
    "two_scale_bytes",
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


def _prune_table(
    w: torch.Tensor, signal: np.ndarray, budget: int, name: str, precision: str = "fp32"
) -> QuantizedTable:
    n, d = w.shape
    sig = np.asarray(signal, dtype=np.float64).reshape(-1)
    if sig.shape != (n,):
        raise ValueError(f"table {name!r}: signal must have {n} values, got {sig.shape}")
    over = index_overhead(n, d, (precision, "drop"))
    keep = (budget - over) // packed_width(precision, d)
    if keep < 0:
        raise BudgetError(
            f"table {name!r}: budget {budget} bytes is below the {over}-byte index map"
        )
    keep = int(min(keep, n))
    prec = np.full(n, "drop", dtype=object)
    prec[np.argsort(-sig, kind="stable")[:keep]] = precision
    if keep == n:
        return QuantizedTable.from_weight(w, precision, name=name)
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


def refit_quantized(
    user: Any,
    item: Any,
    uf: torch.Tensor,
    vf: torch.Tensor,
    quantize: Any,
    rounds: int,
) -> tuple[Any, Any]:
    """Quantized factor tables ``(Uq, Vq)`` of ``user @ item.T`` refitted to the float scores.

    ``quantize(weight, name)`` returns a table with ``dequantize()``. Each round quantizes
    the user factors, solves the item factors by least squares given them
    (``argmin_V ||Uq V^T - user item^T||``, closed form through the ``r x r`` Gram
    matrix, no score matrix is formed), quantizes those, and then refits the user
    factors to the quantized item factors the same way. ``rounds=0`` quantizes
    ``(uf, vf)`` as they are.
    """
    u, i = _f32(user, "user").double(), _f32(item, "item").double()
    ut = quantize(uf, "user")
    it = quantize(vf, "item")
    ridge = 1e-9
    for _ in range(int(rounds)):
        uq = ut.dequantize().double()
        g = uq.T @ uq
        g = g + ridge * torch.trace(g) / g.shape[0] * torch.eye(g.shape[0], dtype=g.dtype)
        v_new = i @ (u.T @ uq) @ torch.linalg.inv(g)
        it = quantize(v_new.float(), "item")
        vq = it.dequantize().double()
        h = vq.T @ vq
        h = h + ridge * torch.trace(h) / h.shape[0] * torch.eye(h.shape[0], dtype=h.dtype)
        u_new = u @ (i.T @ vq) @ torch.linalg.inv(h)
        ut = quantize(u_new.float(), "user")
    return ut, it


def _largest_rank(n_rows: int, dim: int, precision: str, budget_bytes: int) -> int:
    """Largest rank r <= dim whose ``n_rows`` rows of packed width fit ``budget_bytes``."""
    fits = [r for r in range(1, dim + 1) if n_rows * packed_width(precision, r) <= budget_bytes]
    if not fits:
        raise BudgetError(f"budget {budget_bytes} bytes holds no rank-1 model at {precision}")
    return fits[-1]


def score_svd(user: Any, item: Any, budget_bytes: int, *, precision: str = "int8") -> CompressedMF:
    """Best low-rank approximation of the score matrix at the largest rank the budget holds."""
    u, i = _f32(user, "user"), _f32(item, "item")
    rank = _largest_rank(u.shape[0] + i.shape[0], u.shape[1], precision, budget_bytes)
    uf, vf = score_factors(u, i, rank)
    return CompressedMF(
        QuantizedTable.from_weight(uf, precision, name="user"),
        QuantizedTable.from_weight(vf, precision, name="item"),
        name=f"score_svd_{precision}",
        info={"method": "score_svd", "precision": precision, "rank": rank},
    )


#: Code widths a :class:`TwoScaleTable` stores.
TWO_SCALE_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
#: Shares of a row's largest magnitude tried as its range by :class:`TwoScaleTable`.
_RANGE_SHARES: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


class TwoScaleTable:
    """``bits``-bit codes with a fp16 scale per **column** and a 1-byte log2 scale per **row**.

    Row-wise quantization spends 4-8 bytes per row on a float scale and bias, half of a
    row at a 32x budget. Here each row keeps one byte, the exponent ``e`` of its range
    ``2 ** (e / 8)`` (steps of 1/8 octave), and each column one fp16 scale (its RMS), so
    low-rank factors, whose columns differ in range by the singular values and whose rows
    differ in norm, are both fitted:
    ``x[r, c] ~ (code[r, c] - 2**(bits-1) + 0.5) * 2**(e[r] / 8) / 2**(bits-1) * col[c]``
    (a mid-rise quantizer: every code is a level, none is zero). Each row's range is the
    share of :data:`_RANGE_SHARES` of its largest magnitude with the least squared error.

    Bytes: ``n_rows * (ceil(dim * bits / 8) + 1)`` plus ``2 * dim`` for the column scales.

    Args:
        name: table name.
        n_rows, dim: table shape.
        bits: 2 to 8 (codes packed as one little-endian bit stream per row; for 8, 4
            and 2 bits that is the byte layout of the row-wise kernels, low bits first).
        codes: ``(n_rows, ceil(dim * bits / 8))`` uint8, low bits first.
        row_exponent: ``(n_rows,)`` int8.
        col_scale: ``(dim,)`` float16.
    """

    def __init__(
        self,
        name: str,
        n_rows: int,
        dim: int,
        bits: int,
        codes: np.ndarray,
        row_exponent: np.ndarray,
        col_scale: np.ndarray,
    ) -> None:
        if bits not in TWO_SCALE_BITS:
            raise ValueError(f"table {name!r}: bits must be one of {TWO_SCALE_BITS}, got {bits!r}")
        width = -(-dim * bits // 8)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.shape != (n_rows, width):
            raise ValueError(
                f"table {name!r}: codes must be ({n_rows}, {width}) uint8, got {codes.shape}"
            )
        if np.shape(row_exponent) != (n_rows,):
            raise ValueError(
                f"table {name!r}: row_exponent must have {n_rows} values, got {np.shape(row_exponent)}"
            )
        if np.shape(col_scale) != (dim,):
            raise ValueError(
                f"table {name!r}: col_scale must have {dim} values, got {np.shape(col_scale)}"
            )
        self.name, self.n_rows, self.dim, self.bits = name, int(n_rows), int(dim), int(bits)
        self.codes = codes
        self.row_exponent = np.asarray(row_exponent, dtype=np.int8)
        self.col_scale = np.asarray(col_scale, dtype=np.float16)
        self._codes_t = torch.from_numpy(codes.copy())
        half = float(1 << (bits - 1))
        step = np.exp2(self.row_exponent.astype(np.float64) / 8.0) / half
        self._step_t = torch.from_numpy(step.astype(np.float32))
        self._col_t = torch.from_numpy(self.col_scale.astype(np.float32))
        # NumPy views of the same arrays for the compiled kernels (no per-call conversion)
        self._step_np, self._col_np = self._step_t.numpy(), self._col_t.numpy()
        self._half = half

    @classmethod
    def from_weight(
        cls, weight: torch.Tensor | np.ndarray, bits: int, *, name: str = "table"
    ) -> TwoScaleTable:
        """Quantize ``weight (n, d)`` at ``bits`` bits."""
        w = _f32(weight, name).numpy().astype(np.float64)
        if bits not in TWO_SCALE_BITS:
            raise ValueError(f"table {name!r}: bits must be one of {TWO_SCALE_BITS}, got {bits!r}")
        n, d = w.shape
        col16 = np.sqrt((w**2).mean(0)) if n else np.ones(d)
        col16 = np.where(np.isfinite(col16) & (col16 > 6.1e-5), col16, 6.1e-5).astype(np.float16)
        col = col16.astype(np.float64)
        y = w / col
        peak = np.maximum(np.abs(y).max(1) if d else np.zeros(n), 1e-30)
        half = float(1 << (bits - 1))
        best_err = np.full(n, np.inf)
        codes = np.zeros((n, d), dtype=np.uint8)
        expo = np.zeros(n, dtype=np.int8)
        for share in _RANGE_SHARES:
            e = np.clip(np.ceil(8.0 * np.log2(peak * share)), -128, 127)
            step = np.exp2(e / 8.0) / half
            k = np.clip(np.floor(y / step[:, None]), -half, half - 1)
            err = ((((k + 0.5) * step[:, None] - y) * col) ** 2).sum(1)
            better = err < best_err
            best_err[better] = err[better]
            codes[better] = (k[better] + half).astype(np.uint8)
            expo[better] = e[better].astype(np.int8)
        return cls(name, n, d, bits, _pack_bits(codes, bits), expo, col16)

    @property
    def rank(self) -> int:
        """Stored columns (the rank when the table holds low-rank factors)."""
        return self.dim

    def _decode(self, packed: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        if 8 % self.bits == 0:
            per = 8 // self.bits
            shifts = torch.arange(per, dtype=torch.int32) * self.bits
            vals = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & ((1 << self.bits) - 1)
            codes = vals.flatten(-2)[..., : self.dim].to(torch.float32)
        else:  # a value may straddle two bytes: unpack the bit stream
            bit = (packed.to(torch.int32).unsqueeze(-1) >> torch.arange(8, dtype=torch.int32)) & 1
            stream = bit.flatten(-2)[..., : self.dim * self.bits]
            weights = 1 << torch.arange(self.bits, dtype=torch.int32)
            shape = (*stream.shape[:-1], self.dim, self.bits)
            codes = (stream.reshape(shape) * weights).sum(-1).to(torch.float32)
        return (codes - (self._half - 0.5)) * step.unsqueeze(-1) * self._col_t

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        """``(*rows.shape, dim)`` float32 rows."""
        idx = rows
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64:
            idx = torch.as_tensor(rows, dtype=torch.int64)
        if index_kernel.available():  # compiled gather, bit-equal to _decode; checks bounds
            flat = idx if idx.ndim == 1 and idx.is_contiguous() else idx.reshape(-1).contiguous()
            # a NumPy output: at a few hundred rows torch.empty + .numpy() costs more
            out = np.empty((flat.numel(), self.dim), np.float32)
            try:
                index_kernel.two_scale_gather(
                    flat.numpy(), self.codes, self._step_np, self._col_np, self.bits, out
                )
            except IndexError as exc:
                raise IndexError(
                    f"table {self.name!r}: rows must be in [0, {self.n_rows}): {exc}"
                ) from None
            looked_up = torch.from_numpy(out)
            return looked_up if idx.ndim == 1 else looked_up.reshape(*idx.shape, self.dim)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_rows):
            raise IndexError(f"table {self.name!r}: rows must be in [0, {self.n_rows})")
        return self._decode(self._codes_t[idx], self._step_t[idx])

    def embedding_bag(
        self,
        indices: torch.Tensor,
        offsets: torch.Tensor,
        *,
        mode: str = "sum",
        include_last_offset: bool = False,
    ) -> torch.Tensor:
        """Pooled lookups, as ``F.embedding_bag``: ``(n_bags, dim)`` float32.

        Args:
            indices: ``(N,)`` rows of all bags, bag after bag.
            offsets: start of each bag in ``indices`` (``n_bags`` entries, or
                ``n_bags + 1`` with ``include_last_offset=True``).
            mode: ``"sum"`` (default) or ``"mean"`` (an empty bag pools to zeros).
            include_last_offset: ``offsets`` ends with ``N`` (default False).

        With numba, one compiled pass (:func:`~gradtracer.compress.index_kernel.two_scale_pool`)
        decodes every row and adds it to its bag in index order; without it, the rows are
        looked up and summed per bag with tensor ops (the same values).
        """
        from gradtracer.compress.table import bag_inputs, bag_mean

        idx, ends = bag_inputs(indices, offsets, mode, include_last_offset)
        n_bags = ends.size - 1
        if index_kernel.available():
            out = np.zeros((n_bags, self.dim), dtype=np.float32)
            try:
                index_kernel.two_scale_pool(
                    idx.contiguous().numpy(), ends, self.codes, self._step_np,
                    self._col_np, self.bits, out,
                )  # fmt: skip
            except IndexError as exc:
                raise IndexError(f"table {self.name!r}: rows must be in [0, {self.n_rows}): "
                                 f"{exc}") from None  # fmt: skip
            pooled = torch.from_numpy(out)
        else:
            rows = self.lookup(idx)
            off = torch.from_numpy(ends)
            pooled = torch.nn.functional.embedding_bag(
                torch.arange(idx.numel()), rows, off, mode="sum", include_last_offset=True
            )
        return bag_mean(pooled, ends, mode)

    def dequantize(self) -> torch.Tensor:
        """The whole table ``(n_rows, dim)`` float32."""
        return self._decode(self._codes_t, self._step_t)

    def byte_breakdown(self) -> dict[str, int]:
        """``codes``, ``row_exponents`` (1 byte a row) and ``column_scales`` (fp16)."""
        return {
            "codes": int(self.codes.nbytes),
            "row_exponents": int(self.row_exponent.nbytes),
            "column_scales": int(self.col_scale.nbytes),
        }

    def nbytes(self) -> int:
        return sum(self.byte_breakdown().values())

    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "type": "two_scale",
            "name": self.name,
            "n_rows": self.n_rows,
            "dim": self.dim,
            "bits": self.bits,
        }
        arrays = {
            f"{prefix}codes": self.codes,
            f"{prefix}row_exponent": self.row_exponent,
            f"{prefix}col_scale": self.col_scale,
        }
        return meta, arrays

    @classmethod
    def from_arrays(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str
    ) -> TwoScaleTable:
        return cls(
            str(meta["name"]),
            int(meta["n_rows"]),
            int(meta["dim"]),
            int(meta["bits"]),
            np.asarray(arrays[f"{prefix}codes"]),
            np.asarray(arrays[f"{prefix}row_exponent"]),
            np.asarray(arrays[f"{prefix}col_scale"]),
        )

    def __repr__(self) -> str:
        return (
            f"TwoScaleTable({self.name!r}, {self.n_rows}x{self.dim}, int{self.bits}, "
            f"{self.nbytes()} bytes)"
        )


def _pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """``(n, d)`` codes < 2**bits -> ``(n, ceil(d * bits / 8))`` uint8, low bits first."""
    n, d = codes.shape
    if 8 % bits:
        shifts_b = np.arange(bits, dtype=np.uint16)
        stream = ((codes.astype(np.uint16)[:, :, None] >> shifts_b) & 1).astype(np.uint8)
        return np.packbits(stream.reshape(n, d * bits), axis=1, bitorder="little")
    per = 8 // bits
    width = -(-d // per)
    padded = np.zeros((n, width * per), dtype=np.uint16)
    padded[:, :d] = codes
    shifts = (np.arange(per, dtype=np.uint16) * bits)[None, None, :]
    return (padded.reshape(n, width, per) << shifts).sum(axis=2).astype(np.uint8)


def two_scale_bytes(n_rows: int, dim: int, bits: int) -> int:
    """Bytes of a :class:`TwoScaleTable` of ``n_rows x dim`` at ``bits``.

    >>> two_scale_bytes(1000, 14, 4)
    8028
    """
    return int(n_rows) * (-(-int(dim) * int(bits) // 8) + 1) + 2 * int(dim)


def score_svd_twoscale(
    user: Any, item: Any, budget_bytes: int, *, bits: int = 4, refit: int = 0
) -> CompressedMF:
    """Score-matrix SVD at the largest rank whose :class:`TwoScaleTable` factors fit the
    budget; ``refit`` rounds of :func:`refit_quantized` (default 0)."""
    u, i = _f32(user, "user"), _f32(item, "item")
    rank = 0
    for r in range(1, u.shape[1] + 1):
        total = two_scale_bytes(u.shape[0], r, bits) + two_scale_bytes(i.shape[0], r, bits)
        if total <= budget_bytes:
            rank = r
    if rank < 1:
        raise BudgetError(
            f"budget {budget_bytes} bytes holds no rank-1 two-scale model at {bits} bits"
        )
    uf, vf = score_factors(u, i, rank)
    tables = refit_quantized(
        u, i, uf, vf, lambda w, name: TwoScaleTable.from_weight(w, bits, name=name), refit
    )
    info: dict[str, Any] = {"method": "score_svd_twoscale", "bits": bits, "rank": rank}
    if refit:
        info["refit"] = int(refit)
    return CompressedMF(
        cast(Any, tables[0]),
        cast(Any, tables[1]),
        name=f"score_svd_twoscale_int{bits}",
        info=info,
    )


def score_svd_mixed(
    user: Any,
    item: Any,
    budget_bytes: int,
    *,
    rank: int,
    precisions: Sequence[str] = ("int8", "int4", "int2", "drop"),
    user_weights: np.ndarray | None = None,
    item_weights: np.ndarray | None = None,
    row_levels: tuple[np.ndarray, np.ndarray] | None = None,
) -> CompressedMF:
    """Score-matrix factors at ``rank`` with per-row precisions from the score-metric allocation.

    The allocation may drop rare rows (``drop`` among ``precisions``) to afford a larger
    rank for the rest. ``row_levels`` (per-row precision names of both factor tables)
    skips the allocation and rebuilds a given plan exactly.
    """
    u, i = _f32(user, "user"), _f32(item, "item")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= u.shape[1]:
        raise ValueError(f"rank must be an int in [1, {u.shape[1]}], got {rank!r}")
    uf, vf = score_factors(u, i, rank)
    if row_levels is None:
        model = mixed(
            uf,
            vf,
            budget_bytes,
            user_weights=user_weights,
            item_weights=item_weights,
            metric="score",
            precisions=precisions,
            label="score_svd_mixed",
        )
        user_t, item_t = model.user_table, model.item_table
    else:
        user_t = QuantizedTable.from_weight(uf, row_levels[0], name="user")
        item_t = QuantizedTable.from_weight(vf, row_levels[1], name="item")
    return CompressedMF(
        user_t,
        item_t,
        name="score_svd_mixed",
        info={"method": "score_svd_mixed", "rank": rank, "budget_bytes": int(budget_bytes)},
    )


def prune_quantize(
    user: Any,
    item: Any,
    budget_bytes: int,
    *,
    user_signal: np.ndarray,
    item_signal: np.ndarray,
    precision: str = "int8",
) -> CompressedMF:
    """Keep the rows with the largest signal at ``precision``; the rest read the fallback row."""
    u, i = _f32(user, "user"), _f32(item, "item")
    bu, bi = _shares(u, i, budget_bytes)
    return CompressedMF(
        _prune_table(u, user_signal, bu, "user", precision),
        _prune_table(i, item_signal, bi, "item", precision),
        name=f"prune_{precision}",
        info={"method": "prune", "precision": precision, "budget_bytes": int(budget_bytes)},
    )


def mixed_ranks(n_rows: int, dim: int, budget_bytes: int) -> list[int]:
    """Ranks :func:`score_svd_mixed` is tried at: the uniform int4 rank, 1.5x and 2x.

    >>> mixed_ranks(1000, 64, 8_000)
    [8, 12, 16]
    """
    base = 0
    for r in range(1, dim + 1):
        if n_rows * packed_width("int4", r) <= budget_bytes:
            base = r
    if base < 1:
        return []
    return sorted({min(dim, base), min(dim, (3 * base) // 2), min(dim, 2 * base)})


#: Plan kinds beyond the recipe's built-in ones, rebuilt by :func:`build_extra`.
EXTRA_METHODS: tuple[str, ...] = ("score_svd_twoscale", "score_svd_mixed")
#: Table kinds defined here, by the ``type`` their ``to_arrays`` metadata carries.
EXTRA_TABLES: dict[str, type[TwoScaleTable]] = {"two_scale": TwoScaleTable}


def build_extra(
    method: str,
    user: Any,
    item: Any,
    budget_bytes: int,
    params: Mapping[str, Any],
    decisions: Mapping[str, Any] | None = None,
) -> CompressedMF:
    """Rebuild the plan ``method`` with ``params`` (one of :data:`EXTRA_METHODS`).

    ``score_svd_mixed`` reads each table's per-row precisions from
    ``decisions[table]["row_levels"]`` (or ``rows_by_precision`` for a single one).
    """
    if method == "score_svd_twoscale":
        return score_svd_twoscale(
            user, item, budget_bytes, bits=int(params["bits"]), refit=int(params.get("refit", 0))
        )
    if method == "score_svd_mixed":
        from gradtracer.compress.recipe import RecipeError, decode_levels

        rank = int(params["rank"])
        levels = []
        for name, w in (("user", user), ("item", item)):
            entry = dict((decisions or {}).get(name, {}))
            n = int(np.shape(w)[0])
            if "row_levels" in entry:
                levels.append(decode_levels(str(entry["row_levels"]), n))
            elif len(entry.get("rows_by_precision", {})) == 1:
                levels.append(np.full(n, str(next(iter(entry["rows_by_precision"])))))
            else:
                raise RecipeError(f"recipe decision for table {name!r} has no row precisions")
        return score_svd_mixed(
            user, item, budget_bytes, rank=rank, row_levels=(levels[0], levels[1])
        )
    raise ValueError(f"method must be one of {EXTRA_METHODS}, got {method!r}")
