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
from gradtracer.recsys.data.validation import parse_numeric, require_rows

#: Byte that never occurs in the supported formats; used as the "separator" when reading
#: whole lines as a single polars column.
_NO_SEP = "\x1f"

_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "::": "'::'", " ": "space"}


def check_file(path: str | Path) -> Path:
    """Return ``path`` as a ``Path``; ``FileNotFoundError`` / ``IsADirectoryError`` naming it
    when it is missing or a directory."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a directory, expected a data file")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    return p


def is_gzip(path: Path) -> bool:
    """True when ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def unreadable(path: Path, exc: OSError) -> OSError | DataFormatError:
    """The error to raise for an ``OSError`` while decoding ``path``.

    A gzip file that ends early or has a bad checksum is malformed data
    (:class:`DataFormatError` naming the file); any other ``OSError`` is returned with
    the file name attached.
    """
    if exc.errno is None and is_gzip(path):
        return DataFormatError(path, None, f"truncated or corrupt gzip data ({exc})")
    if exc.filename is None:
        exc.filename = str(path)
    return exc


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
    except OSError as exc:
        raise unreadable(p, exc) from None
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
            f"expected {len(names)} {sep_name}-separated fields {' '.join(names)}, got {row['_n']}",
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
    require_rows(lines.height - 1, path, header=True)
    return split_fields(lines.slice(1), path, sep, header)


def parse_number(
    df: pl.DataFrame,
    column: str,
    dtype: pl.DataType,
    path: str | Path,
    what: str,
    line_of: Callable[[int], int | None] | None = None,
    *,
    low: float | None = None,
    high: float | None = None,
) -> pl.Series:
    """Cast string column ``column`` to ``dtype``, validated by :func:`parse_numeric`.

    ``what`` names the expected content in the message, e.g. ``"integer timestamp (s)"``.
    Values must be numbers, finite, within ``[low, high]`` and fit ``dtype``. The line
    reported is ``df["lineno"]`` of the offending row, or ``line_of(row)`` when given.
    """
    lines = df["lineno"] if line_of is None and "lineno" in df.columns else None
    return parse_numeric(
        df[column],
        path=path,
        column=column,
        dtype=dtype,
        what=what,
        low=low,
        high=high,
        lines=lines,
        line_of=line_of,
    )


def _read_fast(
    path: Path, sep: str, names: Sequence[str] | None, required: Sequence[str]
) -> pl.DataFrame | None:
    """One polars ``read_csv`` of string columns; ``None`` when the file needs the slow path."""
    if len(sep) != 1:
        return None
    try:
        df = pl.read_csv(
            path,
            separator=sep,
            has_header=names is None,
            new_columns=list(names) if names is not None else None,
            infer_schema=False,
            quote_char=None,
        )
    except (pl.exceptions.PolarsError, ValueError):
        return None
    except OSError as exc:
        raise unreadable(path, exc) from None
    if names is None:
        df = df.rename({c: c.strip().strip('"') for c in df.columns})
        if any(c not in df.columns for c in required):
            return None
    checked = list(required) if names is None else list(names)
    if df.height == 0 or df.select(checked).null_count().sum_horizontal().item():
        return None
    first = 2 if names is None else 1  # line number of the first data row (no blank lines)
    return df.with_row_index("lineno", offset=first).with_columns(pl.col("lineno").cast(pl.Int64))


def parse_fields(
    path: str | Path,
    sep: str,
    parse: Callable[[pl.DataFrame], pl.DataFrame],
    *,
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
) -> pl.DataFrame:
    """Split a delimited file into string columns and apply ``parse`` to them.

    Tries one fast polars read first; if that read fails or ``parse`` raises
    :class:`DataFormatError`, re-reads line by line so the error names the exact line.

    Args:
        names: column names of a headerless file; ``None`` means the first line is a header
            that must contain every column of ``required``.
        parse: turns the string columns (plus ``lineno``) into the loader's frame; raises
            ``DataFormatError`` on bad values.
    """
    p = check_file(path)
    fast = _read_fast(p, sep, names, required)
    if fast is not None:
        try:
            return parse(fast)
        except DataFormatError:
            pass  # locate the problem precisely below
    lines = read_lines(p)
    if names is None:
        fields = split_with_header(lines, p, sep, required)
    else:
        fields = split_fields(lines, p, sep, names)
    return parse(fields)
