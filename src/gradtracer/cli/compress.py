"""CLI: ``gradtracer compress advise | apply | evaluate``.

``advise`` trains a float MF model on a workload (an EmbeddingTracker on both tables),
asks the :class:`~gradtracer.compress.QuantizationAdvisor` for a recipe per budget and
writes ``float_tables.npz``, ``recipe_<r>x.json`` and ``report.json`` (one
``COMPRESSION_CANDIDATE`` finding per recipe) into ``--out``. ``apply`` builds the
compressed model a recipe describes and saves it as a checksummed npz or safetensors file. ``evaluate``
scores one compressed artifact, or (without ``--artifact``) runs the equal-bytes study
over paired seeds and writes ``study.json``, ``summary.md`` and the Pareto figure.

Session workloads (``--workload diginetica``, or ``--sessions PATH`` for any session
log) train GRU4Rec instead: ``advise`` writes ``float_model/`` (the float GRU4Rec),
``recipe_<r>x.json`` (session recipes) and ``report.json``; ``apply`` takes
``--model float_model``; ``evaluate`` scores a compressed GRU4Rec artifact on the test
sessions or runs the session study. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from gradtracer.compress.session_recipe import SessionRecipe
    from gradtracer.recsys.sessions.batching import SessionArrays

compress_app = typer.Typer(
    help="Compress embedding tables: advise a recipe, apply it, evaluate at equal bytes.",
    no_args_is_help=True,
)

_WORKLOAD_HELP = (
    "synthetic, ml-100k, amazon-mi (MF) or diginetica (GRU4Rec sessions), read from --data-dir."
)
_SESSIONS_HELP = "A session log (GRU4Rec sessions workload; overrides --workload)."
_SESSION_FORMAT_HELP = "Format of --sessions: tsv, yoochoose, diginetica or retailrocket."
#: Session workloads by name: file under --data-dir and its format.
SESSION_WORKLOADS = {
    "diginetica": ("sessions/diginetica-sample/sample_train-item-views.csv", "diginetica")
}


def _session_source(workload: str, data_dir: Path, sessions: Path | None) -> Path | None:
    """The session log a command runs on, or None for an MF workload."""
    if sessions is not None:
        if not sessions.is_file():
            raise FileNotFoundError(f"{sessions}: no such session log")
        return sessions
    if workload in SESSION_WORKLOADS:
        path = data_dir / SESSION_WORKLOADS[workload][0]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such session log (workload {workload!r})")
        return path
    return None


def _session_data(path: Path, fmt: str) -> tuple[SessionArrays, SessionArrays, SessionArrays]:
    from gradtracer.compress.session import session_splits
    from gradtracer.recsys.data.sessions import load_sessions

    return session_splits(load_sessions(path, fmt))


def _session_format(workload: str, sessions: Path | None, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    if sessions is None and workload in SESSION_WORKLOADS:
        return SESSION_WORKLOADS[workload][1]
    return "diginetica"


def _gru_config(layers: int, n_sample: int, batch_size: int, n_epochs: int) -> dict[str, object]:
    return {
        "layers": (layers,),
        "n_sample": n_sample,
        "batch_size": batch_size,
        "n_epochs": n_epochs,
    }


def register(app: typer.Typer) -> None:
    """Add ``gradtracer compress ...`` to the root app."""
    app.add_typer(compress_app, name="compress")


def _ratios(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(
            f"--ratios must be comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise typer.BadParameter(f"--ratios must be integers >= 1, got {text!r}")
    return values


def _tables(path: Path) -> tuple[object, object]:
    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such float tables file")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("user", "item") if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing} (expected 'user' and 'item')")
        return npz["user"], npz["item"]


@compress_app.command("advise")
def advise(
    workload: str = typer.Option("synthetic", help=_WORKLOAD_HELP),
    data_dir: Path = typer.Option(Path("../shared/data"), help="Folder with the datasets."),
    ratios: str = typer.Option("8,16,32", help="Budgets as float32 bytes / ratio."),
    n_factors: int = typer.Option(64, help="Embedding dimension of the float model."),
    n_epochs: int | None = typer.Option(
        None, help="Training epochs (default 30 for MF, 10 for GRU4Rec)."
    ),
    random_state: int = typer.Option(0, help="Seed of initialisation and training."),
    out: Path = typer.Option(Path("compress_out"), help="Output folder."),
    sessions: Path | None = typer.Option(None, help=_SESSIONS_HELP),
    session_format: str | None = typer.Option(None, help=_SESSION_FORMAT_HELP),
    preset: str = typer.Option("diginetica", help="GRU4Rec preset (sessions)."),
    layers: int = typer.Option(64, help="GRU units (sessions)."),
    n_sample: int = typer.Option(512, help="GRU4Rec negative samples per batch (sessions)."),
    batch_size: int = typer.Option(32, help="GRU4Rec batch size (sessions)."),
    dense: str = typer.Option("fp32", help="GRU matrix precision: fp32, fp16, int8, int4 or int2."),
    select: str = typer.Option(
        "valid_ndcg", help="Session plan selection: valid_ndcg or fidelity (to the float model)."
    ),
    selection: str | None = typer.Option(
        None,
        help="MF plan selection: fidelity_plus_validation (default), fidelity_validation, "
        "fidelity, validation or "
        "score_error.",
    ),
) -> None:
    """Train a float model, advise a recipe per budget, write recipes and the report."""
    import numpy as np

    log = _session_source(workload, data_dir, sessions)
    if log is not None:
        _advise_sessions(
            log, _session_format(workload, sessions, session_format), _ratios(ratios),
            _gru_config(layers, n_sample, batch_size, 10 if n_epochs is None else n_epochs),
            preset, random_state, dense, select, out,
        )  # fmt: skip
        return
    n_epochs = 30 if n_epochs is None else n_epochs

    from gradtracer.compress.advisor import QuantizationAdvisor
    from gradtracer.compress.recipe import recipe_report
    from gradtracer.compress.study import train_model
    from gradtracer.compress.workloads import TrainConfig, evaluate_model, load_workload
    from gradtracer.durable import atomic_savez, atomic_write_json
    from gradtracer.report.text import render_text

    budgets = _ratios(ratios)
    w = load_workload(workload, data_dir, random_state=random_state)
    typer.echo(f"training {n_factors}-d MF on {workload} ({w.n_users} users, {w.n_items} items)")
    model, stats = train_model(
        w, n_factors, TrainConfig(n_epochs=n_epochs), random_state, track=True
    )
    user, item = (t.numpy() for t in model.scorer())
    out.mkdir(parents=True, exist_ok=True)
    atomic_savez(out / "float_tables.npz", user=user, item=item)

    def validate(m: object) -> float:
        return float(np.mean(evaluate_model(m, w, part="valid")["ndcg@10"]))

    advisor = QuantizationAdvisor(
        user, item, user_stats=stats[0], item_stats=stats[1], validate=validate,
        selection=selection, exclude=w.train,
    )  # fmt: skip
    recipes = []
    from gradtracer._progress import progress

    for r in progress(budgets, desc="budgets"):
        recipe = advisor.advise(advisor.fp32_bytes // r)
        recipe.save(out / f"recipe_{r}x.json")
        recipes.append(recipe)
    report = recipe_report(recipes, subject=f"{workload}/mf")
    atomic_write_json(out / "report.json", report.to_dict())
    typer.echo(render_text(report))
    typer.echo(f"wrote {out}/float_tables.npz, recipe_*x.json, report.json")


def _advise_sessions(
    log: Path,
    fmt: str,
    budgets: tuple[int, ...],
    config: dict[str, object],
    preset: str,
    random_state: int,
    dense: str,
    select: str,
    out: Path,
) -> None:
    from gradtracer._progress import progress
    from gradtracer.compress.session import gru4rec_trainer
    from gradtracer.compress.session_advice import advise_session
    from gradtracer.compress.session_recipe import session_recipe_report
    from gradtracer.durable import atomic_write_json
    from gradtracer.report.text import render_text

    train, valid, test = _session_data(log, fmt)
    typer.echo(
        f"training GRU4Rec on {log.name} ({train.n_items} items, "
        f"{train.n_predictions} training predictions)"
    )
    model, signals = gru4rec_trainer(train, preset, **config)(random_state)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "float_model")
    fp32 = int(model.output_emb.weight.numel()) * 4
    recipes = []
    for r in progress(budgets, desc="budgets"):
        recipe, _ = advise_session(
            model,
            train,
            valid,
            fp32 // r,
            signals=signals,
            dense=dense,
            select=select,
        )
        recipe.save(out / f"recipe_{r}x.json")
        recipes.append(recipe)
    report = session_recipe_report(recipes, subject=f"{log.stem}/gru4rec")
    atomic_write_json(out / "report.json", report.to_dict())
    typer.echo(render_text(report))
    typer.echo(f"wrote {out}/float_model, recipe_*x.json, report.json")


@compress_app.command("apply")
def apply(
    recipe: Path = typer.Argument(..., help="Recipe JSON written by 'compress advise'."),
    tables: Path | None = typer.Option(
        None, help="float_tables.npz with 'user' and 'item' arrays (MF recipes)."
    ),
    model: Path | None = typer.Option(
        None, help="The float GRU4Rec folder 'advise' wrote (session recipes)."
    ),
    out: Path = typer.Option(
        Path("compressed.npz"), help="Artifact to write (.npz, or .safetensors for safetensors)."
    ),
) -> None:
    """Build the compressed model a recipe describes; save it as a checksummed npz."""
    from gradtracer.compress.recipe import Recipe, apply_recipe, read_recipe_json
    from gradtracer.compress.session_recipe import SESSION_RECIPE_KIND, SessionRecipe

    data = read_recipe_json(recipe)  # read once; the kind picks the recipe class
    if isinstance(data, dict) and data.get("kind") == SESSION_RECIPE_KIND:
        _apply_session(SessionRecipe.from_dict(data, source=str(recipe)), recipe, model, out)
        return
    if tables is None:
        raise typer.BadParameter(f"{recipe} is an MF recipe: give --tables float_tables.npz")
    r = Recipe.from_dict(data, source=str(recipe))
    user, item = _tables(tables)
    mf = apply_recipe(r, user, item)
    mf.save(out)
    parts = mf.byte_breakdown()
    typer.echo(f"{r.method}: {mf.nbytes()} bytes ({r.fp32_bytes / mf.nbytes():.1f}x smaller)")
    for key, value in sorted(parts.items()):
        if value:
            typer.echo(f"  {key:32s} {value:>10d}")
    typer.echo(f"wrote {out}")


def _apply_session(r: SessionRecipe, recipe: Path, model: Path | None, out: Path) -> None:
    from gradtracer.compress.session_recipe import apply_session_recipe
    from gradtracer.recsys.models.gru4rec import GRU4Rec

    if model is None:
        raise typer.BadParameter(f"{recipe} is a session recipe: give --model float_model")
    cm = apply_session_recipe(r, GRU4Rec.load(model))
    cm.save(out)
    typer.echo(
        f"{r.method}: item tables {cm.table_bytes()} bytes ({r.fp32_bytes / cm.table_bytes():.1f}x "
        f"smaller), whole model {cm.nbytes()} bytes"
    )
    for key, value in sorted(cm.byte_breakdown().items()):
        if value:
            typer.echo(f"  {key:40s} {value:>10d}")
    typer.echo(f"wrote {out}")


@compress_app.command("evaluate")
def evaluate(
    workload: str = typer.Option("synthetic", help=_WORKLOAD_HELP),
    data_dir: Path = typer.Option(Path("../shared/data"), help="Folder with the datasets."),
    artifact: Path | None = typer.Option(
        None, help="Score this compressed artifact only (.npz or .safetensors)."
    ),
    recipe: Path | None = typer.Option(
        None, help="With --artifact: refuse it unless it was built from this recipe."
    ),
    ratios: str = typer.Option("8,16,32", help="Budgets as float32 bytes / ratio."),
    n_seeds: int = typer.Option(5, help="Paired seeds of the study."),
    n_factors: int = typer.Option(64, help="Embedding dimension of the float model."),
    n_epochs: int | None = typer.Option(
        None, help="Training epochs (default 30 for MF, 10 for GRU4Rec)."
    ),
    retrain: bool = typer.Option(True, help="Also train the smaller model from scratch."),
    tune: bool = typer.Option(
        True,
        help="Choose the float model's weight decay and epochs on the validation items first "
        "(as the published study does); --no-tune trains --n-epochs with the defaults.",
    ),
    out: Path = typer.Option(Path("compress_study"), help="Output folder of the study."),
    sessions: Path | None = typer.Option(None, help=_SESSIONS_HELP),
    session_format: str | None = typer.Option(None, help=_SESSION_FORMAT_HELP),
    preset: str = typer.Option("diginetica", help="GRU4Rec preset (sessions)."),
    layers: int = typer.Option(64, help="GRU units (sessions)."),
    n_sample: int = typer.Option(512, help="GRU4Rec negative samples per batch (sessions)."),
    batch_size: int = typer.Option(32, help="GRU4Rec batch size (sessions)."),
    select: str = typer.Option(
        "valid_ndcg", help="Session plan selection: valid_ndcg or fidelity (to the float model)."
    ),
    dense_precisions: str = typer.Option(
        "fp16,int8,int4", help="GRU precisions the session study measures (empty: none)."
    ),
) -> None:
    """Evaluate an artifact, or run the equal-bytes study over paired seeds."""
    log = _session_source(workload, data_dir, sessions)
    if log is not None:
        fmt = _session_format(workload, sessions, session_format)
        if artifact is not None:
            _evaluate_session_artifact(log, fmt, artifact, recipe)
            return
        if n_seeds < 2:
            raise ValueError(f"--n-seeds must be >= 2 for paired tests, got {n_seeds}")
        gru = _gru_config(layers, n_sample, batch_size, 10 if n_epochs is None else n_epochs)
        _session_study(
            log, fmt, _ratios(ratios), n_seeds, preset, gru, select,
            tuple(p for p in dense_precisions.split(",") if p.strip()), out,
        )  # fmt: skip
        return
    import numpy as np

    from gradtracer.compress.model import load_compressed
    from gradtracer.compress.study import StudyConfig, run_study, summary_markdown, write_outputs
    from gradtracer.compress.workloads import TrainConfig, evaluate_model, load_workload

    n_epochs = 30 if n_epochs is None else n_epochs
    w = load_workload(workload, data_dir)
    if artifact is not None:
        from gradtracer.compress.recipe import load_recipe

        model = load_compressed(artifact, recipe=None if recipe is None else load_recipe(recipe))
        if (model.n_users, model.n_items) != (w.n_users, w.n_items):
            raise ValueError(
                f"{artifact}: model is for {model.n_users} users x {model.n_items} items, "
                f"{workload} has {w.n_users} x {w.n_items}"
            )
        res = evaluate_model(model, w)
        typer.echo(
            f"{artifact}: {model.nbytes()} bytes, test NDCG@10 {np.mean(res['ndcg@10']):.4f}, "
            f"Recall@20 {np.mean(res['recall@20']):.4f} ({len(res['users'])} users)"
        )
        return
    if n_seeds < 2:
        raise ValueError(f"--n-seeds must be >= 2 for paired tests, got {n_seeds}")
    train, tuning = TrainConfig(n_epochs=n_epochs), None
    if tune:
        from gradtracer.compress.workloads import tune_float

        typer.echo("tuning the float model on the validation items ...")
        tuned = tune_float(w, n_factors, max_epochs=max(n_epochs, 5), base=train, random_state=0)
        train, tuning = tuned.config, tuned.to_dict()
        typer.echo(f"chosen: {tuned.config.to_dict()} (validation NDCG@10 {tuned.valid_ndcg:.4f})")
    cfg = StudyConfig(
        ratios=_ratios(ratios),
        n_seeds=n_seeds,
        n_factors=n_factors,
        train=train,
        retrain=retrain,
        tuning=tuning,
    )
    result = run_study(w, cfg, progress=typer.echo)
    paths = write_outputs([result], out)
    typer.echo(summary_markdown([result]))
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def _evaluate_session_artifact(log: Path, fmt: str, artifact: Path, recipe: Path | None) -> None:
    from gradtracer.compress.session_artifact import load_session_artifact
    from gradtracer.compress.session_recipe import load_session_recipe
    from gradtracer.recsys.sessions.evaluate import evaluate_next_item

    _, _, test = _session_data(log, fmt)
    r = None if recipe is None else load_session_recipe(recipe)
    cm = load_session_artifact(artifact, recipe=r)
    if cm.n_items != test.n_items:
        raise ValueError(
            f"{artifact}: model is for {cm.n_items} items, {log.name} has "
            f"{test.n_items} in its training split"
        )
    res = evaluate_next_item(cm, test, ks=(10, 20))
    typer.echo(
        f"{artifact}: {cm.nbytes()} bytes (item tables {cm.table_bytes()}), test NDCG@10 "
        f"{res.mean['ndcg@10']:.4f}, Recall@20 {res.mean['recall@20']:.4f} "
        f"({res.n_predictions} predictions)"
    )


def _session_study(
    log: Path,
    fmt: str,
    budgets: tuple[int, ...],
    n_seeds: int,
    preset: str,
    config: dict[str, object],
    select: str,
    dense: tuple[str, ...],
    out: Path,
) -> None:
    from gradtracer._progress import progress
    from gradtracer.compress.session import (
        gru4rec_trainer,
        session_study,
        session_summary_markdown,
        summarize_session_study,
    )
    from gradtracer.durable import atomic_write_json, atomic_write_text

    train, valid, test = _session_data(log, fmt)
    fit = gru4rec_trainer(train, preset, **config)
    rows = []
    for seed in progress(range(n_seeds), desc="seeds"):
        rows += session_study(
            fit,
            train,
            valid,
            test,
            seeds=(seed,),
            ratios=budgets,
            dense=dense,
            select=select,
        )
    summary = summarize_session_study(rows)
    out.mkdir(parents=True, exist_ok=True)
    study = {
        "workload": str(log),
        "config": {**config, "preset": preset, "select": select},
        "rows": [r.to_dict() for r in rows],
        "summary": summary,
    }
    atomic_write_json(out / "session_study.json", study)
    text = session_summary_markdown(summary)
    atomic_write_text(out / "session_summary.md", text)
    typer.echo(text)
    typer.echo(f"wrote {out}/session_study.json, {out}/session_summary.md")
