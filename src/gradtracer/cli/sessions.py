"""CLI: ``gradtracer sessions prepare | train | evaluate | compare | run`` (session study).

``SOURCE`` is a session file read with ``--fmt`` (``tsv``: ``SessionId<TAB>ItemId<TAB>Time``,
``yoochoose``, ``diginetica``, ``retailrocket``) or the word ``synthetic``. GRU4Rec
hyperparameters start from ``--preset`` (the official defaults, or an official tuned
setting) and are changed with ``--set key=value`` (repeatable), e.g.
``--set layers=64 --set loss=bpr-max``. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

sessions_app = typer.Typer(
    help="Session-based recommendation study: popularity, Markov chain and GRU4Rec.",
    no_args_is_help=True,
)

_SOURCE_HELP = "Session file, or 'synthetic' for the built-in generator."
_TEST_HELP = (
    "Held-out test file (same --fmt) of a pre-split data set: SOURCE is then the training "
    "file and nothing is re-split. Without it the latest --test-fraction of SOURCE's "
    "sessions (by start time) become the test set."
)
_FMT_HELP = "File format: tsv | yoochoose | diginetica | retailrocket."
_PRESET_HELP = (
    "GRU4Rec start point: default | coveo | diginetica | rees46 | retailrocket | rsc15 | "
    "yoochoose (the official tuned parameter files). Note: default has logq=0, the "
    "official cross-entropy settings (rees46, rsc15, yoochoose) use logq=1."
)
_SET_HELP = "GRU4Rec parameter override KEY=VALUE (repeatable), e.g. layers=64 or loss=bpr-max."
_MODELS = ("popularity", "markov", "gru4rec")


def register(app: typer.Typer) -> None:
    """Add ``gradtracer sessions ...`` to the root app."""
    app.add_typer(sessions_app, name="sessions")


# --- helpers ---------------------------------------------------------------------------


def _parse_list(text: str, option: str, cast: type) -> tuple[Any, ...]:
    try:
        values = tuple(cast(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{option} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} is empty")
    return values


def _parse_ks(text: str) -> tuple[int, ...]:
    ks = _parse_list(text, "--ks", int)
    bad = [k for k in ks if k < 1]
    if bad:
        raise ValueError(f"--ks must be positive cut-offs, got {list(bad)}")
    return ks


def _gru4rec_config(
    preset: str, sets: list[str], n_epochs: int | None, random_state: int | None
) -> Any:
    from gradtracer.recsys.models.gru4rec import PRESETS, GRU4RecConfig, preset_config

    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {list(PRESETS)}, got {preset!r}")
    types = {k: type(v) for k, v in GRU4RecConfig().to_dict().items()}
    aliases = {"embedding": "embedding_dim"}  # the official parameter files' name
    changes: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        key = aliases.get(key.strip(), key.strip())
        if not sep or key not in types:
            raise ValueError(f"--set expects KEY=VALUE with KEY in {sorted(types)}, got {item!r}")
        changes[key] = _cast(key, value.strip(), types[key])
    if n_epochs is not None:
        changes["n_epochs"] = n_epochs
    if random_state is not None:
        changes["random_state"] = random_state
    return preset_config(preset, **changes)


def _cast(key: str, value: str, kind: type) -> Any:
    try:
        if kind is list:
            return [int(x) for x in value.replace("/", ",").split(",") if x]
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        return kind(value)
    except ValueError:
        raise ValueError(f"--set {key}={value!r}: expected a {kind.__name__}") from None


def _print_info(info: dict[str, Any]) -> None:
    keys = (
        "n_events",
        "n_sessions",
        "short_sessions_dropped",
        "train_sessions",
        "test_sessions",
        "unseen_test_events_dropped",
        "test_sessions_too_short_after_filter",
        "train_events",
        "test_events",
    )
    typer.echo("split: " + ", ".join(f"{k}={info[k]}" for k in keys if k in info))


def _epoch_line(progress: Any) -> None:
    typer.echo(f"{progress.line()}", err=True)


def _training_hooks(on_backward: Any = None) -> Any:
    """Per-epoch lines on stderr; a progress bar on a terminal, 10% lines elsewhere."""
    import sys

    from gradtracer.recsys.models.next_item import TrainingHooks

    tty = sys.stderr.isatty()
    return TrainingHooks(
        on_backward=on_backward,
        on_epoch=_epoch_line,
        on_progress=None if tty else _epoch_line,
        progress=None,
    )


def _load_pair(
    source: str,
    test: Path | None,
    fmt: str,
    test_fraction: float,
    min_item_support: int,
    n_sessions: int,
    n_items: int,
    random_state: int,
) -> Any:
    from gradtracer.recsys.sessions.split import split_pair, split_sessions
    from gradtracer.recsys.sessions.study import SYNTHETIC, load_session_data

    ix = load_session_data(
        source, fmt=fmt, n_sessions=n_sessions, n_items=n_items, random_state=random_state
    )
    if test is not None:
        if source == SYNTHETIC:
            raise ValueError("--test needs a training file as SOURCE, not 'synthetic'")
        held = load_session_data(str(test), fmt=fmt)
        return split_pair(ix, held, min_item_support=min_item_support)
    split = split_sessions(ix, test_fraction, min_item_support=min_item_support)
    if source != SYNTHETIC:
        typer.echo(
            f"note: no --test file given; held out the latest {test_fraction:.0%} of the "
            f"sessions of {source} (by start time) as the test set",
            err=True,
        )
    return split


# --- commands -------------------------------------------------------------------------


@sessions_app.command("prepare")
def prepare(
    source: str = typer.Argument(..., help=_SOURCE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for train/, test/, info.json."),
    test: Path | None = typer.Option(None, "--test", help=_TEST_HELP),
    fmt: str = typer.Option("tsv", "--fmt", help=_FMT_HELP),
    test_fraction: float = typer.Option(0.2, help="Share of sessions (latest starts) held out."),
    min_item_support: int = typer.Option(1, help="Drop items with fewer events first."),
    n_sessions: int = typer.Option(5000, help="Synthetic data: number of sessions."),
    n_items: int = typer.Option(1000, help="Synthetic data: catalog size."),
    random_state: int = typer.Option(0, "--random-state", "--seed", help="Synthetic data seed."),
) -> None:
    """Load sessions, drop short ones, split by session start time (or take --test), filter unseen test items."""
    from gradtracer.recsys.sessions.study import save_split

    split = _load_pair(
        source, test, fmt, test_fraction, min_item_support, n_sessions, n_items, random_state
    )
    save_split(split, out)
    _print_info(split.info)
    typer.echo(f"wrote {out}")


@sessions_app.command("train")
def train(
    split_dir: Path = typer.Argument(..., help="Directory written by `sessions prepare`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    model: str = typer.Option("gru4rec", "--model", "-m", help="popularity | markov | gru4rec"),
    alpha: float = typer.Option(0.0, help="Markov: popularity weight in [0, 1]."),
    preset: str = typer.Option("default", help=_PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    n_epochs: int | None = typer.Option(
        None, "--epochs", "--n-epochs", min=1, help="GRU4Rec: override n_epochs (>= 1)."
    ),
    random_state: int | None = typer.Option(
        None, "--random-state", "--seed", help="GRU4Rec: override random_state."
    ),
    track: bool = typer.Option(False, "--track", help="GRU4Rec: attach EmbeddingTrackers."),
) -> None:
    """Train one model on the split's training sessions and save it (model.json + arrays.npz)."""
    from gradtracer.durable import atomic_write_json
    from gradtracer.recsys.sessions import session_arrays
    from gradtracer.recsys.sessions.study import (
        attach_embedding_trackers,
        load_split,
        make_model,
        model_options,
    )

    gru_only = {
        "--preset": preset != "default",
        "--set": bool(set_),
        "--epochs": n_epochs is not None,
        "--random-state": random_state is not None,
    }
    given = [flag for flag, used in gru_only.items() if used]
    if model != "gru4rec" and given:
        raise ValueError(f"{', '.join(given)} apply to --model gru4rec only, not {model!r}")
    split = load_split(split_dir)
    config = _gru4rec_config(preset, set_, n_epochs, random_state) if model == "gru4rec" else None
    data = session_arrays(split.train)
    fitted = make_model(model, data.n_items, **model_options(model, alpha=alpha, gru4rec=config))
    trackers: dict[str, Any] = {}
    hook = None
    if track:
        trackers, hook = attach_embedding_trackers(fitted)
    fitted.fit(data, hooks=_training_hooks(hook))
    log = fitted.training_log()
    fitted.save(out)
    if trackers:
        summaries = {}
        for name, tracker in trackers.items():
            summaries[name] = tracker.summary()
            typer.echo(tracker.report())
            tracker.detach()
        atomic_write_json(out / "tracking.json", summaries, default=str)
    if "epoch_loss" in log:
        losses = ", ".join(f"{x:.4f}" for x in log["epoch_loss"])
        typer.echo(f"epoch loss: {losses}; {log['events_per_second']:.0f} events/s")
    typer.echo(f"wrote {out}")


