"""Input checks of a feature matrix: numeric columns, missing values, constant columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ColumnScreen", "as_matrix", "screen_columns"]


def as_matrix(x: Any, feature_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Return ``(X (n_rows, n_features) float64, names)`` from an array or a pandas/polars frame.

    Raises:
        TypeError: a column is not numeric (names the column and its dtype).
        ValueError: ``x`` is not 2-D or ``feature_names`` has the wrong length.
    """
    names: list[str] | None = None
    if hasattr(x, "columns") and hasattr(x, "dtypes"):  # pandas or polars frame
        names = [str(c) for c in x.columns]
        for name, dtype in zip(names, list(x.dtypes), strict=True):
            text = str(dtype).lower()
            if not any(k in text for k in ("int", "float", "bool", "decimal")):
                raise TypeError(f"feature column {name!r} has non-numeric dtype {dtype}")
        x = x.to_numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_rows, n_features), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"X must be numeric, got dtype {arr.dtype}")
    if feature_names is not None:
        names = [str(n) for n in feature_names]
    if names is None:
        names = [f"x{i}" for i in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"got {len(names)} feature names for {arr.shape[1]} columns of X")
    if len(set(names)) != len(names):
        raise ValueError(f"feature names must be unique, got duplicates in {names}")
    return arr.astype(np.float64, copy=False), names


@dataclass(frozen=True)
class ColumnScreen:
    """What the screen found per column (indices into the input columns).

    Attributes:
        missing_fraction: (n_features,) fraction of NaN/inf entries per column.
        dropped_missing: columns dropped for having more than ``max_missing`` missing.
        constant: columns with one distinct finite value (or none) among the kept rows.
        kept: columns that pass both checks, in input order.
        row_mask: (n_rows,) rows used downstream (finite in every kept column and in y).
        target_missing: rows dropped because the target was NaN/inf.
    """

    missing_fraction: np.ndarray
    dropped_missing: tuple[int, ...]
    constant: tuple[int, ...]
    kept: tuple[int, ...]
    row_mask: np.ndarray
    target_missing: int


def screen_columns(x: np.ndarray, y: np.ndarray, *, max_missing: float = 0.5) -> ColumnScreen:
    """Return the :class:`ColumnScreen` of ``x`` (n_rows, n_features) against target ``y``.

    Columns with more than ``max_missing`` NaN/inf are dropped; in the remaining columns
    rows with a NaN/inf (or a NaN/inf target) are dropped (complete cases); then columns
    that are constant on those rows are dropped.
    """
    finite = np.isfinite(x)
    missing = 1.0 - finite.mean(axis=0) if x.shape[0] else np.zeros(x.shape[1])
    dropped = tuple(int(i) for i in np.flatnonzero(missing > max_missing))
    cand = [i for i in range(x.shape[1]) if i not in dropped]
    y_ok = np.isfinite(y)
    rows = y_ok & finite[:, cand].all(axis=1) if cand else y_ok.copy()
    constant = []
    for i in cand:
        col = x[rows, i]
        if col.size == 0 or np.all(col == col[0]):
            constant.append(i)
    kept = tuple(i for i in cand if i not in constant)
    return ColumnScreen(
        missing_fraction=missing,
        dropped_missing=dropped,
        constant=tuple(constant),
        kept=kept,
        row_mask=rows,
        target_missing=int((~y_ok).sum()),
    )
