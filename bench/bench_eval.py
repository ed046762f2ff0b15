"""Benchmark the full-ranking evaluator against the per-user loop and against the raw product.

(a) MovieLens-100K, all 943 users, leave-one-out, K=10: the reference notebook's protocol
    (pandas ``iterrows`` over test rows, the model scores all items for one user, seen
    items set to -inf, numpy ``argsort``) vs ``evaluate_topk`` on the same model.
(b) Synthetic factors, 100k users x 1M items, d=64 (``--quick``: 10k x 100k): the time of
    ``U[batch] @ V.T`` over all batches (written into one reused buffer) vs ``evaluate_topk`` with the same batch size
    (masking 20 training items per user, K=10, all 6 ranking metrics).

Both sides of each part run in one process under one torch thread setting (``--threads``,
default 1). Run: ``.venv/bin/python bench/bench_eval.py [--quick] [--device cpu|cuda]
[--threads N] [--part a|b|both]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from gradtracer.recsys.metrics import evaluate_topk
from gradtracer.recsys.models import ImplicitMF

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "u.data"


def loop_reference(model, test_df, train_df, n_items: int, k: int = 10):
    """The notebook's evaluator, re-written: one Python iteration and one argsort per user."""
    seen = train_df.groupby("user")["item"].apply(set).to_dict()
    all_items = torch.arange(n_items)
    hits, ndcgs = [], []
    with torch.no_grad():
        for _, row in test_df.iterrows():
            user, target = int(row["user"]), int(row["item"])
            user_col = torch.tensor([user] * n_items)  # as the notebook builds it
            scores = model(user_col, all_items).numpy()
            scores[list(seen.get(user, ()))] = -np.inf
            top = np.argsort(scores)[-k:][::-1]
            where = np.flatnonzero(top == target)
            hits.append(1.0 if where.size else 0.0)
            ndcgs.append(1.0 / np.log2(where[0] + 2) if where.size else 0.0)
    return np.array(hits), np.array(ndcgs)


def bench_movielens(threads: int) -> None:
    from gradtracer.recsys.data import leave_one_out, load_movielens, make_implicit

    if ML100K.is_file():
        data = load_movielens(ML100K)
        label = "MovieLens-100K (u.data)"
    else:
        data = make_implicit(n_users=943, n_items=1682, n_interactions=100_000)
        label = "synthetic, MovieLens-100K shape (u.data not found)"
    split = leave_one_out(data)
    model = ImplicitMF(data.n_users, data.n_items, n_factors=32, random_state=0)
    test_df = split.test.frame.to_pandas()
    train_df = split.train.frame.to_pandas()
    test, train = split.test.user_items(), split.train.user_items()
    kw = dict(exclude=train, ks=(10,), progress=False)
    # One timed sample per side and round, each long enough (>= ~50 ms) that scheduler
    # preemption on a shared machine costs both sides the same fraction: one loop run, and
    # the mean of `reps` back-to-back evaluate_topk runs (a lone 3 ms run that is preempted
    # once doubles; the median of such runs would measure the scheduler).
    reps = 20
    loop_runs, fast_runs, single_runs, cov_runs = [], [], [], []
    res = evaluate_topk(model, test, **kw)  # warm-up (imports, allocator)
    for _ in range(3):  # interleaved, so both sides see the same machine load
        t0 = time.perf_counter()
        hits, ndcgs = loop_reference(model, test_df, train_df, data.n_items)
        loop_runs.append(time.perf_counter() - t0)
        t_start = time.perf_counter()
        for _ in range(reps):
            t0 = time.perf_counter()
            res = evaluate_topk(model, test, **kw)
            single_runs.append(time.perf_counter() - t0)
        fast_runs.append((time.perf_counter() - t_start) / reps)
        t0 = time.perf_counter()
        for _ in range(5):
            cov = evaluate_topk(model, test, coverage=True, **kw)
        cov_runs.append((time.perf_counter() - t0) / 5)
    t_loop, t_fast = float(np.median(loop_runs)), float(np.median(fast_runs))
    t_cov = float(np.median(cov_runs))
    order = np.argsort(test_df["user"].to_numpy())
    agree_hr = np.abs(res.per_user["hr@10"] - hits[order]).max()
    agree_ndcg = np.abs(res.per_user["ndcg@10"] - ndcgs[order]).max()
    agree_cov = max(np.abs(res.per_user[key] - cov.per_user[key]).max() for key in res.per_user)
    print(f"(a) {label}: {res.n_users} users, {data.n_items} items, K=10, threads={threads}")
    print(f"    per-user loop, median of 3 runs:                {t_loop * 1e3:8.1f} ms")
    print(
        f"    evaluate_topk, median of 3 means of {reps} runs:     {t_fast * 1e3:8.2f} ms  "
        f"(all 6 metrics; single runs: best {min(single_runs) * 1e3:.2f}, median "
        f"{np.median(single_runs) * 1e3:.2f})"
    )
    print(f"    speed-up: {t_loop / t_fast:,.0f}x   (target >= 100x)")
    print(
        f"    with coverage=True (top-K path), median of 3 means of 5: {t_cov * 1e3:.2f} ms, "
        f"{t_loop / t_cov:,.0f}x"
    )
    print(f"    max |difference| per user: hr@10 {agree_hr:.2e}, ndcg@10 {agree_ndcg:.2e}")
    print(f"    max |difference| counting vs top-K path, all metrics: {agree_cov:.2e}")