@sessions_app.command("evaluate")
def evaluate(
    split_dir: Path = typer.Argument(..., help="Directory written by `sessions prepare`."),
    model_dir: Path = typer.Argument(..., help="Directory written by `sessions train`."),
    ks: str = typer.Option("5,10,20", help="Cut-offs K (each at most the catalog size)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write per-prediction ranks (.npz)."),
    as_json: bool = typer.Option(False, "--json", help="Print the means as JSON."),
) -> None:
    """Full-ranking next-item Recall@K, MRR@K, NDCG@K over every test position."""
    from gradtracer.recsys.sessions import evaluate_next_item, session_arrays
    from gradtracer.recsys.sessions.study import load_model, load_split

    cutoffs = _parse_ks(ks)
    split = load_split(split_dir)
    model = load_model(model_dir)
    if model.n_items != split.test.n_items:
        raise ValueError(
            f"{model_dir}: model was trained on {model.n_items} items but {split_dir / 'test'} "
            f"has {split.test.n_items} in its 'item' column map; train it on this split"
        )
    too_big = [k for k in cutoffs if k > model.n_items]
    if too_big:
        raise ValueError(
            f"--ks {','.join(map(str, too_big))}: a cut-off cannot exceed the catalog of "
            f"{model.n_items} items"
        )
    result = evaluate_next_item(model, session_arrays(split.test), ks=cutoffs)
    if out is not None:
        result.save(out)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(f"{result.model}: {result.n_predictions} predictions")
        for key, value in sorted(result.mean.items()):
            typer.echo(f"  {key:<10} {value:.4f}")


