"""GRU4Rec: GradTracer's implementation vs the official PyTorch one, same split, side by side.

Runs both implementations with the same hyperparameters on the same temporal session
split and evaluates both with full ranking and conservative ties at K = 5, 10, 20
(the official ``evaluation.batch_eval(mode="conservative")`` for the official model,
:func:`gradtracer.recsys.sessions.evaluate_next_item` for ours). Prints Recall@K, MRR@K,
the relative gap, and training throughput in events per second (CPU).

The official code is read from ``--official`` (a checkout of
``hidasib/GRU4Rec_PyTorch_Official`` outside this project); it is imported, never copied.

    .venv/bin/python bench/bench_gru4rec.py --quick --official /path/to/GRU4Rec_PyTorch_Official
    .venv/bin/python bench/bench_gru4rec.py --quick --ours-only
    .venv/bin/python bench/bench_gru4rec.py --data diginetica --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gradtracer.recsys.models.gru4rec import OFFICIAL_PARAMS, GRU4RecConfig, fit_gru4rec
from gradtracer.recsys.sessions import evaluate_next_item, session_arrays, split_sessions
from gradtracer.recsys.sessions.study import load_session_data

ROOT = Path(__file__).resolve().parents[1]
DIGINETICA = ROOT.parent / "shared/data/sessions/diginetica-sample/sample_train-item-views.csv"
KS = (5, 10, 20)


def to_frame(ix) -> pd.DataFrame:
    """GRU4Rec's input layout: SessionId, ItemId (raw id string), Time, in click order."""
    f = ix.frame.with_row_index("_row").sort(["session", "timestamp", "_row"])
    return pd.DataFrame(
        {
            "SessionId": f["session"].to_numpy(),
            "ItemId": ix.item_ids.raws(f["item"].to_numpy()),
            # strictly increasing inside a session so the official sort keeps click order
            "Time": f["timestamp"].to_numpy().astype(np.float64) + f["_row"].to_numpy() * 1e-6,
        }
    )


class _TorchWithSeriesTensor:
    """``torch`` as the official module sees it, except that ``torch.tensor`` accepts a
    pandas Series (its logQ set-up passes one, which current torch/pandas reject)."""

    def __getattr__(self, name: str):
        return getattr(torch, name)

    @staticmethod
    def tensor(data, *args, **kwargs):
        if isinstance(data, pd.Series):
            data = data.to_numpy()
        return torch.tensor(data, *args, **kwargs)


def _patch_current_versions(official) -> None:
    """Let the official code run under NumPy 2 / current pandas without changing its maths.

    Its init helper returns float64 under NumPy 2 (float32 * np.float64 scalar) and
    ``Tensor.set_`` refuses it, so the result is cast to float32 (values unchanged); its
    logQ set-up builds a tensor from a pandas Series, so ``torch.tensor`` converts it.
    """
    model = official.GRU4RecModel
    if getattr(model, "_gradtracer_float32", False):
        return
    original = model._init_numpy_weights
    model._init_numpy_weights = lambda self, shape: original(self, shape).astype(np.float32)
    model._gradtracer_float32 = True
    official.torch = _TorchWithSeriesTensor()


def run_official(path: Path, params: dict, train, test, seed: int) -> dict:
    sys.path.insert(0, str(path))
    try:
        official = importlib.import_module("gru4rec_pytorch")
        evaluation = importlib.import_module("evaluation")
    finally:
        sys.path.remove(str(path))
    _patch_current_versions(official)
    gru = official.GRU4Rec(device=torch.device("cpu"))
    names = {"embedding_dim": "embedding"}  # the official code's parameter names
    for k, v in params.items():
        setattr(gru, names.get(k, k), list(v) if isinstance(v, tuple) else v)
    gru.set_loss_function(gru.loss)
    torch.manual_seed(seed)
    np.random.seed(seed)
    tr, te = to_frame(train), to_frame(test)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        t0 = time.perf_counter()
        gru.fit(tr, sample_cache_max_size=1_000_000)
        seconds = time.perf_counter() - t0
        n_test = int(te["SessionId"].nunique())
        recall, mrr = evaluation.batch_eval(
            gru, te, cutoff=list(KS), batch_size=min(512, n_test), mode="conservative"
        )
    n_pred = int((tr.groupby("SessionId").size() - 1).sum())
    res = {f"recall@{k}": float(recall[k]) for k in KS}
    res.update({f"mrr@{k}": float(mrr[k]) for k in KS})
    res["events/s"] = n_pred * params["n_epochs"] / seconds
    return res


