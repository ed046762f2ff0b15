"""CLI: `gradtracer validate autofix` runs the Auto-Fix validation study."""

from __future__ import annotations

from pathlib import Path

import typer

validate_app = typer.Typer(help="Reproducible validation studies.", no_args_is_help=True)


@validate_app.command("autofix")
def autofix(
    data: Path | None = typer.Option(
        None, "--data", help="MovieLens ratings file (u.data) or directory; default: synthetic."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Number of seeds (0..N-1)."),
    lr: list[float] | None = typer.Option(
        None, "--lr", help="Adam learning rate; repeat for a grid (default 0.05)."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Training epochs per arm."),
    tuned_lr: float = typer.Option(0.002, "--tuned-lr", help="Adam lr of the reference MF row."),
    tuned_epochs: int = typer.Option(20, "--tuned-epochs", min=1,
                                     help="Epochs of the reference MF row."),
    quick: bool = typer.Option(False, "--quick",
                               help="Small synthetic data (ignored with --data); for smoke runs."),
    out: Path = typer.Option(Path("gradtracer-validation"), "--out",
                             help="Directory for autofix_study.{json,md,png}."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Baseline MF vs Auto-Fix MF (published protocol) over seeds, with paired tests."""
    from gradtracer.recsys.experiments.autofix_report import to_markdown, write_study
    from gradtracer.recsys.experiments.autofix_study import AutoFixStudyConfig, run_autofix_study

    small = {"synthetic_users": 300, "synthetic_items": 400, "synthetic_interactions": 9000}
    config = AutoFixStudyConfig(data=data, seeds=tuple(range(seeds)),
                                lrs=tuple(lr) if lr else (0.05,), epochs=epochs,
                                tuned_lr=tuned_lr, tuned_epochs=tuned_epochs,
                                **(small if quick else {}))
    result = run_autofix_study(config, progress=progress)
    paths = write_study(result, out)
    typer.echo(to_markdown(result))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")


def register(app: typer.Typer) -> None:
    """Add the `validate` command group to the root app."""
    app.add_typer(validate_app, name="validate")
