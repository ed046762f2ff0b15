"""Datasets of the fault-injection suite, as plain arrays (cached per size and seed).

Three kinds: user-item implicit feedback (``make_implicit`` + leave-one-out, or a real
file: MovieLens ratings, Amazon reviews), click sessions (``make_sessions`` or a DIGINETICA
click log, cut into fixed-length prefixes with their next item) and a tabular binary task
for the plain MLP (Gaussian features, labels from a fixed random teacher network).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ImplicitData",
    "SessionData",
    "TabularData",
    "amazon_data",
    "implicit_data",
    "movielens_data",
    "real_data_kind",
    "real_session_data",
    "noisy_tabular_data",
    "session_data",
    "tabular_data",
]


@dataclass(frozen=True)
class ImplicitData:
    """Leave-one-out implicit feedback: training pairs and one held-out item per user.

    Attributes:
        users, items: training pairs (int64 arrays of equal length).
        test_items: held-out item per user (``-1``: the user has none).
        n_users, n_items: sizes of the id spaces.
        item_counts: training interactions per item (float64, for popularity sampling).
        source: where the data came from.
    """

    users: np.ndarray
    items: np.ndarray
    test_items: np.ndarray
    n_users: int
    n_items: int
    item_counts: np.ndarray
    source: str


@dataclass(frozen=True)
class SessionData:
    """Next-item examples cut from sessions: left-padded prefixes (0 = padding) and targets.

    Item ids are shifted by one so that row 0 of the item table is the padding row.
    """

    train_x: np.ndarray  # (n_train, length)
    train_y: np.ndarray  # (n_train,)
    test_x: np.ndarray
    test_y: np.ndarray
    n_items: int  # including the padding row
    item_counts: np.ndarray
    source: str


@dataclass(frozen=True)
class TabularData:
    """Binary classification: features and labels from a fixed random teacher MLP.

    ``valid_x``/``valid_y``: a validation split the training loop may report on (or None).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    valid_x: np.ndarray | None = None
    valid_y: np.ndarray | None = None


def _from_split(
    users: np.ndarray,
    items: np.ndarray,
    stamps: np.ndarray,
    n_users: int,
    n_items: int,
    source: str,
) -> ImplicitData:
    order = np.lexsort((stamps, users))
    users, items = users[order], items[order]
    last = np.r_[users[1:] != users[:-1], True]  # last interaction of each user
    counts = np.bincount(users, minlength=n_users)
    test_items = np.full(n_users, -1, dtype=np.int64)
    held = last & (counts[users] >= 2)
    test_items[users[held]] = items[held]
    keep = ~held
    tr_u, tr_i = users[keep], items[keep]
    return ImplicitData(
        users=tr_u.astype(np.int64),
        items=tr_i.astype(np.int64),
        test_items=test_items,
        n_users=n_users,
        n_items=n_items,
        item_counts=np.bincount(tr_i, minlength=n_items).astype(np.float64),
        source=source,
    )


@lru_cache(maxsize=32)
def implicit_data(
    random_state: int,
    n_users: int = 240,
    n_items: int = 320,
    n_interactions: int = 6000,
    popularity_exponent: float = 1.0,
) -> ImplicitData:
    """Synthetic implicit feedback (``make_implicit``) split leave-one-out; cached."""
    from gradtracer.recsys.data import make_implicit

    ix = make_implicit(
        n_users=n_users, n_items=n_items, n_interactions=n_interactions,
        popularity_exponent=popularity_exponent, random_state=random_state,
    )  # fmt: skip
    return _from_interactions(ix)


def _from_interactions(ix: Any) -> ImplicitData:
    """An interaction set (``frame`` with user, item, timestamp) split leave-one-out."""
    f = ix.frame
    return _from_split(
        f["user"].to_numpy(), f["item"].to_numpy(), f["timestamp"].to_numpy(),
        ix.n_users, ix.n_items, ix.source,
    )  # fmt: skip


@lru_cache(maxsize=4)
def movielens_data(path: str) -> ImplicitData:
    """MovieLens ratings (any rating counts as an interaction) split leave-one-out; cached."""
    from gradtracer.recsys.data import load_movielens

    ix = load_movielens(Path(path))
    return _from_interactions(ix)


