"""One on-disk format for every recommender model: ``model.json`` + ``arrays.npz``.

``model.json`` holds the JSON-safe description of a model (sizes, options, ...) plus two
keys written by :func:`write_artifact`: ``kind`` (the registered model name, see
:mod:`gradtracer.recsys.models.registry`) and ``format_version`` (an int each model bumps
when its layout changes). ``arrays.npz`` holds the numeric arrays (never pickle).

Saving is crash-safe. Both files are first written in full (atomically, through
:mod:`gradtracer.durable`) under staging names ``model.json.next`` / ``arrays.npz.next``,
then renamed over the live names, arrays first. Both files carry the same random
``artifact_token``, so a reader always knows whether the two belong together:

- killed before the renames: the previous artifact is untouched (the staged files are
  ignored and removed by the next save);
- killed between the two renames: ``arrays.npz`` is new, ``model.json`` old, and the
  reader takes the matching staged ``model.json.next`` (the new, complete artifact);
- a token mismatch with no matching staged file is reported, never silently loaded.

:func:`read_artifact` also reads the layouts written before this format existed: user-item
models whose ``model.json`` has ``kind`` but no ``format_version`` (read as version 1),
session models whose ``model.json`` says ``"model": name`` with ``counts.npz`` /
``markov.npz`` / ``weights.npz``, and the five-file CF layout (``config.json`` with
``format: "gradtracer.cf"`` and ``version``, ``factors.npz``, ``train_matrix.npz``,
``user_ids.json``, ``item_ids.json``), whose arrays are returned under the names the current
CF format uses.

Examples:
    >>> import tempfile
    >>> import numpy as np
    >>> d = write_artifact(tempfile.mkdtemp(), kind="demo", format_version=1,
    ...                    meta={"n_items": 3}, arrays={"counts": np.arange(3.0)})
    >>> meta, arrays = read_artifact(d, expected_kind="demo")
    >>> meta["n_items"], arrays["counts"].tolist()
    (3, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.durable import atomic_savez, atomic_write_json, fsync_directory, require_complete

__all__ = [
    "ARRAYS_FILE",
    "META_FILE",
    "ArtifactError",
    "artifact_kind",
    "is_artifact",
    "load_arrays",
    "read_artifact",
    "read_meta",
    "write_artifact",
]

META_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"
_STAGED = ".next"
_TOKEN_KEY = "artifact_token"
_TOKEN_ARRAY = "__artifact_token__"
_RESERVED = ("kind", "format_version", _TOKEN_KEY)

#: Session-model layout before ``kind``: ``model.json["model"]`` -> (kind, arrays file).
LEGACY_SESSION_LAYOUTS: dict[str, tuple[str, str]] = {
    "popularity": ("session_popularity", "counts.npz"),
    "markov": ("markov", "markov.npz"),
    "gru4rec": ("gru4rec", "weights.npz"),
}
#: Five-file CF layout before ``kind``: its ``config.json`` ``format`` and newest ``version``.
LEGACY_CF_FORMAT = "gradtracer.cf"
LEGACY_CF_VERSION = 1
_LEGACY_CF_FILES = (
    "config.json",
    "factors.npz",
    "train_matrix.npz",
    "user_ids.json",
    "item_ids.json",
)


class ArtifactError(ValueError):
    """A model directory that cannot be read: wrong kind, unknown version, corrupt file.

    The message names the file and what is wrong with it.
    """


# --- writing ----------------------------------------------------------------------------


def write_artifact(
    directory: str | Path,
    *,
    kind: str,
    format_version: int,
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> Path:
    """Write ``model.json`` (``meta`` + ``kind`` + ``format_version``) and ``arrays.npz``.

    Args:
        directory: the model directory (created when missing). Other files in it are left
            alone, so a model can be saved into a run directory.
        kind: registered model name, e.g. ``"implicit_mf"``.
        format_version: positive int, the version of this kind's layout.
        meta: JSON-safe description (no NaN/inf); must not use the keys ``kind``,
            ``format_version`` or ``artifact_token``.
        arrays: numeric arrays (object arrays are refused); names must not start with ``__``.

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: a reserved key or array name, a non-positive version, NaN in ``meta``.
        TypeError: an object-dtype array.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    if (
        isinstance(format_version, bool)
        or not isinstance(format_version, int)
        or format_version < 1
    ):
        raise ValueError(f"format_version must be a positive int, got {format_version!r}")
    clash = sorted(set(meta) & set(_RESERVED))
    if clash:
        raise ValueError(f"meta must not set the reserved key(s) {clash}; write_artifact adds them")
    bad = sorted(name for name in arrays if name.startswith("__"))
    if bad:
        raise ValueError(f"array names must not start with '__', got {bad}")
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d}: exists and is not a directory")
    d.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    document = {**meta, "kind": kind, "format_version": format_version, _TOKEN_KEY: token}
    # Refuse a bad meta before touching anything.
    json.dumps(document, allow_nan=False)
    staged_arrays = d / (ARRAYS_FILE + _STAGED)
    staged_meta = d / (META_FILE + _STAGED)
    atomic_savez(staged_arrays, **dict(arrays), **{_TOKEN_ARRAY: np.array(token)})
    atomic_write_json(staged_meta, document)
    _publish(staged_arrays, d / ARRAYS_FILE)
    _publish(staged_meta, d / META_FILE)
    fsync_directory(d)
    return d