def bench_synthetic(n_users: int, n_items: int, dim: int, batch: int, device: str) -> None:
    rng = np.random.default_rng(0)
    users_f = torch.from_numpy(rng.standard_normal((n_users, dim), dtype=np.float32)).to(device)
    items_f = torch.from_numpy(rng.standard_normal((n_items, dim), dtype=np.float32)).to(device)
    test = sp.csr_matrix(
        (np.ones(n_users, np.float32), (np.arange(n_users), rng.integers(0, n_items, n_users))),
        shape=(n_users, n_items),
    )
    n_train = 20
    train = sp.csr_matrix(
        (
            np.ones(n_users * n_train, np.float32),
            (np.repeat(np.arange(n_users), n_train), rng.integers(0, n_items, n_users * n_train)),
        ),
        shape=(n_users, n_items),
    )

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    items_t = items_f.t()
    # the reference writes every batch into one reused buffer: the fastest way to produce
    # the scores (a fresh result per batch would add page faults to the reference)
    out = torch.empty(batch, n_items, dtype=users_f.dtype, device=device)
    with torch.no_grad():
        torch.mm(users_f[:batch], items_t, out=out)  # warm-up
    sync()
    print(
        f"(b) synthetic factors: {n_users:,} users x {n_items:,} items, d={dim}, batch {batch}, "
        f"{n_train} masked items/user, device={device}, {torch.get_num_threads()} thread(s)",
        flush=True,
    )
    # users in chunks: each chunk is timed both ways, so a partial run still gives a ratio
    chunk = max(batch, min(n_users, 10_000))
    t_mm = t_eval = 0.0
    ndcg_sum, n_done = 0.0, 0
    for lo in range(0, n_users, chunk):
        hi = min(lo + chunk, n_users)
        t0 = time.perf_counter()
        with torch.no_grad():
            for start in range(lo, hi, batch):
                u = users_f[start : min(start + batch, hi)]
                torch.mm(u, items_t, out=out[: u.shape[0]])  # (B, n_items)
        sync()
        t_mm += time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate_topk(
            (users_f, items_f),
            test,
            exclude=train,
            ks=(10,),
            batch_size=batch,
            users=np.arange(lo, hi),
            progress=False,
        )
        sync()
        t_eval += time.perf_counter() - t0
        ndcg_sum += res.mean["ndcg@10"] * res.n_users
        n_done = hi
        print(
            f"    users {n_done:>9,}: product {t_mm:8.2f} s | evaluate_topk {t_eval:8.2f} s | "
            f"ratio {t_eval / t_mm:.2f}x",
            flush=True,
        )
    print(f"    raw product U[b] @ V.T over all batches: {t_mm:8.2f} s  (into one reused buffer)")
    print(f"    evaluate_topk (all 6 metrics, K=10):     {t_eval:8.2f} s")
    print(f"    evaluation / product: {t_eval / t_mm:.2f}x   (target <= 2x)")
    print(f"    ndcg@10 = {ndcg_sum / n_done:.2e} ({n_done:,} users)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(b) at 10k users x 100k items")
    parser.add_argument("--device", default="cpu", help="device of (b): cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for both sides (default 1)"
    )
    parser.add_argument("--part", choices=("a", "b", "both"), default="both", help="what to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # before anything runs: both sides share it
    threads = torch.get_num_threads()
    if args.part in ("a", "both"):
        bench_movielens(threads)
    if args.part in ("b", "both"):
        if args.quick:
            bench_synthetic(10_000, 100_000, 64, 512, args.device)
        else:
            bench_synthetic(100_000, 1_000_000, 64, 512, args.device)


if __name__ == "__main__":
    main()
