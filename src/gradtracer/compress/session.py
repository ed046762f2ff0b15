"""Compressed GRU4Rec: quantized item tables and dense weights, and the equal-bytes study.

:class:`CompressedGRU4Rec` is a next-item scorer that
:func:`~gradtracer.recsys.sessions.evaluate_next_item` accepts (``n_items``,
``init_state``, ``advance``, ``scorer``). Its item tables are compressed tables
(:class:`~gradtracer.compress.table.QuantizedTable` or
:class:`~gradtracer.compress.table.LowRankTable`): inputs are read through the row-wise
kernels, output scores use the table dequantized once. The GRU weight matrices are
stored row-wise at a per-matrix precision (``fp32``/``fp16``/``int8``/``int4``/``int2``)
and computed with in float32 (weight-only quantization); biases and the per-item output
bias stay float32. Every byte is counted in :meth:`CompressedGRU4Rec.byte_breakdown`.

:func:`table_candidates` builds every single-table plan that fits a byte budget: uniform
precision, L2-norm and frequency pruning, truncated SVD, mixed precision (plain row
error, or the *score* metric: the Gram matrix of the GRU's output states, so a row's
error is the squared error of its scores, with optional row weights) and the score-metric
SVD (the best rank-``r`` table in that metric). :func:`session_study` trains GRU4Rec
over seeds, picks the recipe among the candidates on validation sessions and reports
every method on the test sessions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from gradtracer.compress.allocate import BudgetError, allocate, index_overhead, table_costs
from gradtracer.compress.rowwise import packed_width
from gradtracer.compress.table import CompressedTable, LowRankTable, QuantizedTable
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork, adjust_state
from gradtracer.recsys.sessions.batching import (
    SessionArrays,
    SessionBatch,
    iterate_session_parallel,
)

if TYPE_CHECKING:
    from gradtracer.recsys.models.gru4rec import GRU4Rec

__all__ = [
    "DENSE_PRECISIONS",
    "CompressedGRU4Rec",
    "SessionStudyRow",
    "dense_matrices",
    "gru4rec_trainer",
    "hidden_gram",
    "metric_svd",
    "session_splits",
    "session_study",
    "session_summary_markdown",
    "subset_sessions",
    "summarize_session_study",
    "table_candidates",
]

#: Precisions a GRU weight matrix can be stored at (row-wise, as the embedding rows).
DENSE_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int4", "int2")


def dense_matrices(model: GRU4RecNetwork) -> dict[str, torch.Tensor]:
    """The GRU weight matrices by parameter name (``cells.0.weight_ih``, ...)."""
    return {
        name: p.detach()
        for name, p in model.named_parameters()
        if name.startswith("cells.") and p.ndim == 2
    }


class CompressedGRU4Rec(nn.Module):
    """GRU4Rec with compressed item tables and per-matrix dense precision, for inference.

    Args:
        model: a trained GRU4Rec network (constrained or separate input embedding;
            the one-hot input mode is not supported).
        tables: ``{"output_emb": table}`` and, with a separate input table,
            ``"item_emb"``; a table not given is kept in float32.
        dense: one precision for every GRU weight matrix, or ``{name: precision}`` per
            matrix (names from :func:`dense_matrices`; others stay fp32), where a value
            may also be an already packed :class:`QuantizedTable` of the matrix's shape
            (what :meth:`load` passes). Default fp32.
        name: model name in results.
        info: JSON-safe metadata kept in the artifact (method, recipe fingerprint...).

    Raises:
        ValueError: one-hot input mode, a table of another shape, an unknown table or
            matrix name, or an unknown precision.
    """

    def __init__(
        self,
        model: GRU4RecNetwork,
        tables: Mapping[str, CompressedTable] | None = None,
        *,
        dense: str | Mapping[str, str | QuantizedTable] = "fp32",
        name: str = "compressed_gru4rec",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if model.onehot is not None:
            raise ValueError(
                "CompressedGRU4Rec needs an item embedding input (constrained_embedding or "
                "embedding_dim > 0); the one-hot input mode is not supported"
            )
        self.name, self.n_items, self.config = name, model.n_items, model.config
        self.info: dict[str, Any] = dict(info or {})
        layers = model.embedding_layers()
        given = dict(tables or {})
        unknown = sorted(set(given) - set(layers))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; this model has {sorted(layers)}")
        self.tables: dict[str, CompressedTable] = {}
        for key, layer in layers.items():
            w = layer.weight.detach()
            t = given[key] if key in given else QuantizedTable.from_weight(w, "fp32", name=key)
            if (t.n_rows, t.dim) != tuple(w.shape):
                raise ValueError(
                    f"table {key!r} is {t.n_rows}x{t.dim}, the model's is "
                    f"{tuple(w.shape)[0]}x{tuple(w.shape)[1]} (a table of another model)"
                )
            self.tables[key] = t
        self._separate_input = "item_emb" in self.tables
        self.output_bias = model.output_bias.weight.detach().to("cpu", torch.float32).clone()
        self._out_w = self.tables["output_emb"].dequantize()
        mats = dense_matrices(model)
        prec: dict[str, str | QuantizedTable] = (
            {k: dense for k in mats} if isinstance(dense, str) else dict(dense)
        )
        bad = sorted(set(prec) - set(mats))
        if bad:
            raise ValueError(f"unknown dense matrix name(s) {bad}; this model has {sorted(mats)}")
        self.dense_tables: dict[str, QuantizedTable] = {}
        self.cells = copy.deepcopy(model.cells).to("cpu").eval()
        params = dict(self.cells.named_parameters(prefix="cells"))
        with torch.no_grad():
            for key, w in mats.items():
                q = _dense_table(key, w, prec.get(key, "fp32"))
                self.dense_tables[key] = q
                params[key].copy_(q.dequantize())
        self.dense_precision = {k: _precision_of(q) for k, q in self.dense_tables.items()}
        self._dense_other = {
            k: int(p.numel()) * 4 for k, p in params.items() if k not in self.dense_tables
        }
        self.eval()

    # --- the scorer interface of evaluate_next_item ------------------------------------
    def scorer(self) -> CompressedGRU4Rec:
        """This module (in evaluation mode)."""
        return self.eval()

    def init_state(self, batch_size: int) -> list[torch.Tensor]:
        """Zero hidden states, one ``(batch_size, units)`` tensor per GRU layer."""
        return [torch.zeros(batch_size, h) for h in self.config.layers]

    def hidden(self, items: torch.Tensor, state: list[torch.Tensor]) -> torch.Tensor:
        """Advance ``state`` in place by one event per row; return the top layer ``(B, d)``."""
        table = self.tables["item_emb" if self._separate_input else "output_emb"]
        x = table.lookup(items.to("cpu", torch.int64))
        for i, cell in enumerate(self.cells):
            x = cell(x, state[i])
            state[i] = x
        return x

    def forward(
        self, items: torch.Tensor, state: list[torch.Tensor], candidates: torch.Tensor | None
    ) -> torch.Tensor:
        """Scores ``(B, C)`` for ``candidates`` (``(C,)`` item ids; ``None`` = all items)."""
        x = self.hidden(items, state)
        if candidates is None:
            return self.output_scores(x)
        c = candidates.to("cpu", torch.int64)
        return x @ self._out_w[c].T + self.output_bias[c].T

    def output_scores(self, h: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, n_items)`` of top GRU states ``h (B, d)``: ``h @ E^T + b``."""
        return h @ self._out_w.T + self.output_bias.T

    def advance(
        self, state: list[torch.Tensor], batch: SessionBatch
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Apply ``batch``'s slot changes, feed its inputs, return ``(B, n_items)`` scores."""
        state = adjust_state(state, batch)
        with torch.no_grad():
            scores = self.forward(batch.inputs, state, None)
        return scores, state

    # --- bytes -------------------------------------------------------------------------
    def byte_breakdown(self) -> dict[str, int]:
        """Bytes per part: each table's and dense matrix's breakdown, biases (float32)."""
        out: dict[str, int] = {}
        for key, t in {**self.tables, **self.dense_tables}.items():
            for part, b in t.byte_breakdown().items():
                out[f"{key}/{part}"] = int(b)
        out["output_bias"] = int(self.output_bias.numel()) * 4
        for key, b in self._dense_other.items():
            out[key] = b
        return out

    def nbytes(self) -> int:
        """Total bytes of the stored model."""
        return sum(self.byte_breakdown().values())

    def table_bytes(self) -> int:
        """Bytes of the item tables alone."""
        return sum(int(t.nbytes()) for t in self.tables.values())

    def dense_bytes(self) -> int:
        """Bytes of the GRU weight matrices alone."""
        return sum(int(t.nbytes()) for t in self.dense_tables.values())

    def float_model(self, model: GRU4RecNetwork) -> GRU4RecNetwork:
        """A copy of ``model`` with every compressed weight replaced by its dequantized value."""
        out = copy.deepcopy(model).to("cpu").eval()
        with torch.no_grad():
            for key, t in self.tables.items():
                getattr(out, "input_emb" if key == "item_emb" else key).weight.copy_(t.dequantize())
            params = dict(out.named_parameters())
            for key, q in self.dense_tables.items():
                params[key].copy_(q.dequantize())
        return out

    def float_arrays(self) -> dict[str, np.ndarray]:
        """The float32 parameters kept as they are: GRU biases and the output bias."""
        out = {
            k: p.detach().numpy().copy()
            for k, p in self.cells.named_parameters(prefix="cells")
            if k not in self.dense_tables
        }
        out["output_bias"] = self.output_bias.numpy().copy()
        return out

    def save(self, path: str | Path, *, file_format: str | None = None) -> Path:
        """Write one checksummed ``.npz`` or ``.safetensors`` artifact (see
        :func:`~gradtracer.compress.session_artifact.save_session_artifact`)."""
        from gradtracer.compress.session_artifact import save_session_artifact

        return save_session_artifact(self, path, file_format=file_format)

    @classmethod
    def load(cls, path: str | Path, *, recipe: Any | None = None) -> CompressedGRU4Rec:
        """Read an artifact written by :meth:`save` (every checksum verified)."""
        from gradtracer.compress.session_artifact import load_session_artifact

        return load_session_artifact(path, recipe=recipe)

    def __repr__(self) -> str:
        return (
            f"CompressedGRU4Rec({self.name!r}, {self.n_items} items, tables "
            f"{self.table_bytes()} bytes, dense {self.dense_precision}, {self.nbytes()} bytes)"
        )


def _dense_table(key: str, w: torch.Tensor, p: str | QuantizedTable) -> QuantizedTable:
    if isinstance(p, QuantizedTable):
        if (p.n_rows, p.dim) != tuple(w.shape):
            raise ValueError(
                f"dense matrix {key!r}: packed table is {p.n_rows}x{p.dim}, the model's is "
                f"{tuple(w.shape)[0]}x{tuple(w.shape)[1]} (a matrix of another model)"
            )
        if len(p.levels) != 1 or p.levels[0] not in DENSE_PRECISIONS:
            raise ValueError(f"dense matrix {key!r}: needs one precision of {DENSE_PRECISIONS}")
        return p
    if p not in DENSE_PRECISIONS:
        raise ValueError(
            f"dense matrix {key!r}: precision must be one of {DENSE_PRECISIONS}, got {p!r}"
        )
    return QuantizedTable.from_weight(w.cpu(), p, name=key)


def _precision_of(table: QuantizedTable) -> str:
    return str(table.levels[0])


def hidden_gram(
    model: GRU4RecNetwork, sessions: SessionArrays, *, batch_size: int = 256
) -> np.ndarray:
    """``(d, d)`` mean ``h h^T`` of the top GRU state over every prediction in ``sessions``.

    The score of item ``i`` is ``h . e_i + b_i``, so ``delta^T G delta`` is the mean squared
    change of a row's scores when the row moves by ``delta``: the score metric of a
    session model.
    """
    was = model.training
    model.eval()
    d = model.config.layers[-1]
    acc = torch.zeros(d, d, dtype=torch.float64)
    n = 0
    state = model.init_state(min(batch_size, max(sessions.n_sessions, 1)))
    device = model.output_emb.weight.device
    with torch.no_grad():
        for batch in iterate_session_parallel(sessions, batch_size):
            state = adjust_state(state, batch)
            h = model.hidden(batch.inputs.to(device), state).double().cpu()
            acc += h.T @ h
            n += h.shape[0]
    model.train(was)
    if n == 0:
        raise ValueError("hidden_gram needs sessions with at least one prediction")
    return (acc / n).numpy()


def metric_svd(
    weight: torch.Tensor | np.ndarray,
    rank: int,
    metric: np.ndarray | None = None,
    *,
    precision: str = "fp32",
    name: str = "output_emb",
) -> LowRankTable:
    """The rank-``rank`` table closest to ``weight`` in the metric ``M`` (``||(W - W_r) L||``,
    ``M = L L^T``), stored as factors at ``precision`` and a float32 basis.

    With ``metric=None`` this is the plain truncated SVD.
    """
    w = torch.as_tensor(weight).detach().to("cpu", torch.float64)
    if metric is None:
        return LowRankTable.from_weight(w.float(), rank, name=name, precision=precision)
    m = torch.as_tensor(np.asarray(metric), dtype=torch.float64)
    d = w.shape[1]
    evals, evecs = torch.linalg.eigh(m + 1e-8 * torch.trace(m) / d * torch.eye(d))
    root = evecs * evals.clamp_min(0).sqrt()  # L with L L^T = M
    inv = evecs / evals.clamp_min(1e-12).sqrt()  # L^{-T}: (L^{-1})^T
    u, s, vh = torch.linalg.svd(w @ root, full_matrices=False)
    factors = (u[:, :rank] * s[:rank]).float()
    basis = (vh[:rank] @ inv.T).float()  # (r, d): V_r^T L^{-1}
    return LowRankTable.from_factors(name, factors, basis, precision=precision)


def _prune(w: torch.Tensor, signal: np.ndarray, budget: int, name: str) -> QuantizedTable:
    n, d = w.shape
    keep = (budget - index_overhead(n, d, ("fp32", "drop"))) // packed_width("fp32", d)
    if keep < 1:
        raise BudgetError(f"table {name!r}: {budget} bytes keep no float32 row")
    keep = int(min(keep, n))
    prec = np.full(n, "drop", dtype=object)
    prec[np.argsort(-np.asarray(signal, dtype=np.float64), kind="stable")[:keep]] = "fp32"
    return QuantizedTable.from_weight(w, prec.astype(str), name=name)


def _svd_rank(n: int, d: int, budget: int, precision: str) -> int:
    fits = [r for r in range(1, d + 1) if n * packed_width(precision, r) + 4 * r * d <= budget]
    return max(fits, default=0)


def table_candidates(
    weight: torch.Tensor | np.ndarray,
    budget_bytes: int,
    *,
    metric: np.ndarray | None = None,
    signals: Mapping[str, np.ndarray] | None = None,
    name: str = "output_emb",
) -> dict[str, CompressedTable]:
    """Every plan for one table that fits ``budget_bytes``, by method label.

    Args:
        weight: the float table ``(n, d)``.
        budget_bytes: the most bytes a plan may take.
        metric: ``(d, d)`` score metric (:func:`hidden_gram`); enables the ``score``
            allocations and the score-metric SVD.
        signals: ``{signal name: (n,) row importance}`` (``frequency``, ``dynamics``,
            ...): ``frequency`` also drives frequency pruning; each one weights a
            score-metric allocation.
        name: table name.

    Labels: ``uniform_<p>`` (the most precise uniform precision that fits),
    ``prune_l2``, ``prune_frequency``, ``svd``, ``mixed_rowerror``, ``mixed_score``,
    ``mixed_score_<signal>``, ``score_svd_<p>`` (p in fp16/int8/int4/int2).
    """
    w = torch.as_tensor(weight).detach().to("cpu", torch.float32)
    n, d = w.shape
    sig = dict(signals or {})
    out: dict[str, CompressedTable] = {}
    for p in ("fp16", "int8", "int4", "int2"):
        if n * packed_width(p, d) <= budget_bytes:
            out[f"uniform_{p}"] = QuantizedTable.from_weight(w, p, name=name)
            break
    prunes = {"l2": w.norm(dim=1).numpy()}
    if "frequency" in sig:
        prunes["frequency"] = np.asarray(sig["frequency"], dtype=np.float64)
    for label, s in prunes.items():
        try:
            out[f"prune_{label}"] = _prune(w, s, budget_bytes, name)
        except BudgetError:
            pass
    r = _svd_rank(n, d, budget_bytes, "fp32")
    if r:
        out["svd"] = metric_svd(w, r, None, name=name)
    precs = ("fp16", "int8", "int4", "int2", "drop")
    plans: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {"mixed_rowerror": (None, None)}
    if metric is not None:
        plans["mixed_score"] = (None, metric)
        for s_name, s in sig.items():
            a = np.asarray(s, dtype=np.float64)
            plans[f"mixed_score_{s_name}"] = (a / a.mean() if a.mean() > 0 else None, metric)
    for label, (wt, m) in plans.items():
        costs = table_costs(name, w, precs, weights=wt, metric=m)
        try:
            plan = allocate([costs], budget_bytes)
        except BudgetError:
            continue
        out[label] = QuantizedTable.from_weight(w, plan[name], name=name)
    if metric is not None:
        for p in ("fp16", "int8", "int4", "int2"):
            r = _svd_rank(n, d, budget_bytes, p)
            if r:
                out[f"score_svd_{p}"] = metric_svd(w, r, metric, precision=p, name=name)
    return {k: t for k, t in out.items() if t.nbytes() <= budget_bytes or k.startswith("uniform")}


@dataclass
class SessionStudyRow:
    """One (seed, budget, method) result of :func:`session_study`."""

    seed: int
    ratio: float  # the budget: float32 table bytes / budget bytes (0 for dense-only rows)
    method: str
    achieved_ratio: float
    table_bytes: int
    dense_bytes: int
    valid_ndcg: float
    metrics: dict[str, float] = field(default_factory=dict)  # test ndcg@10, recall@20
    picked: str = ""  # the recipe's method
    fidelity: float | None = None  # fidelity to the float model's rankings on validation

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ratio": self.ratio,
            "method": self.method,
            "achieved_ratio": self.achieved_ratio,
            "table_bytes": self.table_bytes,
            "dense_bytes": self.dense_bytes,
            "valid_ndcg@10": self.valid_ndcg,
            **self.metrics,
            **({"picked": self.picked} if self.picked else {}),
            **({} if self.fidelity is None else {"fidelity": self.fidelity}),
        }


