"""Session-model recipes and artifacts: a compressed GRU4Rec as a first-class artifact.

A :class:`SessionRecipe` is the session counterpart of
:class:`~gradtracer.compress.recipe.Recipe`: a versioned, fingerprinted JSON plan naming
the model it is for (item count, GRU layers, table and matrix shapes), the byte budget
of the item tables, the chosen plan's per-table decisions (rows per precision and the
per-row precisions, or the rank and factor precision of a low-rank table, with the score
metric it was fitted in), the per-matrix GRU precision, every candidate with its
validation scores, the selection rule, predicted and measured quality. An edited recipe
(fingerprint mismatch) and a recipe for another model are refused with
:class:`~gradtracer.compress.recipe.RecipeError`.

:func:`advise_session` builds every plan of
:func:`~gradtracer.compress.session.table_candidates`, scores each on validation
sessions and returns the recipe of the winner; :func:`apply_session_recipe` rebuilds
exactly that :class:`~gradtracer.compress.session.CompressedGRU4Rec` from the float
model. :func:`save_session_artifact` / :func:`load_session_artifact` write and read it
as one ``.npz`` or ``.safetensors`` file with the manifest and per-array SHA-256 of the
MF artifacts (never pickled).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradtracer.compress.model import (
    ArtifactError,
    _digest,
    _file_format,
    _read_npz,
    _read_safetensors,
    _safetensors,
)
from gradtracer.compress.recipe import (
    RecipeError,
    _fingerprint,
    _json_default,
    decode_levels,
    encode_levels,
)
from gradtracer.compress.session import (
    CompressedGRU4Rec,
    dense_matrices,
    hidden_gram,
    metric_svd,
    table_candidates,
)
from gradtracer.compress.table import CompressedTable, LowRankTable, QuantizedTable
from gradtracer.compress.table import table_from_arrays as _table_from_arrays
from gradtracer.durable import atomic_savez, atomic_write_bytes, atomic_write_json
from gradtracer.findings import Finding, FindingType, Remedy, Report
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork
from gradtracer.recsys.sessions.batching import SessionArrays
from gradtracer.report.catalog import make_finding

__all__ = [
    "SELECTION_RULES",
    "SESSION_ARTIFACT_FORMAT",
    "SESSION_RECIPE_KIND",
    "SESSION_RECIPE_VERSION",
    "SessionCandidate",
    "SessionRecipe",
    "advise_session",
    "apply_session_recipe",
    "load_session_artifact",
    "load_session_recipe",
    "ranking_fidelity",
    "save_session_artifact",
    "session_hidden",
    "session_scores_fn",
    "split_half_selection",
    "session_recipe_finding",
    "session_recipe_report",
]

SESSION_RECIPE_KIND = "gradtracer.session_compression_recipe"
#: Version of the session recipe layout; bumped on an incompatible change.
SESSION_RECIPE_VERSION = "1.0"
#: ``format`` of a compressed GRU4Rec artifact's manifest.
SESSION_ARTIFACT_FORMAT = "gradtracer.compressed_gru4rec/1"
#: How :func:`advise_session` ranks candidates: validation NDCG@10, or fidelity to the
#: float model's rankings on validation sessions (see :func:`ranking_fidelity`).
SELECTION_RULES = ("valid_ndcg", "fidelity")


def weights_digest(model: GRU4RecNetwork) -> str:
    """SHA-256 of the model's float item tables (in name order)."""
    import hashlib

    h = hashlib.sha256()
    for key, layer in sorted(model.embedding_layers().items()):
        h.update(key.encode())
        h.update(_digest(layer.weight.detach().to("cpu", torch.float32).numpy()).encode())
    return h.hexdigest()


def model_signature(model: GRU4RecNetwork) -> dict[str, Any]:
    """What a session recipe is for: item count, GRU layers, table and matrix shapes, and
    the SHA-256 of the float item tables (:func:`weights_digest`)."""
    return {
        "type": "gru4rec",
        "n_items": int(model.n_items),
        "layers": [int(h) for h in model.config.layers],
        "tables": {
            k: {"n_rows": int(t.weight.shape[0]), "dim": int(t.weight.shape[1])}
            for k, t in model.embedding_layers().items()
        },
        "dense": {k: [int(s) for s in w.shape] for k, w in dense_matrices(model).items()},
        "tables_sha256": weights_digest(model),
    }


