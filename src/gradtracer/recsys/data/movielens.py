"""MovieLens rating files (GroupLens) -> :class:`Interactions`.

=========== ================= ==================================================
variant     file              line format
=========== ================= ==================================================
``100k``    ``u.data``        ``user<TAB>item<TAB>rating<TAB>timestamp``, no header
``1m``      ``ratings.dat``   ``UserID::MovieID::Rating::Timestamp``, no header
``10m``     ``ratings.dat``   same as ``1m``
``20m``     ``ratings.csv``   header ``userId,movieId,rating,timestamp``
``25m``     ``ratings.csv``   same as ``20m`` (also ``latest`` / ``32m``)
=========== ================= ==================================================

Timestamps are Unix seconds in every variant.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from gradtracer.errors import DataFormatError
from gradtracer.recsys.data._text import (
    check_file,
    parse_number,
    read_lines,
    split_fields,
    split_with_header,
    unreadable,
)
from gradtracer.recsys.data.interactions import Interactions

__all__ = ["MOVIELENS_VARIANTS", "load_movielens"]

logger = logging.getLogger(__name__)

#: variant -> on-disk layout ("tab", "dat" or "csv").
MOVIELENS_VARIANTS: dict[str, str] = {
    "100k": "tab",
    "1m": "dat",
    "10m": "dat",
    "20m": "csv",
    "25m": "csv",
    "32m": "csv",
    "latest": "csv",
}

_FILE_LAYOUT = {"u.data": "tab", "ratings.dat": "dat", "ratings.csv": "csv"}
_FIELDS = ("user", "item", "rating", "timestamp")


def _find_ratings_file(path: Path) -> Path:
    if path.is_dir():
        for name in _FILE_LAYOUT:
            hits = sorted(path.rglob(name))
            if hits:
                return hits[0]
        raise FileNotFoundError(
            f"{path}: directory holds no MovieLens ratings file ({', '.join(_FILE_LAYOUT)})"
        )
    return check_file(path)


def _sniff_layout(path: Path, first_line: str) -> str:
    if path.name in _FILE_LAYOUT:
        return _FILE_LAYOUT[path.name]
    if "::" in first_line:
        return "dat"
    if first_line.lower().startswith("userid,"):
        return "csv"
    if "\t" in first_line:
        return "tab"
    raise DataFormatError(
        path,
        1,
        "cannot tell the MovieLens variant: expected a tab-separated u.data line, "
        "a '::'-separated ratings.dat line or a 'userId,movieId,rating,timestamp' header; "
        "pass variant= explicitly",
    )


def load_movielens(path: str | Path, variant: str | None = None) -> Interactions:
    """Return the ratings of a MovieLens file (or a directory holding one) as Interactions.

    Args:
        path: ``u.data``, ``ratings.dat`` or ``ratings.csv`` (gzip allowed), or the
            extracted dataset directory.
        variant: one of :data:`MOVIELENS_VARIANTS`; ``None`` (default) detects it from the
            file name, else from the first line.

    Raw user and movie ids are integers, so dense indices follow numeric id order.

    Raises:
        DataFormatError: a malformed line (file, 1-based line number and the expected layout),
            a non-numeric, non-finite or overflowing rating/timestamp, or a header without data.
    """
    p = _find_ratings_file(Path(path))
    if variant is not None and variant not in MOVIELENS_VARIANTS:
        raise ValueError(
            f"variant must be one of {sorted(MOVIELENS_VARIANTS)} or None, got {variant!r}"
        )
    if variant is None and p.name in _FILE_LAYOUT:
        layout = _FILE_LAYOUT[p.name]
    elif variant is not None:
        layout = MOVIELENS_VARIANTS[variant]
    else:
        layout = ""
    frame = _read_fast(p, layout) if layout in ("tab", "csv") else None
    if frame is None:  # slow path: exact line numbers for malformed input
        frame = _read_checked(p, layout)
    ix = Interactions.from_raw(frame, source=str(p))
    logger.info("loaded %s", ix)
    return ix


_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Int64(),
    "item": pl.Int64(),
    "rating": pl.Float32(),
    "timestamp": pl.Int64(),
}


def _read_fast(path: Path, layout: str) -> pl.DataFrame | None:
    """Read a well-formed tab/csv file in one polars call; ``None`` if anything is off."""
    try:
        if layout == "tab":
            df = pl.read_csv(
                path,
                separator="\t",
                has_header=False,
                new_columns=list(_SCHEMA),
                schema_overrides=_SCHEMA,
                quote_char=None,
            )
        else:
            df = pl.read_csv(path, separator=",", quote_char=None)
            if df.columns[:4] != ["userId", "movieId", "rating", "timestamp"]:
                return None
            df = (
                df.select(df.columns[:4])
                .rename(dict(zip(df.columns[:4], _SCHEMA, strict=True)))
                .cast(pl.Schema(_SCHEMA))
            )
    except (pl.exceptions.PolarsError, ValueError):
        return None
    except OSError as exc:
        raise unreadable(path, exc) from None
    if df.width != 4 or df.null_count().sum_horizontal().item() or df.height == 0:
        return None
    if not df["rating"].is_finite().all():
        return None  # NaN, inf or a float32 overflow: the checked path names the line
    return df


def _read_checked(p: Path, layout: str) -> pl.DataFrame:
    lines = read_lines(p)
    if not layout:
        layout = _sniff_layout(p, lines["line"][0])
    if layout == "tab":
        fields = split_fields(lines, p, "\t", _FIELDS)
    elif layout == "dat":
        fields = split_fields(lines, p, "::", _FIELDS)
    else:
        fields = split_with_header(lines, p, ",", ("userId", "movieId", "rating", "timestamp"))
        fields = fields.rename({"userId": "user", "movieId": "item"})
    return pl.DataFrame(
        [
            parse_number(fields, "user", pl.Int64(), p, "an integer user id"),
            parse_number(fields, "item", pl.Int64(), p, "an integer item id"),
            parse_number(fields, "rating", pl.Float32(), p, "a numeric rating"),
            parse_number(fields, "timestamp", pl.Int64(), p, "an integer timestamp (s)"),
        ]
    )
