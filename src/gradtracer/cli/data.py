"""CLI: ``gradtracer data download | info | prepare`` (registered on the root app by ``register``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gradtracer._numeric import finite_or_none

data_app = typer.Typer(
    help="Download, inspect and split recommender datasets.", no_args_is_help=True
)

_SPLITS = ("loo", "temporal", "ratio")


@data_app.command("download")
def download(
    name: str = typer.Argument(..., help="Dataset name: ml-100k or ml-1m."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Cache root (default $GRADTRACER_CACHE or ~/.cache/gradtracer)."
    ),
    url: str | None = typer.Option(None, "--url", help="Mirror URL (the pinned sha256 applies)."),
) -> None:
    """Download a dataset, verify its sha256 and print the extracted directory."""
    from gradtracer.recsys.data.download import download_dataset

    typer.echo(str(download_dataset(name, cache_dir=cache_dir, url=url)))


@data_app.command("info")
def info(
    path: Path = typer.Argument(..., help="Data file or directory."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Loader format (default: detect)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print rows, users, items, density (and sessions) of a data file."""
    from gradtracer.recsys.data.formats import describe, load_interactions

    stats = describe(load_interactions(path, fmt))
    if as_json:
        finite = {k: _finite_or_none(v) for k, v in stats.items()}
        typer.echo(json.dumps(finite, indent=2, sort_keys=True, allow_nan=False))
        return
    lines = [
        f"source:    {stats['source']}",
        f"rows:      {stats['rows']:,}",
        f"users:     {stats['users']:,}",
        f"items:     {stats['items']:,}",
        f"density:   {stats['density']:.4%}",
        f"ratings:   {stats['rating_min']:g} .. {stats['rating_max']:g}",
        f"time (s):  {stats['timestamp_min']} .. {stats['timestamp_max']}",
        f"duplicate (user, item) pairs: {stats['duplicate_pairs']:,}",
    ]
    if "sessions" in stats:
        lines.append(
            f"sessions:  {stats['sessions']:,} (mean length {stats['mean_session_length']:.2f})"
        )
    typer.echo("\n".join(lines))


@data_app.command("prepare")
def prepare(
    path: Path = typer.Argument(..., help="Data file or directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the split."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Loader format (default: detect)."),
    implicit_threshold: float | None = typer.Option(
        None, "--implicit-threshold", help="Keep ratings >= this, as 1.0 (e.g. 4)."
    ),
    dedup: str | None = typer.Option(
        None, "--dedup", help="Deduplicate (user, item) pairs keeping last|first|max."
    ),
    k_core: int | None = typer.Option(None, "--k-core", help="Iterative k-core filter (e.g. 5)."),
    compact_ids: bool = typer.Option(
        True, "--compact/--no-compact", help="Re-index ids to the users/items left after filtering."
    ),
    split: str = typer.Option("loo", "--split", help="loo | temporal | ratio."),
    test_fraction: float | None = typer.Option(
        None, "--test-fraction", help="temporal: default 0.1; ratio: default 0.2."
    ),
    valid_fraction: float = typer.Option(
        0.0, "--valid-fraction", help="Validation share (loo: > 0 holds out a 2nd-last row)."
    ),
    by: str = typer.Option("session", "--by", help="temporal: session | time."),
    seed: int = typer.Option(0, "--seed", help="ratio: random seed."),
) -> None:
    """Load, filter and split a dataset; write train/valid/test as parquet + json.

    The output directory is rewritten completely: parts of an earlier split that this one
    lacks are removed, and a completeness marker is written last.
    """
    from gradtracer.recsys.data import (
        deduplicate,
        formats,
        leave_one_out,
        preprocess,
        ratio_split,
        temporal_split,
    )

    if split not in _SPLITS:
        raise typer.BadParameter(f"--split must be one of {_SPLITS}, got {split!r}")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a directory", param_hint="--out")
    ix = formats.load_interactions(path, fmt)
    steps: list[dict[str, object]] = [{"step": "load", "rows": len(ix)}]
    if implicit_threshold is not None:
        ix = preprocess.to_implicit(ix, implicit_threshold)
        steps.append({"step": "to_implicit", "threshold": implicit_threshold, "rows": len(ix)})
    if dedup is not None:
        ix = deduplicate(ix, keep=dedup)
        steps.append({"step": "deduplicate", "keep": dedup, "rows": len(ix)})
    if k_core is not None:
        ix = preprocess.k_core(ix, k_core)
        steps.append({"step": "k_core", "k": k_core, "rows": len(ix)})
    if compact_ids:
        ix = preprocess.compact(ix)
        steps.append(
            {"step": "compact", "n_users": ix.n_users, "n_items": ix.n_items, "rows": len(ix)}
        )
    if split == "loo":
        result = leave_one_out(ix, with_valid=valid_fraction > 0)
    elif split == "temporal":
        result = temporal_split(
            ix,
            test_fraction=0.1 if test_fraction is None else test_fraction,
            valid_fraction=valid_fraction,
            by=by,
        )
    else:
        result = ratio_split(
            ix,
            test_fraction=0.2 if test_fraction is None else test_fraction,
            valid_fraction=valid_fraction,
            random_state=seed,
        )
    result.info["preprocessing"] = steps
    result.info["input"] = str(path)
    result.save(out)
    for step in steps:
        typer.echo(f"{step['step']:<12} rows={step['rows']:,}")
    for name, part in result.parts().items():
        typer.echo(f"{name:<12} rows={len(part):,}")
    typer.echo(f"wrote {out}")


def _finite_or_none(value: object) -> object:
    """JSON has no NaN/Infinity: a float goes through :func:`finite_or_none`, others stay."""
    return finite_or_none(value) if isinstance(value, float) else value


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    app.add_typer(data_app, name="data")
