"""CLI: ``gradtracer recsys train | tune | evaluate | recommend`` (model-based CF).

``--model svd`` (default; ``--solver sklearn|scipy`` picks the truncated-SVD backend) or
``--model als`` (implicit ALS, optional ``implicit`` extra); ``train`` also takes
``--model mf`` (implicit MF) and ``--model popularity``. ``train`` and ``tune`` write a
model directory: the model (``model.json`` + ``arrays.npz``, see
:mod:`gradtracer.recsys.models.artifact`) plus ``splits/valid`` and ``splits/test`` (saved
:class:`Interactions`; MF and popularity also ``splits/train``, for their id maps and seen
items), so ``evaluate`` scores exactly the rows held out at training time. ``evaluate`` and
``recommend`` load any registered model kind.

A model directory is rewritten as a whole: the fit happens first, then the directory is
marked incomplete, every output of an earlier run that this run does not rewrite (an old
``splits/valid``, metrics, figures, tuning tables, the older five-file layout) is removed,
the new files are written atomically, and the completeness marker comes last. ``evaluate``
and ``recommend`` refuse a directory whose last write did not finish.

``gradtracer recsys svd train|tune|evaluate|recommend [--solver als]`` is the older
spelling of the same commands; it still works and prints a deprecation note.
Heavy imports happen inside the commands.
"""

from __future__ import annotations

import contextlib
import json
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


# --- commands ----------------------------------------------------------------------------


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


def _load_model(model_dir: Path) -> Any:
    """The model saved in ``model_dir`` (any registered kind; the directory must be complete)."""
    from gradtracer.durable import require_complete
    from gradtracer.recsys.models import load_model
    from gradtracer.recsys.models.artifact import is_artifact

    if model_dir.is_dir():
        require_complete(model_dir)
        if not is_artifact(model_dir):
            raise FileNotFoundError(
                f"{model_dir / 'model.json'}: missing (not a model directory; train one first)"
            )
    return load_model(model_dir)


def _load_split_dir(model_dir: Path, name: str, model: Any) -> Any:
    """Saved split ``name`` with the id maps of ``model`` (or of the saved train split)."""
    from gradtracer.recsys.data import Interactions

    path = model_dir / _SPLITS_DIR / name
    if not (path / "interactions.parquet").is_file():
        return None
    ix = Interactions.load(path)
    if hasattr(model, "user_ids"):
        return Interactions(ix.frame, model.user_ids, model.item_ids, ix.source)
    return ix


def _ranking_evaluation(
    model: Any, heldout: Any, mask: Any, cutoffs: tuple[int, ...], split: str
) -> Any:
    """CF-style result (ranking metrics only) of a model without rating predictions."""
    import time

    import numpy as np

    from gradtracer.findings import metric_key
    from gradtracer.recsys.cf import RANKING_METRICS, CFEvaluation
    from gradtracer.recsys.cf.evaluate import usable_ks
    from gradtracer.recsys.metrics import evaluate_topk

    start = time.perf_counter()
    target = heldout.user_items()
    target.data[:] = 1.0
    seen = target.multiply(mask).tocsr()
    target = (target - seen).tocsr()
    target.eliminate_zeros()
    if target.nnz == 0:
        raise ValueError(f"{heldout.source}: no held-out row of the {split} split is unseen")
    ks = usable_ks(cutoffs, target.shape[1])
    result = evaluate_topk(
        model, target, exclude=mask, ks=ks, metrics=RANKING_METRICS, progress=False
    )
    keys = [metric_key(m, k) for m in RANKING_METRICS for k in ks]
    info = {"heldout_rows": int(heldout.frame.height), "seen_target_pairs": int(seen.nnz)}
    return CFEvaluation(
        split=split,
        n_factors=int(getattr(model, "n_factors", 0)),
        rmse=float("nan"),
        accuracy=float("nan"),
        n_ratings=0,
        mean={k: float(result.mean[k]) for k in keys},
        per_user={k: np.asarray(result.per_user[k]) for k in keys},
        users=np.asarray(result.users),
        info=info,
        seconds=time.perf_counter() - start,
    )


def _evaluate(model_dir: Path, ks: str, as_json: bool) -> None:
    from gradtracer.durable import atomic_write_json
    from gradtracer.recsys.cf import CFModel, evaluate, plot_valid_vs_test

    model = _load_model(model_dir)
    cutoffs = _parse_ints(ks, "--ks")
    test = _load_split_dir(model_dir, "test", model)
    if test is None:
        test_dir = model_dir / _SPLITS_DIR / "test"
        raise FileNotFoundError(f"{test_dir}: no saved test split (train or tune the model first)")
    valid = _load_split_dir(model_dir, "valid", model)
    results = []
    if isinstance(model, CFModel):
        if valid is not None:
            results.append(evaluate(model, valid, ks=cutoffs, split="valid"))
        results.append(evaluate(model, test, ks=cutoffs, exclude=valid, split="test"))
    else:
        train = _load_split_dir(model_dir, "train", model)
        if train is None:
            raise FileNotFoundError(f"{model_dir / _SPLITS_DIR / 'train'}: no saved train split")
        mask = train.user_items()
        mask.data[:] = 1.0
        if valid is not None:
            results.append(_ranking_evaluation(model, valid, mask, cutoffs, "valid"))
            extra = valid.user_items()
            mask = ((mask + extra) > 0).astype("float32").tocsr()
        results.append(_ranking_evaluation(model, test, mask, cutoffs, "test"))
    # metrics.json is written last: when it exists, the figure beside it is of the same run
    for name in ("metrics.json", "valid_vs_test.png", "valid_vs_test.svg"):
        _remove(model_dir / name)
    if valid is not None:
        plot_valid_vs_test(results[0], results[1], model_dir / "valid_vs_test.png")
    document = [r.to_dict() for r in results]
    atomic_write_json(model_dir / "metrics.json", document)
    if as_json:
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    name = model.config.solver if isinstance(model, CFModel) else model.kind
    size = f", n_factors={model.n_factors}" if hasattr(model, "n_factors") else ""
    typer.echo(f"{name}{size}, model {model_dir}")
    typer.echo(_table([_eval_row(r) for r in results]))


def _recommend(user: str, k: int, model_dir: Path, as_json: bool) -> None:
    from gradtracer.recsys.cf import CFModel
    from gradtracer.recsys.models import RawIdRecommender

    model = _load_model(model_dir)
    if isinstance(model, CFModel):
        raw = model.raw()
    else:
        train = _load_split_dir(model_dir, "train", model)
        if train is None:
            raise FileNotFoundError(f"{model_dir / _SPLITS_DIR / 'train'}: no saved train split")
        seen = train.user_items()
        raw = RawIdRecommender(
            model, train.user_ids, train.item_ids, seen=seen, source=train.source
        )
    recs = raw.recommend(user, k)
    if as_json:
        typer.echo(json.dumps(recs.to_dict()))
        return
    typer.echo(
        _table(
            [
                {"rank": r + 1, "item_id": i, "score": float(s)}
                for r, (i, s) in enumerate(zip(recs.item_ids, recs.scores, strict=True))
            ]
        )
    )


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


# --- the older spelling: gradtracer recsys svd ... [--solver als] ----------------------------


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
