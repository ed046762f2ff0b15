"""The interactions table every loader produces and every split, model and metric consumes.

An :class:`Interactions` wraps a polars frame with dense integer ids and the two
:class:`IdMap` objects that translate them back to the raw ids of the source data.

Columns of ``Interactions.frame``:

========== ========= =========================================================
column     dtype     meaning
========== ========= =========================================================
user       Int64     dense user index in ``[0, n_users)``
item       Int64     dense item index in ``[0, n_items)``
rating     Float32   explicit rating, or 1.0 for implicit events
timestamp  Int64     seconds since the Unix epoch (loaders convert
                     millisecond sources to seconds)
session    Int64     dense session index (session data only, else absent)
========== ========= =========================================================
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from gradtracer.durable import (
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    mark_complete,
    mark_incomplete,
    require_complete,
)
from gradtracer.errors import DataFormatError
from gradtracer.recsys.data.validation import MAX_EXACT_TIME, check_numeric, parse_numeric

__all__ = ["COLUMNS", "IdMap", "Interactions", "concat", "encode_ids"]

#: Required columns and their dtypes (``session`` is optional).
COLUMNS: dict[str, pl.DataType] = {
    "user": pl.Int64(),
    "item": pl.Int64(),
    "rating": pl.Float32(),
    "timestamp": pl.Int64(),
}


@dataclass
class IdMap:
    """Bijection between raw ids (kept as strings) and dense indices ``0..n-1``.

    Persisted as JSON (``{"name": ..., "ids": [raw ids in index order]}``), never pickle.
    """

    ids: list[str]
    name: str = "id"
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ids = [str(x) for x in self.ids]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"IdMap {self.name!r} has duplicate raw ids")

    @classmethod
    def _from_unique(cls, ids: list[str], name: str) -> IdMap:
        """Build from ids already known to be distinct strings (skips the checks)."""
        obj = cls.__new__(cls)
        obj.ids, obj.name, obj._index = ids, name, None
        return obj

    def _lookup(self) -> dict[str, int]:
        if self._index is None:  # built on first use: loaders never need it
            self._index = {raw: i for i, raw in enumerate(self.ids)}
        return self._index

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw: object) -> bool:
        return str(raw) in self._lookup()

    def index(self, raw: object) -> int:
        """Dense index of raw id ``raw``; ``KeyError`` naming the id when unknown."""
        try:
            return self._lookup()[str(raw)]
        except KeyError:
            raise KeyError(f"unknown {self.name} id {raw!r}") from None

    def indices(self, raws: Iterable[object]) -> np.ndarray:
        """Dense indices for many raw ids (``KeyError`` on the first unknown one)."""
        return np.fromiter((self.index(r) for r in raws), dtype=np.int64)

    def raw(self, index: int) -> str:
        """Raw id of dense index ``index``."""
        return self.ids[int(index)]

    def raws(self, indices: Iterable[int]) -> list[str]:
        """Raw ids of many dense indices."""
        return [self.ids[int(i)] for i in indices]

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "ids": [raw ids in index order]}``."""
        return {"name": self.name, "ids": self.ids}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdMap:
        """Inverse of :meth:`to_dict`."""
        return cls(ids=list(data["ids"]), name=str(data.get("name", "id")))

    def to_json(self) -> str:
        """The map as JSON text; :meth:`to_dict` gives the dict."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: str | dict[str, Any]) -> IdMap:
        """Read :meth:`to_json` text (a dict is accepted too, as :meth:`from_dict`)."""
        return cls.from_dict(json.loads(data) if isinstance(data, str) else data)

    def save(self, path: str | Path) -> None:
        """Write as JSON (atomically: the file is the old or the new map, never a mix)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        """Read a map written by :meth:`save`."""
        return cls.from_json(Path(path).read_text())


