"""Recommender-data throughput: GradTracer loaders and splits next to a plain pandas version.

Each pair runs in one process, interleaved (A B A B ...) so machine noise hits both
alike; the figure is the ratio of median times (``pandas / gradtracer``; > 1 means
GradTracer is faster).

- ``load tab``: a MovieLens-style ``u.data`` file of N random rows (Zipf item ids):
  ``load_movielens`` vs ``pandas.read_csv`` + ``factorize`` of the ids (sorted
  numerically, like GradTracer);
- ``leave_one_out``: on the loaded table vs pandas ``sort_values`` + ``groupby.tail(1)``;
- ``k_core(5)``: polars window counts vs a pandas ``groupby.transform`` loop;
- ``load sessions``: a GRU4Rec TSV of N/5 ``make_sessions`` sessions: ``load_sessions``
  (line-checked reader) vs ``pandas.read_csv`` + sort + ``factorize``;
- ``make_implicit`` / ``make_sessions`` at their defaults (time only).

    .venv/bin/python bench/bench_data.py            # 2,000,000 rows
    .venv/bin/python bench/bench_data.py --quick    # 200,000 rows
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from gradtracer.recsys.data import (
    k_core,
    leave_one_out,
    load_movielens,
    load_sessions,
    make_implicit,
    make_sessions,
)


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_time(a))
        tb.append(_time(b))
    return statistics.median(ta), statistics.median(tb)


def _pandas_load(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"])
    df["user"] = pd.factorize(df["user"], sort=True)[0]
    df["item"] = pd.factorize(df["item"], sort=True)[0]
    return df


def _pandas_loo(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    ordered = df.sort_values(["user", "timestamp", "item"], kind="stable")
    test = ordered.groupby("user").tail(1)
    return ordered.drop(test.index), test


def _pandas_sessions(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t")
    df = df.sort_values(["SessionId", "Time"], kind="stable")
    df["ItemId"] = pd.factorize(df["ItemId"], sort=True)[0]
    df["SessionId"] = pd.factorize(df["SessionId"], sort=True)[0]
    return df


def _pandas_k_core(df: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        n = len(df)
        df = df[df.groupby("user")["item"].transform("size") >= k]
        df = df[df.groupby("item")["user"].transform("size") >= k]
        if len(df) == n:
            return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k rows, fewer repeats")
    args = parser.parse_args()
    n_rows = 200_000 if args.quick else 2_000_000
    repeats = 3 if args.quick else 5
    n_users = n_rows // 50
    n_items = max(2_000, n_rows // 100)

    rng = np.random.default_rng(0)
    users = rng.integers(1, n_users + 1, size=n_rows)
    items = (rng.zipf(1.3, size=n_rows) - 1) % n_items + 1  # Zipf-popular item ids
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.data"
        pd.DataFrame(
            {
                "u": users,
                "i": items,
                "r": rng.integers(1, 6, size=n_rows),
                "t": 880_000_000 + rng.integers(0, 10**7, size=n_rows),
            }
        ).to_csv(path, sep="\t", header=False, index=False)
        print(f"rows={n_rows:,} users={n_users:,} items={n_items:,} repeats={repeats}")
        print(f"{'task':<16}{'gradtracer s':>14}{'pandas s':>12}{'pandas/gt':>11}")

        t_gt, t_pd = _pair(lambda: load_movielens(path), lambda: _pandas_load(path), repeats)
        print(f"{'load tab':<16}{t_gt:>14.3f}{t_pd:>12.3f}{t_pd / t_gt:>11.2f}")

        ix = load_movielens(path)
        df = _pandas_load(path)
        t_gt, t_pd = _pair(lambda: leave_one_out(ix), lambda: _pandas_loo(df), repeats)
        print(f"{'leave_one_out':<16}{t_gt:>14.3f}{t_pd:>12.3f}{t_pd / t_gt:>11.2f}")

        t_gt, t_pd = _pair(lambda: k_core(ix, 5), lambda: _pandas_k_core(df, 5), repeats)
        print(f"{'k_core(5)':<16}{t_gt:>14.3f}{t_pd:>12.3f}{t_pd / t_gt:>11.2f}")

        sx = make_sessions(n_sessions=n_rows // 5, n_items=n_items, random_state=0).frame
        tsv = Path(tmp) / "clicks.tsv"
        sx.select(
            pl.col("session").alias("SessionId"),
            pl.col("item").alias("ItemId"),
            pl.col("timestamp").alias("Time"),
        ).write_csv(tsv, separator="\t")
        t_gt, t_pd = _pair(
            lambda: load_sessions(tsv, "tsv"), lambda: _pandas_sessions(tsv), repeats
        )
        print(
            f"{'load sessions':<16}{t_gt:>14.3f}{t_pd:>12.3f}{t_pd / t_gt:>11.2f}"
            f"   ({len(sx):,} clicks)"
        )

    t_impl = statistics.median(_time(lambda: make_implicit(random_state=1)) for _ in range(repeats))
    t_sess = statistics.median(_time(lambda: make_sessions(random_state=1)) for _ in range(repeats))
    print(f"{'make_implicit':<16}{t_impl:>14.3f}{'-':>12}{'-':>11}   (defaults: 55,000 rows)")
    print(f"{'make_sessions':<16}{t_sess:>14.3f}{'-':>12}{'-':>11}   (defaults: 5,000 sessions)")


if __name__ == "__main__":
    main()
