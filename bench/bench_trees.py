"""Overhead of TreeDynamicsTracker on XGBoost, LightGBM and CatBoost training.

Trains each library twice on the same synthetic regression set (100k x 50, 500 rounds;
``--quick``: 10k x 20, 100 rounds), without and with the tracker's native callback, and
prints the tracked/plain ratio of wall time and of process CPU time (all threads; steadier
than wall time on a loaded machine). "tracker cpu" is the CPU time of the tracker's own
callbacks (``time.thread_time``), the load-independent measure of its overhead; "share"
is that over the plain run's CPU time. Also times parsing one round early vs late in the
model (constant cost) against one whole-model dump (what a naive tracker would do per
round).

    .venv/bin/python bench/bench_trees.py [--quick] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def make_data(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)).astype(np.float32)
    y = x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + np.sin(x[:, 3]) + 0.3 * rng.normal(size=n)
    return x, y.astype(np.float32)


def stamp() -> tuple[float, float]:
    """(wall, process CPU) seconds now; CPU time counts all threads and is steadier when
    the machine is shared."""
    return time.perf_counter(), time.process_time()


def since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds elapsed since ``t0``."""
    return time.perf_counter() - t0[0], time.process_time() - t0[1]


def run_xgboost(x, y, xv, yv, rounds, threads, tracker):
    import xgboost as xgb

    dt, dv = xgb.DMatrix(x, label=y), xgb.DMatrix(xv, label=yv)
    cbs = [tracker.xgboost_callback()] if tracker else []
    t0 = stamp()
    booster = xgb.train(
        {"tree_method": "hist", "max_depth": 6, "eta": 0.1, "nthread": threads},
        dt,
        rounds,
        evals=[(dt, "train"), (dv, "valid")],
        verbose_eval=False,
        callbacks=cbs,
    )
    return since(t0), booster


def run_lightgbm(x, y, xv, yv, rounds, threads, tracker):
    import lightgbm as lgb

    dt = lgb.Dataset(x, y, free_raw_data=False)
    dv = lgb.Dataset(xv, yv, reference=dt)
    cbs = [tracker.lightgbm_callback()] if tracker else []
    t0 = stamp()
    booster = lgb.train(
        {"num_leaves": 63, "learning_rate": 0.1, "num_threads": threads, "verbose": -1},
        dt,
        rounds,
        valid_sets=[dt, dv],
        valid_names=["training", "valid"],
        callbacks=cbs,
    )
    return since(t0), booster


def run_catboost(x, y, xv, yv, rounds, threads, tracker):
    import catboost

    model = catboost.CatBoostRegressor(
        iterations=rounds,
        depth=6,
        learning_rate=0.1,
        thread_count=threads,
        verbose=0,
        random_seed=0,
        use_best_model=False,
        allow_writing_files=False,
    )
    cbs = [tracker.catboost_callback()] if tracker else None
    t0 = stamp()
    model.fit(x, y, eval_set=(xv, yv), callbacks=cbs)
    if tracker:
        tracker.collect(model)  # trees are readable only after fit: counted as overhead
    return since(t0), model


def parse_costs(library: str, model, rounds: int) -> tuple[str, float | None]:
    from gradtracer.trees import _lightgbm, _xgboost

    def best_of(fn, k=5):
        times = []
        for _ in range(k):
            t0 = stamp()
            fn()
            times.append(since(t0)[1])  # CPU time: single-threaded parsing
        return min(times) * 1e3

    if library == "xgboost":
        early = best_of(lambda: _xgboost.read_xgboost_round(model, 5))
        late = best_of(lambda: _xgboost.read_xgboost_round(model, rounds - 5))
        whole = best_of(lambda: model.get_dump(dump_format="json", with_stats=True), 2)
    elif library == "lightgbm":
        early = best_of(lambda: _lightgbm.read_lightgbm_round(model, 5))
        late = best_of(lambda: _lightgbm.read_lightgbm_round(model, rounds - 5))
        whole = best_of(lambda: model.dump_model(), 2)
    else:
        return "trees read once after fit (CatBoost callbacks cannot see trees)", None
    text = (
        f"parse round 5: {early:.2f} ms, round {rounds - 5}: {late:.2f} ms; "
        f"whole-model dump: {whole:.1f} ms ({whole / late:.0f}x one round)"
    )
    return text, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k x 20, 100 rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="best of N per variant")
    parser.add_argument("--libraries", default="xgboost,lightgbm,catboost")
    args = parser.parse_args()
    n, p, rounds = (10_000, 20, 100) if args.quick else (100_000, 50, 500)
    x, y = make_data(n, p)
    xv, yv = make_data(n // 5, p, seed=1)

    from gradtracer.trees import TreeDynamicsTracker

    runners = {"xgboost": run_xgboost, "lightgbm": run_lightgbm, "catboost": run_catboost}
    print(f"data {n} x {p}, {rounds} rounds, {args.threads} threads, best of {args.repeats}")
    print(
        f"{'library':<10}{'plain wall':>11}{'tracked':>9}{'ratio':>7}"
        f"{'plain cpu':>11}{'tracked':>9}{'ratio':>7}{'tracker cpu':>13}{'share':>8}"
    )
    for library in args.libraries.split(","):
        plain, tracked, own = [], [], []
        model = None
        for _ in range(args.repeats):  # alternate so drifting machine load hits both
            plain.append(runners[library](x, y, xv, yv, rounds, args.threads, None)[0])
            tracker = TreeDynamicsTracker(name=library)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spent, model = runners[library](x, y, xv, yv, rounds, args.threads, tracker)
            tracked.append(spent)
            own.append(tracker.summary()["tracking_cpu_seconds"])
        pw, tw = min(w for w, _ in plain), min(w for w, _ in tracked)
        pc, tc = min(c for _, c in plain), min(c for _, c in tracked)
        print(
            f"{library:<10}{pw:>11.2f}{tw:>9.2f}{tw / pw:>7.3f}"
            f"{pc:>11.2f}{tc:>9.2f}{tc / pc:>7.3f}{min(own):>13.3f}{min(own) / pc:>8.1%}"
        )
        text, parse_ms = parse_costs(library, model, rounds)
        per_round = pc / rounds * 1e3
        print(f"          {text}")
        if parse_ms is not None:
            print(
                f"          plain training {per_round:.2f} ms CPU per round -> parsing one "
                f"round costs {parse_ms / per_round:.1%} of a round"
            )


if __name__ == "__main__":
    main()
