"""A compressed dot-product recommender for inference, and its npz artifact.

:class:`CompressedMF` holds a user and an item :class:`~gradtracer.compress.table.QuantizedTable`
(or :class:`~gradtracer.compress.table.LowRankTable`) and scores ``user . item`` like
:class:`~gradtracer.recsys.models.ImplicitMF`: ``forward(users, items)``, ``scorer()``,
``score()`` and ``recommend()``, so :func:`~gradtracer.recsys.metrics.evaluate_topk`
accepts it as it is. User rows are read through the row-wise kernels; a full-ranking
call dequantizes the item table once per ``scorer()`` call.

The artifact is one ``.npz`` (never pickled) with a ``__manifest__`` entry: format
version, table metadata, the recipe fingerprint and the SHA-256 of every array, so a
truncated or edited file is refused with the name of the array that changed.
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

from gradtracer.compress.table import LowRankTable, QuantizedTable, table_from_arrays
from gradtracer.durable import atomic_savez

__all__ = ["ARTIFACT_FORMAT", "ArtifactError", "CompressedMF", "load_compressed", "save_compressed"]

#: ``format`` written into every compressed artifact's manifest.
ARTIFACT_FORMAT = "gradtracer.compressed/1"
_MANIFEST = "__manifest__"

Table = QuantizedTable | LowRankTable


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

    def save(self, path: str | Path) -> Path:
        """Write the model as one npz artifact (see :func:`save_compressed`)."""
        return save_compressed(self, path)

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


def save_compressed(model: CompressedMF, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (``.npz``): arrays plus a checksummed JSON manifest."""
    umeta, arrays = model.user_table.to_arrays("user/")
    imeta, iarrays = model.item_table.to_arrays("item/")
    arrays.update(iarrays)
    manifest = {
        "format": ARTIFACT_FORMAT,
        "name": model.name,
        "tables": {"user": umeta, "item": imeta},
        "info": model.info,
        "nbytes": model.nbytes(),
        "sha256": {k: _digest(v) for k, v in sorted(arrays.items())},
    }
    text = json.dumps(manifest, sort_keys=True, allow_nan=False)
    arrays[_MANIFEST] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return atomic_savez(path, **arrays)


def load_compressed(path: str | Path) -> CompressedMF:
    """Read a :func:`save_compressed` artifact, verifying its format and every checksum.

    Raises:
        FileNotFoundError: no such file.
        ArtifactError: not a compressed artifact, a missing or extra array, a checksum
            mismatch (the array is named), or tables that do not fit together.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such compressed artifact")
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
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{p}: format {manifest.get('format')!r}, expected {ARTIFACT_FORMAT!r}")
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
    return model
