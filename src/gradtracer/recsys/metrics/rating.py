"""Rating-prediction errors (explicit feedback)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mae", "rmse"]


def _pair(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, dtype=np.float64)
    t = np.asarray(true.detach().cpu() if hasattr(true, "detach") else true, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} != true shape {t.shape}")
    if p.size == 0:
        raise ValueError("rmse/mae need at least one rating, got empty arrays")
    return p.ravel(), t.ravel()


def rmse(pred: Any, true: Any) -> float:
    """Return the root mean squared error ``sqrt(mean((pred - true)^2))`` in rating units."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: Any, true: Any) -> float:
    """Return the mean absolute error ``mean(|pred - true|)`` in rating units."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t)))
