"""CLI: `gradtracer validate autofix` (the Auto-Fix study), `gradtracer validate diagnosis`
(the fault-injection benchmark of the run-level diagnosis) and `gradtracer validate
autofix-remedy` (Auto-Fix against the prescribed remedy, paired over seeds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

validate_app = typer.Typer(help="Reproducible validation studies.", no_args_is_help=True)


@validate_app.command("autofix")
def autofix(
    data: Path | None = typer.Option(
        None, "--data", help="MovieLens ratings file (u.data) or directory; default: synthetic."
    ),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Number of seeds (0..N-1)."),
    lr: list[float] | None = typer.Option(
        None, "--lr", help="Adam learning rate; repeat for a grid (default 0.05)."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Training epochs per arm."),
    tuned_lr: float = typer.Option(0.002, "--tuned-lr", help="Adam lr of the reference MF row."),
    tuned_epochs: int = typer.Option(
        20, "--tuned-epochs", min=1, help="Epochs of the reference MF row."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Small synthetic data (ignored with --data); for smoke runs."
    ),
    out: Path = typer.Option(
        Path("gradtracer-validation"), "--out", help="Directory for autofix_study.{json,md,png}."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Baseline MF vs Auto-Fix MF (published protocol) over seeds, with paired tests."""
    from gradtracer.recsys.experiments.autofix_report import to_markdown, write_study
    from gradtracer.recsys.experiments.autofix_study import AutoFixStudyConfig, run_autofix_study

    small: dict[str, Any] = {
        "synthetic_users": 300,
        "synthetic_items": 400,
        "synthetic_interactions": 9000,
    }
    config = AutoFixStudyConfig(
        data=data,
        seeds=tuple(range(seeds)),
        lrs=tuple(lr) if lr else (0.05,),
        epochs=epochs,
        tuned_lr=tuned_lr,
        tuned_epochs=tuned_epochs,
    )
    if quick:
        config = dataclasses.replace(config, **small)
    result = run_autofix_study(config, progress=progress)
    paths = write_study(result, out)
    typer.echo(to_markdown(result))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _ints(value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"intensities must be comma-separated 0/1, got {value!r}") from None
    if not out or any(v not in (0, 1) for v in out):
        raise ValueError(f"intensities must be comma-separated 0/1, got {value!r}")
    return out


def _floats(value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(
            f"onsets must be comma-separated numbers in [0, 1), got {value!r}"
        ) from None
    if not out or any(not 0.0 <= v < 1.0 for v in out):
        raise ValueError(f"onsets must be comma-separated numbers in [0, 1), got {value!r}")
    return out


def _seeds(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"seeds must be comma-separated integers, got {value!r}") from None


@validate_app.command("diagnosis")
def diagnosis(
    quick: bool = typer.Option(
        False, "--quick", help="A small subset (3 families, 6 faults, 1 seed) for CI."
    ),
    families: str | None = typer.Option(
        None, "--families", help="Comma-separated families (default: all)."
    ),
    faults: str | None = typer.Option(
        None, "--faults", help="Comma-separated fault names (default: all)."
    ),
    variants: str | None = typer.Option(
        None, "--variants", help="Comma-separated healthy variants (default: all)."
    ),
    healthy_seeds: str = typer.Option("2,3,4,5,6", "--healthy-seeds", help="Healthy-run seeds."),
    fault_seeds: str = typer.Option("2,3", "--fault-seeds", help="Faulty-run seeds."),
    intensities: str | None = typer.Option(
        None, "--intensities", help="Comma-separated intensity indices, 0 and/or 1 (default both)."
    ),
    onsets: str | None = typer.Option(
        None, "--onsets", help="Comma-separated onsets as a share of training (default 0,0.3)."
    ),
    data: list[Path] | None = typer.Option(
        None,
        "--data",
        help="Also run faults on a real data file (MovieLens u.data, Amazon reviews JSON, "
        "DIGINETICA click log); repeat for several.",
    ),
    remedies: bool = typer.Option(
        True, "--remedies/--no-remedies", help="Retrain detected faults with the top remedy."
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="Worker processes (one torch thread each); same results."
    ),
    legacy: bool = typer.Option(
        False, "--legacy", help="Also score gradtracer==0.9.0 watching the same runs."
    ),
    install_legacy: bool = typer.Option(
        False,
        "--install-legacy",
        help="Install gradtracer==0.9.0 (renamed, --no-deps) into $GRADTRACER_LEGACY_DIR "
        "or ~/.cache/gradtracer/legacy-0.9.0 first; implies --legacy.",
    ),
    out: Path = typer.Option(
        Path("gradtracer-validation"),
        "--out",
        help="Directory for diagnosis_suite.{json,md} and diagnosis_confusion.{png,svg}.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fault-injection benchmark of the run-level diagnosis, with same-suite baselines."""
    import torch

    from gradtracer.fault_suite import SuiteConfig, run_suite
    from gradtracer.fault_suite.report import to_markdown, write_suite

    base = SuiteConfig.quick() if quick else SuiteConfig()
    config = SuiteConfig(
        families=_csv(families) or base.families,
        faults=_csv(faults) or base.faults,
        healthy_seeds=base.healthy_seeds if quick else _seeds(healthy_seeds),
        fault_seeds=base.fault_seeds if quick else _seeds(fault_seeds),
        intensities=base.intensities if quick or not intensities else _ints(intensities),
        onsets=base.onsets if quick or not onsets else _floats(onsets),
        remedies=remedies,
        data_paths=tuple(str(p) for p in data or ()),
        variants=_csv(variants) or base.variants,
        jobs=jobs,
        legacy=legacy or install_legacy,
    )
    if config.legacy:
        from gradtracer.fault_suite import legacy as legacy_mod

        if install_legacy:
            typer.echo(f"installed gradtracer 0.9.0 into {legacy_mod.install_legacy()}")
        if not legacy_mod.legacy_available():
            raise typer.BadParameter(
                f"gradtracer 0.9.0 is not installed in {legacy_mod.legacy_dir()}; "
                "add --install-legacy (or set GRADTRACER_LEGACY_DIR)", param_hint="--legacy"
            )  # fmt: skip
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = run_suite(config, progress=progress)
    finally:
        torch.set_num_threads(previous)
    paths = write_suite(result, out)
    typer.echo(to_markdown(result))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['figure']}")


@validate_app.command("autofix-remedy")
def autofix_remedy(
    seeds: int = typer.Option(10, "--seeds", min=2, help="Number of paired seeds (0..N-1)."),
    family: str = typer.Option("mf_bce", "--family", help="Suite family with embedding tables."),
    fault: str = typer.Option(
        "lr_high_embedding", "--fault", help="Oscillation fault to compare on."
    ),
    intensity: int = typer.Option(0, "--intensity", min=0, max=1, help="Fault intensity index."),
    out: Path = typer.Option(
        Path("gradtracer-validation"), "--out", help="Directory for autofix_vs_remedy.{json,md}."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Auto-Fix vs the remedy the diagnosis prescribes, paired over seeds (t-test)."""
    import torch

    from gradtracer.fault_suite.autofix_vs_remedy import (
        compare_autofix,
        to_markdown,
        write_comparison,
    )

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = compare_autofix(tuple(range(seeds)), family=family, fault=fault,
                                 intensity=intensity, progress=progress)  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    paths = write_comparison(result, out)
    typer.echo(to_markdown(result))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}")


def register(app: typer.Typer) -> None:
    """Add the `validate` command group to the root app."""
    app.add_typer(validate_app, name="validate")
