"""CLI: ``gradtracer recsys svd train | tune | evaluate | recommend`` (model-based CF).

``--solver sklearn|scipy`` picks the truncated-SVD backend, ``--solver als`` implicit ALS
(optional ``implicit`` extra). ``train`` and ``tune`` write a model directory: the
artifacts of :meth:`gradtracer.recsys.cf.CFModel.save` plus ``splits/valid`` and
``splits/test`` (saved :class:`Interactions`), so ``evaluate`` scores exactly the rows
held out at training time. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

svd_app = typer.Typer(
    help="Model-based CF (truncated SVD, or ALS with --solver als): train, tune, evaluate, recommend.",
    no_args_is_help=True,
)
recsys_app = typer.Typer(help="Recommender models on the recsys substrate.", no_args_is_help=True)
recsys_app.add_typer(svd_app, name="svd")

_SPLITS_DIR = "splits"
_DATA_HELP = (
    "Ratings file or directory (Amazon reviews JSON/CSV/parquet, MovieLens u.data / "
    "ratings.dat / ratings.csv). Default: synthetic make_implicit data."
)


def register(app: typer.Typer) -> None:
    """Add ``gradtracer recsys ...`` to the root app."""
    app.add_typer(recsys_app, name="recsys")


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
    data: Path | None, fmt: str, split: str, test_fraction: float, valid_fraction: float, seed: int
) -> Any:
    from gradtracer.recsys.data import load_interactions, make_implicit, ratio_split, temporal_split

    ix = make_implicit(random_state=seed) if data is None else load_interactions(data, fmt)
    if ix.frame.height == 0:
        raise ValueError(f"{ix.source}: no rows (column 'user' is empty)")
    if split == "ratio":
        parts = ratio_split(
            ix, test_fraction=test_fraction, valid_fraction=valid_fraction, random_state=seed
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


def _config(
    n_factors: int, solver: str, center: bool, iterations: int, regularization: float, seed: int
) -> Any:
    from gradtracer.recsys.cf import CFConfig

    return CFConfig(
        n_factors=n_factors,
        solver=solver,
        center=center,
        iterations=iterations,
        regularization=regularization,
        random_state=seed,
    )


def _save_splits(parts: Any, model_dir: Path) -> None:
    for name in ("valid", "test"):
        part = getattr(parts, name)
        if part is not None and part.frame.height:
            part.save(model_dir / _SPLITS_DIR / name)


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


# --- options shared by train and tune --------------------------------------------------

_data_opt = typer.Option(None, "--data", help=_DATA_HELP)
_format_opt = typer.Option("auto", "--format", "-f", help="Loader format (default: detect).")
_split_opt = typer.Option(
    "ratio", "--split", help="ratio (per-user random) | temporal (global time)."
)
_test_opt = typer.Option(0.1, "--test-fraction", help="Share held out for test (default 0.1).")
_valid_opt = typer.Option(
    0.1, "--valid-fraction", help="Share held out for validation (default 0.1)."
)
_seed_opt = typer.Option(0, "--seed", help="Seed of the split, synthetic data and solvers.")
_solver_opt = typer.Option(
    "sklearn", "--solver", help="sklearn (TruncatedSVD) | scipy (svds) | als."
)
_center_opt = typer.Option(
    True, "--center/--no-center", help="SVD: subtract each user's mean rating (default on)."
)
_iter_opt = typer.Option(15, "--iterations", help="ALS sweeps (default 15).")
_reg_opt = typer.Option(0.01, "--regularization", help="ALS L2 penalty (default 0.01).")
_model_dir_opt = typer.Option(Path("cf_model"), "--model-dir", help="Artifact directory.")


@svd_app.command("train")
def train_cmd(
    data: Path | None = _data_opt,
    fmt: str = _format_opt,
    split: str = _split_opt,
    test_fraction: float = _test_opt,
    valid_fraction: float = _valid_opt,
    n_factors: int = typer.Option(50, "--n-factors", help="Latent dimensions (default 50)."),
    solver: str = _solver_opt,
    center: bool = _center_opt,
    iterations: int = _iter_opt,
    regularization: float = _reg_opt,
    seed: int = _seed_opt,
    model_dir: Path = _model_dir_opt,
) -> None:
    """Fit one model on the train split and save it with the held-out splits."""
    from gradtracer.recsys.cf import train

    config = _config(n_factors, solver, center, iterations, regularization, seed)
    parts = _load_split(data, fmt, split, test_fraction, valid_fraction, seed)
    model = train(parts.train, config)
    model.save(model_dir)
    _save_splits(parts, model_dir)
    typer.echo(
        f"trained {solver} with n_factors={model.n_factors} on {model.train_matrix.shape[0]:,} users x "
        f"{model.train_matrix.shape[1]:,} items ({model.train_matrix.nnz:,} ratings) in "
        f"{model.fit_seconds:.2f}s -> {model_dir}"
    )


@svd_app.command("tune")
def tune_cmd(
    data: Path | None = _data_opt,
    fmt: str = _format_opt,
    split: str = _split_opt,
    test_fraction: float = _test_opt,
    valid_fraction: float = _valid_opt,
    grid: str = typer.Option("10,20,30,50,75,100", "--grid", help="n_factors values to try."),
    tolerance: float = typer.Option(
        0.02,
        "--tolerance",
        help="Choose the smallest n_factors within this share of the best NDCG@10.",
    ),
    solver: str = _solver_opt,
    center: bool = _center_opt,
    iterations: int = _iter_opt,
    regularization: float = _reg_opt,
    seed: int = _seed_opt,
    model_dir: Path = _model_dir_opt,
) -> None:
    """Tune n_factors on validation, refit the chosen value and save it (with tuning.csv/png)."""
    from gradtracer.recsys.cf import plot_tuning_curve, train, tune_n_factors

    if valid_fraction <= 0:
        raise ValueError("tune needs a validation split: --valid-fraction must be > 0")
    values = _parse_ints(grid, "--grid")
    config = _config(max(values), solver, center, iterations, regularization, seed)
    parts = _load_split(data, fmt, split, test_fraction, valid_fraction, seed)
    result = tune_n_factors(
        parts.train, parts.valid, grid=values, config=config, tolerance=tolerance
    )
    config.n_factors = result.chosen
    model = train(parts.train, config)
    model.save(model_dir)
    _save_splits(parts, model_dir)
    result.to_polars().write_csv(model_dir / "tuning.csv")
    (model_dir / "tuning.json").write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    plot_tuning_curve(result, model_dir / "tuning.png")
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


@svd_app.command("evaluate")
def evaluate_cmd(
    model_dir: Path = _model_dir_opt,
    ks: str = typer.Option("10,20,50", "--ks", help="Cutoffs K of recall/ndcg/map."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Score a saved model on its validation and test splits (writes metrics.json and a plot)."""
    from gradtracer.recsys.cf import CFModel, evaluate, plot_valid_vs_test
    from gradtracer.recsys.data import Interactions

    model = CFModel.load(model_dir)
    test_dir = model_dir / _SPLITS_DIR / "test"
    if not (test_dir / "interactions.parquet").is_file():
        raise FileNotFoundError(f"{test_dir}: no saved test split (train or tune the model first)")
    cutoffs = _parse_ints(ks, "--ks")

    def shared_maps(ix: Interactions) -> Interactions:
        return Interactions(ix.frame, model.user_ids, model.item_ids, ix.source)

    test = shared_maps(Interactions.load(test_dir))
    valid = None
    if (model_dir / _SPLITS_DIR / "valid" / "interactions.parquet").is_file():
        valid = shared_maps(Interactions.load(model_dir / _SPLITS_DIR / "valid"))
    results = []
    if valid is not None:
        results.append(evaluate(model, valid, ks=cutoffs, split="valid"))
    results.append(evaluate(model, test, ks=cutoffs, exclude=valid, split="test"))
    (model_dir / "metrics.json").write_text(
        json.dumps([r.to_dict() for r in results], indent=2, sort_keys=True)
    )
    if valid is not None:
        plot_valid_vs_test(results[0], results[1], model_dir / "valid_vs_test.png")
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2, sort_keys=True))
        return
    typer.echo(f"{model.config.solver}, n_factors={model.n_factors}, model {model_dir}")
    typer.echo(_table([_eval_row(r) for r in results]))


@svd_app.command("recommend")
def recommend_cmd(
    user: str = typer.Option(..., "--user", "-u", help="Raw user id (as in the data file)."),
    n: int = typer.Option(10, "--n", "-n", help="Number of items (default 10)."),
    model_dir: Path = _model_dir_opt,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Print the top-N unseen items of a user (an unknown user is an error, exit code 2)."""
    from gradtracer.recsys.cf import CFModel

    recs = CFModel.load(model_dir).recommend(user, n=n)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "user_id": recs.user_id,
                    "items": list(recs.item_ids),
                    "scores": [float(s) for s in recs.scores],
                }
            )
        )
        return
    typer.echo(
        _table(
            [
                {"rank": r + 1, "item_id": i, "score": float(s)}
                for r, (i, s) in enumerate(zip(recs.item_ids, recs.scores, strict=True))
            ]
        )
    )
