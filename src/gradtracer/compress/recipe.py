"""The compression recipe: a versioned, checksummed, machine-readable plan, and applying it.

A recipe names the tables it is for (rows and dimension), the byte budget, the method
and its parameters, the per-row precisions where the method has them (4-bit codes,
base64), the signal that drove each decision, the candidates it was chosen from with
their validation quality, the predicted quality and, after evaluation, the measured
one. ``fingerprint`` is the SHA-256 of the canonical JSON of everything else, so an
edited recipe is refused. :func:`apply_recipe` rebuilds exactly the compressed model
the recipe describes from the float tables.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.compress.model import CompressedMF
from gradtracer.compress.rowwise import PRECISIONS
from gradtracer.compress.table import QuantizedTable, _pack_codes, _unpack_codes
from gradtracer.durable import atomic_write_json
from gradtracer.findings import Finding, FindingType, Remedy, Report
from gradtracer.report.catalog import make_finding

__all__ = [
    "RECIPE_KIND",
    "RECIPE_VERSION",
    "Recipe",
    "RecipeError",
    "apply_recipe",
    "decode_levels",
    "encode_levels",
    "load_recipe",
    "recipe_finding",
    "recipe_report",
]

RECIPE_KIND = "gradtracer.compression_recipe"
#: Version of the recipe layout; bumped on an incompatible change.
RECIPE_VERSION = "1.0"
_METHODS = ("uniform", "mixed", "score_svd", "table_svd", "prune")


class RecipeError(ValueError):
    """A recipe that is malformed, tampered with, or meant for other tables."""


def encode_levels(levels: np.ndarray) -> str:
    """``(n,)`` precision names -> base64 of 4-bit codes (indices into :data:`PRECISIONS`)."""
    idx = np.asarray([PRECISIONS.index(p) for p in np.asarray(levels).tolist()], dtype=np.uint8)
    return base64.b64encode(_pack_codes(idx, 4).tobytes()).decode("ascii")


def decode_levels(text: str, n_rows: int) -> np.ndarray:
    """Inverse of :func:`encode_levels`: ``(n_rows,)`` precision names."""
    import torch

    raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    if raw.size != -(-n_rows // 2):
        raise RecipeError(f"row precisions hold {raw.size * 2} rows, the table has {n_rows}")
    codes = _unpack_codes(torch.from_numpy(raw.copy()), 4)[:n_rows].numpy()
    if codes.max(initial=0) >= len(PRECISIONS):
        raise RecipeError("row precisions name a precision that does not exist")
    return np.asarray(PRECISIONS, dtype=object)[codes].astype(str)


def precision_entry(table: QuantizedTable) -> dict[str, Any]:
    """A decision's row precisions: ``rows_by_precision`` and, for a mixed table, the
    encoded per-row ``row_levels`` (:func:`encode_levels`, from the stored index map)."""
    entry: dict[str, Any] = {"rows_by_precision": table.level_counts()}
    if len(table.levels) > 1:
        codes = table.row_levels().astype(np.uint8)
        entry["row_levels"] = base64.b64encode(_pack_codes(codes, 4).tobytes()).decode("ascii")
    return entry


def entry_levels(name: str, entry: Mapping[str, Any], n_rows: int) -> Any:
    """Inverse of :func:`precision_entry`: per-row precision names, or the one precision."""
    if "row_levels" in entry:
        return decode_levels(str(entry["row_levels"]), n_rows)
    if len(entry.get("rows_by_precision", {})) == 1:
        return str(next(iter(entry["rows_by_precision"])))
    raise RecipeError(f"recipe decision for table {name!r} has no row precisions")


@dataclass
class Recipe:
    """One compression plan for a two-table dot-product model.

    Attributes:
        tables: ``{"user": {"n_rows": .., "dim": ..}, "item": {...}}`` the plan is for.
        budget_bytes: the byte budget of both tables together.
        fp32_bytes: bytes of the float32 tables.
        method: ``uniform``, ``mixed``, ``score_svd``, ``table_svd``, ``prune``, or one
            of ``methods.EXTRA_METHODS`` (rebuilt by ``methods.build_extra``).
        params: method parameters (``precision``, ``rank``, ``signal``, ``metric``...).
        decisions: per table: bytes, rows per precision, the driving signal, and for
            ``mixed`` the encoded per-row precisions (``row_levels``).
        dense_layers: per-layer precision advice for dense layers (may be empty).
        candidates: every plan considered, with bytes and validation quality.
        predicted: quality expected from validation (``valid_ndcg@10``, relative loss).
        measured: quality measured on test after ``evaluate`` (empty until then).
        driver: one sentence: why this method won.
    """

    tables: dict[str, dict[str, int]]
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
            "kind": RECIPE_KIND,
            "recipe_version": RECIPE_VERSION,
            "tables": self.tables,
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "recipe") -> Recipe:
        """Validate and read a recipe dict (kind, version, fingerprint, fields)."""
        check_envelope(data, source=source, kind=RECIPE_KIND, version=RECIPE_VERSION)
        from gradtracer.compress import methods as _m

        known = _METHODS + tuple(_m.EXTRA_METHODS)
        if data.get("method") not in known:
            raise RecipeError(f"{source}: method {data.get('method')!r} is not one of {known}")
        try:
            return cls(
                tables={
                    k: {"n_rows": int(v["n_rows"]), "dim": int(v["dim"])}
                    for k, v in data["tables"].items()
                },
                budget_bytes=int(data["budget_bytes"]),
                fp32_bytes=int(data["fp32_bytes"]),
                method=str(data["method"]),
                params=dict(data.get("params", {})),
                decisions=dict(data.get("decisions", {})),
                dense_layers=list(data.get("dense_layers", [])),
                candidates=list(data.get("candidates", [])),
                predicted=dict(data.get("predicted", {})),
                measured=dict(data.get("measured", {})),
                driver=str(data.get("driver", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"{source}: malformed recipe ({exc!r})") from exc

    def save(self, path: str | Path) -> Path:
        """Write the recipe as JSON (atomic)."""
        return atomic_write_json(path, self.to_dict())

    def check_tables(self, user: Any, item: Any) -> None:
        """Raise :class:`RecipeError` unless ``user`` / ``item`` have the recipe's shapes."""
        for name, w in (("user", user), ("item", item)):
            want = self.tables.get(name)
            got = tuple(int(s) for s in np.shape(w))
            if want is None or got != (want["n_rows"], want["dim"]):
                expect = None if want is None else (want["n_rows"], want["dim"])
                raise RecipeError(
                    f"recipe is for a {name} table of shape {expect}, the model's is {got} "
                    "(a recipe made for another model)"
                )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a recipe")


