"""The interface every user-item recommender shares, and helpers its implementations reuse.

:class:`UserItemRecommender` is a small abstract base class. A model implements
``fit(train)``, ``score(users)`` and its artifact contents (``_to_artifact`` /
``_from_artifact``); the base class supplies ``recommend`` (top ``k`` with exclusion and
``k`` validation), a default ``scorer()`` for :func:`gradtracer.recsys.metrics.evaluate_topk`,
and ``save`` / ``load`` through the one artifact format of
:mod:`gradtracer.recsys.models.artifact` (``model.json`` with ``kind`` and
``format_version`` + ``arrays.npz``, never pickle).

Models work on dense indices. :class:`RawIdRecommender` wraps a fitted model with the id
maps of its training data and recommends raw item ids (with scores) for raw user ids.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer.recsys.models.artifact import ArtifactError, read_artifact, write_artifact

__all__ = [
    "RawIdRecommender",
    "Recommendations",
    "Recommender",
    "UserItemRecommender",
    "as_user_index",
    "check_k",
    "deprecated_keyword",
    "recommend_from_scores",
]

R = TypeVar("R", bound="UserItemRecommender")


def check_k(k: object, n_items: int, name: str = "k") -> int:
    """Return ``k`` when it is an int in ``[1, n_items]``; ``ValueError`` naming it otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < int(k) <= n_items:
        raise ValueError(f"{name} must be an int in [1, {n_items}], got {k!r}")
    return int(k)


def as_user_index(users: Any, n_users: int) -> np.ndarray:
    """Return users as a 1-D int64 array; ``ValueError`` naming an out-of-range index."""
    idx = np.atleast_1d(np.asarray(users.cpu() if isinstance(users, torch.Tensor) else users))
    if idx.size and not np.issubdtype(idx.dtype, np.number):
        raise TypeError(
            f"users must be dense integer indices, got dtype {idx.dtype} (raw ids go through "
            "RawIdRecommender)"
        )
    idx = idx.astype(np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n_users):
        raise ValueError(
            f"user indices must be in [0, {n_users}), got min {idx.min()}, max {idx.max()}"
        )
    return idx


def recommend_from_scores(
    scores: torch.Tensor, users: np.ndarray, k: int, exclude: sp.csr_matrix | None
) -> np.ndarray:
    """Return ``(B, k)`` top items of ``scores (B, n_items)``, masking ``exclude[users]`` items.

    Masked items come last (``-inf``); ties are broken by ``torch.topk``.
    """
    n_items = scores.shape[1]
    k = check_k(k, n_items)
    if exclude is not None:
        if exclude.shape[1] != n_items:
            raise ValueError(
                f"exclude has {exclude.shape[1]} columns but the model has {n_items} items"
            )
        block = sp.csr_matrix(exclude[users])
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        scores = scores.clone()
        scores[
            torch.from_numpy(rows), torch.from_numpy(block.indices.astype(np.int64))
        ] = -torch.inf
    return scores.topk(k, dim=1).indices.cpu().numpy().astype(np.int64)


