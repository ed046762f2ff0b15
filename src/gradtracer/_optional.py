"""Optional dependencies: one place that imports them and names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from gradtracer.errors import MissingExtraError

# module name -> extra that provides it
_EXTRAS: dict[str, str] = {
    "xgboost": "trees",
    "lightgbm": "trees",
    "catboost": "trees",
    "wandb": "wandb",
    "tensorboard": "tensorboard",
    "implicit": "implicit",
    "pygls": "lsp",
    "pandas": "pandas",
}


def require(module: str) -> ModuleType:
    """Return the imported optional ``module`` or raise :class:`MissingExtraError`.

    The error names the pip extra that installs it, e.g. ``pip install 'gradtracer[trees]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        extra = _EXTRAS.get(module.split(".")[0], "all")
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install 'gradtracer[{extra}]'"
        ) from exc
