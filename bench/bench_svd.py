"""Model-based CF speed on MovieLens-1M-shaped synthetic ratings, per solver, side by side.

Shape: 6,040 users x 3,706 items, ~1,000,000 ratings (1-5 stars from a planted rank-10
taste plus noise, Zipf item popularity). Split: per-user 80/10/10 (``ratio_split``).
For each solver it times ``train`` (fit on the train split) and ``evaluate`` (RMSE,
accuracy and full-ranking recall/ndcg/map@10/20/50 of every test user against all items),
then the n_factors tuning of SVD by truncating one fit versus refitting each grid value.

    .venv/bin/python bench/bench_svd.py            # full size
    .venv/bin/python bench/bench_svd.py --quick    # 1/10 of the users and ratings
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import polars as pl

from gradtracer.errors import GradTracerWarning
from gradtracer.recsys.cf import CFConfig, build_matrix, evaluate, train, tune_n_factors
from gradtracer.recsys.data import Interactions, ratio_split


def make_ratings(n_users: int, n_items: int, n_ratings: int, seed: int = 0) -> Interactions:
    """Explicit 1-5 ratings with Zipf popularity and a planted rank-10 taste (vectorised)."""
    rng = np.random.default_rng(seed)
    per_user = np.maximum(20, rng.lognormal(0.0, 1.0, n_users))
    draws = int(n_ratings * 1.15)  # head-room for duplicate (user, item) draws removed below
    per_user = np.minimum(n_items // 2, (per_user / per_user.sum() * draws).astype(int) + 20)
    users = np.repeat(np.arange(n_users), per_user)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=users.size, p=pop / pop.sum())
    frame = pl.DataFrame({"user": users, "item": items}).unique(["user", "item"], keep="first")
    frame = frame.sample(n=min(n_ratings, frame.height), seed=seed).sort("user")
    u, i = frame["user"].to_numpy(), frame["item"].to_numpy()
    p, q = rng.normal(size=(n_users, 10)), rng.normal(size=(n_items, 10))
    taste = np.einsum("nk,nk->n", p[u], q[i]) / np.sqrt(10)
    rating = np.clip(np.rint(3.6 + 0.9 * taste + rng.normal(0, 0.6, u.size)), 1, 5)
    frame = pl.DataFrame(
        {
            "user": u.astype(str),
            "item": i.astype(str),
            "rating": rating.astype(np.float32),
            "timestamp": rng.integers(0, 10**9, u.size),
        }
    )
    return Interactions.from_raw(frame, source="synthetic-ml1m")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/10 size")
    parser.add_argument("--n-factors", type=int, default=50)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    t0 = time.perf_counter()
    ix = make_ratings(6040 // scale, 3706, 1_000_000 // scale)
    split = ratio_split(ix, test_fraction=0.1, valid_fraction=0.1, random_state=0)
    print(
        f"data: {ix.n_users:,} users x {ix.n_items:,} items, {len(ix):,} ratings "
        f"(train {len(split.train):,}, valid {len(split.valid):,}, test {len(split.test):,}); "
        f"built in {time.perf_counter() - t0:.1f}s"
    )
    # warm the lazy imports (sklearn, implicit, evaluator) so they are not timed
    warm = split.train.with_frame(split.train.frame.head(2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradTracerWarning)
        for solver in ("sklearn", "scipy", "als"):
            train(warm, CFConfig(n_factors=2, solver=solver, iterations=1))
    build_matrix(split.train)

    rows = []
    for solver in ("sklearn", "scipy", "als"):
        config = CFConfig(n_factors=args.n_factors, solver=solver)
        start = time.perf_counter()
        model = train(split.train, config)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        ev = evaluate(model, split.test, exclude=split.valid)
        eval_s = time.perf_counter() - start
        rows.append((solver, train_s, eval_s, ev))

    base = rows[0][1]
    print(f"\nn_factors={args.n_factors}; train = matrix build + fit; eval = rating + full ranking")
    print(
        f"{'solver':8} {'train s':>8} {'eval s':>7} {'train/sklearn':>14} {'rmse':>7} {'ndcg@10':>8} {'recall@50':>9}"
    )
    for solver, train_s, eval_s, ev in rows:
        print(
            f"{solver:8} {train_s:8.2f} {eval_s:7.2f} {train_s / base:14.2f} {ev.rmse:7.4f} "
            f"{ev.mean['ndcg@10']:8.4f} {ev.mean['recall@50']:9.4f}"
        )

    grid = (10, 20, 50)
    start = time.perf_counter()
    tune_n_factors(split.train, split.valid, grid=grid, config=CFConfig(solver="sklearn"))
    truncated_s = time.perf_counter() - start
    start = time.perf_counter()
    for n in grid:
        evaluate(train(split.train, CFConfig(n_factors=n)), split.valid, split="valid")
    refit_s = time.perf_counter() - start
    print(
        f"\ntuning n_factors over {grid} (sklearn): one fit + truncation {truncated_s:.2f}s vs "
        f"refit per value {refit_s:.2f}s -> {refit_s / truncated_s:.2f}x"
    )


if __name__ == "__main__":
    main()