def deprecated_keyword(
    old: str, new: str, old_value: Any, new_value: Any, default: Any, *, stacklevel: int = 3
) -> Any:
    """Resolve a renamed keyword: warn (``DeprecationWarning``) when ``old`` was given.

    Returns the value to use. Giving both spellings with different values is an error.
    """
    if old_value is None:
        return new_value
    warnings.warn(
        f"{old}= is deprecated, use {new}= (the old name goes away in the next release)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    if new_value is not None and new_value != default and new_value != old_value:
        raise ValueError(f"give {new}= or the deprecated {old}=, not both")
    return old_value


class UserItemRecommender(ABC):
    """fit / score / recommend / scorer / save / load over dense user and item indices.

    Subclasses register with :func:`~gradtracer.recsys.models.registry.register_model`
    (which sets ``kind``) and implement :meth:`fit`, :meth:`score`, ``_to_artifact`` and
    ``_from_artifact``. ``format_version`` is the version of the subclass's artifact layout.
    """

    kind: ClassVar[str] = ""
    format_version: ClassVar[int] = 1
    #: Where :meth:`load` read the model from (named in errors); None for a fresh model.
    loaded_from: Path | None = None

    n_users: int
    n_items: int

    @abstractmethod
    def fit(self: R, train: Any) -> R:
        """Learn from a training :class:`~gradtracer.recsys.data.Interactions`; return ``self``."""

    @abstractmethod
    def score(self, users: Any) -> np.ndarray:
        """Return ``(B, n_items)`` float32 scores of the given user indices (higher = better)."""

    def score_tensor(self, users: np.ndarray) -> torch.Tensor:
        """``(B, n_items)`` float32 scores as a tensor (models override to skip a copy)."""
        return torch.from_numpy(np.ascontiguousarray(self.score(users), dtype=np.float32))

    def scorer(self) -> Any:
        """Return what :func:`~gradtracer.recsys.metrics.evaluate_topk` accepts.

        Default: a callable ``scores(user_idx: LongTensor) -> (B, n_items)`` tensor over
        :meth:`score_tensor`; factor models return ``(user_factors, item_factors)``.
        """

        def scores(user_idx: torch.Tensor) -> torch.Tensor:
            return self.score_tensor(user_idx.cpu().numpy().astype(np.int64))

        return scores

    def recommend(
        self, users: Any, k: int = 10, *, exclude: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Return ``(B, k)`` int64 item indices per user, best first.

        Args:
            users: dense user indices (int, sequence, array or tensor).
            k: list length, an int in ``[1, n_items]`` (default 10).
            exclude: optional ``(n_users, n_items)`` CSR whose stored items of each user are
                never recommended (usually the training matrix); they rank last.

        Raises:
            ValueError: bad ``k``, out-of-range users, or non-finite scores (the model
                file is named when the model was loaded).
        """
        check_k(k, self.n_items)
        idx = as_user_index(users, self.n_users)
        scores = self.score_tensor(idx)
        bad = ~torch.isfinite(scores)
        if bool(bad.any()):
            rows = torch.nonzero(bad.any(dim=1)).ravel().tolist()
            raise ValueError(
                f"{self._describe()}: scores of user(s) {idx[rows[:5]].tolist()} are not finite "
                f"({int(bad.sum())} NaN/inf values); the model is corrupt or diverged, "
                "refit it instead of serving it"
            )
        return recommend_from_scores(scores, idx, k, exclude)

    def _describe(self) -> str:
        if self.loaded_from is not None:
            return f"{self.kind} model {self.loaded_from / 'model.json'}"
        return f"{type(self).__name__} (not saved)"

    # --- artifacts ----------------------------------------------------------------------
    @abstractmethod
    def _to_artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return ``(meta, arrays)`` describing the fitted model (JSON-safe meta)."""

    @classmethod
    @abstractmethod
    def _from_artifact(cls: type[R], meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> R:
        """Rebuild a model from what :meth:`_to_artifact` returned."""

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``arrays.npz`` into ``directory``; return it.

        The write is crash-safe (see :mod:`gradtracer.recsys.models.artifact`): a kill
        mid-save leaves the previous model readable.
        """
        meta, arrays = self._to_artifact()
        return write_artifact(
            directory,
            kind=self.kind,
            format_version=self.format_version,
            meta=meta,
            arrays=arrays,
        )

    @classmethod
    def load(cls: type[R], directory: str | Path) -> R:
        """Read a directory written by :meth:`save` (or an older layout of the same kind).

        Raises:
            FileNotFoundError: missing directory or file (named).
            ArtifactError: another kind, a newer format_version, corrupt or inconsistent
                arrays (the file is named).
        """
        d = Path(directory)
        meta, arrays = read_artifact(d, expected_kind=cls.kind, max_version=cls.format_version)
        for name, value in arrays.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ArtifactError(
                    f"{d / 'arrays.npz'}: array {name!r} has "
                    f"{int((~np.isfinite(value)).sum())} NaN/inf values; the saved "
                    f"{meta['kind']} model is corrupt, refit it"
                )
        try:
            model = cls._from_artifact(meta, arrays)
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{d}: inconsistent {meta['kind']} artifact: {exc}") from None
        model.loaded_from = d
        return model


#: The previous name of :class:`UserItemRecommender` (still importable).
Recommender = UserItemRecommender


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Top-``k`` list of one user: raw item ids, best first, with their scores."""

    user_id: str
    item_ids: tuple[str, ...]
    scores: np.ndarray  # (k,) float32, descending

    def __len__(self) -> int:
        return len(self.item_ids)

    def to_polars(self) -> Any:
        """Frame with columns ``item_id`` (Utf8) and ``score`` (Float32)."""
        import polars as pl

        return pl.DataFrame(
            {
                "item_id": pl.Series(list(self.item_ids), dtype=pl.Utf8),
                "score": pl.Series(self.scores, dtype=pl.Float32),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe ``{"user_id", "items", "scores"}``."""
        return {
            "user_id": self.user_id,
            "items": list(self.item_ids),
            "scores": [float(s) for s in self.scores],
        }


class RawIdRecommender:
    """A fitted model plus the id maps of its training data: raw ids in, raw ids out.

    Args:
        model: a fitted :class:`UserItemRecommender` (dense indices).
        user_ids / item_ids: :class:`~gradtracer.recsys.data.IdMap` of the training data.
        seen: optional ``(n_users, n_items)`` CSR of each user's training items; users
            with no row there count as unknown, and ``exclude_seen`` masks their items.
        source: where the training data came from (named in errors).
    """

    def __init__(
        self,
        model: UserItemRecommender,
        user_ids: Any,
        item_ids: Any,
        *,
        seen: sp.csr_matrix | None = None,
        source: str = "<memory>",
    ) -> None:
        if (len(user_ids), len(item_ids)) != (model.n_users, model.n_items):
            raise ValueError(
                f"id maps have {len(user_ids)} users x {len(item_ids)} items, the model "
                f"{model.n_users} x {model.n_items}"
            )
        if seen is not None and seen.shape != (model.n_users, model.n_items):
            raise ValueError(f"seen has shape {seen.shape}, model {(model.n_users, model.n_items)}")
        self.model, self.user_ids, self.item_ids = model, user_ids, item_ids
        self.seen = None if seen is None else sp.csr_matrix(seen)
        self.source = source

    def user_index(self, user_id: object) -> int:
        """Dense index of a raw training user; ``ValueError`` naming the id and the source."""
        known = user_id in self.user_ids
        u = self.user_ids.index(user_id) if known else -1
        if known and self.seen is not None:
            known = self.seen.indptr[u + 1] > self.seen.indptr[u]
        if not known:
            n = (
                len(self.user_ids)
                if self.seen is None
                else int((np.diff(self.seen.indptr) > 0).sum())
            )
            raise ValueError(
                f"unknown user id {str(user_id)!r}: not among the {n:,} training users of "
                f"{self.source}"
            )
        return int(u)

    def recommend(
        self, user_id: object, k: int = 10, *, exclude_seen: bool = True
    ) -> Recommendations:
        """Return the top-``k`` items of raw ``user_id``, training items excluded by default.

        Fewer than ``k`` come back when fewer candidates remain; ties keep the lower item
        index.

        Raises:
            ValueError: ``k`` is not a positive int, the user is not a training user (no
                empty list is returned for an unknown user), or the scores are not finite.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        u = self.user_index(user_id)
        scores = self.model.score([u])[0].astype(np.float32)  # (n_items,)
        if not np.isfinite(scores).all():
            raise ValueError(
                f"{self.model._describe()}: scores of user {str(user_id)!r} are not finite "
                f"({int((~np.isfinite(scores)).sum())} NaN/inf values); the model is corrupt "
                "or diverged, refit it instead of serving it"
            )
        candidates = np.ones(scores.shape[0], dtype=bool)
        if exclude_seen and self.seen is not None:
            candidates[self.seen.indices[self.seen.indptr[u] : self.seen.indptr[u + 1]]] = False
        idx = np.flatnonzero(candidates)
        take = min(int(k), idx.size)
        if take == 0:
            return Recommendations(str(user_id), (), np.zeros(0, dtype=np.float32))
        cand = scores[idx]
        top = np.argpartition(-cand, take - 1)[:take] if take < idx.size else np.arange(idx.size)
        top = top[np.lexsort((idx[top], -cand[top]))]
        return Recommendations(str(user_id), tuple(self.item_ids.raws(idx[top])), cand[top])

    def recommend_many(
        self, user_ids: Iterable[object], k: int = 10, *, exclude_seen: bool = True
    ) -> list[Recommendations]:
        """:meth:`recommend` for each raw user id, in order."""
        return [self.recommend(u, k, exclude_seen=exclude_seen) for u in user_ids]
