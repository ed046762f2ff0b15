"""The study's model steps: build, train, load a next-item model; attach embedding trackers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.models.next_item import (
    NextItemRecommender,
    TrainingHooks,
    next_item_models,
)
from gradtracer.recsys.sessions.batching import SessionArrays, session_arrays

__all__ = [
    "attach_embedding_trackers",
    "load_model",
    "make_model",
    "model_options",
    "train_model",
]


def model_options(name: str, *, alpha: float = 0.0, gru4rec: Any = None) -> dict[str, Any]:
    """Constructor options of the built-in model ``name`` from the study's settings.

    ``markov`` takes ``alpha``, ``gru4rec`` takes ``config`` (``None`` = defaults); other
    models take none.
    """
    table: dict[str, dict[str, Any]] = {"markov": {"alpha": alpha}, "gru4rec": {"config": gru4rec}}
    return dict(table.get(name, {}))


def make_model(name: str, n_items: int, **options: Any) -> NextItemRecommender:
    """Return an unfitted next-item model ``name`` (a registered short name) over ``n_items``.

    Raises:
        ValueError: an unknown name (listing the registered ones).
    """
    models = next_item_models()
    if name not in models:
        raise ValueError(f"unknown session model {name!r}; choose from {sorted(models)}")
    return models[name].create(n_items, **options)


def train_model(
    name: str,
    train: Interactions | SessionArrays,
    *,
    alpha: float = 0.0,
    gru4rec: Any = None,
    options: dict[str, Any] | None = None,
    hooks: TrainingHooks | None = None,
    on_backward: Callable[[float], None] | None = None,
    progress: bool | None = False,
) -> tuple[NextItemRecommender, dict[str, Any]]:
    """Fit model ``name`` (``popularity``, ``markov``, ``gru4rec`` or any registered one).

    Args:
        train: training sessions (``Interactions`` with a session column, or arrays).
        alpha, gru4rec: the built-in models' settings (see :func:`model_options`).
        options: constructor options; replaces ``alpha`` / ``gru4rec`` when given.
        hooks: training callbacks; ``on_backward`` / ``progress`` fill them when absent.

    Returns ``(model, log)`` where ``log`` has the training seconds and what the model's
    ``training_log()`` reports (GRU4Rec: per-epoch loss, events per second).
    """
    data = train if isinstance(train, SessionArrays) else session_arrays(train)
    opts = model_options(name, alpha=alpha, gru4rec=gru4rec) if options is None else options
    model = make_model(name, data.n_items, **opts)
    if hooks is None:
        hooks = TrainingHooks(on_backward=on_backward, progress=progress)
    t0 = time.perf_counter()
    model.fit(data, hooks=hooks)
    log = {**model.training_log(), "train_seconds": time.perf_counter() - t0}
    return model, log


def load_model(directory: str | Path) -> NextItemRecommender:
    """Read any next-item model saved by its ``save`` method (``model.json`` names the kind).

    Raises:
        FileNotFoundError: no saved model in ``directory``.
        ValueError: the directory holds a model that is not a next-item model, or
            unreadable files (named).
    """
    from gradtracer.recsys.models import registry

    next_item_models()  # registers the built-in session models
    model = registry.load_model(directory)
    if not isinstance(model, NextItemRecommender):
        raise ValueError(
            f"{Path(directory)}: holds a {getattr(model, 'kind', type(model).__name__)!r} "
            f"model, not a session model (one of {sorted(next_item_models())})"
        )
    return model


def attach_embedding_trackers(model: Any) -> tuple[dict[str, Any], Callable[[float], None]]:
    """Attach an ``EmbeddingTracker`` to each of a model's embedding tables.

    Returns ``(trackers by table name, on_backward)``; pass ``on_backward`` in the model's
    training hooks and ``detach()`` the trackers after.

    Raises:
        ValueError: the model has no embedding tables (popularity, Markov chain).
    """
    from gradtracer.embedding.tracker import EmbeddingTracker

    layers = model.embedding_layers()
    name = getattr(model, "name", type(model).__name__)
    if not layers:
        raise ValueError(
            f"tracking needs embedding tables; the {name} model has none (use gru4rec)"
        )
    trackers = {
        table: EmbeddingTracker(layer, name=f"{name}.{table}") for table, layer in layers.items()
    }

    def on_backward(loss: float) -> None:
        for tracker in trackers.values():
            tracker.step(loss=loss)

    return trackers, on_backward
