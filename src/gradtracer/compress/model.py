"""A compressed dot-product recommender for inference, and its npz artifact.

:class:`CompressedMF` holds a user and an item :class:`~gradtracer.compress.table.QuantizedTable`
(or :class:`~gradtracer.compress.table.LowRankTable`) and scores ``user . item`` like
:class:`~gradtracer.recsys.models.ImplicitMF`: ``forward(users, items)``, ``scorer()``,
``score()`` and ``recommend()``, so :func:`~gradtracer.recsys.metrics.evaluate_topk`
accepts it as it is. User rows are read through the row-wise kernels; a full-ranking
call dequantizes the item table once per ``scorer()`` call.

The artifact is one ``.npz`` or ``.safetensors`` file (never pickled) with a manifest:
format version, table metadata, the recipe fingerprint and the SHA-256 of every array, so
a truncated or edited file is refused with the name of the array that changed. In an npz
the manifest is the ``__manifest__`` entry (UTF-8 JSON bytes), in a safetensors file the
``gradtracer`` entry of the header's metadata; the arrays and checks are the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from gradtracer.compress.table import CompressedTable, table_from_arrays
from gradtracer.durable import atomic_savez, atomic_write_bytes

__all__ = ["ARTIFACT_FORMAT", "ArtifactError", "CompressedMF", "load_compressed", "save_compressed"]

#: ``format`` written into every compressed artifact's manifest.
ARTIFACT_FORMAT = "gradtracer.compressed/1"
_MANIFEST = "__manifest__"

Table = CompressedTable


class ArtifactError(ValueError):
    """A compressed artifact that is damaged, tampered with or of another format."""


class CompressedMF(nn.Module):
    """Dot-product scoring over compressed user and item tables.

    Args:
        user_table: compressed user table ``(n_users, d)``.
        item_table: compressed item table ``(n_items, d)``.
        name: model name in results (default ``"compressed_mf"``).
        info: JSON-safe metadata kept in the artifact (method, recipe id...).
    """

    def __init__(
        self,
        user_table: Table,
        item_table: Table,
        *,
        name: str = "compressed_mf",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if user_table.dim != item_table.dim:
            raise ValueError(
                f"user and item tables must share a dimension, got {user_table.dim} and {item_table.dim}"
            )
        self.user_table, self.item_table = user_table, item_table
        self.n_users, self.n_items = user_table.n_rows, item_table.n_rows
        self.name = name
        self.info = dict(info or {})

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(N,)`` scores ``user[users] . item[items]``."""
        return (self.user_table.lookup(users) * self.item_table.lookup(items)).sum(-1)

    def nbytes(self) -> int:
        """Bytes of both tables (every part counted)."""
        return self.user_table.nbytes() + self.item_table.nbytes()

    def byte_breakdown(self) -> dict[str, int]:
        """Bytes by ``<table>/<part>``."""
        out = {f"user/{k}": v for k, v in self.user_table.byte_breakdown().items()}
        out.update({f"item/{k}": v for k, v in self.item_table.byte_breakdown().items()})
        return out

    def scorer(self) -> Any:
        """A ``scores(user_idx (B,)) -> (B, n_items)`` callable for the evaluators."""
        items_t = self.item_table.dequantize().t().contiguous()  # (d, n_items)

        def scores(idx: torch.Tensor) -> torch.Tensor:
            return self.user_table.lookup(idx.cpu()) @ items_t

        return scores

    def score(self, users: Any) -> np.ndarray:
        """``(B, n_items)`` float32 scores of ``users``."""
        idx = torch.as_tensor(np.asarray(users, dtype=np.int64).reshape(-1))
        with torch.no_grad():
            return self.scorer()(idx).numpy()

    def recommend(
        self, users: Any, k: int = 10, *, exclude: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """``(B, k)`` best items per user, skipping ``exclude`` items."""
        from gradtracer.recsys.models.base import recommend_from_scores

        idx = np.asarray(users, dtype=np.int64).reshape(-1)
        scores = torch.from_numpy(self.score(idx))
        return recommend_from_scores(scores, idx, k, exclude)

    def embedding_bag(
        self, table: str, indices: torch.Tensor, offsets: torch.Tensor, *, mode: str = "sum"
    ) -> torch.Tensor:
        """Pooled rows of the ``"user"`` or ``"item"`` table (``F.embedding_bag`` semantics)."""
        if table not in ("user", "item"):
            raise ValueError(f"table must be 'user' or 'item', got {table!r}")
        t = self.user_table if table == "user" else self.item_table
        pool = getattr(t, "embedding_bag", None)
        if pool is None:
            raise TypeError(f"{type(t).__name__} tables have no pooled lookup")
        out: torch.Tensor = pool(indices, offsets, mode=mode)
        return out

    def save(self, path: str | Path, *, file_format: str | None = None) -> Path:
        """Write the model as one artifact (see :func:`save_compressed`)."""
        return save_compressed(self, path, file_format=file_format)

    @classmethod
    def load(cls, path: str | Path) -> CompressedMF:
        """Read an artifact written by :meth:`save`."""
        return load_compressed(path)

    def __repr__(self) -> str:
        return f"CompressedMF({self.user_table!r}, {self.item_table!r})"


def _digest(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


#: File formats of :func:`save_compressed`.
FILE_FORMATS = ("npz", "safetensors")
_ST_KEY = "gradtracer"


def _file_format(path: Path, file_format: str | None) -> str:
    if file_format is None:
        return "safetensors" if path.suffix == ".safetensors" else "npz"
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    return file_format


def save_compressed(
    model: CompressedMF, path: str | Path, *, file_format: str | None = None
) -> Path:
    """Write ``model`` to ``path``: its arrays plus a checksummed JSON manifest.

    Args:
        model: the compressed model.
        path: target file (written atomically).
        file_format: ``"npz"`` or ``"safetensors"``; default: ``"safetensors"`` for a
            ``.safetensors`` suffix, ``"npz"`` otherwise. safetensors needs the optional
            ``safetensors`` package (``pip install gradtracer[safetensors]``).
    """
    p = Path(path)
    fmt = _file_format(p, file_format)
    umeta, arrays = model.user_table.to_arrays("user/")
    imeta, iarrays = model.item_table.to_arrays("item/")
    arrays.update(iarrays)
    manifest = {
        "format": ARTIFACT_FORMAT,
        "name": model.name,
        "tables": {"user": umeta, "item": imeta},
        "info": model.info,
        "nbytes": model.nbytes(),
    }
    return write_checked_artifact(p, fmt, manifest, arrays)


def write_checked_artifact(
    p: Path,
    fmt: str,
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    default: Any = None,
) -> Path:
    """Write ``arrays`` and ``manifest`` (plus every array's SHA-256 under ``sha256``) as
    npz or safetensors (``fmt``) atomically; ``default`` serialises extra manifest values
    (as in ``json.dumps``). :func:`read_checked_artifact` reads and verifies it."""
    manifest = {**manifest, "sha256": {k: _digest(v) for k, v in sorted(arrays.items())}}
    text = json.dumps(manifest, sort_keys=True, allow_nan=False, default=default)
    if fmt == "safetensors":
        st = _safetensors(p)
        data = st.save(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={_ST_KEY: text}
        )
        return atomic_write_bytes(p, data)
    arrays = {**arrays, _MANIFEST: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    return atomic_savez(p, **arrays)


def _safetensors(p: Path) -> Any:
    try:
        import safetensors.numpy as st
    except ImportError as exc:
        raise ImportError(
            f"{p}: safetensors artifacts need the 'safetensors' package "
            "(pip install gradtracer[safetensors])"
        ) from exc
    return st


def _read_npz(p: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"{p}: not a readable npz archive ({exc})") from exc
    if _MANIFEST not in arrays:
        raise ArtifactError(f"{p}: no {_MANIFEST} entry; not a GradTracer compressed artifact")
    try:
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: manifest is not valid JSON ({exc})") from exc
    return manifest, arrays


def _read_safetensors(p: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    _safetensors(p)  # the package, or a clear ImportError
    import safetensors

    try:
        with safetensors.safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ArtifactError(f"{p}: not a readable safetensors file ({exc})") from exc
    if _ST_KEY not in meta:
        raise ArtifactError(
            f"{p}: no {_ST_KEY!r} metadata entry; not a GradTracer compressed artifact"
        )
    try:
        manifest = json.loads(meta[_ST_KEY])
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{p}: manifest is not valid JSON ({exc})") from exc
    return manifest, arrays


def read_checked_artifact(
    path: str | Path, fmt: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an npz or safetensors artifact's manifest and arrays, verifying that its
    manifest is a JSON object of format ``fmt`` and that every array matches its SHA-256.

    Raises:
        FileNotFoundError: no such file.
        ArtifactError: another format, a missing or extra array, or a checksum mismatch
            (the array is named).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such compressed artifact")
    with open(p, "rb") as fh:
        head = fh.read(4)
    manifest, arrays = _read_npz(p) if head.startswith(b"PK") else _read_safetensors(p)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{p}: manifest is not a JSON object")
    if manifest.get("format") != fmt:
        raise ArtifactError(f"{p}: format {manifest.get('format')!r}, expected {fmt!r}")
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
    return manifest, arrays


def load_compressed(path: str | Path, *, recipe: Any | None = None) -> CompressedMF:
    """Read a :func:`save_compressed` artifact (npz or safetensors, told apart by content),
    verifying its format and every checksum.

    Args:
        path: the artifact.
        recipe: optionally the :class:`~gradtracer.compress.recipe.Recipe` the artifact
            should have been built from: its tables' shapes and fingerprint must match.

    Raises:
        FileNotFoundError: no such file.
        ArtifactError: not a compressed artifact, a missing or extra array, a checksum
            mismatch (the array is named), tables that do not fit together, or (with
            ``recipe``) an artifact built from another recipe or for other tables.
    """
    p = Path(path)
    manifest, arrays = read_checked_artifact(p, ARTIFACT_FORMAT)
    try:
        user = table_from_arrays(manifest["tables"]["user"], arrays, "user/")
        item = table_from_arrays(manifest["tables"]["item"], arrays, "item/")
        model = CompressedMF(
            user, item, name=str(manifest.get("name", "compressed_mf")), info=manifest.get("info")
        )
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{p}: {exc}") from exc
    if model.nbytes() != manifest.get("nbytes"):
        raise ArtifactError(
            f"{p}: tables hold {model.nbytes()} bytes, manifest says {manifest.get('nbytes')}"
        )
    if recipe is not None:
        _check_recipe(p, model, recipe)
    return model


#: Recipe methods whose tables hold score factors: ``rank`` columns (at most the float
#: tables' width, the same for both tables) instead of the float tables' columns.
def _check_recipe(p: Path, model: CompressedMF, recipe: Any) -> None:
    # score-SVD plans of every kind store rank-r factors, narrower than the float tables
    factors = str(getattr(recipe, "method", "")).startswith("score_svd")
    for name, n_rows in (("user", model.n_users), ("item", model.n_items)):
        want = recipe.tables.get(name, {})
        got = (n_rows, model.user_table.dim if name == "user" else model.item_table.dim)
        rank_ok = (
            factors
            and model.user_table.dim == model.item_table.dim
            and isinstance(want.get("dim"), int)
            and 1 <= got[1] <= want["dim"]
        )
        if want.get("n_rows") != got[0] or (want.get("dim") != got[1] and not rank_ok):
            raise ArtifactError(
                f"{p}: {name} table is {got[0]} x {got[1]}, the recipe is for "
                f"{want.get('n_rows')} x {want.get('dim')} (a recipe for another model)"
            )
    want_fp = recipe.to_dict()["fingerprint"]
    got_fp = model.info.get("recipe_fingerprint")
    if got_fp != want_fp:
        raise ArtifactError(
            f"{p}: built from recipe {str(got_fp)[:12]}..., not from this recipe "
            f"({want_fp[:12]}...)"
        )
