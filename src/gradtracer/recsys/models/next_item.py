"""The interface every next-item (session) model shares: fit / score / recommend / scorer / save / load.

A next-item model is fitted on training sessions (:class:`SessionArrays`), and scores the
whole catalog for the next click of an ongoing session. Evaluation and recommendation go
through one small scoring protocol (:class:`NextItemScorer`): ``init_state(batch_size)``
and ``advance(state, batch)``, which applies the batch's slot changes (see
:mod:`gradtracer.recsys.sessions.batching`), consumes ``batch.inputs`` and returns
``(B, n_items)`` scores for the next item together with the new state. Stateless models
ignore the state. :meth:`NextItemRecommender.scorer` returns that scorer and
:func:`gradtracer.recsys.sessions.evaluate_next_item` evaluates it.

Models save to a directory through :mod:`gradtracer.recsys.models.artifact` (``model.json``
with ``kind`` and ``format_version`` + ``arrays.npz``, crash-safe) and register their
``kind`` with :mod:`gradtracer.recsys.models.registry`, so
:func:`~gradtracer.recsys.models.registry.load_model` reads any of them. Layout versions of
every session model: 1 = the layout before ``kind`` existed (``"model": name`` with
``counts.npz`` / ``markov.npz`` / ``weights.npz``, still read), 2 = ``arrays.npz``.

Length: the module runs past 400 lines because it is one contract (the base class, its
scoring protocol, training hooks and the checks and prefix scoring every model inherits);
split up, a model author would read several files to learn one interface.

>>> from gradtracer.recsys.models.next_item import next_item_models
>>> {"gru4rec", "markov", "popularity"} <= set(next_item_models())
True
"""

from __future__ import annotations

import importlib
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    runtime_checkable,
)

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer.recsys.sessions.batching import (
    SessionArrays,
    SessionBatch,
    iterate_session_parallel,
)

if TYPE_CHECKING:
    from torch import nn

    from gradtracer.recsys.sessions.evaluate import NextItemResult

__all__ = [
    "FORMAT_VERSION",
    "NEXT_ITEM_MODULES",
    "NextItemModel",
    "NextItemRecommender",
    "NextItemScorer",
    "TrainingHooks",
    "check_item_space",
    "check_k",
    "item_counts",
    "next_item_models",
    "prefix_arrays",
    "score_prefixes",
]

#: ``format_version`` every session model writes (1 = the layout before ``kind``).
FORMAT_VERSION = 2

#: Modules whose import registers the built-in next-item models.
NEXT_ITEM_MODULES: tuple[str, ...] = (
    "gradtracer.recsys.models.session_popularity",
    "gradtracer.recsys.models.markov",
    "gradtracer.recsys.models.gru4rec",
)

Self = TypeVar("Self", bound="NextItemRecommender")
Exclude: TypeAlias = Literal["seen"] | Sequence[Iterable[int]] | sp.spmatrix | None


@runtime_checkable
class NextItemScorer(Protocol):
    """What next-item evaluation and recommendation need: a catalog size and two methods."""

    n_items: int

    def init_state(self, batch_size: int) -> Any:
        """Return the recurrent state for ``batch_size`` slots (``None`` when stateless)."""
        ...

    def advance(self, state: Any, batch: SessionBatch) -> tuple[torch.Tensor, Any]:
        """Return ``(scores (B, n_items) float, new_state)`` after feeding ``batch.inputs``."""
        ...


#: Former name of :class:`NextItemScorer`.
NextItemModel = NextItemScorer


@dataclass(frozen=True)
class TrainingHooks:
    """Callbacks of iterative training (models fitted by counting never call them).

    Attributes:
        on_backward: ``on_backward(loss)`` after each backward pass, before the optimiser
            step (where an EmbeddingTracker or FlowManager is stepped).
        on_epoch: called with an ``EpochProgress`` at the end of every epoch.
        on_progress: called with an ``EpochProgress`` at every 10% of an epoch.
        progress: progress bar: ``True`` always, ``False`` never (default), ``None`` only
            when stderr is a terminal.
    """

    on_backward: Callable[[float], None] | None = None
    on_epoch: Callable[[Any], None] | None = None
    on_progress: Callable[[Any], None] | None = None
    progress: bool | None = False