def run_ours(params: dict, train, test, seed: int) -> dict:
    cfg = GRU4RecConfig(**{**params, "random_state": seed})
    tr, te = session_arrays(train), session_arrays(test)
    model, log = fit_gru4rec(tr, cfg)
    r = evaluate_next_item(model, te, ks=KS)
    res = {k: r.mean[k] for k in (f"{m}@{k}" for m in ("recall", "mrr") for k in KS)}
    res["events/s"] = log.events_per_second
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, default=Path("/work/ext/gru4rec_official"))
    ap.add_argument("--data", choices=("synthetic", "diginetica"), default="synthetic")
    ap.add_argument(
        "--params",
        choices=sorted(OFFICIAL_PARAMS),
        default="diginetica",
        help="official tuned setting to use (default: diginetica)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=None, help="override n_epochs")
    ap.add_argument("--n-sessions", type=int, default=4000, help="synthetic data size")
    ap.add_argument("--quick", action="store_true", help="small data, 1 seed, 3 epochs")
    ap.add_argument(
        "--ours-only",
        action="store_true",
        help="train and evaluate GradTracer's GRU4Rec only (no official checkout)",
    )
    args = ap.parse_args()
    if not args.ours_only and not (args.official / "gru4rec_pytorch.py").is_file():
        ap.error(
            f"{args.official}: no gru4rec_pytorch.py (a checkout of "
            "hidasib/GRU4Rec_PyTorch_Official); pass --official PATH or --ours-only"
        )
    torch.set_num_threads(1)  # small models: one thread is fastest and fair to both
    params = dict(OFFICIAL_PARAMS[args.params])
    if args.quick:
        args.seeds = args.seeds[:1]
        params["n_epochs"] = 3
    if args.epochs:
        params["n_epochs"] = args.epochs
    if args.data == "diginetica":
        ix = load_session_data(str(DIGINETICA), fmt="diginetica")
    else:
        n = 2000 if args.quick else args.n_sessions
        ix = load_session_data("synthetic", n_sessions=n, n_items=1000, random_state=0)
    split = split_sessions(ix, test_fraction=0.2)
    keys = (
        "short_sessions_dropped",
        "train_sessions",
        "test_sessions",
        "train_events",
        "test_events",
        "unseen_test_events_dropped",
        "test_sessions_too_short_after_filter",
    )
    print(f"data: {args.data} ({ix})")
    print("split: " + ", ".join(f"{k}={split.info[k]}" for k in keys))
    print(f"params ({args.params} official setting): {params}")
    rows: dict[str, list[dict]] = {"official": [], "gradtracer": []}
    for seed in args.seeds:
        if not args.ours_only:
            rows["official"].append(
                run_official(args.official, params, split.train, split.test, seed)
            )
            print(f"seed {seed}: official {rows['official'][-1]}")
        rows["gradtracer"].append(run_ours(params, split.train, split.test, seed))
        print(f"seed {seed}: ours     {rows['gradtracer'][-1]}")
    if args.ours_only:
        print(f"\nmean over seeds {args.seeds} (GradTracer only)")
        for k in [f"{m}@{k}" for m in ("recall", "mrr") for k in KS] + ["events/s"]:
            print(f"{k:<12}{np.mean([r[k] for r in rows['gradtracer']]):>12.4f}")
        return
    keys = [f"{m}@{k}" for m in ("recall", "mrr") for k in KS] + ["events/s"]
    mean = {
        name: {k: float(np.mean([r[k] for r in rs])) for k in keys} for name, rs in rows.items()
    }
    print(f"\nmean over seeds {args.seeds}")
    print(f"{'metric':<12}{'official':>12}{'gradtracer':>12}{'ours/official':>15}")
    for k in keys:
        a, b = mean["official"][k], mean["gradtracer"][k]
        print(f"{k:<12}{a:>12.4f}{b:>12.4f}{b / a if a else float('nan'):>15.3f}")


if __name__ == "__main__":
    main()
