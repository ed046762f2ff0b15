"""The ``gradtracer recsys train | tune | evaluate | recommend`` commands (option parsing only)."""

from __future__ import annotations

from pathlib import Path

import typer

from gradtracer.cli.recsys._shared import (
    _center_opt,
    _data_opt,
    _format_opt,
    _grid_opt,
    _iter_opt,
    _json_opt,
    _k_opt,
    _ks_opt,
    _load_split,
    _model_dir_opt,
    _model_opt,
    _n_factors_opt,
    _reg_opt,
    _seed_opt,
    _solver,
    _solver_opt,
    _split_opt,
    _test_opt,
    _tol_opt,
    _user_opt,
    _valid_opt,
    recsys_app,
)
from gradtracer.cli.recsys.evaluate import _evaluate, _recommend
from gradtracer.cli.recsys.train import _train, _train_baseline, _tune

__all__ = ["evaluate_cmd", "recommend_cmd", "train_cmd", "tune_cmd"]


@recsys_app.command("train")
def train_cmd(
    data: Path | None = _data_opt,
    fmt: str = _format_opt,
    split: str = _split_opt,
    test_fraction: float = _test_opt,
    valid_fraction: float = _valid_opt,
    model: str = _model_opt,
    n_factors: int = _n_factors_opt,
    solver: str = _solver_opt,
    center: bool = _center_opt,
    iterations: int = _iter_opt,
    regularization: float = _reg_opt,
    n_epochs: int = typer.Option(10, "--n-epochs", help="MF: passes over the data (default 10)."),
    learning_rate: float = typer.Option(
        0.01, "--learning-rate", help="MF: Adam learning rate (default 0.01)."
    ),
    random_state: int = _seed_opt,
    model_dir: Path = _model_dir_opt,
) -> None:
    """Fit one model on the train split and save it with the held-out splits."""
    if solver == "als":
        raise ValueError("--solver picks the SVD backend (sklearn | scipy); use --model als")
    if model in ("mf", "popularity"):
        parts = _load_split(data, fmt, split, test_fraction, valid_fraction, random_state)
        _train_baseline(model, parts, n_factors, n_epochs, learning_rate, random_state, model_dir)
        return
    _train(
        data, fmt, split, test_fraction, valid_fraction, n_factors, _solver(model, solver),
        center, iterations, regularization, random_state, model_dir,
    )  # fmt: skip


@recsys_app.command("tune")
def tune_cmd(
    data: Path | None = _data_opt,
    fmt: str = _format_opt,
    split: str = _split_opt,
    test_fraction: float = _test_opt,
    valid_fraction: float = _valid_opt,
    grid: str = _grid_opt,
    tolerance: float = _tol_opt,
    model: str = _model_opt,
    solver: str = _solver_opt,
    center: bool = _center_opt,
    iterations: int = _iter_opt,
    regularization: float = _reg_opt,
    random_state: int = _seed_opt,
    model_dir: Path = _model_dir_opt,
) -> None:
    """Tune n_factors on validation, refit the chosen value and save it (with tuning.csv/png)."""
    if solver == "als":
        raise ValueError("--solver picks the SVD backend (sklearn | scipy); use --model als")
    _tune(
        data, fmt, split, test_fraction, valid_fraction, grid, tolerance,
        _solver(model, solver), center, iterations, regularization, random_state, model_dir,
    )  # fmt: skip


@recsys_app.command("evaluate")
def evaluate_cmd(
    model_dir: Path = _model_dir_opt, ks: str = _ks_opt, as_json: bool = _json_opt
) -> None:
    """Score a saved model on its validation and test splits (writes metrics.json and a plot)."""
    _evaluate(model_dir, ks, as_json)


@recsys_app.command("recommend")
def recommend_cmd(
    user: str = _user_opt,
    k: int = _k_opt,
    model_dir: Path = _model_dir_opt,
    as_json: bool = _json_opt,
) -> None:
    """Print the top-k unseen items of a user (an unknown user is an error, exit code 2)."""
    _recommend(user, k, model_dir, as_json)
