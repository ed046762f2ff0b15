"""Train / validation / test splits of an :class:`Interactions` table.

Invariants every split keeps (and the tests check):

* the parts are disjoint row sets of the input, each in the input's row order;
* ``leave_one_out`` and ``ratio_split``: the union of the parts is the input;
  ``temporal_split(by="time")`` too; ``temporal_split(by="session")`` drops exactly the
  rows counted in ``info`` (unseen test items, too-short test sessions);
* all parts share the input's id maps (dense ids mean the same thing everywhere);
* the same input and ``random_state`` give the same split.

Length: the module runs past 400 lines because the three split functions share the
:class:`Split` result and its checks; one module keeps the invariants above in one place.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from gradtracer.durable import (
    atomic_write_json,
    is_complete,
    mark_complete,
    recover_directory,
    replace_directory,
    require_complete,
    staging_directory,
)
from gradtracer.errors import GradTracerWarning
from gradtracer.recsys.data.interactions import Interactions

if TYPE_CHECKING:  # _random imports torch: loaded only where a seed is drawn
    from gradtracer._random import RandomState

__all__ = ["Split", "leave_one_out", "ratio_split", "temporal_split"]

logger = logging.getLogger(__name__)

_ROW = "_row"


@dataclass
class Split:
    """Train/test (and optional validation) parts that share one pair of id maps.

    Attributes:
        train: training interactions.
        test: test interactions.
        valid: validation interactions, or ``None``.
        info: what the split did: method, parameters and row/user/session counts,
            including what was filtered out.
    """

    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, Interactions]:
        """Return ``{"train": ..., "valid": ..., "test": ...}`` (``valid`` only when present)."""
        out = {"train": self.train}
        if self.valid is not None:
            out["valid"] = self.valid
        out["test"] = self.test
        return out

    def save(self, directory: str | Path) -> Path:
        """Write each part into ``directory/<part>/`` plus ``directory/split.json`` (``info``).

        The split is written into a staging directory beside ``directory`` and then put in
        its place (:func:`gradtracer.durable.replace_directory`): ``directory`` holds exactly
        this split (no part of an earlier one, such as an old ``valid/``), and a crash or a
        full disk leaves the previous split complete. A non-empty directory that is not a
        saved split is refused rather than replaced.

        Raises:
            FileExistsError: ``directory`` holds other files.
            NotADirectoryError: ``directory`` is a file.
        """
        d = Path(directory)
        if d.is_dir() and any(d.iterdir()) and not (d / "split.json").exists():
            if is_complete(d):
                raise FileExistsError(
                    f"{d}: not empty and not a saved split; refusing to replace it "
                    "(choose a new or empty directory)"
                )
        staging = staging_directory(d)
        try:
            parts = self.parts()
            for name, part in parts.items():
                part.save(staging / name)
            atomic_write_json(staging / "split.json", {**self.info, "parts": list(parts)})
            mark_complete(staging, {"parts": list(parts)})
            replace_directory(staging, d)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Split:
        """Read a directory written by :meth:`save`; the parts share the train id maps.

        Only the parts that ``split.json`` lists are read (a ``valid/`` the split does not
        record is ignored with a :class:`~gradtracer.errors.GradTracerWarning`).

        Raises:
            FileNotFoundError: no ``split.json`` or a listed part is missing.
            IncompleteOutputError: the last save into ``directory`` did not finish.
        """
        d = recover_directory(directory)
        if not (d / "split.json").exists():
            raise FileNotFoundError(f"{d}: no split.json (not a saved Split)")
        require_complete(d)
        info = json.loads((d / "split.json").read_text())
        listed = info.pop("parts", None)
        if listed is None:  # written before split.json listed its parts
            has_valid = (d / "valid").exists() and info.get("valid_rows", 1) != 0
            listed = ["train", *(["valid"] if has_valid else []), "test"]
        if "valid" not in listed and (d / "valid").exists():
            warnings.warn(
                f"{d / 'valid'}: not part of the split recorded in {d / 'split.json'}; ignored",
                GradTracerWarning,
                stacklevel=2,
            )
        train = Interactions.load(d / "train")

        def part(name: str) -> Interactions:
            if not (d / name).exists():
                raise FileNotFoundError(f"{d / name}: listed in split.json but missing")
            loaded = Interactions.load(d / name)
            if (
                loaded.user_ids.ids != train.user_ids.ids
                or loaded.item_ids.ids != train.item_ids.ids
            ):
                raise ValueError(f"{d / name}: id maps differ from {d / 'train'}")
            return train.with_frame(loaded.frame, loaded.source)

        valid = part("valid") if "valid" in listed else None
        return cls(train=train, test=part("test"), valid=valid, info=info)


def _parts(ix: Interactions, frame: pl.DataFrame, label: str) -> Interactions:
    """Rows of ``frame`` whose ``_part`` is ``label``, in input row order, without helpers."""
    rows = frame.filter(pl.col("_part") == label).sort(_ROW)
    return ix.with_frame(rows.drop([c for c in rows.columns if c.startswith("_")]))


def _renamed(function: str, old: str, new: str) -> None:
    warnings.warn(
        f"{function}({old}=...) is deprecated; use {new}=", DeprecationWarning, stacklevel=3
    )


def _pairs_in_train(train: Interactions, test: Interactions, method: str) -> int:
    """Count test rows whose (user, item) pair also occurs in train; warn when any do."""
    keys = ["user", "item"]
    test_pairs = test.frame.select(keys)
    # probe the (large) train part against the (small) test pairs, then count test rows
    found = train.frame.select(keys).join(test_pairs.unique(), on=keys, how="semi").unique()
    n = test_pairs.join(found, on=keys, how="semi").height if found.height else 0
    if n:
        warnings.warn(
            f"{test.source}: {method} put {n} test row(s) whose (user, item) pair also occurs "
            "in train (duplicate interactions); deduplicate() the table first to evaluate on "
            "unseen pairs",
            GradTracerWarning,
            stacklevel=3,
        )
    return n


def _check_fraction(name: str, value: float, low_open: bool) -> None:
    ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not ok:
        bounds = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{name} must be in {bounds}, got {value}")


def leave_one_out(
    ix: Interactions, with_valid: bool = False, *, valid: bool | None = None
) -> Split:
    """Return a split holding out each user's last interaction as test.

    "Last" is the latest ``timestamp``; ties are broken by the highest dense item index,
    then by the later row, so the result does not depend on anything random.

    Args:
        with_valid: also hold out each user's second-to-last interaction as validation
            (default False).
        valid: deprecated spelling of ``with_valid``.

    Users with fewer than 2 interactions stay wholly in train (``info["users_train_only"]``);
    with ``with_valid=True`` users with exactly 2 get a test row but no validation row
    (``info["users_without_valid"]``). A test row whose (user, item) pair also occurs in
    train (duplicate rows; :func:`~gradtracer.recsys.data.deduplicate` first) is counted in
    ``info["test_pairs_in_train"]`` with a :class:`~gradtracer.errors.GradTracerWarning`.
    """
    if valid is not None:
        _renamed("leave_one_out", "valid", "with_valid")
        with_valid = valid
    if not isinstance(with_valid, (bool, np.bool_)):
        raise TypeError(
            f"with_valid must be a bool (a fraction belongs to ratio_split/temporal_split), "
            f"got {with_valid!r}"
        )
    valid_flag = bool(with_valid)
    f = ix.frame.with_row_index(_ROW).sort(["user", "timestamp", "item", _ROW])
    f = f.with_columns(
        pl.len().over("user").alias("_n"),
        (pl.len().over("user") - 1 - pl.int_range(pl.len()).over("user")).alias("_from_end"),
    )
    part = (
        pl.when((pl.col("_from_end") == 0) & (pl.col("_n") >= 2))
        .then(pl.lit("test"))
        .when(pl.lit(valid_flag) & (pl.col("_from_end") == 1) & (pl.col("_n") >= 3))
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )
    f = f.with_columns(part.alias("_part"))
    per_user = f.group_by("user").agg(pl.col("_n").first())
    train, test = _parts(ix, f, "train"), _parts(ix, f, "test")
    val = _parts(ix, f, "valid") if valid_flag else None
    info: dict[str, Any] = {
        "method": "leave_one_out",
        "with_valid": valid_flag,
        "tie_break": "latest timestamp, then highest item index, then later row",
        "rows": ix.frame.height,
        "train_rows": train.frame.height,
        "valid_rows": 0 if val is None else val.frame.height,
        "test_rows": test.frame.height,
        "users": per_user.height,
        "users_train_only": int((per_user["_n"] < 2).sum()),
        "users_without_valid": int((per_user["_n"] == 2).sum()) if valid_flag else 0,
        "test_pairs_in_train": _pairs_in_train(train, test, "leave_one_out"),
    }
    logger.info("leave_one_out: %s", info)
    return Split(train=train, test=test, valid=val, info=info)


def ratio_split(
    ix: Interactions,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.0,
    random_state: RandomState = 0,
    *,
    test: float | None = None,
    valid: float | None = None,
) -> Split:
    """Return a per-user random split: about ``test_fraction`` of each user's rows to test.

    Each user with ``n`` rows gets ``round(test_fraction * n)`` test rows and
    ``round(valid_fraction * n)`` validation rows (halves rounded up), capped so that at
    least one row stays in train; users with one row stay wholly in train.

    Args:
        test_fraction: fraction of each user's rows held out for test (default 0.2).
        valid_fraction: fraction held out for validation (default 0.0: no validation part).
        random_state: seed or numpy Generator (default 0).
        test: deprecated spelling of ``test_fraction``.
        valid: deprecated spelling of ``valid_fraction``.
    """
    if test is not None:
        _renamed("ratio_split", "test", "test_fraction")
        test_fraction = test
    if valid is not None:
        _renamed("ratio_split", "valid", "valid_fraction")
        valid_fraction = valid
    _check_fraction("test_fraction", test_fraction, low_open=True)
    _check_fraction("valid_fraction", valid_fraction, low_open=False)
    if test_fraction + valid_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + valid_fraction must be < 1, got {test_fraction} + {valid_fraction}"
        )
    from gradtracer._random import check_random_state

    rng = check_random_state(random_state)
    f = ix.frame.with_row_index(_ROW).with_columns(pl.Series("_key", rng.random(ix.frame.height)))
    f = f.sort(["user", "_key"]).with_columns(
        pl.len().over("user").alias("_n"), pl.int_range(pl.len()).over("user").alias("_pos")
    )
    n = pl.col("_n").cast(pl.Float64)
    n_test = pl.min_horizontal((test_fraction * n + 0.5).floor(), n - 1)
    n_valid = pl.min_horizontal((valid_fraction * n + 0.5).floor(), n - 1 - n_test)
    f = f.with_columns(n_test.alias("_nt"), n_valid.alias("_nv"))
    part = (
        pl.when(pl.col("_pos") < pl.col("_nt"))
        .then(pl.lit("test"))
        .when(pl.col("_pos") < pl.col("_nt") + pl.col("_nv"))
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )
    f = f.with_columns(part.alias("_part"))
    per_user = f.group_by("user").agg(pl.col("_nt").first())
    tr, te = _parts(ix, f, "train"), _parts(ix, f, "test")
    va = _parts(ix, f, "valid") if valid_fraction > 0 else None
    info: dict[str, Any] = {
        "method": "ratio_split",
        "test_fraction": test_fraction,
        "valid_fraction": valid_fraction,
        "random_state": random_state if isinstance(random_state, int) else None,
        "rows": ix.frame.height,
        "train_rows": tr.frame.height,
        "valid_rows": 0 if va is None else va.frame.height,
        "test_rows": te.frame.height,
        "users": per_user.height,
        "users_without_test": int((per_user["_nt"] == 0).sum()),
        "test_pairs_in_train": _pairs_in_train(tr, te, "ratio_split"),
    }
    logger.info("ratio_split: %s", info)
    return Split(train=tr, test=te, valid=va, info=info)


def temporal_split(
    ix: Interactions,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.0,
    by: str = "session",
) -> Split:
    """Return a global time-ordered split: the latest data is test, the data before it valid.

    Args:
        test_fraction: share of sessions (``by="session"``) or rows (``by="time"``) held out
            as test, taken from the end of time (default 0.1).
        valid_fraction: share taken just before the test part (default 0.0: none).
        by: ``"session"`` orders whole sessions by their START time (ties: session index)
            and needs a ``session`` column; ``"time"`` orders rows by (timestamp, row).

    With ``by="session"``, test and validation rows whose item never occurs in train are
    removed, then sessions left with fewer than 2 rows are dropped; both are counted in
    ``info``. Every train timestamp is <= every test timestamp for ``by="time"``, and every
    train session starts no later than any test session for ``by="session"``.
    """
    _check_fraction("test_fraction", test_fraction, low_open=True)
    _check_fraction("valid_fraction", valid_fraction, low_open=False)
    if test_fraction + valid_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + valid_fraction must be < 1, got {test_fraction} + {valid_fraction}"
        )
    if by not in ("session", "time"):
        raise ValueError(f"by must be 'session' or 'time', got {by!r}")
    f = ix.frame.with_row_index(_ROW)
    if by == "session":
        if not ix.has_sessions:
            raise ValueError(
                f"{ix.source}: temporal_split(by='session') needs a 'session' column; "
                "use by='time' or load with load_sessions()"
            )
        starts = (
            f.group_by("session")
            .agg(pl.col("timestamp").min().alias("_start"))
            .sort(["_start", "session"])
        )
        units, key = starts["session"], "session"
    else:
        f = f.sort(["timestamp", _ROW])
        units, key = f[_ROW], _ROW
    n_units = len(units)
    n_test = max(1, int(np.floor(test_fraction * n_units + 0.5)))
    n_valid = int(np.floor(valid_fraction * n_units + 0.5))
    if n_test + n_valid >= n_units:
        raise ValueError(
            f"{ix.source}: {n_units} {by} unit(s) are too few for test_fraction={test_fraction}"
            f" and valid_fraction={valid_fraction} (train would be empty)"
        )
    labels = np.full(n_units, "train", dtype=object)
    labels[n_units - n_test :] = "test"
    labels[n_units - n_test - n_valid : n_units - n_test] = "valid"
    assign = pl.DataFrame({key: units, "_part": pl.Series(labels, dtype=pl.Utf8)})
    f = f.join(assign, on=key, how="left")
    info: dict[str, Any] = {
        "method": "temporal_split",
        "by": by,
        "test_fraction": test_fraction,
        "valid_fraction": valid_fraction,
        "rows": ix.frame.height,
        "unit": "session" if by == "session" else "row",
        "units": n_units,
        "test_units": n_test,
        "valid_units": n_valid,
    }
    train_items = f.filter(pl.col("_part") == "train")["item"].unique()
    if by == "session":
        for label in ("valid", "test"):
            held = f.filter(pl.col("_part") == label)
            unseen = ~pl.col("item").is_in(train_items.implode())
            n_unseen = held.filter(unseen).height
            kept = held.filter(~unseen)
            short = kept.filter(pl.len().over("session") < 2)
            info[f"{label}_rows_unseen_item"] = n_unseen
            info[f"{label}_sessions_too_short"] = short["session"].n_unique()
            info[f"{label}_rows_too_short"] = short.height
            dropped = held.filter(unseen)[_ROW].extend(short[_ROW])
            f = f.with_columns(
                pl.when(pl.col(_ROW).is_in(dropped.implode()))
                .then(pl.lit("dropped"))
                .otherwise(pl.col("_part"))
                .alias("_part")
            )
    else:
        info["test_rows_unseen_item"] = f.filter(
            (pl.col("_part") == "test") & ~pl.col("item").is_in(train_items.implode())
        ).height  # counted only; by="time" keeps them
    tr, te = _parts(ix, f, "train"), _parts(ix, f, "test")
    va = _parts(ix, f, "valid") if valid_fraction > 0 else None
    if te.frame.height == 0:
        raise ValueError(
            f"{ix.source}: temporal_split left no test rows after filtering "
            f"(info: {info}); raise test_fraction or filter less"
        )
    info.update(
        train_rows=tr.frame.height,
        valid_rows=0 if va is None else va.frame.height,
        test_rows=te.frame.height,
        test_pairs_in_train=_pairs_in_train(tr, te, "temporal_split"),
    )
    if by == "session":
        info["test_sessions_kept"] = te.frame["session"].n_unique()
        info["valid_sessions_kept"] = 0 if va is None else va.frame["session"].n_unique()
    logger.info("temporal_split: %s", info)
    return Split(train=tr, test=te, valid=va, info=info)
