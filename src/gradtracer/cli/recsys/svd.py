"""``gradtracer recsys svd train|tune|evaluate|recommend``: the deprecated older spelling.

Each command prints a deprecation note and runs the same code as its ``gradtracer recsys``
counterpart (``--solver als`` stands for ``--model als``).
"""

from __future__ import annotations

from pathlib import Path

from gradtracer.cli.recsys._shared import (
    _center_opt,
    _data_opt,
    _deprecated,
    _format_opt,
    _grid_opt,
    _iter_opt,
    _json_opt,
    _k_opt,
    _ks_opt,
    _model_dir_opt,
    _n_factors_opt,
    _old_solver_opt,
    _reg_opt,
    _seed_opt,
    _solver,
    _split_opt,
    _test_opt,
    _tol_opt,
    _user_opt,
    _valid_opt,
    svd_app,
)
from gradtracer.cli.recsys.evaluate import _evaluate, _recommend
from gradtracer.cli.recsys.train import _train, _tune

__all__ = ["svd_evaluate_cmd", "svd_recommend_cmd", "svd_train_cmd", "svd_tune_cmd"]


@svd_app.command("train")
def svd_train_cmd(
    data: Path | None = _data_opt,
    fmt: str = _format_opt,
    split: str = _split_opt,
    test_fraction: float = _test_opt,
    valid_fraction: float = _valid_opt,
    n_factors: int = _n_factors_opt,
    solver: str = _old_solver_opt,
    center: bool = _center_opt,
    iterations: int = _iter_opt,
    regularization: float = _reg_opt,
    random_state: int = _seed_opt,
    model_dir: Path = _model_dir_opt,
) -> None:
    """Deprecated: 'gradtracer recsys train' (--solver als: --model als)."""
    _deprecated("train", solver)
    _train(
        data, fmt, split, test_fraction, valid_fraction, n_factors, _solver("svd", solver),
        center, iterations, regularization, random_state, model_dir,
    )  # fmt: skip


@svd_app.command("tune")
def svd_tune_cmd(
    data: Path | None = _data_opt,
    fmt: str = _format_opt,
    split: str = _split_opt,
    test_fraction: float = _test_opt,
    valid_fraction: float = _valid_opt,
    grid: str = _grid_opt,
    tolerance: float = _tol_opt,
    solver: str = _old_solver_opt,
    center: bool = _center_opt,
    iterations: int = _iter_opt,
    regularization: float = _reg_opt,
    random_state: int = _seed_opt,
    model_dir: Path = _model_dir_opt,
) -> None:
    """Deprecated: 'gradtracer recsys tune' (--solver als: --model als)."""
    _deprecated("tune", solver)
    _tune(
        data, fmt, split, test_fraction, valid_fraction, grid, tolerance,
        _solver("svd", solver), center, iterations, regularization, random_state, model_dir,
    )  # fmt: skip


@svd_app.command("evaluate")
def svd_evaluate_cmd(
    model_dir: Path = _model_dir_opt, ks: str = _ks_opt, as_json: bool = _json_opt
) -> None:
    """Deprecated: 'gradtracer recsys evaluate'."""
    _deprecated("evaluate", "")
    _evaluate(model_dir, ks, as_json)


@svd_app.command("recommend")
def svd_recommend_cmd(
    user: str = _user_opt,
    k: int = _k_opt,
    model_dir: Path = _model_dir_opt,
    as_json: bool = _json_opt,
) -> None:
    """Deprecated: 'gradtracer recsys recommend'."""
    _deprecated("recommend", "")
    _recommend(user, k, model_dir, as_json)
