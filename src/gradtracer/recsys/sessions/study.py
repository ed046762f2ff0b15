"""The session-based study as one reproducible pipeline: data -> split -> train -> evaluate -> figures.

Outputs of :func:`run_study` in ``out_dir``::

    .complete / .incomplete        completeness marker (incomplete while the run works)
    split/train/, split/test/      Interactions (parquet + json id maps)
    split/info.json                what the split removed and kept
    models/<name>/                 each model (model.json + arrays.npz, no pickle)
    results/<name>.npz             per-prediction ranks (aligned across models)
    results.json                   means, paired tests, alpha sweep, throughput
    figures/*.png, figures/*.svg   popularity log-log, session lengths, metric
                                   comparison, Markov alpha sweep

Its steps are usable alone (the ``gradtracer sessions`` commands call them):
:mod:`~gradtracer.recsys.sessions.split_io` (load data, save / load a split) and
:mod:`~gradtracer.recsys.sessions.training` (build, train, load a model; attach trackers);
this module re-exports them.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.durable import (
    atomic_write_json,
    mark_complete,
    mark_incomplete,
    require_complete,
)
from gradtracer.recsys.models.next_item import (
    TrainingHooks,
    next_item_models,
)
from gradtracer.recsys.sessions.batching import session_arrays
from gradtracer.recsys.sessions.evaluate import (
    DEFAULT_KS,
    NextItemResult,
    compare_next_item,
    evaluate_next_item,
)
from gradtracer.recsys.sessions.split import split_pair, split_sessions
from gradtracer.recsys.sessions.split_io import (
    SYNTHETIC,
    _json_default,
    load_session_data,
    load_split,
    save_split,
)
from gradtracer.recsys.sessions.training import (
    attach_embedding_trackers,
    load_model,
    make_model,
    model_options,
    train_model,
)

__all__ = [
    "MODEL_NAMES",
    "STUDY_OUTPUTS",
    "SYNTHETIC",
    "SessionStudyConfig",
    "StudyResult",
    "attach_embedding_trackers",
    "load_model",
    "load_session_data",
    "load_split",
    "load_study_results",
    "make_model",
    "model_options",
    "run_study",
    "save_split",
    "train_model",
]

logger = logging.getLogger(__name__)

#: Models the study trains, in reporting order.
MODEL_NAMES: tuple[str, ...] = ("popularity", "markov", "gru4rec")


@dataclass
class SessionStudyConfig:
    """What :func:`run_study` does; the CLI fills the same fields."""

    source: str = SYNTHETIC  # session file, or "synthetic"
    test_source: str | None = None  # held-out test file of a pre-split data set (no re-split)
    fmt: str = "tsv"  # tsv | yoochoose | diginetica | retailrocket
    n_sessions: int = 5000  # synthetic only
    n_items: int = 1000  # synthetic only
    test_fraction: float = 0.2  # latest sessions by start time held out
    min_item_support: int = 1  # drop items with fewer events before splitting
    ks: tuple[int, ...] = DEFAULT_KS  # cut-offs of Recall/MRR/NDCG
    markov_alpha: float = 0.0  # popularity weight of the reported Markov model
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # Markov sweep
    models: tuple[str, ...] = MODEL_NAMES  # which models to train
    gru4rec: Any = None  # GRU4RecConfig; None = defaults (options of "gru4rec")
    track: bool = False  # attach EmbeddingTrackers to models with embedding tables
    random_state: int = 0  # synthetic data seed
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> options
    on_epoch: Callable[[Any], None] | None = None  # called after every training epoch
    on_progress: Callable[[Any], None] | None = None  # called at every 10% of an epoch
    progress: bool | None = False  # progress bar per epoch (None: on a terminal only)


@dataclass
class StudyResult:
    """What :func:`run_study` measured (also written to ``results.json``)."""

    results: dict[str, NextItemResult]
    split_info: dict[str, Any]
    train_logs: dict[str, dict[str, Any]]
    comparisons: dict[str, Any]
    alpha_sweep: dict[str, list[float]]
    figures: list[Path] = field(default_factory=list)
    tracker_summaries: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """Plain-text table of the mean metrics per model."""
        ks = next(iter(self.results.values())).ks
        keys = [f"{m}@{k}" for m in ("recall", "mrr", "ndcg") for k in ks]
        lines = [f"{'model':<12}" + "".join(f"{k:>11}" for k in keys)]
        for name, r in self.results.items():
            lines.append(f"{name:<12}" + "".join(f"{r.mean[k]:>11.4f}" for k in keys))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": {n: r.to_dict() for n, r in self.results.items()},
            "split": self.split_info,
            "training": self.train_logs,
            "paired_tests": self.comparisons,
            "markov_alpha_sweep": self.alpha_sweep,
            "figures": [str(p) for p in self.figures],
            "trackers": self.tracker_summaries,
        }


#: What :func:`run_study` writes into its output directory (removed first when rerun).
STUDY_OUTPUTS: tuple[str, ...] = ("split", "models", "results", "figures", "results.json")


def _clear_previous_run(out: Path) -> None:
    """Remove the outputs of an earlier run in ``out`` (only the names run_study writes)."""
    for name in STUDY_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_study(config: SessionStudyConfig, out_dir: str | Path) -> StudyResult:
    """Run the whole session study described by ``config``; write everything to ``out_dir``.

    ``out_dir`` is marked incomplete while the study runs, and the outputs of an earlier
    run there (``split/``, ``models/``, ``results/``, ``figures/``, ``results.json``) are
    removed first, so an interrupted run never leaves old and new models side by side
    unmarked; :func:`load_study_results` refuses an incomplete directory.
    """
    from gradtracer.recsys.models.markov import MarkovChain
    from gradtracer.recsys.sessions import figures

    out = Path(out_dir)
    available = next_item_models()
    unknown = sorted(set(config.models) - set(available))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(available)}")
    _check_cutoffs(config.ks)
    ix = load_session_data(
        config.source,
        fmt=config.fmt,
        n_sessions=config.n_sessions,
        n_items=config.n_items,
        random_state=config.random_state,
    )
    if config.test_source is not None:
        held = load_session_data(config.test_source, fmt=config.fmt)
        split = split_pair(ix, held, min_item_support=config.min_item_support)
    else:
        split = split_sessions(ix, config.test_fraction, min_item_support=config.min_item_support)
    train, test = session_arrays(split.train), session_arrays(split.test)
    if max(config.ks) > train.n_items:
        raise ValueError(
            f"cut-off K={max(config.ks)} exceeds the catalog of {train.n_items} training items"
        )
    mark_incomplete(out)
    _clear_previous_run(out)
    save_split(split, out / "split")

    results: dict[str, NextItemResult] = {}
    logs: dict[str, dict[str, Any]] = {}
    trackers: dict[str, Any] = {}
    for name in config.models:
        options = config.model_options.get(name) or model_options(
            name, alpha=config.markov_alpha, gru4rec=config.gru4rec
        )
        model = make_model(name, train.n_items, **options)
        on_backward = None
        if config.track and model.embedding_layers():
            trackers, on_backward = attach_embedding_trackers(model)
        hooks = TrainingHooks(
            on_backward=on_backward,
            on_epoch=config.on_epoch,
            on_progress=config.on_progress,
            progress=config.progress,
        )
        t0 = time.perf_counter()
        model.fit(train, hooks=hooks)
        logs[name] = {**model.training_log(), "train_seconds": time.perf_counter() - t0}
        model.save(out / "models" / name)
        results[name] = evaluate_next_item(model, test, ks=config.ks, name=name)
        results[name].save(out / "results" / f"{name}.npz")

    comparisons: dict[str, Any] = {}
    names = list(results)
    k_top = max(config.ks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            comparisons[f"{a}_vs_{b}"] = compare_next_item(
                results[a], results[b], metrics=(f"recall@{k_top}", f"mrr@{k_top}")
            )

    sweep: dict[str, list[float]] = {"alpha": [], f"recall@{k_top}": [], f"mrr@{k_top}": []}
    base = MarkovChain(train.n_items).fit(train)
    for alpha in config.alphas:
        r = evaluate_next_item(base.with_alpha(alpha), test, ks=(k_top,))
        sweep["alpha"].append(float(alpha))
        sweep[f"recall@{k_top}"].append(r.mean[f"recall@{k_top}"])
        sweep[f"mrr@{k_top}"].append(r.mean[f"mrr@{k_top}"])

    fig_dir = out / "figures"
    paths = figures.plot_popularity(np.bincount(train.items, minlength=train.n_items), fig_dir)
    paths += figures.plot_session_lengths({"train": train.lengths, "test": test.lengths}, fig_dir)
    paths += figures.plot_metric_comparison(
        {n: r.mean for n, r in results.items()}, config.ks, fig_dir
    )
    if len(config.alphas):
        paths += figures.plot_alpha_sweep(
            sweep["alpha"], sweep[f"recall@{k_top}"], sweep[f"mrr@{k_top}"], k_top, fig_dir
        )
    summaries = {}
    for name, tracker in trackers.items():
        summaries[name] = tracker.summary()
        tracker.detach()
    study = StudyResult(results, split.info, logs, comparisons, sweep, paths, summaries)
    atomic_write_json(out / "results.json", _finite(study.to_dict()), default=_json_default)
    mark_complete(out, {"models": list(results)})
    return study


def load_study_results(out_dir: str | Path) -> dict[str, Any]:
    """Return ``results.json`` of a study directory written by :func:`run_study`.

    Raises:
        IncompleteOutputError: the run that wrote ``out_dir`` did not finish.
        FileNotFoundError: no ``results.json`` there.
    """
    d = require_complete(out_dir)
    path = Path(d) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not a session study directory)")
    return dict(json.loads(path.read_text()))


def _check_cutoffs(ks: Sequence[int]) -> None:
    if not ks:
        raise ValueError("ks is empty; give at least one cut-off")
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad:
        raise ValueError(f"cut-offs must be positive ints, got {bad}")


def _finite(value: Any) -> Any:
    """Replace non-finite floats by ``None`` so that results.json stays valid JSON."""
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