@dataclass
class Interactions:
    """A validated interactions table with its id maps.

    Attributes:
        frame: polars DataFrame with the columns of :data:`COLUMNS` (+ optional ``session``).
        user_ids: raw user ids in dense-index order.
        item_ids: raw item ids in dense-index order.
        source: where it came from (file path or generator name), for messages and reports.
    """

    frame: pl.DataFrame
    user_ids: IdMap
    item_ids: IdMap
    source: str = "<memory>"

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(
                f"{self.source}: interactions frame lacks column(s) {missing}; "
                f"has {self.frame.columns}"
            )
        casts = [pl.col(c).cast(t) for c, t in COLUMNS.items()]
        if "session" in self.frame.columns:
            casts.append(pl.col("session").cast(pl.Int64))
        self.frame = self.frame.with_columns(casts)
        for col, idmap in (("user", self.user_ids), ("item", self.item_ids)):
            low, high = self.frame[col].min(), self.frame[col].max()
            if self.frame.height and (int(low) < 0 or int(high) >= len(idmap)):  # type: ignore[arg-type]
                raise ValueError(
                    f"{self.source}: column {col!r} holds indices outside [0, {len(idmap)}) "
                    f"(min {low!r}, max {high!r})"
                )
            if self.frame[col].null_count():
                raise ValueError(f"{self.source}: column {col!r} has missing values")

    # --- sizes -------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        """Number of users in the id map (may exceed the users present in ``frame``)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items in the id map (may exceed the items present in ``frame``)."""
        return len(self.item_ids)

    @property
    def has_sessions(self) -> bool:
        return "session" in self.frame.columns

    def __len__(self) -> int:
        return self.frame.height

    def __repr__(self) -> str:
        return (
            f"Interactions({self.frame.height:,} rows, {self.n_users:,} users, "
            f"{self.n_items:,} items, source={self.source!r})"
        )

    # --- views -------------------------------------------------------------------------
    def user_items(self, *, values: str | None = None) -> sp.csr_matrix:
        """``(n_users, n_items)`` CSR matrix; ``values="rating"`` for ratings, else ones.

        Duplicate (user, item) pairs (repeated clicks in session logs, for example) give
        1.0 when ``values`` is None and the SUM of their values otherwise; loaders keep
        duplicates, so call :func:`~gradtracer.recsys.data.deduplicate` first when that
        matters.
        """
        u = self.frame["user"].to_numpy()
        i = self.frame["item"].to_numpy()
        if values is None:
            v = np.ones(len(u), dtype=np.float32)
        else:
            v = self.frame[values].to_numpy().astype(np.float32)
        mat = sp.csr_matrix((v, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)
        if values is None:
            mat.data[:] = 1.0  # binary even where duplicates were summed
        mat.sort_indices()
        return mat

    def with_frame(self, frame: pl.DataFrame, source: str | None = None) -> Interactions:
        """Same id maps, new rows (used by filters and splits)."""
        return Interactions(frame, self.user_ids, self.item_ids, source or self.source)

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_raw(
        cls,
        frame: Any,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        session_col: str | None = None,
        source: str = "<memory>",
    ) -> Interactions:
        """Encode raw ids of a polars or pandas frame into dense indices.

        Dense indices follow the sorted raw ids: numerically when every raw id of a column
        is an integer, else lexicographically, so the same input always gives the same
        maps. Missing rating -> 1.0; missing timestamp -> 0. Sessions are encoded the
        same way into a dense ``session`` column.
        """
        df = _to_polars(frame, source)
        needed = [c for c in (user_col, item_col, rating_col, timestamp_col, session_col) if c]
        absent = [c for c in needed if c not in df.columns]
        if absent:
            raise ValueError(f"{source}: missing column(s) {absent}; found {df.columns}")
        for col in needed:
            nulls = df[col].null_count()
            if nulls:
                raise ValueError(f"{source}: column {col!r} has {nulls} missing value(s)")
        rating = (
            _checked(df[rating_col], source, rating_col, pl.Float32(), "a finite rating")
            if rating_col
            else pl.Series(np.ones(df.height, np.float32))
        )
        timestamp = (
            _checked(df[timestamp_col], source, timestamp_col, pl.Int64(), "a timestamp (s)")
            if timestamp_col
            else pl.Series(np.zeros(df.height, np.int64))
        )
        user_codes, umap = encode_ids(df[user_col], "user")
        item_codes, imap = encode_ids(df[item_col], "item")
        out = pl.DataFrame(
            {"user": user_codes, "item": item_codes, "rating": rating, "timestamp": timestamp}
        )
        if session_col:
            out = out.with_columns(dense_codes(df[session_col])[0].alias("session"))
        return cls(out, umap, imap, source)

    # --- persistence (parquet + json, never pickle) --------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``interactions.parquet``, ``user_ids.json``, ``item_ids.json`` into ``directory``.

        Each file is written atomically and the directory carries a completeness marker
        (:func:`gradtracer.durable.mark_incomplete`), so an interrupted save is refused by
        :meth:`load` instead of being read half-written.
        """
        d = mark_incomplete(directory)
        buffer = io.BytesIO()  # encoded in memory: a failed disk write is then an OSError
        self.frame.write_parquet(buffer)
        with atomic_open(d / "interactions.parquet", "wb") as handle:
            handle.write(buffer.getbuffer())
        self.user_ids.save(d / "user_ids.json")
        self.item_ids.save(d / "item_ids.json")
        atomic_write_json(d / "source.json", {"source": self.source}, indent=None)
        mark_complete(d, {"rows": self.frame.height})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Interactions:
        """Read a directory written by :meth:`save`.

        Raises:
            FileNotFoundError: no ``interactions.parquet`` in ``directory``.
            IncompleteOutputError: the directory's last save did not finish.
            DataFormatError: a file of the directory is corrupt (names it).
        """
        d = Path(directory)
        if not (d / "interactions.parquet").exists():
            raise FileNotFoundError(f"{d}: no interactions.parquet (not a saved Interactions)")
        require_complete(d)
        try:
            frame = pl.read_parquet(d / "interactions.parquet")
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataFormatError(
                d / "interactions.parquet", None, f"corrupt parquet ({exc})"
            ) from None
        maps = []
        for name in ("user_ids.json", "item_ids.json"):
            try:
                maps.append(IdMap.load(d / name))
            except (ValueError, KeyError, TypeError) as exc:
                raise DataFormatError(d / name, None, f"not a saved id map ({exc})") from None
        source = str(d)
        if (d / "source.json").exists():
            source = str(json.loads((d / "source.json").read_text()).get("source", d))
        return cls(frame, maps[0], maps[1], source)


def dense_codes(col: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Return ``(Int64 codes, sorted unique keys)`` for a column of raw ids.

    Keys are the integers when every raw id is an integer written canonically, else the
    ids as strings; the code of a row is the rank of its key among the sorted keys.
    """
    keys = col
    if not col.dtype.is_integer():
        text = col.cast(pl.Utf8)
        as_int = text.cast(pl.Int64, strict=False)
        canonical = as_int.null_count() == 0 and bool((as_int.cast(pl.Utf8) == text).all())
        keys = as_int if canonical else text
    uniq = keys.unique().sort()
    lookup = pl.DataFrame({"raw": uniq, "code": pl.int_range(len(uniq), eager=True)})
    codes = pl.DataFrame({"raw": keys}).join(lookup, on="raw", how="left", maintain_order="left")[
        "code"
    ]
    return codes.cast(pl.Int64), uniq


def encode_ids(col: pl.Series, name: str = "id") -> tuple[pl.Series, IdMap]:
    """Return ``(dense Int64 codes, IdMap)`` for a column of raw ids.

    Raw ids are ordered numerically when all of them are integers written canonically
    (``"2" < "10"``; ``"07"`` keeps a column in string order), else lexicographically as
    strings; the code of a raw id is its rank in that order.
    """
    codes, uniq = dense_codes(col)
    return codes.alias(name), IdMap._from_unique(uniq.cast(pl.Utf8).to_list(), name)


def _checked(
    values: pl.Series, source: str, column: str, dtype: pl.DataType, what: str
) -> pl.Series:
    """``values`` as ``dtype``: numbers only, finite, fitting ``dtype`` (names source and row)."""
    if values.dtype == pl.Utf8 or values.dtype == pl.Categorical:
        return parse_numeric(values, path=source, column=column, dtype=dtype, what=what)
    if not values.dtype.is_numeric():
        raise TypeError(f"{source}: column {column!r} must be numeric, got dtype {values.dtype}")
    if values.dtype.is_float() or dtype == pl.Float32:
        high = MAX_EXACT_TIME if dtype.is_integer() else None
        low = -MAX_EXACT_TIME if dtype.is_integer() else None
        values = check_numeric(
            values.cast(pl.Float64) if dtype.is_integer() else values,
            path=source,
            column=column,
            dtype=pl.Float64() if dtype.is_integer() else dtype,
            what=what,
            low=low,
            high=high,
        )
    return values.cast(dtype)


def _to_polars(frame: Any, source: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if type(frame).__module__.startswith("pandas"):
        return pl.from_pandas(frame)
    raise TypeError(f"{source}: expected a polars or pandas DataFrame, got {type(frame).__name__}")


def concat(parts: Sequence[Interactions]) -> Interactions:
    """Row-concatenate interactions that share id maps."""
    if not parts:
        raise ValueError("concat() needs at least one Interactions")
    first = parts[0]
    for p in parts[1:]:
        if p.user_ids is not first.user_ids or p.item_ids is not first.item_ids:
            raise ValueError("concat() needs Interactions that share the same id maps")
    return first.with_frame(pl.concat([p.frame for p in parts], how="diagonal_relaxed"))
