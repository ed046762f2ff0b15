"""Small numeric helpers shared by every layer (no imports beyond the standard library)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["finite_or_none"]


def finite_or_none(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None when it is None, a bool, not a number,
    NaN or infinite. Numpy and 0-d torch scalars convert like Python numbers.

    >>> finite_or_none(2), finite_or_none("x"), finite_or_none(float("nan")), finite_or_none(True)
    (2.0, None, None, None)
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
