"""Line-oriented reading of delimited text files with precise error locations.

Every loader of a delimited format goes through here: the file (plain or gzipped) is read
by polars as one string column per line, so 1-based line numbers survive, then split on the
separator. Malformed input raises :class:`~gradtracer.errors.DataFormatError` naming the
file, the line and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from gradtracer.errors import DataFormatError

#: Byte that never occurs in the supported formats; used as the "separator" when reading
#: whole lines as a single polars column.
_NO_SEP = "\x1f"

_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "::": "'::'", " ": "space"}


def check_file(path: str | Path) -> Path:
    """Return ``path`` as a ``Path``; ``FileNotFoundError`` naming it when it is not a file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    return p


def read_lines(path: str | Path) -> pl.DataFrame:
    """Return the non-blank lines of a text file (gzip is detected) as ``lineno``, ``line``.

    ``lineno`` is the 1-based line number in the (decompressed) file.
    """
    p = check_file(path)
    try:
        df = pl.read_csv(
            p,
            separator=_NO_SEP,
            has_header=False,
            quote_char=None,
            new_columns=["line"],
            infer_schema=False,
        )
    except pl.exceptions.NoDataError:
        raise DataFormatError(p, None, "file is empty") from None
    except pl.exceptions.ComputeError as exc:
        raise DataFormatError(p, None, f"cannot read as text lines ({exc})") from None
    df = df.with_row_index("lineno", offset=1).with_columns(
        pl.col("lineno").cast(pl.Int64), pl.col("line").str.strip_chars_end("\r")
    )
    df = df.filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))
    if df.height == 0:
        raise DataFormatError(p, None, "file has no data lines")
    return df


def split_fields(
    lines: pl.DataFrame, path: str | Path, sep: str, names: Sequence[str]
) -> pl.DataFrame:
    """Split each line on ``sep`` into string columns ``names`` (+ ``lineno``).

    Raises:
        DataFormatError: on the first line whose field count differs from ``len(names)``.
    """
    sep_name = _SEP_NAMES.get(sep, repr(sep))
    parts = lines.select(
        "lineno",
        pl.col("line").str.split(sep).alias("_f"),
    ).with_columns(pl.col("_f").list.len().alias("_n"))
    bad = parts.filter(pl.col("_n") != len(names))
    if bad.height:
        row = bad.row(0, named=True)
        raise DataFormatError(
            path,
            row["lineno"],
            f"expected {len(names)} {sep_name}-separated fields {' '.join(names)}, "
            f"got {row['_n']}",
        )
    return parts.select(
        "lineno", *[pl.col("_f").list.get(k).alias(name) for k, name in enumerate(names)]
    )


def split_with_header(
    lines: pl.DataFrame, path: str | Path, sep: str, required: Sequence[str]
) -> pl.DataFrame:
    """Split lines whose first line is a header; keep the header's columns.

    Raises:
        DataFormatError: when a ``required`` column is absent from the header (naming it)
            or a data line has a different field count than the header.
    """
    header_row = lines.row(0, named=True)
    header = [h.strip().strip('"') for h in header_row["line"].split(sep)]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(
            path,
            header_row["lineno"],
            f"missing column(s) {missing} in header {header}",
        )
    return split_fields(lines.slice(1), path, sep, header)


def parse_number(
    df: pl.DataFrame,
    column: str,
    dtype: pl.DataType,
    path: str | Path,
    what: str,
    line_of: Callable[[int], int | None] | None = None,
) -> pl.Series:
    """Cast string column ``column`` to ``dtype``; error at the first value that is not a number.

    ``what`` names the expected content in the message, e.g. ``"integer timestamp (s)"``.
    The line reported is ``df["lineno"]`` of the offending row, or ``line_of(row)`` when given.
    """
    raw = df[column].str.strip_chars()
    cast = raw.cast(dtype, strict=False)
    bad = cast.is_null()  # unparsable or missing
    if bad.any():
        k = int(bad.arg_true()[0])
        if line_of is not None:
            line = line_of(k)
        else:
            line = int(df["lineno"][k]) if "lineno" in df.columns else None
        raise DataFormatError(
            path, line, f"column {column!r}: expected {what}, got {df[column][k]!r}"
        )
    return cast.alias(column)


def require_columns(
    columns: Sequence[str], required: Sequence[str], path: str | Path
) -> None:
    """``DataFormatError`` naming the file and each required column that is absent."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataFormatError(path, None, f"missing column(s) {missing}; found {list(columns)}")
