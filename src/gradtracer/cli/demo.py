"""CLI: ``gradtracer demo`` -- synthetic data, implicit MF vs popularity, full-ranking metrics.

The pipeline (:func:`run_demo`) only composes public library functions:
``make_implicit`` -> ``leave_one_out`` -> ``train_mf`` (with an ``on_backward`` hook where a
tracker's ``step()`` fits) -> ``evaluate_topk`` for the model and for popularity.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

#: Columns of the printed table (metric keys of ``RankingResult.mean``).
DEMO_METRICS: tuple[str, ...] = ("hr@10", "ndcg@10", "recall@10", "mrr@10")


def run_demo(
    *,
    seed: int = 0,
    epochs: int = 5,
    dim: int = 32,
    lr: float = 0.01,
    n_users: int = 943,
    n_items: int = 1682,
    n_interactions: int = 55_000,
    on_backward: Callable[[float], None] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Return the demo's results as a JSON-safe dict (data, split, config, metrics per model).

    Generates MovieLens-100K-shaped synthetic implicit data (``make_implicit``), holds out
    each user's last interaction, trains :class:`~gradtracer.recsys.models.ImplicitMF`
    (BCE, 4 negatives, batch 256, Adam) and evaluates it and the popularity baseline by
    full ranking with training items excluded (conservative ties).
    """
    from gradtracer.recsys.data import leave_one_out, make_implicit
    from gradtracer.recsys.metrics import evaluate_topk
    from gradtracer.recsys.models import (
        ImplicitMF,
        MFTrainConfig,
        PopularityRecommender,
        train_mf,
    )

    data = make_implicit(
        n_users=n_users, n_items=n_items, n_interactions=n_interactions, random_state=seed
    )
    split = leave_one_out(data)
    train, test = split.train.user_items(), split.test.user_items()
    config = MFTrainConfig(epochs=epochs, lr=lr, random_state=seed)
    model = ImplicitMF(data.n_users, data.n_items, dim=dim, random_state=seed)
    start = time.perf_counter()
    losses = train_mf(model, split.train, config, on_backward=on_backward, progress=progress)
    train_seconds = time.perf_counter() - start
    results = {
        "popularity": evaluate_topk(
            PopularityRecommender().fit(split.train), test, exclude=train, progress=progress
        ),
        "implicit_mf": evaluate_topk(model, test, exclude=train, progress=progress),
    }
    return {
        "data": {
            "source": data.source,
            "rows": len(data),
            "n_users": data.n_users,
            "n_items": data.n_items,
        },
        "split": split.info,
        "config": {"dim": dim, **config.to_dict()},
        "train_seconds": train_seconds,
        "losses": losses,
        "results": {name: res.to_dict() for name, res in results.items()},
    }


def format_demo(summary: dict[str, Any]) -> str:
    """Return the demo's printed report: data line, one table row per model."""
    from gradtracer.recsys.metrics._table import format_table

    data, cfg = summary["data"], summary["config"]
    rows = []
    for name, res in summary["results"].items():
        rows.append([name, *(res["mean"][key] for key in DEMO_METRICS)])
    any_result = next(iter(summary["results"].values()))
    title = (
        f"{data['source']}: {data['rows']:,} interactions, {data['n_users']:,} users, "
        f"{data['n_items']:,} items | leave-one-out | {any_result['protocol']}, "
        f"training items excluded, ties={any_result['ties']}\n"
        f"implicit MF: dim {cfg['dim']}, {cfg['loss']}, {cfg['n_negatives']} negatives, "
        f"{cfg['epochs']} epochs in {summary['train_seconds']:.1f}s, final loss "
        f"{summary['losses'][-1]:.4f}\n"
    )
    return format_table(["model", *DEMO_METRICS], rows, title=title)


def demo(
    seed: int = typer.Option(0, "--seed", help="Seed of data, split, init and sampling."),
    epochs: int = typer.Option(5, "--epochs", help="Training epochs."),
    dim: int = typer.Option(32, "--dim", help="Embedding dimension."),
    lr: float = typer.Option(0.01, "--lr", help="Adam learning rate."),
    n_users: int = typer.Option(943, "--n-users", help="Synthetic users."),
    n_items: int = typer.Option(1682, "--n-items", help="Synthetic items."),
    n_interactions: int = typer.Option(
        55_000, "--n-interactions", help="Approximate synthetic interactions."
    ),
    threads: int = typer.Option(
        1, "--threads", help="torch CPU threads (default 1: the batches are small)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Directory to write demo_results.json into."
    ),
) -> None:
    """Train implicit MF on synthetic data and compare it with popularity (HR/NDCG/Recall/MRR@10)."""
    import torch

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        summary = run_demo(
            seed=seed,
            epochs=epochs,
            dim=dim,
            lr=lr,
            n_users=n_users,
            n_items=n_items,
            n_interactions=n_interactions,
        )
    finally:
        torch.set_num_threads(previous)
    typer.echo(format_demo(summary))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "demo_results.json"
        path.write_text(json.dumps(summary, indent=2, sort_keys=True))
        typer.echo(f"\nwrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``gradtracer demo`` to the root app."""
    app.command("demo")(demo)