def _publish(staged: Path, live: Path) -> None:
    """Rename a fully written staged file over its live name (atomic on POSIX)."""
    os.replace(staged, live)


# --- reading ----------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not readable JSON ({exc}); save the model again") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_arrays(path: str | Path, *, required: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Return every array of the ``.npz`` at ``path`` (``allow_pickle=False``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ArtifactError: the file is truncated, corrupt, not an ``.npz`` archive, holds object
            arrays, or lacks a ``required`` array (named with the arrays it has).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: missing (not a saved model directory)")
    try:
        with np.load(p, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ArtifactError(f"{p}: holds a single array, expected an .npz archive")
            out = {name: data[name] for name in data.files}
    except ArtifactError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        reason = "truncated or corrupt" if p.stat().st_size else "empty"
        detail = "not an .npz archive" if "pickle" in str(exc) else str(exc)
        raise ArtifactError(
            f"{p}: cannot read the arrays ({reason}: {detail}); save the model again"
        ) from None
    missing = [name for name in required if name not in out]
    if missing:
        raise ArtifactError(
            f"{p}: lacks array(s) {missing}; has {sorted(k for k in out if not k.startswith('__'))}"
        )
    return out


def is_artifact(directory: str | Path) -> bool:
    """True when ``directory`` holds a model in the current or one of the old layouts."""
    d = Path(directory)
    return (d / META_FILE).is_file() or (d / _LEGACY_CF_FILES[0]).is_file()


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Return ``model.json`` of ``directory`` with ``kind`` and ``format_version`` filled in.

    Old layouts are translated (see the module docstring); arrays are not read.
    """
    return _resolve(Path(directory))[0]


def artifact_kind(directory: str | Path) -> str:
    """Return the ``kind`` of the model saved in ``directory`` (any layout)."""
    return str(read_meta(directory)["kind"])


def _resolve(d: Path) -> tuple[dict[str, Any], Path, str]:
    """Return ``(meta, arrays path, layout)``; layout is "current", "session" or "cf"."""
    if not d.is_dir():
        raise FileNotFoundError(
            f"{d}: no such model directory (expected {META_FILE} and {ARRAYS_FILE} in it)"
        )
    require_complete(d)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        staged = d / (META_FILE + _STAGED)
        if staged.is_file() and (d / ARRAYS_FILE).is_file():
            meta_path = staged
        elif (d / _LEGACY_CF_FILES[0]).is_file():
            return _legacy_cf_meta(d), d / _LEGACY_CF_FILES[1], "cf"
        else:
            raise FileNotFoundError(
                f"{d / META_FILE}: missing (expected {META_FILE} and {ARRAYS_FILE}, "
                "a saved model directory)"
            )
    meta = _read_json(meta_path)
    if "kind" in meta:
        version = meta.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ArtifactError(
                f"{meta_path}: format_version must be a positive int, got {version!r}"
            )
        meta["format_version"] = version
        return meta, d / ARRAYS_FILE, "current"
    if "model" in meta:
        name = meta["model"]
        if name not in LEGACY_SESSION_LAYOUTS:
            raise ArtifactError(
                f"{meta_path}: old session layout with unknown model {name!r}; "
                f"known: {sorted(LEGACY_SESSION_LAYOUTS)}"
            )
        kind, arrays_file = LEGACY_SESSION_LAYOUTS[name]
        meta = {k: v for k, v in meta.items() if k != "model"}
        meta.update(kind=kind, format_version=1, legacy_layout="session")
        return meta, d / arrays_file, "session"
    raise ArtifactError(f"{meta_path}: has neither 'kind' nor 'model'; not a saved model")


def _legacy_cf_meta(d: Path) -> dict[str, Any]:
    path = d / _LEGACY_CF_FILES[0]
    for name in _LEGACY_CF_FILES:
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing (not a saved CF model directory)")
    meta = _read_json(path)
    if meta.get("format") != LEGACY_CF_FORMAT:
        raise ArtifactError(f"{path}: format {meta.get('format')!r}, expected {LEGACY_CF_FORMAT!r}")
    version = meta.get("version", -1)
    if not isinstance(version, int) or version > LEGACY_CF_VERSION or version < 1:
        raise ArtifactError(
            f"{path}: artifact version {version!r} is not supported (this release reads "
            f"version {LEGACY_CF_VERSION} of this layout and the current {META_FILE} layout)"
        )
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    meta.update(kind="cf", format_version=1, legacy_layout="cf")
    return meta


def _legacy_cf_arrays(d: Path) -> dict[str, np.ndarray]:
    import scipy.sparse as sp

    arrays = load_arrays(d / "factors.npz", required=("user_factors", "item_factors", "user_bias"))
    path = d / "train_matrix.npz"
    try:
        matrix = sp.load_npz(path).tocsr()
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError(
            f"{path}: cannot read the sparse matrix ({exc}); save the model again"
        ) from None
    arrays.update(
        train_indptr=matrix.indptr.astype(np.int64),
        train_indices=matrix.indices.astype(np.int64),
        train_data=matrix.data.astype(np.float32),
        train_shape=np.asarray(matrix.shape, dtype=np.int64),
    )
    for name, key in (("user_ids.json", "user_ids"), ("item_ids.json", "item_ids")):
        ids = _read_json(d / name).get("ids")
        if not isinstance(ids, list):
            raise ArtifactError(f"{d / name}: expected {{'ids': [...]}}")
        arrays[key] = np.asarray([str(x) for x in ids], dtype=np.str_)
    return arrays


def read_artifact(
    directory: str | Path, *, expected_kind: str | None = None, max_version: int | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return ``(meta, arrays)`` of a model directory in the current or an old layout.

    Args:
        directory: written by :func:`write_artifact` (or an old layout, module docstring).
        expected_kind: refuse a model of another kind (``ArtifactError`` naming both).
        max_version: refuse a ``format_version`` above this (a file from a newer release).

    Raises:
        FileNotFoundError: the directory or one of its files is missing (named).
        IncompleteOutputError: the directory carries the marker of an unfinished write.
        ArtifactError: wrong kind, unknown version, corrupt or mismatched files (named).
    """
    d = Path(directory)
    meta, arrays_path, layout = _resolve(d)
    meta_path = d / (_LEGACY_CF_FILES[0] if layout == "cf" else META_FILE)
    if layout == "cf":
        arrays = _legacy_cf_arrays(d)
    else:
        arrays = load_arrays(arrays_path)
        if layout == "current":
            meta = _match_token(d, meta, arrays)
        arrays.pop(_TOKEN_ARRAY, None)
    if expected_kind is not None and meta["kind"] != expected_kind:
        raise ArtifactError(f"{meta_path}: holds a {meta['kind']!r} model, not {expected_kind!r}")
    if max_version is not None and meta["format_version"] > max_version:
        raise ArtifactError(
            f"{meta_path}: {meta['kind']} format_version {meta['format_version']} is newer than "
            f"this release reads (up to {max_version}); upgrade gradtracer"
        )
    return meta, arrays


def _match_token(d: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Check that ``model.json`` and ``arrays.npz`` come from the same save."""
    stored = arrays.get(_TOKEN_ARRAY)
    token = None if stored is None else str(stored)
    if meta.get(_TOKEN_KEY) == token:  # same save (or both from before tokens existed)
        meta.pop(_TOKEN_KEY, None)
        return meta
    staged = d / (META_FILE + _STAGED)
    if staged.is_file():
        with contextlib.suppress(ArtifactError, FileNotFoundError):
            candidate = _read_json(staged)
            if candidate.get(_TOKEN_KEY) == token and "kind" in candidate:
                candidate.setdefault("format_version", 1)
                candidate.pop(_TOKEN_KEY, None)
                return candidate
    raise ArtifactError(
        f"{d / ARRAYS_FILE}: does not belong to {d / META_FILE} (they come from different "
        "saves, e.g. a copy mixed two models); save the model again"
    )