def _fingerprint(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe JSON file (errors name the file)."""
    return Recipe.from_dict(read_recipe_json(path), source=str(path))


def read_recipe_json(path: str | Path) -> Any:
    """Read a recipe file's JSON value; a missing file or invalid JSON names the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such recipe file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{p}: not valid JSON ({exc})") from exc


def signed(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``body`` as canonical JSON-safe data with its SHA-256 ``fingerprint`` added."""
    out = json.loads(json.dumps(body, sort_keys=True, allow_nan=False, default=_json_default))
    out["fingerprint"] = _fingerprint(out)
    return dict(out)


def check_envelope(data: Any, *, source: str, kind: str, version: str) -> None:
    """Raise :class:`RecipeError` unless ``data`` is a JSON object of ``kind`` at ``version``
    whose fingerprint matches its content (``source`` names the file in the message)."""
    if not isinstance(data, Mapping):
        raise RecipeError(f"{source}: a recipe must be a JSON object, got {type(data).__name__}")
    if data.get("kind") != kind:
        raise RecipeError(f"{source}: kind {data.get('kind')!r}, expected {kind!r}")
    if str(data.get("recipe_version")) != version:
        raise RecipeError(
            f"{source}: recipe_version {data.get('recipe_version')!r}, this GradTracer reads {version}"
        )
    body = {k: v for k, v in data.items() if k != "fingerprint"}
    if data.get("fingerprint") != _fingerprint(body):
        raise RecipeError(
            f"{source}: fingerprint does not match the content (the recipe was edited or damaged)"
        )


def apply_recipe(recipe: Recipe, user: Any, item: Any) -> CompressedMF:
    """Build the compressed model ``recipe`` describes from the float ``user`` / ``item`` tables.

    Raises:
        RecipeError: tables of other shapes, or a result over the recipe's budget.
    """
    from gradtracer.compress import methods

    recipe.check_tables(user, item)
    p = recipe.params
    info = {"method": recipe.method, "recipe_fingerprint": recipe.to_dict()["fingerprint"]}
    if recipe.method == "uniform":
        model = methods.uniform(user, item, str(p["precision"]))
    elif recipe.method == "score_svd":
        model = methods.score_svd(user, item, recipe.budget_bytes, precision=str(p["precision"]))
    elif recipe.method == "table_svd":
        model = methods.table_svd(
            user, item, recipe.budget_bytes, precision=str(p.get("precision", "fp32"))
        )
    elif recipe.method in ("mixed", "prune"):
        tables = []
        for name, w in (("user", user), ("item", item)):
            entry = recipe.decisions.get(name, {})
            levels = entry_levels(name, entry, recipe.tables[name]["n_rows"])
            tables.append(QuantizedTable.from_weight(w, levels, name=name))
        model = CompressedMF(tables[0], tables[1], name=recipe.method)
    elif recipe.method in methods.EXTRA_METHODS:
        model = methods.build_extra(
            recipe.method, user, item, recipe.budget_bytes, dict(p), dict(recipe.decisions)
        )
    else:
        raise RecipeError(f"unknown method {recipe.method!r}")
    model.info.update(info)
    if recipe.method != "uniform" and model.nbytes() > recipe.budget_bytes:
        raise RecipeError(
            f"applied recipe holds {model.nbytes()} bytes, over its budget of {recipe.budget_bytes}"
        )
    return model


def describe_model(model: CompressedMF) -> dict[str, dict[str, Any]]:
    """Per-table decisions of a compressed model: bytes, rows per precision, row levels."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in (("user", model.user_table), ("item", model.item_table)):
        entry: dict[str, Any] = {"bytes": int(table.nbytes()), "breakdown": table.byte_breakdown()}
        if isinstance(table, QuantizedTable):
            entry.update(precision_entry(table))
            entry["stored_dim"] = table.dim
        elif hasattr(table, "rank"):
            entry["rank"] = int(table.rank)
        out[name] = entry
    return out


def recipe_finding(recipe: Recipe, *, subject: str = "model") -> Finding:
    """The ``COMPRESSION_CANDIDATE`` finding that carries ``recipe`` (JSON in the evidence)."""
    d = recipe.to_dict()
    pred = recipe.predicted
    loss = pred.get("relative_loss")
    change = "n/a" if loss is None else f"{-100 * float(loss):+.1f}%"
    measured = recipe.measured.get("relative_loss")
    premise = (
        f"At {recipe.ratio:.1f}x smaller tables ({recipe.budget_bytes} of {recipe.fp32_bytes} bytes) "
        f"the best plan is {recipe.method} {_params_text(recipe.params)}; validation NDCG@10 "
        f"change vs float32 {change}"
        + ("" if measured is None else f", measured on test {-100 * float(measured):+.1f}%")
        + "."
    )
    evidence: dict[str, float | int | str | bool | None] = {
        "recipe_version": RECIPE_VERSION,
        "method": recipe.method,
        "budget_bytes": int(recipe.budget_bytes),
        "fp32_bytes": int(recipe.fp32_bytes),
        "compression_ratio": round(recipe.ratio, 3),
        "predicted_relative_loss": None if loss is None else float(loss),
        "measured_relative_loss": None if measured is None else float(measured),
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


def recipe_report(recipes: list[Recipe], *, subject: str = "model") -> Report:
    """A ``compression`` report: one finding per recipe, the recipes in ``stats``."""
    return Report(
        kind="compression",
        subject=subject,
        stats={"recipes": [r.to_dict() for r in recipes]},
        findings=[recipe_finding(r, subject=subject) for r in recipes],
    )


def _params_text(params: Mapping[str, Any]) -> str:
    keep = {k: v for k, v in params.items() if k in ("precision", "rank", "signal", "metric")}
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(keep.items())) + ")" if keep else ""