def subset_sessions(sessions: SessionArrays, keep: np.ndarray) -> SessionArrays:
    """The sessions of ``sessions`` where ``keep`` (``(n_sessions,)`` bool) is true, in one
    item space, their start order kept."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (sessions.n_sessions,):
        raise ValueError(f"keep must have shape ({sessions.n_sessions},), got {keep.shape}")
    sel = np.flatnonzero(keep)
    lengths = sessions.lengths[sel]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    parts = [sessions.items[sessions.offsets[i] : sessions.offsets[i + 1]] for i in sel]
    items = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    new_pos = np.full(sessions.n_sessions, -1, dtype=np.int64)
    new_pos[sel] = np.arange(sel.size)
    order = new_pos[sessions.start_order]
    return SessionArrays(
        items=items,
        offsets=offsets,
        start_order=order[order >= 0],
        session_ids=sessions.session_ids[sel],
        n_items=sessions.n_items,
    )


def session_splits(
    ix: Any, *, test_fraction: float = 0.2, valid_fraction: float = 0.15
) -> tuple[SessionArrays, SessionArrays, SessionArrays]:
    """``(train, valid, test)`` session arrays in one item space from session data ``ix``.

    The latest ``test_fraction`` of sessions (by start time) are the test set, the latest
    ``valid_fraction`` of the rest the validation set; test events of items not in the
    training part are dropped (:func:`~gradtracer.recsys.sessions.split_pair`).
    """
    from gradtracer.recsys.sessions import session_arrays, split_pair, split_sessions

    outer = split_sessions(ix, test_fraction)
    inner = split_sessions(outer.train, valid_fraction)
    pair = split_pair(inner.train, outer.test)
    return session_arrays(pair.train), session_arrays(inner.test), session_arrays(pair.test)


def gru4rec_trainer(
    train: SessionArrays, preset: str = "diginetica", **config: Any
) -> Callable[[int], tuple[GRU4Rec, dict[str, np.ndarray]]]:
    """A ``seed -> (GRU4Rec, row signals)`` function for :func:`session_study`.

    Trains ``preset_config(preset, random_state=seed, **config)`` on ``train`` with an
    EmbeddingTracker on the output table; the signals are ``frequency`` (training event
    counts), ``magnitude`` (row L2 norm) and ``dynamics`` (frequency-aware saliency).
    """
    from gradtracer.compress.saliency import row_saliency, row_stats_of
    from gradtracer.recsys.models.gru4rec import GRU4Rec, preset_config
    from gradtracer.recsys.models.next_item import TrainingHooks
    from gradtracer.recsys.sessions.training import attach_embedding_trackers

    def fit(seed: int) -> tuple[GRU4Rec, dict[str, np.ndarray]]:
        model = GRU4Rec(train.n_items, preset_config(preset, random_state=seed, **config))
        trackers, on_backward = attach_embedding_trackers(model)
        model.fit(train, hooks=TrainingHooks(on_backward=on_backward))
        stats = row_stats_of(trackers["output_emb"])
        for t in trackers.values():
            t.detach()
        w = model.output_emb.weight.detach()
        return model.eval(), {
            "frequency": model.counts.detach().cpu().numpy().astype(np.float64),
            "magnitude": w.norm(dim=1).cpu().numpy().astype(np.float64),
            "dynamics": row_saliency("dynamics", stats=stats),
        }

    return fit


def _score(model: Any, sessions: SessionArrays) -> dict[str, float]:
    from gradtracer.recsys.sessions.evaluate import evaluate_next_item

    res = evaluate_next_item(model, sessions, ks=(10, 20))
    return {"ndcg@10": res.mean["ndcg@10"], "recall@20": res.mean["recall@20"]}


def _row(
    seed: int,
    fp32_bytes: int,
    test: SessionArrays,
    ratio: float,
    method: str,
    cm: CompressedGRU4Rec,
    valid_ndcg: float,
) -> SessionStudyRow:
    tb = cm.table_bytes()
    return SessionStudyRow(
        seed, float(ratio), method, fp32_bytes / tb, tb, cm.dense_bytes(), valid_ndcg,
        _score(cm, test),
    )  # fmt: skip


def session_study(
    train_model: Callable[[int], tuple[GRU4RecNetwork, dict[str, np.ndarray]]],
    train: SessionArrays,
    valid: SessionArrays,
    test: SessionArrays,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    ratios: Sequence[float] = (8, 16, 32),
    dense: Sequence[str] = ("fp16", "int8", "int4"),
    select: str | Sequence[str] = "valid_ndcg",
    fidelity_options: Mapping[str, Any] | None = None,
) -> list[SessionStudyRow]:
    """Compress the item table of GRU4Rec models at each budget; evaluate every plan.

    Args:
        train_model: ``seed -> (trained network, {signal: (n_items,) row importance})``.
        train: training sessions (for the score metric, :func:`hidden_gram`).
        valid: validation sessions: the recipe is chosen here
            (:func:`~gradtracer.compress.session_advice.advise_session`).
        test: test sessions: every reported figure.
        seeds: training seeds (one model each).
        ratios: budgets as fractions of the float32 table bytes.
        dense: GRU precisions measured with the float32 table (all matrices, then each
            matrix alone), rows with ``ratio = 0``.
        select: the selection rule of ``recipe`` (``valid_ndcg`` or ``fidelity``), or
            several: the first gives ``recipe``, each other one a ``recipe:<rule>`` row.
        fidelity_options: ``fidelity_k``, ``fidelity_measure``, ``fidelity_sessions`` of
            :func:`~gradtracer.compress.session_advice.advise_session`.

    Rows: ``fp32`` (the trained model), every method of :func:`table_candidates`, and
    ``recipe`` (the validation pick) per budget; ``dense_<p>`` and ``dense_<p>:<matrix>``.
    """
    from gradtracer.compress.session_advice import advise_session

    rules = [select] if isinstance(select, str) else list(select)
    rows: list[SessionStudyRow] = []
    for seed in seeds:
        model, signals = train_model(int(seed))
        model.eval()
        w = model.output_emb.weight.detach().cpu()
        fp32_bytes = int(w.numel()) * 4
        metric = hidden_gram(model, train)

        row = partial(_row, int(seed), fp32_bytes, test)
        base = CompressedGRU4Rec(model, name="fp32")
        rows.append(row(0.0, "fp32", base, _score(base, valid)["ndcg@10"]))
        for p in dense:
            cm = CompressedGRU4Rec(model, dense=p, name=f"dense_{p}")
            rows.append(row(0.0, f"dense_{p}", cm, _score(cm, valid)["ndcg@10"]))
            for key in dense_matrices(model):
                cm = CompressedGRU4Rec(model, dense={key: p}, name=f"dense_{p}:{key}")
                rows.append(row(0.0, f"dense_{p}:{key}", cm, _score(cm, valid)["ndcg@10"]))
        for ratio in ratios:
            budget = int(fp32_bytes // ratio)
            recipe, scored = advise_session(
                model, train, valid, budget, signals=signals, select=rules[0], metric=metric,
                fidelity="fidelity" in rules, **dict(fidelity_options or {}),
            )  # fmt: skip
            by_label = {}
            for c in scored:
                by_label[c.label] = r = row(ratio, c.label, c.model, c.valid_ndcg)
                r.fidelity = c.fidelity
            for i, rule in enumerate(rules):
                if i:
                    recipe, _ = advise_session(
                        model, train, valid, budget, select=rule, metric=metric, candidates=scored
                    )
                pick = by_label[recipe.method]
                rows.append(
                    replace(
                        pick, method="recipe" if i == 0 else f"recipe:{rule}", picked=recipe.method
                    )
                )
            rows.extend(by_label.values())
    return rows


def session_summary_markdown(summary: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of :func:`summarize_session_study` (one row per budget and method)."""
    lines = [
        "| budget | method | achieved | NDCG@10 change [95% CI] | Recall@20 change | recipe - method, p |",
        "|---|---|---|---|---|---|",
    ]
    for e in summary:
        budget = "dense" if e["ratio"] == 0 else f"{e['ratio']:g}x"
        lo, hi = e["rel_ndcg@10_ci"]
        diff = (
            f"{e['recipe_minus_ndcg@10']:+.4f}, p={e['p_ndcg@10']:.2g}" if "p_ndcg@10" in e else ""
        )
        picked = f" ({', '.join(e['picked'])})" if "picked" in e else ""
        lines.append(
            f"| {budget} | {e['method']}{picked} | {e['achieved_ratio']:.1f}x | "
            f"{100 * e['rel_ndcg@10']:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}] | "
            f"{100 * e['rel_recall@20']:+.1f}% | {diff} |"
        )
    return "\n".join(lines) + "\n"


