"""Session-model recipes: a versioned, fingerprinted plan for a compressed GRU4Rec.

A :class:`SessionRecipe` is the session counterpart of
:class:`~gradtracer.compress.recipe.Recipe`: a JSON plan naming the model it is for
(item count, GRU layers, table and matrix shapes, the SHA-256 of the float item table),
the byte budget of the item tables, the chosen plan's per-table decisions (rows per
precision and the per-row precisions, or the rank and factor precision of a low-rank
table, with the score metric it was fitted in), the per-matrix GRU precision, every
candidate with its validation scores, the selection rule, predicted and measured
quality. An edited recipe (fingerprint mismatch) and a recipe for another model are
refused with :class:`~gradtracer.compress.recipe.RecipeError`.
:func:`apply_session_recipe` rebuilds exactly the
:class:`~gradtracer.compress.session.CompressedGRU4Rec` the recipe describes; the
recipe is made by :func:`~gradtracer.compress.session_advice.advise_session` and the
compressed model saved by :mod:`~gradtracer.compress.session_artifact`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradtracer.compress.model import _digest
from gradtracer.compress.recipe import (
    RecipeError,
    check_envelope,
    entry_levels,
    precision_entry,
    read_recipe_json,
    signed,
)
from gradtracer.compress.session import CompressedGRU4Rec, dense_matrices, metric_svd
from gradtracer.compress.table import CompressedTable, LowRankTable, QuantizedTable
from gradtracer.durable import atomic_write_json
from gradtracer.findings import Finding, FindingType, Remedy, Report
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork
from gradtracer.report.catalog import make_finding

__all__ = [
    "SESSION_RECIPE_KIND",
    "SESSION_RECIPE_VERSION",
    "SessionRecipe",
    "apply_session_recipe",
    "describe_table",
    "load_session_recipe",
    "model_signature",
    "session_recipe_finding",
    "session_recipe_report",
    "weights_digest",
]

SESSION_RECIPE_KIND = "gradtracer.session_compression_recipe"
#: Version of the session recipe layout; bumped on an incompatible change.
SESSION_RECIPE_VERSION = "1.0"


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
        return signed(self.body())

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of everything but the fingerprint."""
        return str(self.to_dict()["fingerprint"])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "recipe") -> SessionRecipe:
        """Validate and read a session recipe dict (kind, version, fingerprint, fields)."""
        check_envelope(
            data, source=source, kind=SESSION_RECIPE_KIND, version=SESSION_RECIPE_VERSION
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
    return SessionRecipe.from_dict(read_recipe_json(path), source=str(path))


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
        entry.update(precision_entry(table))
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
        levels = entry_levels(name, entry, n_rows)
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
