"""Amazon review dumps (McAuley et al.) -> :class:`Interactions`.

Two record shapes are recognised by their keys:

========= ========================================== ==============================
release   user / item / rating / time keys           time unit
========= ========================================== ==============================
2014/2018 ``reviewerID, asin, overall, unixReviewTime`` seconds
2023      ``user_id, parent_asin, rating, timestamp``  milliseconds (-> seconds)
========= ========================================== ==============================

Containers: JSON lines (``.json``, ``.jsonl``, ``.ndjson``), a JSON array (``.json`` whose
first character is ``[``), ``.csv`` with a header, or ``.parquet``; any of the text forms
may be gzipped (detected from the file's magic bytes, not its name).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import polars as pl

from gradtracer.errors import DataFormatError
from gradtracer.recsys.data._text import check_file, parse_number
from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.data.validation import MAX_EXACT_TIME, require_rows

__all__ = ["AMAZON_SHAPES", "load_amazon"]

logger = logging.getLogger(__name__)

#: release -> (user key, item key, rating key, timestamp key, timestamp divisor to seconds)
AMAZON_SHAPES: dict[str, tuple[str, str, str, str, int]] = {
    "2014": ("reviewerID", "asin", "overall", "unixReviewTime", 1),
    "2023": ("user_id", "parent_asin", "rating", "timestamp", 1000),
}


def _detect_shape(keys: list[str], path: Path, line: int | None) -> str:
    for release, (u, i, r, t, _) in AMAZON_SHAPES.items():
        if {u, i, r, t} <= set(keys):
            return release
    # name what is missing relative to the closest shape
    best = max(AMAZON_SHAPES, key=lambda rel: len(set(AMAZON_SHAPES[rel][:4]) & set(keys)))
    missing = [c for c in AMAZON_SHAPES[best][:4] if c not in keys]
    raise DataFormatError(
        path,
        line,
        f"missing column(s) {missing} for the Amazon {best} shape "
        f"({', '.join(AMAZON_SHAPES[best][:4])}); found {sorted(keys)}",
    )


def _nonblank_line_of(data: bytes, row: int) -> int | None:
    """1-based line number of the ``row``-th (0-based) non-blank line of ``data``."""
    seen = -1
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            seen += 1
            if seen == row:
                return lineno
    return None


def _first_bad_json_line(data: bytes, path: Path, keys: tuple[str, ...]) -> DataFormatError:
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return DataFormatError(path, lineno, f"expected one JSON object per line ({exc.msg})")
        if not isinstance(record, dict):
            return DataFormatError(
                path, lineno, f"expected one JSON object per line, got {type(record).__name__}"
            )
        missing = [k for k in keys if record.get(k) is None]
        if missing:
            return DataFormatError(path, lineno, f"missing column(s) {missing}")
    return DataFormatError(path, None, "cannot read as JSON lines")


def _read_json(data: bytes, path: Path) -> tuple[pl.DataFrame, str, bool]:
    """Return ``(frame of string columns, release, is_line_based)``."""
    text_start = data.lstrip()[:1]
    if text_start == b"[":
        try:
            records = json.loads(data)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, exc.lineno, f"invalid JSON array ({exc.msg})") from None
        if not isinstance(records, list) or not records:
            raise DataFormatError(path, None, "expected a non-empty JSON array of objects")
        for k, record in enumerate(records):
            if not isinstance(record, dict):
                raise DataFormatError(
                    path,
                    None,
                    f"element {k} of the JSON array is {type(record).__name__}, expected an object",
                )
        release = _detect_shape(list(records[0]), path, None)
        cols = AMAZON_SHAPES[release][:4]
        frame = pl.DataFrame(
            {c: [None if r.get(c) is None else str(r.get(c)) for r in records] for c in cols},
            schema={c: pl.Utf8 for c in cols},
        )
        return frame, release, False
    first = next((ln for ln in data.split(b"\n", 64) if ln.strip()), b"")
    try:
        keys = list(json.loads(first))
    except (json.JSONDecodeError, TypeError):
        raise _first_bad_json_line(data, path, ()) from None
    first_line = _nonblank_line_of(data, 0)
    release = _detect_shape(keys, path, first_line)
    cols = AMAZON_SHAPES[release][:4]
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema={c: pl.Utf8 for c in cols})
    except pl.exceptions.PolarsError:
        raise _first_bad_json_line(data, path, cols) from None
    return frame, release, True


def load_amazon(path: str | Path) -> Interactions:
    """Return the reviews of an Amazon review dump as Interactions (rating = star rating).

    Args:
        path: JSON lines / JSON array / CSV / parquet file, optionally gzipped; the record
            shape (2014/2018 or 2023) is detected from its keys.

    Raw user and item ids are strings (ASINs), so dense indices follow their sorted order.
    2023 timestamps (milliseconds) are converted to seconds.

    Raises:
        DataFormatError: malformed JSON line (with its line number), a missing column (named),
            or a non-numeric rating/timestamp (column and line named).
    """
    p = check_file(path)
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataFormatError(p, None, f"truncated or corrupt gzip data ({exc})") from None
    if not data.strip():
        raise DataFormatError(p, None, "file is empty")
    suffixes = [s.lower() for s in p.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ".json"
    line_of: Callable[[int], int | None] | None = None
    if kind == ".parquet":
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataFormatError(p, None, f"cannot read as parquet ({exc})") from None
        release = _detect_shape(frame.columns, p, None)
    elif kind in (".csv", ".tsv"):
        try:
            frame = pl.read_csv(
                io.BytesIO(data), separator="," if kind == ".csv" else "\t", infer_schema=False
            )
        except pl.exceptions.PolarsError as exc:
            raise DataFormatError(p, None, f"cannot read as CSV with a header ({exc})") from None
        release = _detect_shape(frame.columns, p, 1)
        require_rows(frame.height, p, header=True)
        line_of = _csv_line_finder(data, "," if kind == ".csv" else "\t")
    else:
        frame, release, line_based = _read_json(data, p)
        if line_based:
            line_of = partial(_nonblank_line_of, data)
    require_rows(frame.height, p)
    u, i, r, t, per_second = AMAZON_SHAPES[release]
    for col in (u, i):
        nulls = frame[col].null_count()
        if nulls:
            row = int(frame[col].is_null().arg_true()[0])
            raise DataFormatError(
                p, line_of(row) if line_of else None, f"column {col!r}: missing value"
            )
    strings = frame.select(pl.col(r).cast(pl.Utf8), pl.col(t).cast(pl.Utf8))
    rating = parse_number(strings, r, pl.Float32(), p, "a numeric rating", line_of)
    stamp = parse_number(
        strings,
        t,
        pl.Float64(),
        p,
        f"a numeric timestamp ({'ms' if per_second > 1 else 's'})",
        line_of,
        low=-MAX_EXACT_TIME,
        high=MAX_EXACT_TIME,
    )
    raw = pl.DataFrame(
        {
            "user": frame[u].cast(pl.Utf8),
            "item": frame[i].cast(pl.Utf8),
            "rating": rating,
            "timestamp": (stamp // per_second).cast(pl.Int64),
        }
    )
    ix = Interactions.from_raw(raw, source=str(p))
    logger.info("loaded %s (Amazon %s shape)", ix, release)
    return ix


def _csv_line_finder(data: bytes, sep: str) -> Callable[[int], int | None]:
    """``row -> 1-based line`` of a CSV with a header, counting quoted multi-line fields.

    The record positions are computed on first use only (error paths).
    """
    starts: list[int] = []

    def line_of(row: int) -> int | None:
        if not starts:
            reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")), delimiter=sep)
            prev = 0
            for record in reader:
                if record:  # csv yields [] for a blank line; polars skips those too
                    starts.append(prev + 1)
                prev = reader.line_num
        k = row + 1  # record 0 is the header
        return starts[k] if k < len(starts) else None

    return line_of
