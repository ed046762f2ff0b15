"""Session click logs -> :class:`Interactions` with a ``session`` column.

================ ============================================= ===========================
``fmt``          line format                                   timestamp (s)
================ ============================================= ===========================
``tsv``          header ``SessionId<TAB>ItemId<TAB>Time``        ``Time`` (s, may be float)
                 (GRU4Rec preprocessing output)
``yoochoose``    ``session,timestamp,item,category``, no header  ISO-8601 ``timestamp``
``diginetica``   header ``session_id;user_id;item_id;timeframe;  ``eventdate`` (day, UTC) +
                 eventdate``                                    ``timeframe`` / 1000
``retailrocket`` header ``timestamp,visitorid,event,itemid,      ``timestamp`` / 1000;
                 transactionid``                                sessions = gaps of
                                                                ``session_gap`` s per visitor
================ ============================================= ===========================

Every event gets ``rating = 1.0``. Users: the session itself for ``tsv``, ``yoochoose`` and
``diginetica`` (anonymous sessions), the visitor for ``retailrocket``. Rows are ordered by
session, then time, then file order, so row order is the click order inside each session even
where sub-second times are truncated to whole seconds.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from gradtracer.errors import DataFormatError
from gradtracer.recsys.data._text import parse_fields, parse_number
from gradtracer.recsys.data.interactions import IdMap, Interactions, dense_codes, encode_ids
from gradtracer.recsys.data.validation import MAX_EXACT_TIME

__all__ = ["SESSION_FORMATS", "load_sessions", "sessionize"]

logger = logging.getLogger(__name__)

#: Supported values of ``load_sessions(fmt=...)``.
SESSION_FORMATS = ("tsv", "yoochoose", "diginetica", "retailrocket")

#: Default inactivity gap that starts a new RetailRocket session: 30 minutes, in seconds.
DEFAULT_SESSION_GAP = 30 * 60


def load_sessions(
    path: str | Path, fmt: str = "tsv", *, session_gap: int = DEFAULT_SESSION_GAP
) -> Interactions:
    """Return a session click log as Interactions with a dense ``session`` column.

    Args:
        path: the log file (gzip allowed).
        fmt: one of :data:`SESSION_FORMATS` (default ``"tsv"``, the GRU4Rec layout).
        session_gap: RetailRocket only: seconds of inactivity after which a visitor's next
            event opens a new session (default 1800 = 30 min).

    Raises:
        DataFormatError: malformed line, missing column or non-numeric/unparsable time,
            naming the file, the 1-based line and the column.
    """
    if fmt not in SESSION_FORMATS:
        raise ValueError(f"fmt must be one of {SESSION_FORMATS}, got {fmt!r}")
    if session_gap <= 0:
        raise ValueError(f"session_gap must be > 0 seconds, got {session_gap}")
    p = Path(path)
    if fmt == "tsv":
        raw = parse_fields(p, "\t", partial(_tsv, path=p), required=_TSV)
    elif fmt == "yoochoose":
        raw = parse_fields(p, ",", partial(_yoochoose, path=p), names=_YOOCHOOSE)
    elif fmt == "diginetica":
        raw = parse_fields(p, ";", partial(_diginetica, path=p), required=_DIGINETICA)
    else:
        raw = parse_fields(p, ",", partial(_retailrocket, path=p), required=_RETAILROCKET)
        raw = sessionize(raw, session_gap=session_gap)
    ix = _to_interactions(raw, str(p))
    logger.info("loaded %s (%s)", ix, fmt)
    return ix


def _to_interactions(raw: pl.DataFrame, source: str) -> Interactions:
    """Encode ids and order rows by session, then time (sub-second kept), then file order."""
    session, session_keys = dense_codes(raw["session"])
    if raw["user"].equals(raw["session"]):  # anonymous sessions: user = session, encode once
        users = session.alias("user")
        user_ids = IdMap._from_unique(session_keys.cast(pl.Utf8).to_list(), "user")
    else:
        users, user_ids = encode_ids(raw["user"], "user")
    items, item_ids = encode_ids(raw["item"], "item")
    frame = pl.DataFrame(
        {
            "user": users,
            "item": items,
            "rating": pl.Series(np.ones(raw.height, np.float32)),
            "timestamp": raw["time"].floor().cast(pl.Int64),
            "session": session,
            "_time": raw["time"],
            "_line": raw["lineno"],
        }
    )
    d_session = pl.col("session").diff()
    in_order = (d_session > 0) | ((d_session == 0) & (pl.col("_time").diff() >= 0))
    if not frame.select(in_order.fill_null(True).all()).item():  # most logs are already sorted
        frame = frame.sort(["session", "_time", "_line"])
    return Interactions(frame.drop(["_time", "_line"]), user_ids, item_ids, source)


#: Bound of every time column: finite and at most 2**53 in magnitude (exact in float64).
_T = MAX_EXACT_TIME

_TSV = ("SessionId", "ItemId", "Time")
_YOOCHOOSE = ("session", "timestamp", "item", "category")
_DIGINETICA = ("session_id", "item_id", "timeframe", "eventdate")
_RETAILROCKET = ("timestamp", "visitorid", "event", "itemid")


def _tsv(f: pl.DataFrame, path: Path) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "lineno": f["lineno"],
            "session": f["SessionId"],
            "user": f["SessionId"],
            "item": f["ItemId"],
            "time": parse_number(
                f, "Time", pl.Float64(), path, "a numeric time (s)", low=-_T, high=_T
            ),
        }
    )


def _yoochoose(f: pl.DataFrame, path: Path) -> pl.DataFrame:
    stamp = (
        f["timestamp"]
        .str.strip_chars()
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ms", time_zone="UTC", strict=False)
    )
    if stamp.null_count():
        k = int(stamp.is_null().arg_true()[0])
        raise DataFormatError(
            path,
            int(f["lineno"][k]),
            f"column 'timestamp': expected an ISO-8601 time like 2014-04-07T10:51:09.277Z, "
            f"got {f['timestamp'][k]!r}",
        )
    parse_number(f, "session", pl.Int64(), path, "an integer session id")
    return pl.DataFrame(
        {
            "lineno": f["lineno"],
            "session": f["session"],
            "user": f["session"],
            "item": f["item"],
            "time": stamp.dt.epoch("ms").cast(pl.Float64) / 1000.0,
        }
    )


def _diginetica(f: pl.DataFrame, path: Path) -> pl.DataFrame:
    day = f["eventdate"].str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    if day.null_count():
        k = int(day.is_null().arg_true()[0])
        raise DataFormatError(
            path,
            int(f["lineno"][k]),
            f"column 'eventdate': expected a date YYYY-MM-DD, got {f['eventdate'][k]!r}",
        )
    frame_ms = parse_number(
        f, "timeframe", pl.Float64(), path, "a numeric timeframe (ms)", low=-_T, high=_T
    )
    day_s = day.cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Float64)
    return pl.DataFrame(
        {
            "lineno": f["lineno"],
            "session": f["session_id"],
            "user": f["session_id"],
            "item": f["item_id"],
            "time": day_s + frame_ms / 1000.0,
        }
    )


def _retailrocket(f: pl.DataFrame, path: Path) -> pl.DataFrame:
    ms = parse_number(
        f, "timestamp", pl.Float64(), path, "a numeric timestamp (ms)", low=-_T, high=_T
    )
    return pl.DataFrame(
        {
            "lineno": f["lineno"],
            "user": f["visitorid"],
            "item": f["itemid"],
            "time": ms / 1000.0,
        }
    )


def sessionize(events: pl.DataFrame, *, session_gap: int = DEFAULT_SESSION_GAP) -> pl.DataFrame:
    """Return ``events`` with a ``session`` column cut at inactivity gaps per user.

    Args:
        events: frame with ``user``, ``time`` (seconds, float or int) and ``lineno``
            (tie-break for equal times).
        session_gap: a user's event more than ``session_gap`` seconds after that user's
            previous event starts a new session (default 1800).

    Sessions are numbered ``0..S-1`` in order of (start time, user, first line).
    """
    ev = events.sort(["user", "time", "lineno"], maintain_order=True)
    new = (pl.col("user") != pl.col("user").shift(1)) | (
        pl.col("time") - pl.col("time").shift(1) > session_gap
    )
    ev = ev.with_columns(new.fill_null(True).cum_sum().alias("_run"))
    starts = (
        ev.group_by("_run")
        .agg(
            pl.col("time").first().alias("_t0"),
            pl.col("user").first().alias("_u"),
            pl.col("lineno").first().alias("_l0"),
        )
        .sort(["_t0", "_u", "_l0"])
        .with_row_index("session")
        .select(pl.col("session").cast(pl.Int64), "_run")
    )
    return ev.join(starts, on="_run", how="left").drop("_run")
