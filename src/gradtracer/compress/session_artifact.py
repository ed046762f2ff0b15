"""Compressed GRU4Rec artifacts: one checksummed ``.npz`` or ``.safetensors`` file.

:func:`save_session_artifact` / :func:`load_session_artifact` (also
:meth:`CompressedGRU4Rec.save <gradtracer.compress.session.CompressedGRU4Rec.save>` /
``.load``) write and read a :class:`~gradtracer.compress.session.CompressedGRU4Rec`
with the manifest and per-array SHA-256 of the MF artifacts
(:mod:`gradtracer.compress.model`), never pickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gradtracer.compress.model import (
    ArtifactError,
    _file_format,
    read_checked_artifact,
    write_checked_artifact,
)
from gradtracer.compress.recipe import RecipeError, _json_default
from gradtracer.compress.session import CompressedGRU4Rec
from gradtracer.compress.session_recipe import SessionRecipe
from gradtracer.compress.table import QuantizedTable
from gradtracer.compress.table import table_from_arrays as _table_from_arrays
from gradtracer.recsys.models.gru4rec.network import GRU4RecNetwork

__all__ = ["SESSION_ARTIFACT_FORMAT", "load_session_artifact", "save_session_artifact"]

#: ``format`` of a compressed GRU4Rec artifact's manifest.
SESSION_ARTIFACT_FORMAT = "gradtracer.compressed_gru4rec/1"


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
    }
    return write_checked_artifact(p, fmt, manifest, arrays, default=_json_default)


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
    manifest, arrays = read_checked_artifact(p, SESSION_ARTIFACT_FORMAT)
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
