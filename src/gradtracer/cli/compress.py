"""CLI: ``gradtracer compress advise | apply | evaluate``.

``advise`` trains a float MF model on a workload (an EmbeddingTracker on both tables),
asks the :class:`~gradtracer.compress.QuantizationAdvisor` for a recipe per budget and
writes ``float_tables.npz``, ``recipe_<r>x.json`` and ``report.json`` (one
``COMPRESSION_CANDIDATE`` finding per recipe) into ``--out``. ``apply`` builds the
compressed model a recipe describes and saves it as a checksummed npz or safetensors file. ``evaluate``
scores one compressed artifact, or (without ``--artifact``) runs the equal-bytes study
over paired seeds and writes ``study.json``, ``summary.md`` and the Pareto figure.
Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

compress_app = typer.Typer(
    help="Compress embedding tables: advise a recipe, apply it, evaluate at equal bytes.",
    no_args_is_help=True,
)

_WORKLOAD_HELP = "synthetic, ml-100k or amazon-mi (read from --data-dir)."


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
    n_epochs: int = typer.Option(30, help="Training epochs."),
    random_state: int = typer.Option(0, help="Seed of initialisation and training."),
    out: Path = typer.Option(Path("compress_out"), help="Output folder."),
) -> None:
    """Train a float model, advise a recipe per budget, write recipes and the report."""
    import numpy as np

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
        user, item, user_stats=stats[0], item_stats=stats[1], validate=validate
    )
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


@compress_app.command("apply")
def apply(
    recipe: Path = typer.Argument(..., help="Recipe JSON written by 'compress advise'."),
    tables: Path = typer.Option(..., help="float_tables.npz with 'user' and 'item' arrays."),
    out: Path = typer.Option(
        Path("compressed.npz"), help="Artifact to write (.npz, or .safetensors for safetensors)."
    ),
) -> None:
    """Build the compressed model a recipe describes; save it as a checksummed npz."""
    from gradtracer.compress.recipe import apply_recipe, load_recipe

    r = load_recipe(recipe)
    user, item = _tables(tables)
    model = apply_recipe(r, user, item)
    model.save(out)
    parts = model.byte_breakdown()
    typer.echo(f"{r.method}: {model.nbytes()} bytes ({r.fp32_bytes / model.nbytes():.1f}x smaller)")
    for key, value in sorted(parts.items()):
        if value:
            typer.echo(f"  {key:32s} {value:>10d}")
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
    n_epochs: int = typer.Option(30, help="Training epochs."),
    retrain: bool = typer.Option(True, help="Also train the smaller model from scratch."),
    tune: bool = typer.Option(
        True,
        help="Choose the float model's weight decay and epochs on the validation items first "
        "(as the published study does); --no-tune trains --n-epochs with the defaults.",
    ),
    out: Path = typer.Option(Path("compress_study"), help="Output folder of the study."),
) -> None:
    """Evaluate an artifact, or run the equal-bytes study over paired seeds."""
    import numpy as np

    from gradtracer.compress.model import load_compressed
    from gradtracer.compress.study import StudyConfig, run_study, summary_markdown, write_outputs
    from gradtracer.compress.workloads import TrainConfig, evaluate_model, load_workload

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