def real_data_kind(path: str | Path) -> str:
    """``"amazon"`` (JSON lines), ``"sessions"`` (a DIGINETICA click log) or
    ``"movielens"`` (anything else), from the file's first line.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    return _sniff_kind(str(path))


@lru_cache(maxsize=64)
def _sniff_kind(path: str) -> str:
    """:func:`real_data_kind` once per path (run specs ask for it many times per suite; the
    data loaders below are cached by path the same way)."""
    p = Path(path)
    if p.is_dir():
        return "movielens"
    if not p.exists():
        raise FileNotFoundError(f"data file not found: {p}")
    with p.open("rb") as fh:
        first = fh.readline(4096).decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if first.startswith("{"):
        return "amazon"
    if first.lower().startswith("session_id;"):
        return "sessions"
    return "movielens"


@lru_cache(maxsize=4)
def amazon_data(path: str) -> ImplicitData:
    """Amazon reviews (any review counts as an interaction) split leave-one-out; cached."""
    from gradtracer.recsys.data import load_amazon

    ix = load_amazon(Path(path))
    return _from_interactions(ix)


@lru_cache(maxsize=4)
def real_session_data(path: str, length: int = 8, min_support: int = 2) -> SessionData:
    """A DIGINETICA click log as (prefix, next item) examples: items clicked fewer than
    ``min_support`` times and then sessions shorter than 2 clicks are dropped; the last
    click of every fifth session is held out. Cached."""
    import polars as pl

    from gradtracer.recsys.data import load_sessions

    ix = load_sessions(Path(path), fmt="diginetica")
    f = ix.frame
    counts = f.group_by("item").len()
    keep = counts.filter(pl.col("len") >= min_support)["item"]
    f = f.filter(pl.col("item").is_in(keep.implode()))
    sizes = f.group_by("session").len()
    f = f.filter(pl.col("session").is_in(sizes.filter(pl.col("len") >= 2)["session"].implode()))
    codes = {int(v): i for i, v in enumerate(sorted(set(f["item"].to_list())))}
    f = f.with_columns(pl.col("item").replace_strict(codes).alias("item"))
    # load_sessions orders rows by session, time and file order: keep that order
    return _cut_sessions(f, len(codes), length, f"{ix.source} (items >= {min_support} clicks)")


@lru_cache(maxsize=16)
def session_data(
    random_state: int, n_sessions: int = 700, n_items: int = 200, length: int = 8
) -> SessionData:
    """Synthetic sessions (``make_sessions``) as (prefix, next item) examples; the last
    click of every fifth session is held out for testing. Cached."""
    from gradtracer.recsys.data import make_sessions

    ix = make_sessions(
        n_sessions=n_sessions, n_items=n_items, mean_length=6.0, random_state=random_state
    )
    return _cut_sessions(ix.frame.sort(["session", "timestamp"]), n_items, length, ix.source)


def _cut_sessions(f: Any, n_items: int, length: int, source: str) -> SessionData:
    """Cut a frame sorted by session and click order into (prefix, next item) examples."""
    sess = f["session"].to_numpy()
    items = f["item"].to_numpy() + 1  # 0 = padding
    starts = np.r_[0, np.nonzero(sess[1:] != sess[:-1])[0] + 1, len(sess)]
    xs: list[list[np.ndarray]] = [[], []]
    ys: list[list[int]] = [[], []]
    for s in range(len(starts) - 1):
        clicks = items[starts[s] : starts[s + 1]]
        test = s % 5 == 0
        positions = [len(clicks) - 1] if test else range(1, len(clicks))
        for t in positions:
            prefix = clicks[max(0, t - length) : t]
            row = np.zeros(length, dtype=np.int64)
            row[length - len(prefix) :] = prefix
            xs[test].append(row)
            ys[test].append(int(clicks[t]))
    train_y = np.asarray(ys[0], dtype=np.int64)
    return SessionData(
        train_x=np.stack(xs[0]), train_y=train_y, test_x=np.stack(xs[1]),
        test_y=np.asarray(ys[1], dtype=np.int64), n_items=n_items + 1,
        item_counts=np.bincount(train_y, minlength=n_items + 1).astype(np.float64),
        source=source,
    )  # fmt: skip


@lru_cache(maxsize=16)
def tabular_data(
    random_state: int, n_train: int = 3000, n_test: int = 1000, n_features: int = 20
) -> TabularData:
    """Gaussian features, labels ``1[teacher(x) > median]`` from a random 2-layer tanh
    teacher; cached."""
    rng = np.random.default_rng(10_000 + random_state)
    w1 = rng.standard_normal((n_features, 16)) / np.sqrt(n_features)
    w2 = rng.standard_normal(16)
    x = rng.standard_normal((n_train + n_test, n_features)).astype(np.float32)
    logit = np.tanh(x @ w1) @ w2
    y = (logit > np.median(logit)).astype(np.float32)
    return TabularData(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                       f"teacher_mlp(random_state={random_state})")  # fmt: skip


@lru_cache(maxsize=16)
def noisy_tabular_data(
    random_state: int, n_train: int = 800, n_valid: int = 400, label_noise: float = 0.2
) -> TabularData:
    """A small, noisily labelled version of :func:`tabular_data`: the first ``n_train``
    training rows and the next ``n_valid`` as a validation split, each label flipped with
    probability ``label_noise``; the test labels stay clean. Cached."""
    base = tabular_data(random_state)
    if n_train + n_valid > len(base.train_y):
        raise ValueError(
            f"n_train + n_valid must be <= {len(base.train_y)}, got {n_train} + {n_valid}"
        )
    rng = np.random.default_rng(20_000 + random_state)
    y = base.train_y[: n_train + n_valid].copy()
    flip = rng.random(y.size) < label_noise
    y[flip] = 1.0 - y[flip]
    x = base.train_x[: n_train + n_valid]
    return TabularData(
        x[:n_train], y[:n_train], base.test_x, base.test_y,
        f"{base.source}, {n_train} rows, label noise {label_noise:g}",
        valid_x=x[n_train:], valid_y=y[n_train:],
    )  # fmt: skip