@dataclass
class SessionRecipe:
    """One compression plan for a GRU4Rec model.

    Attributes:
        model: :func:`model_signature` of the float model the plan is for.
        budget_bytes: the byte budget of the item tables.
        fp32_bytes: bytes of the float32 item tables.
        method: the chosen plan's label (:func:`~gradtracer.compress.session.table_candidates`).
        params: ``selection`` rule, ``metric`` (``score`` or ``row``), and for score-metric
            low-rank plans the Gram matrix (``score_metric``: base64 little-endian float64).
        decisions: per table: bytes, byte breakdown, the driving signal and either rows
            per precision (+ base64 4-bit ``row_levels``) or ``rank`` / ``precision`` / ``basis``.
        dense_layers: per GRU matrix: ``name``, ``precision``, ``bytes``, ``driver``.
        candidates: every plan considered: label, bytes, validation scores.
        predicted: validation quality of the chosen plan and of the float model.
        measured: test quality after evaluation (empty until then).
        driver: one sentence: why this plan won.
    """

    model: dict[str, Any]
    budget_bytes: int
    fp32_bytes: int
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    dense_layers: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    predicted: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    driver: str = ""

    @property
    def ratio(self) -> float:
        """``fp32_bytes / budget_bytes``."""
        return self.fp32_bytes / self.budget_bytes

    def body(self) -> dict[str, Any]:
        return {
            "kind": SESSION_RECIPE_KIND,
            "recipe_version": SESSION_RECIPE_VERSION,
            "model": self.model,
            "budget_bytes": int(self.budget_bytes),
            "fp32_bytes": int(self.fp32_bytes),
            "method": self.method,
            "params": self.params,
            "decisions": self.decisions,
            "dense_layers": self.dense_layers,
            "candidates": self.candidates,
            "predicted": self.predicted,
            "measured": self.measured,
            "driver": self.driver,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with its ``fingerprint``."""
        body = json.loads(
            json.dumps(self.body(), sort_keys=True, allow_nan=False, default=_json_default)
        )
        body["fingerprint"] = _fingerprint(body)
        return body

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of everything but the fingerprint."""
        return str(self.to_dict()["fingerprint"])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "recipe") -> SessionRecipe:
        """Validate and read a session recipe dict (kind, version, fingerprint, fields)."""
        if not isinstance(data, Mapping):
            raise RecipeError(
                f"{source}: a recipe must be a JSON object, got {type(data).__name__}"
            )
        if data.get("kind") != SESSION_RECIPE_KIND:
            raise RecipeError(
                f"{source}: kind {data.get('kind')!r}, expected {SESSION_RECIPE_KIND!r}"
            )
        if str(data.get("recipe_version")) != SESSION_RECIPE_VERSION:
            raise RecipeError(
                f"{source}: recipe_version {data.get('recipe_version')!r}, this GradTracer "
                f"reads {SESSION_RECIPE_VERSION}"
            )
        body = {k: v for k, v in data.items() if k != "fingerprint"}
        if data.get("fingerprint") != _fingerprint(body):
            raise RecipeError(
                f"{source}: fingerprint does not match the content (the recipe was edited or damaged)"
            )
        try:
            return cls(
                model=dict(data["model"]),
                budget_bytes=int(data["budget_bytes"]),
                fp32_bytes=int(data["fp32_bytes"]),
                method=str(data["method"]),
                params=dict(data.get("params", {})),
                decisions={str(k): dict(v) for k, v in data["decisions"].items()},
                dense_layers=[dict(d) for d in data.get("dense_layers", [])],
                candidates=list(data.get("candidates", [])),
                predicted=dict(data.get("predicted", {})),
                measured=dict(data.get("measured", {})),
                driver=str(data.get("driver", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecipeError(f"{source}: malformed session recipe ({exc!r})") from exc

    def save(self, path: str | Path) -> Path:
        """Write the recipe as JSON (atomic)."""
        return atomic_write_json(path, self.to_dict())

    def check_model(self, model: GRU4RecNetwork, *, same_weights: bool = True) -> None:
        """Raise :class:`RecipeError` unless ``model`` is the model the recipe is for: the
        same shapes and (with ``same_weights``, the default) the same float item tables."""
        got = model_signature(model)
        keys = ["type", "n_items", "layers", "tables", "dense"]
        for key in [*keys, "tables_sha256"] if same_weights else keys:
            if got[key] != self.model.get(key):
                raise RecipeError(
                    f"recipe is for a model with {key} {_short(self.model.get(key))}, this one "
                    f"has {_short(got[key])} (a recipe made for another model)"
                )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_session_recipe(path: str | Path) -> SessionRecipe:
    """Read and validate a session recipe JSON file (errors name the file)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such recipe file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{p}: not valid JSON ({exc})") from exc
    return SessionRecipe.from_dict(data, source=str(p))


# --- decisions ------------------------------------------------------------------------
def _encode_metric(metric: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(metric, dtype="<f8").tobytes()).decode("ascii")


def _decode_metric(text: str, dim: int) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != dim * dim * 8:
        raise RecipeError(
            f"score_metric holds {len(raw) // 8} values, a {dim}x{dim} metric needs {dim * dim}"
        )
    return np.frombuffer(raw, dtype="<f8").reshape(dim, dim).copy()


def _signal_of(label: str) -> str:
    if label.startswith("mixed_score_"):
        return f"score metric weighted by {label.removeprefix('mixed_score_')}"
    if label == "mixed_score":
        return "score metric, unweighted"
    if label == "mixed_rowerror":
        return "row error, unweighted"
    if label.startswith("prune_"):
        return f"{label.removeprefix('prune_')} pruning"
    if label.startswith("score_svd"):
        return "score-metric low rank"
    if label == "svd":
        return "truncated SVD"
    return "uniform precision"


def describe_table(table: CompressedTable, label: str) -> dict[str, Any]:
    """The decision entry of one compressed table (bytes, breakdown, what to rebuild)."""
    entry: dict[str, Any] = {
        "bytes": int(table.nbytes()),
        "breakdown": {k: int(v) for k, v in table.byte_breakdown().items()},
        "driver": _signal_of(label),
    }
    if isinstance(table, QuantizedTable):
        entry["type"] = "quantized"
        entry["rows_by_precision"] = table.level_counts()
        if len(table.levels) > 1:
            from gradtracer.compress.rowwise import PRECISIONS

            levels = np.asarray(PRECISIONS, dtype=object)[table.row_levels()].astype(str)
            entry["row_levels"] = encode_levels(levels)
    elif isinstance(table, LowRankTable):
        entry["type"] = "lowrank"
        entry["rank"] = int(table.rank)
        entry["precision"] = str(table.factors.levels[0])
        entry["basis"] = "score" if label.startswith("score_svd") else "plain"
    else:
        raise TypeError(f"cannot describe a {type(table).__name__} in a session recipe")
    return entry


def _build_table(
    name: str, entry: Mapping[str, Any], weight: torch.Tensor, metric: np.ndarray | None
) -> CompressedTable:
    kind = entry.get("type")
    n_rows = int(weight.shape[0])
    if kind == "quantized":
        if "row_levels" in entry:
            levels: Any = decode_levels(str(entry["row_levels"]), n_rows)
        elif len(entry.get("rows_by_precision", {})) == 1:
            levels = str(next(iter(entry["rows_by_precision"])))
        else:
            raise RecipeError(f"recipe decision for table {name!r} has no row precisions")
        return QuantizedTable.from_weight(weight, levels, name=name)
    if kind == "lowrank":
        basis = entry.get("basis")
        if basis == "score" and metric is None:
            raise RecipeError(
                f"table {name!r}: a score-metric low-rank plan needs params.score_metric"
            )
        return metric_svd(
            weight,
            int(entry["rank"]),
            metric if basis == "score" else None,
            precision=str(entry["precision"]),
            name=name,
        )
    raise RecipeError(f"recipe decision for table {name!r} has unknown type {kind!r}")


def apply_session_recipe(
    recipe: SessionRecipe, model: GRU4RecNetwork, *, same_weights: bool = True
) -> CompressedGRU4Rec:
    """Build the :class:`CompressedGRU4Rec` ``recipe`` describes from the float ``model``.

    Args:
        recipe: the plan.
        model: the float GRU4Rec it was advised for.
        same_weights: refuse a model whose float item tables differ from the advised
            one's (default True); False applies the per-row decisions to a model of the
            same shapes (e.g. retrained), whose rows they were not chosen for.

    Raises:
        RecipeError: a model of another shape (or other weights), a damaged decision, or
            a result that does not hold the bytes the recipe recorded (or is over its budget).
    """
    recipe.check_model(model, same_weights=same_weights)
    metric = None
    if "score_metric" in recipe.params:
        metric = _decode_metric(str(recipe.params["score_metric"]), int(model.config.layers[-1]))
    layers = model.embedding_layers()
    tables: dict[str, CompressedTable] = {}
    for name, entry in recipe.decisions.items():
        if name not in layers:
            raise RecipeError(f"recipe decides table {name!r}; the model has {sorted(layers)}")
        w = layers[name].weight.detach().to("cpu", torch.float32)
        table = _build_table(name, entry, w, metric)
        if table.nbytes() != int(entry["bytes"]):
            raise RecipeError(
                f"table {name!r}: the applied plan holds {table.nbytes()} bytes, the recipe "
                f"recorded {entry['bytes']} (the float model differs from the one advised)"
            )
        tables[name] = table
    dense = {str(d["name"]): str(d["precision"]) for d in recipe.dense_layers}
    cm = CompressedGRU4Rec(
        model, tables, dense=dense, name=recipe.method,
        info={"method": recipe.method, "recipe_fingerprint": recipe.fingerprint},
    )  # fmt: skip
    if cm.table_bytes() > recipe.budget_bytes:
        raise RecipeError(
            f"applied recipe's tables hold {cm.table_bytes()} bytes, over its budget of "
            f"{recipe.budget_bytes}"
        )
    return cm


# --- advice ---------------------------------------------------------------------------
@dataclass
class SessionCandidate:
    """One plan :func:`advise_session` considered, with its validation scores."""

    label: str
    model: CompressedGRU4Rec
    valid_ndcg: float
    fidelity: float | None = None

    def score(self, rule: str) -> float:
        value = self.valid_ndcg if rule == "valid_ndcg" else self.fidelity
        return float("-inf") if value is None else float(value)


def session_hidden(model: Any, sessions: SessionArrays, *, batch_size: int = 256) -> torch.Tensor:
    """``(n_predictions, d)`` top GRU states of ``model`` (GRU4Rec or
    :class:`CompressedGRU4Rec`) at every prediction of ``sessions``, in batching order."""
    from gradtracer.recsys.models.gru4rec.network import adjust_state
    from gradtracer.recsys.sessions.batching import iterate_session_parallel

    state = model.init_state(min(batch_size, max(sessions.n_sessions, 1)))
    out = []
    with torch.no_grad():
        for batch in iterate_session_parallel(sessions, batch_size):
            state = adjust_state(state, batch)
            out.append(model.hidden(batch.inputs, state).to("cpu", torch.float32))
    if not out:
        raise ValueError("sessions have no prediction (every session has one event)")
    return torch.cat(out)


def session_scores_fn(
    model: CompressedGRU4Rec, sessions: SessionArrays
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``prediction index (B,) -> (B, n_items)`` scores of ``model`` at the predictions of
    ``sessions`` (states computed once, scores on demand)."""
    h = session_hidden(model, sessions)
    return lambda idx: model.output_scores(h[idx])


def ranking_fidelity(
    candidate: CompressedGRU4Rec,
    reference: CompressedGRU4Rec | Callable[[torch.Tensor], torch.Tensor],
    sessions: SessionArrays,
    *,
    k: int = 10,
    measure: str = "ndcg",
) -> float:
    """Mean fidelity (0-1) of ``candidate``'s next-item top-``k`` to ``reference``'s over
    every prediction in ``sessions``
    (:func:`~gradtracer.compress.fidelity.topk_fidelity`, ``measure`` ``ndcg``,
    ``overlap`` or ``expected``); no labels are used. ``reference`` may be a
    :func:`session_scores_fn` already built."""
    from gradtracer.compress.fidelity import topk_fidelity

    ref = (
        session_scores_fn(reference, sessions)
        if isinstance(reference, CompressedGRU4Rec)
        else reference
    )
    cand = session_scores_fn(candidate, sessions)
    per = topk_fidelity(ref, cand, np.arange(sessions.n_predictions), k=k, measure=measure)
    return float(np.mean(per))


def _valid_ndcg(model: Any, sessions: SessionArrays) -> float:
    from gradtracer.recsys.sessions.evaluate import evaluate_next_item

    return float(evaluate_next_item(model, sessions, ks=(10,)).mean["ndcg@10"])


def advise_session(
    model: GRU4RecNetwork,
    train: SessionArrays,
    valid: SessionArrays,
    budget_bytes: int,
    *,
    signals: Mapping[str, np.ndarray] | None = None,
    dense: str | Mapping[str, str] = "fp32",
    select: str = "valid_ndcg",
    fidelity_sessions: SessionArrays | None = None,
    fidelity_k: int = 10,
    fidelity_measure: str = "ndcg",
    metric: np.ndarray | None = None,
    fidelity: bool | None = None,
    candidates: Sequence[SessionCandidate] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[SessionRecipe, list[SessionCandidate]]:
    """Build every item-table plan within ``budget_bytes``, score each on validation, pick one.

    Args:
        model: the trained float GRU4Rec (constrained embedding: one item table).
        train: training sessions (the score metric, :func:`hidden_gram`).
        valid: validation sessions (NDCG@10 of every candidate).
        budget_bytes: bytes the item table may take.
        signals: ``{name: (n_items,) row importance}`` weighting score-metric allocations
            (``frequency`` also drives frequency pruning).
        dense: GRU matrix precision(s) of every candidate (default fp32).
        select: ``"valid_ndcg"`` (default) or ``"fidelity"``: agreement with the float
            model's rankings (:func:`ranking_fidelity`) on ``fidelity_sessions``
            (default ``valid``), at cut-off ``fidelity_k`` by ``fidelity_measure``.
        metric: the score metric, if already computed.
        fidelity: also measure fidelity when not selecting by it (default: only then).
        candidates: plans already built and scored by an earlier call (same model,
            budget and sessions): only the selection runs.
        progress: called with one line per candidate.

    Returns:
        ``(recipe, candidates)``; the recipe's ``candidates`` list every plan's scores.

    Raises:
        ValueError: an unknown ``select`` rule.
        BudgetError: no plan fits ``budget_bytes``.
    """
    from gradtracer.compress.allocate import BudgetError

    if select not in SELECTION_RULES:
        raise ValueError(f"select must be one of {SELECTION_RULES}, got {select!r}")
    model.eval()
    layers = model.embedding_layers()
    if list(layers) != ["output_emb"]:
        raise ValueError(
            f"advise_session compresses the one item table of a constrained-embedding GRU4Rec; "
            f"this model has {sorted(layers)}"
        )
    g = hidden_gram(model, train) if metric is None else np.asarray(metric, dtype=np.float64)
    w = model.output_emb.weight.detach().to("cpu", torch.float32)
    fp32_bytes = int(w.numel()) * 4
    reference = CompressedGRU4Rec(model, dense=dense, name="float")
    float_ndcg = _valid_ndcg(reference, valid)
    fid_on = valid if fidelity_sessions is None else fidelity_sessions
    want_fid = select == "fidelity" or bool(fidelity)
    ref_fn = session_scores_fn(reference, fid_on) if want_fid and candidates is None else None
    scored: list[SessionCandidate] = list(candidates or [])
    if candidates is None:
        cands = table_candidates(w, int(budget_bytes), metric=g, signals=signals)
        for label, table in cands.items():
            cm = CompressedGRU4Rec(model, {"output_emb": table}, dense=dense, name=label)
            fid = (
                ranking_fidelity(cm, ref_fn, fid_on, k=fidelity_k, measure=fidelity_measure)
                if ref_fn is not None
                else None
            )
            scored.append(SessionCandidate(label, cm, _valid_ndcg(cm, valid), fid))
            if progress is not None:
                progress(
                    f"  {label}: {cm.table_bytes()} bytes, validation NDCG@10 "
                    f"{scored[-1].valid_ndcg:.4f}"
                )
    elif want_fid and any(c.fidelity is None for c in scored):
        raise ValueError("select='fidelity' needs candidates scored with fidelity=True")
    fitting = [c for c in scored if c.model.table_bytes() <= budget_bytes]
    if not fitting:
        smallest = min((c.model.table_bytes() for c in scored), default=None)
        raise BudgetError(
            f"no item-table plan fits {budget_bytes} bytes (smallest plan built: {smallest})"
        )
    ranked = sorted(fitting, key=lambda c: -c.score(select))
    best = ranked[0]
    table = best.model.tables["output_emb"]
    params: dict[str, Any] = {
        "selection": select,
        **({"fidelity": f"{fidelity_measure}@{fidelity_k}"} if select == "fidelity" else {}),
        "metric": "score" if best.label.startswith(("mixed_score", "score_svd")) else "row",
    }
    if isinstance(table, LowRankTable) and best.label.startswith("score_svd"):
        params["score_metric"] = _encode_metric(g)
    runner = (
        f"; second {ranked[1].label} ({ranked[1].score(select):.4f})" if len(ranked) > 1 else ""
    )
    recipe = SessionRecipe(
        model=model_signature(model),
        budget_bytes=int(budget_bytes),
        fp32_bytes=fp32_bytes,
        method=best.label,
        params=params,
        decisions={"output_emb": describe_table(table, best.label)},
        dense_layers=[
            {
                "name": k,
                "precision": p,
                "bytes": int(best.model.dense_tables[k].nbytes()),
                "driver": "given" if p != "fp32" else "kept at float32",
            }
            for k, p in best.model.dense_precision.items()
        ],
        candidates=[
            {
                "method": c.label,
                "bytes": int(c.model.table_bytes()),
                "valid_ndcg@10": c.valid_ndcg,
                **({} if c.fidelity is None else {"fidelity": c.fidelity}),
            }
            for c in scored
        ],
        predicted={
            "valid_ndcg@10": best.valid_ndcg,
            "float_valid_ndcg@10": float_ndcg,
            "relative_loss": (1.0 - best.valid_ndcg / float_ndcg) if float_ndcg > 0 else None,
            **({} if best.fidelity is None else {"fidelity": best.fidelity}),
        },
        driver=(
            f"{best.label} ({_signal_of(best.label)}) has the best {select.replace('_', ' ')} "
            f"({best.score(select):.4f}) of {len(fitting)} plans within the budget{runner}"
        ),
    )
    best.model.info.update({"method": best.label, "recipe_fingerprint": recipe.fingerprint})
    return recipe, scored


# --- findings -------------------------------------------------------------------------
def session_recipe_finding(recipe: SessionRecipe, *, subject: str = "gru4rec") -> Finding:
    """The ``COMPRESSION_CANDIDATE`` finding that carries ``recipe`` (JSON in the evidence)."""
    d = recipe.to_dict()
    loss = recipe.predicted.get("relative_loss")
    measured = recipe.measured.get("relative_loss")
    change = "n/a" if loss is None else f"{-100 * float(loss):+.1f}%"
    dense = ", ".join(f"{x['name']}={x['precision']}" for x in recipe.dense_layers)
    premise = (
        f"At {recipe.ratio:.1f}x smaller item tables ({recipe.budget_bytes} of "
        f"{recipe.fp32_bytes} bytes) the chosen plan is {recipe.method}; GRU matrices {dense}; "
        f"validation NDCG@10 change vs float32 {change}"
        + ("" if measured is None else f", measured on test {-100 * float(measured):+.1f}%")
        + "."
    )
    evidence: dict[str, float | int | str | bool | None] = {
        "recipe_version": SESSION_RECIPE_VERSION,
        "method": recipe.method,
        "budget_bytes": int(recipe.budget_bytes),
        "fp32_bytes": int(recipe.fp32_bytes),
        "compression_ratio": round(recipe.ratio, 3),
        "predicted_relative_loss": None if loss is None else float(loss),
        "measured_relative_loss": None if measured is None else float(measured),
        "selection": str(recipe.params.get("selection", "")),
        "driver": recipe.driver,
        "fingerprint": d["fingerprint"],
        "recipe_json": json.dumps(d, sort_keys=True, separators=(",", ":")),
    }
    remedy = Remedy(
        "apply_compression_recipe",
        {
            "method": recipe.method,
            "budget_bytes": int(recipe.budget_bytes),
            "fingerprint": d["fingerprint"],
        },
    )
    return make_finding(
        FindingType.COMPRESSION_CANDIDATE,
        subject=subject,
        premise=premise,
        confidence=0.9 if recipe.measured else 0.7,
        evidence=evidence,
        remedy=remedy,
    )


def session_recipe_report(recipes: Sequence[SessionRecipe], *, subject: str = "gru4rec") -> Report:
    """A ``compression`` report: one finding per recipe, the recipes in ``stats``."""
    return Report(
        kind="compression",
        subject=subject,
        stats={"recipes": [r.to_dict() for r in recipes]},
        findings=[session_recipe_finding(r, subject=subject) for r in recipes],
    )


# --- artifacts ------------------------------------------------------------------------
def save_session_artifact(
    model: CompressedGRU4Rec, path: str | Path, *, file_format: str | None = None
) -> Path:
    """Write ``model`` as one checksummed ``.npz`` or ``.safetensors`` file (atomic).

    The arrays are every table's and GRU matrix's packed arrays plus the float32 biases;
    the manifest (format, GRU4Rec config, table and matrix metadata, byte count, info,
    SHA-256 of every array) is the ``__manifest__`` entry of an npz or the
    ``gradtracer`` metadata of a safetensors header. ``file_format``: ``"npz"`` or
    ``"safetensors"``, default by suffix.
    """
    p = Path(path)
    fmt = _file_format(p, file_format)
    arrays: dict[str, np.ndarray] = {}
    tables, dense = {}, {}
    for key, t in model.tables.items():
        meta, arr = t.to_arrays(f"table/{key}/")
        tables[key] = meta
        arrays.update(arr)
    for key, q in model.dense_tables.items():
        meta, arr = q.to_arrays(f"dense/{key}/")
        dense[key] = meta
        arrays.update(arr)
    for key, value in model.float_arrays().items():
        arrays[f"float/{key}"] = np.ascontiguousarray(value, dtype=np.float32)
    manifest = {
        "format": SESSION_ARTIFACT_FORMAT,
        "name": model.name,
        "n_items": int(model.n_items),
        "config": model.config.to_dict(),
        "tables": tables,
        "dense": dense,
        "info": model.info,
        "nbytes": int(model.nbytes()),
        "sha256": {k: _digest(v) for k, v in sorted(arrays.items())},
    }
    text = json.dumps(manifest, sort_keys=True, allow_nan=False, default=_json_default)
    if fmt == "safetensors":
        st = _safetensors(p)
        data = st.save(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={"gradtracer": text}
        )
        return atomic_write_bytes(p, data)
    arrays["__manifest__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return atomic_savez(p, **arrays)


def load_session_artifact(
    path: str | Path, *, recipe: SessionRecipe | None = None
) -> CompressedGRU4Rec:
    """Read a :func:`save_session_artifact` file, verifying its format and every checksum.

    Args:
        path: the artifact (npz or safetensors, told apart by content).
        recipe: optionally the recipe it should have been built from: the model's shapes
            and the recorded recipe fingerprint must match.

    Raises:
        FileNotFoundError: no such file.
        ArtifactError: not a compressed GRU4Rec artifact (an MF artifact included), a
            missing or extra array, a checksum mismatch (the array is named), parts that
            do not fit together, or (with ``recipe``) another recipe's or model's artifact.
    """
    from gradtracer.recsys.models.gru4rec.config import GRU4RecConfig

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such compressed artifact")
    with open(p, "rb") as fh:
        head = fh.read(4)
    manifest, arrays = _read_npz(p) if head.startswith(b"PK") else _read_safetensors(p)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{p}: manifest is not a JSON object")
    if manifest.get("format") != SESSION_ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{p}: format {manifest.get('format')!r}, expected {SESSION_ARTIFACT_FORMAT!r}"
        )
    sums = manifest.get("sha256", {})
    missing = sorted(set(sums) - set(arrays))
    extra = sorted(set(arrays) - set(sums))
    if missing or extra:
        raise ArtifactError(f"{p}: arrays missing {missing} / unexpected {extra}")
    for key, want in sums.items():
        if _digest(arrays[key]) != want:
            raise ArtifactError(
                f"{p}: array {key!r} does not match its checksum (damaged or edited)"
            )
    try:
        config = GRU4RecConfig.from_dict(dict(manifest["config"]))
        skeleton = GRU4RecNetwork(int(manifest["n_items"]), config)
        params = dict(skeleton.named_parameters())
        with torch.no_grad():
            for key in sorted(k for k in arrays if k.startswith("float/")):
                name = key.removeprefix("float/")
                target = skeleton.output_bias.weight if name == "output_bias" else params[name]
                value = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32).copy())
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"float array {name!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)}"
                    )
                target.copy_(value)
        tables = {
            k: _table_from_arrays(m, arrays, f"table/{k}/") for k, m in manifest["tables"].items()
        }
        dense: dict[str, str | QuantizedTable] = {
            k: QuantizedTable.from_arrays(m, arrays, f"dense/{k}/")
            for k, m in manifest["dense"].items()
        }
        model = CompressedGRU4Rec(
            skeleton, tables, dense=dense, name=str(manifest.get("name", "compressed_gru4rec")),
            info=manifest.get("info"),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{p}: {exc}") from exc
    if model.nbytes() != manifest.get("nbytes"):
        raise ArtifactError(
            f"{p}: parts hold {model.nbytes()} bytes, manifest says {manifest.get('nbytes')}"
        )
    if recipe is not None:
        _check_recipe(p, model, skeleton, recipe)
    return model


def _check_recipe(
    p: Path, model: CompressedGRU4Rec, skeleton: GRU4RecNetwork, recipe: SessionRecipe
) -> None:
    try:
        recipe.check_model(skeleton, same_weights=False)
    except RecipeError as exc:
        raise ArtifactError(f"{p}: {exc}") from None
    got = model.info.get("recipe_fingerprint")
    if got != recipe.fingerprint:
        raise ArtifactError(
            f"{p}: built from recipe {str(got)[:12]}..., not from this recipe "
            f"({recipe.fingerprint[:12]}...)"
        )


# --- choosing the selection rule ------------------------------------------------------
def _parse_rule(rule: str) -> tuple[str, int]:
    if rule == "valid_ndcg":
        return rule, 10
    kind, _, spec = rule.partition(":")
    measure, _, k = spec.partition("@")
    if kind != "fidelity" or not measure or not k.isdigit():
        raise ValueError(
            f"rule must be 'valid_ndcg' or 'fidelity:<measure>@<k>' (e.g. fidelity:ndcg@10), got {rule!r}"
        )
    return measure, int(k)


def split_half_selection(
    model: GRU4RecNetwork,
    train: SessionArrays,
    valid: SessionArrays,
    budgets: Sequence[int],
    *,
    signals: Mapping[str, np.ndarray] | None = None,
    rules: Sequence[str] = ("valid_ndcg", "fidelity:ndcg@10", "fidelity:overlap@10"),
    random_state: int = 0,
    metric: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Compare plan-selection rules on validation data alone, by split halves.

    The validation sessions are cut at random into two halves. For each budget every
    plan of :func:`~gradtracer.compress.session.table_candidates` is scored on both
    halves; each rule picks a plan on one half, and the pick's NDCG@10 on the **other**
    half, relative to the float model's there, is the rule's outcome (both directions).
    The ``oracle`` rows are the best plan of the other half (an upper bound).

    Args:
        model: the trained float GRU4Rec.
        train: training sessions (the score metric).
        valid: validation sessions (split in two; test data is never touched).
        budgets: item-table byte budgets.
        signals: row signals for the weighted allocations.
        rules: ``valid_ndcg`` or ``fidelity:<measure>@<k>`` (measures of
            :func:`ranking_fidelity`).
        random_state: seed of the session split.
        metric: the score metric, if already computed.

    Returns:
        One row per (budget, direction, rule): ``budget``, ``direction`` (``A->B`` or
        ``B->A``), ``rule``, ``picked``, ``change`` (relative NDCG@10 on the other half).
    """
    from gradtracer.compress.session import subset_sessions

    parsed = {r: _parse_rule(r) for r in rules}
    rng = np.random.default_rng(random_state)
    first = rng.permutation(valid.n_sessions) % 2 == 0
    halves = {"A": subset_sessions(valid, first), "B": subset_sessions(valid, ~first)}
    g = hidden_gram(model, train) if metric is None else np.asarray(metric, dtype=np.float64)
    w = model.output_emb.weight.detach().to("cpu", torch.float32)
    ref = CompressedGRU4Rec(model, name="float")
    ref_fns = {h: session_scores_fn(ref, s) for h, s in halves.items()}
    base = {h: _valid_ndcg(ref, s) for h, s in halves.items()}
    out: list[dict[str, Any]] = []
    for budget in budgets:
        scores: list[dict[Any, Any]] = []
        for label, table in table_candidates(w, int(budget), metric=g, signals=signals).items():
            cm = CompressedGRU4Rec(model, {"output_emb": table}, name=label)
            if cm.table_bytes() > budget:
                continue
            entry: dict[Any, Any] = {"label": label}
            for h, s in halves.items():
                entry[("ndcg", h)] = _valid_ndcg(cm, s)
                for r, (measure, k) in parsed.items():
                    if r != "valid_ndcg":
                        entry[(r, h)] = ranking_fidelity(cm, ref_fns[h], s, k=k, measure=measure)
            scores.append(entry)
        for pick_on, judge_on in (("A", "B"), ("B", "A")):
            for r in [*rules, "oracle"]:
                key = ("ndcg", judge_on if r == "oracle" else pick_on)
                if r not in ("valid_ndcg", "oracle"):
                    key = (r, pick_on)
                best = max(scores, key=lambda e, key=key: e[key])  # type: ignore[misc]
                out.append(
                    {
                        "budget": int(budget),
                        "direction": f"{pick_on}->{judge_on}",
                        "rule": r,
                        "picked": best["label"],
                        "change": best[("ndcg", judge_on)] / base[judge_on] - 1.0
                        if base[judge_on] > 0
                        else float("nan"),
                    }
                )
    return out