def item_counts(data: SessionArrays) -> np.ndarray:
    """Return ``(n_items,)`` float64 event counts per item in ``data``."""
    return np.bincount(data.items, minlength=data.n_items).astype(np.float64)


def check_item_space(data: SessionArrays, n_items: int) -> None:
    """Raise ``ValueError`` unless ``data`` is non-empty session data over ``n_items`` items."""
    if not isinstance(data, SessionArrays):
        raise TypeError(
            f"expected SessionArrays (session_arrays(interactions)), got {type(data).__name__}"
        )
    if data.n_items != n_items:
        raise ValueError(
            f"session data has an item space of {data.n_items} items, model has {n_items}"
        )
    if data.n_events == 0:
        raise ValueError("cannot fit on empty session data (0 events)")


def check_k(k: Any, n_items: int) -> int:
    """Return ``k`` as an int; ``ValueError`` unless it is an int in ``[1, n_items]``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= n_items:
        raise ValueError(f"k must be an int in [1, {n_items}] (the catalog size), got {k!r}")
    return int(k)


def prefix_arrays(prefixes: Sequence[Sequence[int]], n_items: int) -> SessionArrays:
    """Return session arrays whose last event of session ``i`` is a placeholder after prefix ``i``.

    Scoring those arrays position by position yields, at each placeholder, the scores of
    the next item after the prefix. ``ValueError`` names an empty prefix or a bad index.
    """
    rows = []
    for i, p in enumerate(prefixes):
        arr = np.asarray(p).reshape(-1)
        if arr.size == 0:
            raise ValueError(f"prefix {i} is empty; a session needs at least one click")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"prefix {i} must hold integer item indices, got dtype {arr.dtype}")
        bad = arr[(arr < 0) | (arr >= n_items)]
        if bad.size:
            raise ValueError(f"prefix {i} has item index {int(bad[0])} outside [0, {n_items})")
        rows.append(np.append(arr.astype(np.int64), 0))
    n = len(rows)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    items = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    order = np.arange(n, dtype=np.int64)
    return SessionArrays(items, offsets, order, order.copy(), n_items)


def score_prefixes(
    scorer: NextItemScorer, prefixes: Sequence[Sequence[int]], *, batch_size: int = 512
) -> np.ndarray:
    """Return ``(len(prefixes), n_items)`` float32 next-item scores after each prefix.

    Raises:
        ValueError: an empty prefix, an index outside the catalog, or NaN scores.
    """
    n_items = scorer.n_items
    data = prefix_arrays(prefixes, n_items)
    n = data.n_sessions
    out = np.zeros((n, n_items), dtype=np.float32)
    if n == 0:
        return out
    last = data.offsets[1:] - 1  # event index of each placeholder
    state = scorer.init_state(min(batch_size, n))
    with torch.no_grad():
        for batch in iterate_session_parallel(data, batch_size):
            scores, state = scorer.advance(state, batch)
            events = batch.target_events.numpy()
            rows = np.flatnonzero(np.isin(events, last))
            if len(rows) == 0:
                continue
            block = scores[torch.from_numpy(rows).to(scores.device)].float().cpu().numpy()
            out[np.searchsorted(last, events[rows])] = block
    bad = np.flatnonzero(np.isnan(out).any(axis=1))
    if bad.size:
        raise ValueError(f"the model scored NaN after prefix {int(bad[0])} ({bad.size} prefixes)")
    return out


def _exclusion_mask(exclude: Exclude, prefixes: Sequence[Sequence[int]], n_items: int) -> Any:
    """Return ``(rows, cols)`` of the items to mask, or ``None``."""
    n = len(prefixes)
    if exclude is None:
        return None
    if isinstance(exclude, str):
        if exclude != "seen":
            raise ValueError(
                f"exclude must be 'seen', per-prefix item lists or a matrix, got {exclude!r}"
            )
        exclude = prefixes
    if sp.issparse(exclude):
        coo = sp.coo_matrix(exclude)
        if coo.shape != (n, n_items):
            raise ValueError(
                f"exclude matrix has shape {coo.shape}, expected ({n}, {n_items}) "
                "(one row per prefix, one column per item)"
            )
        return coo.row.astype(np.int64), coo.col.astype(np.int64)
    if len(exclude) != n:
        raise ValueError(f"exclude has {len(exclude)} rows, expected one per prefix ({n})")
    rows, cols = [], []
    for i, items in enumerate(exclude):
        arr = np.asarray(list(items), dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= n_items):
            raise ValueError(f"exclude row {i} has an item index outside [0, {n_items})")
        rows.append(np.full(arr.size, i, dtype=np.int64))
        cols.append(arr)
    if not rows:
        return None
    return np.concatenate(rows), np.concatenate(cols)


class NextItemRecommender(ABC):
    """Base class of next-item models: fit / score / recommend / scorer / evaluate / save / load.

    Subclasses set ``name`` (the short name used in studies and results) and register a
    ``kind`` with :func:`~gradtracer.recsys.models.registry.register_model`; they implement
    :meth:`fit`, :meth:`scorer`, :meth:`_meta`, :meth:`_arrays` and :meth:`_from_artifact`.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    format_version: ClassVar[int] = FORMAT_VERSION
    #: Arrays file of the layout before ``kind`` (removed when the model is saved again).
    legacy_arrays_file: ClassVar[str | None] = None
    n_items: int

    @classmethod
    def create(cls: type[Self], n_items: int, **options: Any) -> Self:
        """Return an unfitted model over ``n_items`` items with ``options`` (constructor args)."""
        return cast(Any, cls)(n_items, **options)  # subclasses take (n_items, **options)

    @abstractmethod
    def fit(self: Self, train: SessionArrays, *, hooks: TrainingHooks | None = None) -> Self:
        """Learn from training sessions ``train``; return ``self``."""

    @abstractmethod
    def scorer(self) -> NextItemScorer:
        """Return the scoring object that evaluation and recommendation run."""

    # --- scoring (through the scorer) ----------------------------------------------------
    def init_state(self, batch_size: int) -> Any:
        """:meth:`NextItemScorer.init_state` of :meth:`scorer`."""
        return self.scorer().init_state(batch_size)

    def advance(self, state: Any, batch: SessionBatch) -> tuple[torch.Tensor, Any]:
        """:meth:`NextItemScorer.advance` of :meth:`scorer`."""
        return self.scorer().advance(state, batch)

    def score(self, prefixes: Sequence[Sequence[int]], *, batch_size: int = 512) -> np.ndarray:
        """Return ``(len(prefixes), n_items)`` float32 scores of the next click after each prefix.

        Args:
            prefixes: each ongoing session as dense item indices in click order (non-empty).
            batch_size: sessions run in parallel (default 512).
        """
        return score_prefixes(self.scorer(), prefixes, batch_size=batch_size)

    def recommend(
        self,
        prefixes: Sequence[Sequence[int]],
        k: int = 10,
        *,
        exclude: Exclude = None,
        batch_size: int = 512,
    ) -> np.ndarray:
        """Return ``(len(prefixes), k)`` int64 item indices, best first, after each prefix.

        Args:
            prefixes: each ongoing session as dense item indices in click order (non-empty).
            k: list length, an int in ``[1, n_items]`` (default 10).
            exclude: items never recommended: ``"seen"`` (the prefix's own clicks), one
                iterable of item indices per prefix, or a ``(len(prefixes), n_items)``
                sparse matrix whose stored entries are excluded. Excluded items come last
                when fewer than ``k`` others remain. Default ``None``: nothing excluded,
                as in the evaluation protocol.
            batch_size: sessions run in parallel.

        Items are ordered by :meth:`score` (descending); ties go to the lower item index.
        """
        k = check_k(k, self.n_items)
        mask = _exclusion_mask(exclude, prefixes, self.n_items)
        scores = self.score(prefixes, batch_size=batch_size).astype(np.float64)
        if mask is not None:
            scores[mask] = -np.inf
        # stable sort on -score: ties keep the lower item index first
        return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)

    def evaluate(
        self, test: SessionArrays, *, ks: Sequence[int] | None = None, batch_size: int = 512
    ) -> NextItemResult:
        """Return :func:`~gradtracer.recsys.sessions.evaluate_next_item` of :meth:`scorer` on ``test``."""
        from gradtracer.recsys.sessions.evaluate import DEFAULT_KS, evaluate_next_item

        return evaluate_next_item(
            self.scorer(),
            test,
            ks=DEFAULT_KS if ks is None else ks,
            batch_size=batch_size,
            name=self.name,
        )

    # --- training details ----------------------------------------------------------------
    def training_log(self) -> dict[str, Any]:
        """What the last :meth:`fit` measured (empty for models fitted by counting)."""
        return {}

    def embedding_layers(self) -> dict[str, nn.Embedding]:
        """The model's ``nn.Embedding`` tables by name (none for counting models)."""
        return {}

    # --- persistence ---------------------------------------------------------------------
    @abstractmethod
    def _meta(self) -> dict[str, Any]:
        """JSON-safe description written to ``model.json`` (``n_items`` and options)."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Numeric arrays written to ``arrays.npz``."""

    @classmethod
    @abstractmethod
    def _from_artifact(
        cls: type[Self], meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], **kwargs: Any
    ) -> Self:
        """Rebuild a model from what :meth:`save` wrote (any supported ``format_version``)."""

    def save(self, directory: str | Path) -> Path:
        """Write the model into ``directory`` (crash-safe: the previous save stays readable).

        Returns:
            ``directory`` as a :class:`~pathlib.Path`.
        """
        from gradtracer.recsys.models.artifact import write_artifact

        d = write_artifact(
            directory,
            kind=self.kind,
            format_version=self.format_version,
            meta=self._meta(),
            arrays=self._arrays(),
        )
        if self.legacy_arrays_file is not None:
            (d / self.legacy_arrays_file).unlink(missing_ok=True)
        return d

    @classmethod
    def load(cls: type[Self], directory: str | Path, **kwargs: Any) -> Self:
        """Read a model written by :meth:`save` (or by a release before ``kind`` existed).

        Raises:
            FileNotFoundError: no saved model in ``directory``.
            ArtifactError: another kind, a newer ``format_version``, or corrupt files (named).
        """
        from gradtracer.recsys.models.artifact import ArtifactError, read_artifact

        meta, arrays = read_artifact(
            directory, expected_kind=cls.kind, max_version=cls.format_version
        )
        try:
            return cls._from_artifact(meta, arrays, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"{Path(directory)}: cannot rebuild a {cls.kind} model from the saved files "
                f"({exc}); save it again"
            ) from None


def next_item_models() -> dict[str, type[NextItemRecommender]]:
    """Return the registered next-item model classes by short ``name`` (built-ins imported).

    Models of other packages appear once their module registered them.
    """
    from gradtracer.recsys.models.registry import available_models, model_class

    for module in NEXT_ITEM_MODULES:
        importlib.import_module(module)
    out: dict[str, type[NextItemRecommender]] = {}
    for kind in available_models():
        cls = model_class(kind)
        if isinstance(cls, type) and issubclass(cls, NextItemRecommender):
            out[cls.name] = cls
    return out
