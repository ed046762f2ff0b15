"""Shared pieces of ``gradtracer recsys``: the Typer groups, constants, options and helpers.

The option objects live here so that ``train``/``tune`` and their deprecated ``svd``
spellings take exactly the same options.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import Any

import typer

recsys_app = typer.Typer(
    help="Model-based CF (truncated SVD or implicit ALS): train, tune, evaluate, recommend.",
    no_args_is_help=True,
)
svd_app = typer.Typer(
    help="Deprecated spelling of 'gradtracer recsys train|tune|evaluate|recommend' "
    "(--solver als = --model als).",
    no_args_is_help=True,
)
recsys_app.add_typer(svd_app, name="svd")

_SPLITS_DIR = "splits"
#: Every file or folder a run of these commands writes into a model directory.
_OUTPUTS = (
    "model.json",
    "arrays.npz",
    _SPLITS_DIR,
    "metrics.json",
    "valid_vs_test.png",
    "valid_vs_test.svg",
    "tuning.csv",
    "tuning.json",
    "tuning.png",
    "tuning.svg",
    # the older five-file CF layout
    "config.json",
    "factors.npz",
    "train_matrix.npz",
    "user_ids.json",
    "item_ids.json",
)
_CF_MODELS = ("svd", "als")
_MODELS = (*_CF_MODELS, "mf", "popularity")
_DATA_HELP = (
    "Ratings file or directory (Amazon reviews JSON/CSV/parquet, MovieLens u.data / "
    "ratings.dat / ratings.csv). Default: synthetic make_implicit data."
)


# --- helpers ---------------------------------------------------------------------------


def _parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} is empty")
    return values


def _load_split(
    data: Path | None,
    fmt: str,
    split: str,
    test_fraction: float,
    valid_fraction: float,
    random_state: int,
) -> Any:
    from gradtracer.recsys.data import load_interactions, make_implicit, ratio_split, temporal_split

    ix = make_implicit(random_state=random_state) if data is None else load_interactions(data, fmt)
    if ix.frame.height == 0:
        raise ValueError(f"{ix.source}: no rows (column 'user' is empty)")
    if split == "ratio":
        parts = ratio_split(
            ix,
            test_fraction=test_fraction,
            valid_fraction=valid_fraction,
            random_state=random_state,
        )
    elif split == "temporal":
        parts = temporal_split(
            ix, test_fraction=test_fraction, valid_fraction=valid_fraction, by="time"
        )
    else:
        raise ValueError(f"--split must be 'ratio' or 'temporal', got {split!r}")
    for name in ("train", "valid", "test"):
        part = getattr(parts, name)
        if name == "valid" and valid_fraction == 0:
            continue
        if part is None or part.frame.height == 0:
            raise ValueError(
                f"{ix.source}: the {name} split is empty (column 'user' has no rows); "
                "use more data or other --test-fraction/--valid-fraction"
            )
    return parts


def _solver(model: str, solver: str) -> str:
    """The ``CFConfig.solver`` of ``--model`` and ``--solver``."""
    if model not in _MODELS:
        raise ValueError(f"--model must be one of {_MODELS}, got {model!r}")
    if model not in _CF_MODELS:
        raise ValueError(f"--model {model} has no solver; this command takes {_CF_MODELS}")
    if model == "als":
        return "als"
    if solver == "als":  # the older spelling, through `recsys svd --solver als`
        return "als"
    return solver


def _config(
    n_factors: int,
    solver: str,
    center: bool,
    iterations: int,
    regularization: float,
    random_state: int,
) -> Any:
    from gradtracer.recsys.cf import CFConfig

    return CFConfig(
        n_factors=n_factors,
        solver=solver,
        center=center,
        iterations=iterations,
        regularization=regularization,
        random_state=random_state,
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _write_model_dir(
    model_dir: Path, model: Any, parts: Any, extra: Any = None, *, with_train: bool = False
) -> None:
    """Rewrite ``model_dir``: marker, stale outputs removed, model, splits, ``extra``, marker.

    ``with_train`` also saves the train split (models without their own id maps need it to
    recommend raw ids and to mask seen items).
    """
    from gradtracer.durable import mark_complete, mark_incomplete

    d = mark_incomplete(model_dir)
    for name in _OUTPUTS:
        _remove(d / name)
    model.save(d)
    for name in ("train", "valid", "test") if with_train else ("valid", "test"):
        part = getattr(parts, name)
        if part is not None and part.frame.height:
            part.save(d / _SPLITS_DIR / name)
    if extra is not None:
        extra(d)
    mark_complete(d, {"kind": model.kind, "n_factors": getattr(model, "n_factors", None)})


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(cols)]
    head = "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([head, "-" * len(head), *body])


def _eval_row(ev: Any) -> dict[str, Any]:
    return {
        "split": ev.split,
        "users": ev.n_users,
        "rmse": ev.rmse,
        "accuracy": ev.accuracy,
        **ev.mean,
    }


def _deprecated(command: str, solver: str) -> None:
    new = f"gradtracer recsys {command}"
    if solver == "als":
        new += " --model als"
    typer.echo(f"note: 'gradtracer recsys svd {command}' is deprecated; use '{new}'", err=True)


# --- options shared by the commands ----------------------------------------------------

_data_opt = typer.Option(None, "--data", help=_DATA_HELP)
_format_opt = typer.Option("auto", "--format", "-f", help="Loader format (default: detect).")
_split_opt = typer.Option(
    "ratio", "--split", help="ratio (per-user random) | temporal (global time)."
)
_test_opt = typer.Option(0.1, "--test-fraction", help="Share held out for test (default 0.1).")
_valid_opt = typer.Option(
    0.1, "--valid-fraction", help="Share held out for validation (default 0.1)."
)
_seed_opt = typer.Option(
    0, "--random-state", "--seed", help="Seed of the split, synthetic data and solvers."
)
_model_opt = typer.Option(
    "svd",
    "--model",
    "-m",
    help="svd (truncated SVD) | als (implicit ALS) | mf (implicit MF, train only) | "
    "popularity (train only).",
)
_solver_opt = typer.Option(
    "sklearn", "--solver", help="SVD backend: sklearn (TruncatedSVD) | scipy (svds)."
)
_old_solver_opt = typer.Option(
    "sklearn", "--solver", help="sklearn (TruncatedSVD) | scipy (svds) | als (deprecated)."
)
_center_opt = typer.Option(
    True, "--center/--no-center", help="SVD: subtract each user's mean rating (default on)."
)
_iter_opt = typer.Option(15, "--iterations", help="ALS sweeps (default 15).")
_reg_opt = typer.Option(0.01, "--regularization", help="ALS L2 penalty (default 0.01).")
_model_dir_opt = typer.Option(Path("cf_model"), "--model-dir", help="Artifact directory.")
_n_factors_opt = typer.Option(50, "--n-factors", help="Latent dimensions (default 50).")
_grid_opt = typer.Option("10,20,30,50,75,100", "--grid", help="n_factors values to try.")
_tol_opt = typer.Option(
    0.02,
    "--tolerance",
    help="Choose the smallest n_factors within this share of the best NDCG@10.",
)
_ks_opt = typer.Option("10,20,50", "--ks", help="Cutoffs K of recall/ndcg/map.")
_json_opt = typer.Option(False, "--json", help="Print the results as JSON.")
_user_opt = typer.Option(..., "--user", "-u", help="Raw user id (as in the data file).")
_k_opt = typer.Option(10, "--k", "-k", "--n", "-n", help="Number of items (default 10).")