def summarize_session_study(rows: Sequence[SessionStudyRow]) -> list[dict[str, Any]]:
    """Per (budget, method): mean relative change vs fp32 with a 95% t-interval over seeds,
    and the seed-paired t-test of the recipe against the method (NDCG@10 and Recall@20)."""
    from gradtracer.recsys.stats import aggregate_seeds

    base = {r.seed: r for r in rows if r.method == "fp32"}
    groups: dict[tuple[float, str], dict[int, SessionStudyRow]] = {}
    for r in rows:
        groups.setdefault((r.ratio, r.method), {})[r.seed] = r
    out = []
    for (ratio, method), by_seed in sorted(groups.items()):
        seeds = sorted(s for s in by_seed if s in base)
        entry: dict[str, Any] = {
            "ratio": ratio,
            "method": method,
            "n_seeds": len(seeds),
            "achieved_ratio": float(np.mean([by_seed[s].achieved_ratio for s in seeds])),
        }
        if method.startswith("recipe"):
            entry["picked"] = [by_seed[s].picked for s in seeds]
        recipe = groups.get((ratio, "recipe"), {})
        for m in ("ndcg@10", "recall@20"):
            vals = [by_seed[s].metrics[m] for s in seeds]
            rel = [by_seed[s].metrics[m] / base[s].metrics[m] - 1.0 for s in seeds]
            agg = aggregate_seeds(rel)
            entry[m] = float(np.mean(vals))
            entry[f"rel_{m}"] = agg.treatment.mean
            entry[f"rel_{m}_ci"] = [agg.treatment.ci_low, agg.treatment.ci_high]
            common = [s for s in seeds if s in recipe]
            if method not in ("recipe", "fp32") and ratio > 0 and len(common) >= 2:
                test = aggregate_seeds(
                    [recipe[s].metrics[m] for s in common], [by_seed[s].metrics[m] for s in common]
                ).test
                if test is not None:
                    entry[f"recipe_minus_{m}"] = test.mean_diff
                    entry[f"p_{m}"] = test.p_value
            if method.startswith("dense_") and len(seeds) >= 2:
                test = aggregate_seeds(vals, [base[s].metrics[m] for s in seeds]).test
                if test is not None:
                    entry[f"minus_fp32_{m}"] = test.mean_diff
                    entry[f"p_vs_fp32_{m}"] = test.p_value
        out.append(entry)
    return out
