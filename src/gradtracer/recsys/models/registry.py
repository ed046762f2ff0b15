"""Registry of model kinds: the ``kind`` saved in ``model.json`` names the class that loads it.

A model class registers itself with :func:`register_model`; :func:`load_model` reads the
``kind`` of a saved directory (any layout :func:`~gradtracer.recsys.models.artifact.read_artifact`
reads) and calls that class's ``load``. User-item and next-item models share this registry.
The built-in models register when their module is imported; :func:`model_class`,
:func:`available_models` and :func:`load_model` import those modules first.

Examples:
    >>> from gradtracer.recsys.models.registry import available_models, model_class
    >>> "implicit_mf" in available_models()
    True
    >>> model_class("popularity").__name__
    'PopularityRecommender'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gradtracer.recsys.models.artifact import artifact_kind

__all__ = ["BUILTIN_MODULES", "available_models", "load_model", "model_class", "register_model"]

T = TypeVar("T", bound=type)

#: Modules whose import registers the built-in models (imported on first registry lookup).
BUILTIN_MODULES: list[str] = [
    "gradtracer.recsys.models.popularity",
    "gradtracer.recsys.models.mf",
    "gradtracer.recsys.models.svd",
    "gradtracer.recsys.models.als",
    "gradtracer.recsys.cf.model",
    "gradtracer.recsys.models.session_popularity",
    "gradtracer.recsys.models.markov",
    "gradtracer.recsys.models.gru4rec",
]

_REGISTRY: dict[str, type] = {}
_loaded_builtins = False


def register_model(kind: str) -> Callable[[T], T]:
    """Class decorator: register ``cls`` under ``kind`` and set ``cls.kind = kind``.

    Raises:
        ValueError: ``kind`` is empty, or already registered to another class.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")

    def decorate(cls: T) -> T:
        other = _REGISTRY.get(kind)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"model kind {kind!r} is already registered to {other.__module__}.{other.__qualname__}"
            )
        cls.kind = kind  # type: ignore[attr-defined]
        _REGISTRY[kind] = cls
        return cls

    return decorate


def _import_builtins() -> None:
    global _loaded_builtins
    if _loaded_builtins:
        return
    _loaded_builtins = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    """Sorted list of the registered kinds (built-ins included)."""
    _import_builtins()
    return sorted(_REGISTRY)


def model_class(kind: str) -> type:
    """Return the class registered under ``kind``.

    Raises:
        ValueError: no such kind (the message lists the registered ones).
    """
    _import_builtins()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; registered: {sorted(_REGISTRY)}") from None


def load_model(directory: str | Path, **kwargs: Any) -> Any:
    """Load the model saved in ``directory`` with the class its ``kind`` names.

    ``kwargs`` pass on to that class's ``load`` (e.g. ``device=`` for torch models).

    Raises:
        FileNotFoundError: no saved model in ``directory``.
        ArtifactError / ValueError: unreadable files or an unregistered kind (named).
    """
    kind = artifact_kind(directory)
    try:
        cls: Any = model_class(kind)
    except ValueError as exc:
        raise ValueError(f"{Path(directory)}: {exc}") from None
    return cls.load(directory, **kwargs)
