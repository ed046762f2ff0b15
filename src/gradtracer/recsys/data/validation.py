"""Validation of numeric input columns, shared by every loader.

A value is accepted only when it is a number, is finite (no NaN, no infinity), lies in
the column's range and fits the dtype it is stored as (a rating of ``1e39`` would become
``inf`` in float32; a time of ``1e30`` s overflows int64). The first offending value
raises :class:`~gradtracer.errors.DataFormatError` naming the file, the 1-based line,
the field and the value as written in the file.

Examples:
    >>> import polars as pl
    >>> check_numeric(pl.Series([1.0, 4.5]), path="u.data", column="rating",
    ...               dtype=pl.Float32(), what="a numeric rating").to_list()
    [1.0, 4.5]
    >>> check_numeric(pl.Series([1.0, float("nan")]), path="u.data", column="rating",
    ...               dtype=pl.Float32(), what="a numeric rating",
    ...               lines=pl.Series([1, 2]))
    Traceback (most recent call last):
    ...
    gradtracer.errors.DataFormatError: u.data:2: column 'rating': expected a numeric rating, got 'nan' (not finite)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from gradtracer.errors import DataFormatError

__all__ = [
    "FLOAT32_MAX",
    "MAX_EXACT_TIME",
    "check_numeric",
    "parse_numeric",
    "require_rows",
]

#: Largest finite float32 (ratings are stored as float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Largest magnitude accepted for a time value (s or ms): 2**53, the last integer a float64
#: holds exactly; far inside int64, so converting to integer seconds cannot overflow.
MAX_EXACT_TIME = float(2**53)


_NUMPY_INT: dict[str, type[np.integer]] = {
    "Int8": np.int8,
    "Int16": np.int16,
    "Int32": np.int32,
    "Int64": np.int64,
    "UInt8": np.uint8,
    "UInt16": np.uint16,
    "UInt32": np.uint32,
    "UInt64": np.uint64,
}


def _limits(dtype: pl.DataType) -> tuple[float, float]:
    """Smallest and largest value ``dtype`` stores (floats: finite range)."""
    if dtype == pl.Float32:
        return -FLOAT32_MAX, FLOAT32_MAX
    name = str(dtype)
    if name in _NUMPY_INT:
        info = np.iinfo(_NUMPY_INT[name])
        return float(info.min), float(info.max)
    return -float("inf"), float("inf")


def _problem(
    values: pl.Series, dtype: pl.DataType, low: float | None, high: float | None
) -> tuple[pl.Series, list[str]]:
    """Boolean mask of bad values and, in parallel, the reason of each kind of check."""
    lo_dtype, hi_dtype = _limits(dtype)
    lo = lo_dtype if low is None else max(low, lo_dtype)
    hi = hi_dtype if high is None else min(high, hi_dtype)
    reasons: list[str] = []
    masks: list[pl.Series] = []
    if values.dtype.is_float():
        masks.append(~values.is_finite())
        reasons.append("not finite")
    if lo > -float("inf") or hi < float("inf"):
        as_float = values.cast(pl.Float64)
        masks.append(as_float.is_finite() & ((as_float < lo) | (as_float > hi)))
        if low is None and high is None:
            reasons.append(f"does not fit {str(dtype).lower()}")
        else:
            reasons.append(f"outside [{lo:g}, {hi:g}]")
    if not masks:
        return pl.Series(np.zeros(values.len(), dtype=bool)), reasons
    combined = masks[0]
    for m in masks[1:]:
        combined = combined | m
    return combined.fill_null(False), reasons


def check_numeric(
    values: pl.Series,
    *,
    path: str | Path | None,
    column: str,
    dtype: pl.DataType,
    what: str,
    low: float | None = None,
    high: float | None = None,
    raw: pl.Series | None = None,
    lines: pl.Series | None = None,
    line_of: Callable[[int], int | None] | None = None,
) -> pl.Series:
    """Return ``values`` cast to ``dtype`` after checking each is finite, in range and fits.

    Args:
        values: parsed numbers (float or integer series; nulls are the caller's concern).
        path: the file the values came from (named in the error).
        column: the field name (named in the error).
        dtype: the dtype the values are stored as; its range bounds the values.
        what: what the field should hold, e.g. ``"a numeric rating"``.
        low: smallest accepted value (default: the dtype's).
        high: largest accepted value (default: the dtype's).
        raw: the values as written in the file (quoted in the error; default ``values``).
        lines: 1-based line number of each value.
        line_of: maps a 0-based row to its line; used when ``lines`` is not given.

    Raises:
        DataFormatError: at the first bad value, naming file, line, field and value.
    """
    mask, reasons = _problem(values, dtype, low, high)
    if mask.any():
        k = int(mask.arg_true()[0])
        value = values[k]
        text = raw[k] if raw is not None else _show(value)
        line: int | None = None
        if lines is not None:
            line = int(lines[k])
        elif line_of is not None:
            line = line_of(k)
        reason = _reason(value, dtype, low, high, reasons)
        where = (
            "" if line is not None or lines is not None or line_of is not None else f" (row {k})"
        )
        raise DataFormatError(
            path, line, f"column {column!r}{where}: expected {what}, got {text!r} ({reason})"
        )
    return values.cast(dtype)


def _show(value: object) -> str:
    return "nan" if isinstance(value, float) and value != value else str(value)


def _reason(
    value: object, dtype: pl.DataType, low: float | None, high: float | None, reasons: list[str]
) -> str:
    if isinstance(value, float) and not np.isfinite(value):
        return "not finite"
    lo_dtype, hi_dtype = _limits(dtype)
    v = float(value)  # type: ignore[arg-type]
    if v < lo_dtype or v > hi_dtype:
        return f"does not fit {str(dtype).lower()}"
    return reasons[-1] if reasons else "invalid"


def parse_numeric(
    strings: pl.Series,
    *,
    path: str | Path | None,
    column: str,
    dtype: pl.DataType,
    what: str,
    low: float | None = None,
    high: float | None = None,
    lines: pl.Series | None = None,
    line_of: Callable[[int], int | None] | None = None,
) -> pl.Series:
    """Parse a string column into ``dtype`` and validate it with :func:`check_numeric`.

    Floats are parsed in float64 first, so a float32 overflow is reported, not stored as
    ``inf``. Empty fields and text that is not a number are errors too.

    Raises:
        DataFormatError: at the first value that is not a number or fails a check.
    """
    raw = strings.cast(pl.Utf8).str.strip_chars()
    parse_as = pl.Float64() if dtype.is_float() else dtype
    parsed = raw.cast(parse_as, strict=False)
    missing = parsed.is_null()
    if missing.any():
        k = int(missing.arg_true()[0])
        line = int(lines[k]) if lines is not None else (line_of(k) if line_of else None)
        raise DataFormatError(path, line, f"column {column!r}: expected {what}, got {strings[k]!r}")
    return check_numeric(
        parsed,
        path=path,
        column=column,
        dtype=dtype,
        what=what,
        low=low,
        high=high,
        raw=strings,
        lines=lines,
        line_of=line_of,
    ).alias(column)


def require_rows(n_rows: int, path: str | Path | None, *, header: bool = False) -> None:
    """``DataFormatError`` naming ``path`` when a file parsed to zero data rows."""
    if n_rows == 0:
        detail = "only a header line, no data rows" if header else "no data rows"
        raise DataFormatError(path, None, f"file has {detail}")
