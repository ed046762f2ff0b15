"""One entry point over every loader: detect a file's format and summarise a table.

Formats (``fmt`` values): ``"movielens"``, ``"amazon"``, ``"tsv"``, ``"yoochoose"``,
``"diginetica"``, ``"retailrocket"``, ``"saved"`` (a directory written by
:meth:`Interactions.save`) and ``"auto"`` (detect from the name and the first line).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

from gradtracer.errors import DataFormatError
from gradtracer.recsys.data._text import is_gzip
from gradtracer.recsys.data.amazon import load_amazon
from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.data.movielens import load_movielens
from gradtracer.recsys.data.sessions import SESSION_FORMATS, load_sessions

__all__ = ["FORMATS", "describe", "detect_format", "load_interactions"]

FORMATS = ("auto", "saved", "movielens", "amazon", *SESSION_FORMATS)


def _first_line(path: Path) -> str:
    try:
        if is_gzip(path):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                return next((line.strip() for line in fh if line.strip()), "")
        with open(path, encoding="utf-8", errors="replace") as fh:
            return next((line.strip() for line in fh if line.strip()), "")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(path, None, f"truncated or corrupt gzip data ({exc})") from None


def detect_format(path: str | Path) -> str:
    """Return the ``fmt`` that reads ``path`` (never ``"auto"``).

    Raises:
        DataFormatError: when no known layout matches (names the first line seen).
    """
    p = Path(path)
    if p.is_dir():
        if (p / "interactions.parquet").exists():
            return "saved"
        return "movielens"  # load_movielens searches the directory for its ratings file
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if not p.is_file():
        raise DataFormatError(p, None, "not a regular file")
    name = p.name.lower().removesuffix(".gz")
    if name in ("u.data", "ratings.dat", "ratings.csv"):
        return "movielens"
    if name.endswith(".parquet"):
        return "amazon"
    head = _first_line(p)
    if head.startswith(("{", "[")):
        return "amazon"
    compact = head.replace('"', "")
    if compact.startswith("SessionId\t"):
        return "tsv"
    if compact.startswith("session_id;"):
        return "diginetica"
    if compact.startswith("timestamp,visitorid,"):
        return "retailrocket"
    if compact.startswith(("reviewerID,", "user_id,", "asin,", "parent_asin,")):
        return "amazon"
    if compact.lower().startswith("userid,") or "::" in head:
        return "movielens"
    fields = head.split(",")
    if len(fields) == 4 and "T" in fields[1] and fields[1].endswith("Z"):
        return "yoochoose"
    if len(head.split("\t")) == 4:
        return "movielens"
    raise DataFormatError(
        p, 1, f"cannot detect the format from the first line {head[:80]!r}; pass fmt= explicitly"
    )


def load_interactions(path: str | Path, fmt: str = "auto", **kwargs: Any) -> Interactions:
    """Return the interactions in ``path`` read with the loader for ``fmt``.

    Args:
        fmt: one of :data:`FORMATS` (default ``"auto"``: :func:`detect_format`).
        **kwargs: passed to the loader (e.g. ``variant=`` or ``session_gap=``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "saved":
        return Interactions.load(path)
    if fmt == "movielens":
        return load_movielens(path, **kwargs)
    if fmt == "amazon":
        return load_amazon(path, **kwargs)
    return load_sessions(path, fmt, **kwargs)


def describe(ix: Interactions) -> dict[str, Any]:
    """Return size statistics: rows, users/items (present and in the id maps), density,
    rating range, time range (s) and, for session data, session count and mean length."""
    f = ix.frame
    users = f["user"].n_unique()
    items = f["item"].n_unique()
    out: dict[str, Any] = {
        "source": ix.source,
        "rows": f.height,
        "users": users,
        "items": items,
        "n_users": ix.n_users,
        "n_items": ix.n_items,
        "density": f.height / (users * items) if users and items else 0.0,
        "rating_min": _number(f["rating"].min(), float),
        "rating_max": _number(f["rating"].max(), float),
        "timestamp_min": _number(f["timestamp"].min(), int),
        "timestamp_max": _number(f["timestamp"].max(), int),
        "duplicate_pairs": f.height - f.select("user", "item").n_unique(),
    }
    if ix.has_sessions:
        n_sessions = f["session"].n_unique()
        out["sessions"] = n_sessions
        out["mean_session_length"] = f.height / n_sessions if n_sessions else 0.0
    return out


def _number(value: Any, kind: type[float] | type[int]) -> float | int | None:
    """``value`` as a Python number, ``None`` for an empty column or a non-finite float."""
    if value is None:
        return None
    out = kind(value)
    return out if math.isfinite(out) else None