@sessions_app.command("compare")
def compare(
    result_a: Path = typer.Argument(..., help="Ranks of model A (.npz from `evaluate --out`)."),
    result_b: Path = typer.Argument(..., help="Ranks of model B, same split."),
    metrics: str = typer.Option("recall@20,mrr@20", help="Metric keys to test."),
) -> None:
    """Paired t-test and Wilcoxon signed-rank test of A vs B over the same predictions."""
    from gradtracer.recsys.sessions.evaluate import NextItemResult, compare_next_item

    for path in (result_a, result_b):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such result file (write it with evaluate --out)")
    a, b = NextItemResult.load(str(result_a)), NextItemResult.load(str(result_b))
    keys = _parse_list(metrics, "--metrics", str)
    missing = [k for k in keys if k not in a.per_position]
    if missing:
        raise ValueError(f"unknown metric(s) {missing}; available: {sorted(a.per_position)}")
    table = compare_next_item(a, b, metrics=keys)
    typer.echo(f"{a.model} (A) vs {b.model} (B), {a.n_predictions} paired predictions")
    for key, row in table.items():
        typer.echo(
            f"  {key:<10} A={row['mean_a']:.4f} B={row['mean_b']:.4f} diff={row['diff']:+.4f} "
            f"t-test p={row['ttest_p']:.3g} wilcoxon p={row['wilcoxon_p']:.3g}"
        )


@sessions_app.command("run")
def run(
    source: str = typer.Argument("synthetic", help=_SOURCE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    test: Path | None = typer.Option(None, "--test", help=_TEST_HELP),
    fmt: str = typer.Option("tsv", "--fmt", help=_FMT_HELP),
    test_fraction: float = typer.Option(0.2, help="Share of sessions (latest starts) held out."),
    min_item_support: int = typer.Option(1, help="Drop items with fewer events first."),
    n_sessions: int = typer.Option(5000, help="Synthetic data: number of sessions."),
    n_items: int = typer.Option(1000, help="Synthetic data: catalog size."),
    random_state: int = typer.Option(0, "--random-state", "--seed", help="Synthetic data seed."),
    models: str = typer.Option(",".join(_MODELS), help="Models to train."),
    alpha: float = typer.Option(0.0, help="Markov: popularity weight of the reported model."),
    alphas: str = typer.Option("0,0.25,0.5,0.75,1", help="Markov alpha sweep."),
    ks: str = typer.Option("5,10,20", help="Cut-offs K (each at most the catalog size)."),
    preset: str = typer.Option("default", help=_PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    n_epochs: int | None = typer.Option(
        None, "--epochs", "--n-epochs", min=1, help="GRU4Rec: override n_epochs (>= 1)."
    ),
    track: bool = typer.Option(False, "--track", help="GRU4Rec: attach EmbeddingTrackers."),
) -> None:
    """Data -> split -> train -> evaluate -> figures (PNG + SVG) -> results.json."""
    from gradtracer.recsys.sessions.study import SessionStudyConfig, run_study

    hooks = _training_hooks()
    config = SessionStudyConfig(
        source=source,
        fmt=fmt,
        n_sessions=n_sessions,
        n_items=n_items,
        test_fraction=test_fraction,
        min_item_support=min_item_support,
        ks=_parse_ks(ks),
        markov_alpha=alpha,
        alphas=_parse_list(alphas, "--alphas", float),
        models=_parse_list(models, "--models", str),
        gru4rec=_gru4rec_config(preset, set_, n_epochs, None),
        track=track,
        random_state=random_state,
        on_epoch=hooks.on_epoch,
        on_progress=hooks.on_progress,
        progress=hooks.progress,
        test_source=None if test is None else str(test),
    )
    if test is None and source != "synthetic":
        typer.echo(
            f"note: no --test file given; holding out the latest {test_fraction:.0%} of the "
            f"sessions of {source} (by start time) as the test set",
            err=True,
        )
    study = run_study(config, out)
    _print_info(study.split_info)
    typer.echo(study.table())
    if "gru4rec" in study.train_logs:
        typer.echo(f"gru4rec: {study.train_logs['gru4rec']['events_per_second']:.0f} events/s")
    typer.echo(f"wrote {out / 'results.json'} and {len(study.figures)} figure files")
