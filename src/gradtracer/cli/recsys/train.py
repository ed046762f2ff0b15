"""``gradtracer recsys train`` and ``tune``: fit a model and write its model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradtracer.cli.recsys._shared import (
    _config,
    _load_split,
    _parse_ints,
    _table,
    _write_model_dir,
)

__all__ = ["_train", "_train_baseline", "_tune"]


def _train(
    data: Path | None,
    fmt: str,
    split: str,
    test_fraction: float,
    valid_fraction: float,
    n_factors: int,
    solver: str,
    center: bool,
    iterations: int,
    regularization: float,
    random_state: int,
    model_dir: Path,
) -> None:
    from gradtracer.recsys.cf import train

    config = _config(n_factors, solver, center, iterations, regularization, random_state)
    parts = _load_split(data, fmt, split, test_fraction, valid_fraction, random_state)
    model = train(parts.train, config)
    _write_model_dir(model_dir, model, parts)
    name = "als" if solver == "als" else f"svd ({solver})"
    typer.echo(
        f"trained {name} with n_factors={model.n_factors} on {model.n_users:,} users x "
        f"{model.n_items:,} items ({model.train_matrix.nnz:,} ratings) in "
        f"{model.fit_seconds:.2f}s -> {model_dir}"
    )


def _train_baseline(
    model_name: str,
    parts: Any,
    n_factors: int,
    n_epochs: int,
    learning_rate: float,
    random_state: int,
    model_dir: Path,
) -> None:
    """Fit ``--model mf`` or ``--model popularity`` and save it with all three splits."""
    import time

    from gradtracer.recsys.models import ImplicitMF, MFTrainConfig, PopularityRecommender

    train = parts.train
    model: Any
    if model_name == "popularity":
        model = PopularityRecommender()
    else:
        config = MFTrainConfig(
            n_epochs=n_epochs, learning_rate=learning_rate, random_state=random_state
        )
        model = ImplicitMF(
            train.n_users, train.n_items, n_factors, random_state=random_state, config=config
        )
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    _write_model_dir(model_dir, model, parts, with_train=True)
    size = f" with n_factors={n_factors}" if model_name == "mf" else ""
    typer.echo(
        f"trained {model_name}{size} on {train.n_users:,} users x {train.n_items:,} items "
        f"({train.frame.height:,} rows) in {seconds:.2f}s -> {model_dir}"
    )


def _tune(
    data: Path | None,
    fmt: str,
    split: str,
    test_fraction: float,
    valid_fraction: float,
    grid: str,
    tolerance: float,
    solver: str,
    center: bool,
    iterations: int,
    regularization: float,
    random_state: int,
    model_dir: Path,
) -> None:
    from gradtracer.durable import atomic_open, atomic_write_json
    from gradtracer.recsys.cf import plot_tuning_curve, train, tune_n_factors

    if valid_fraction <= 0:
        raise ValueError("tune needs a validation split: --valid-fraction must be > 0")
    values = _parse_ints(grid, "--grid")
    config = _config(max(values), solver, center, iterations, regularization, random_state)
    parts = _load_split(data, fmt, split, test_fraction, valid_fraction, random_state)
    result = tune_n_factors(
        parts.train, parts.valid, grid=values, config=config, tolerance=tolerance
    )
    config.n_factors = result.chosen
    model = train(parts.train, config)

    def write_tuning(d: Path) -> None:
        with atomic_open(d / "tuning.csv", "wb") as handle:
            result.to_polars().write_csv(handle)
        atomic_write_json(d / "tuning.json", result.to_dict())
        plot_tuning_curve(result, d / "tuning.png")

    _write_model_dir(model_dir, model, parts, write_tuning)
    rows = [
        {
            "n_factors": n,
            **{k: ev.mean[k] for k in ("ndcg@10", "recall@10", "map@10")},
            "rmse": ev.rmse,
            "fit_s": fs,
        }
        for n, ev, fs in zip(result.grid, result.evaluations, result.fit_seconds, strict=True)
    ]
    typer.echo(_table(rows))
    typer.echo(
        f"chosen n_factors={result.chosen} (smallest within {tolerance:.0%} of the best "
        f"{result.metric}) -> {model_dir}"
    )
