"""The session-based study as one reproducible pipeline: data -> split -> train -> evaluate -> figures.

Outputs of :func:`run_study` in ``out_dir``::

    split/train/, split/test/      Interactions (parquet + json id maps)
    split/info.json                what the split removed and kept
    models/<name>/                 each model (json + npz, no pickle)
    results/<name>.npz             per-prediction ranks (aligned across models)
    results.json                   means, paired tests, alpha sweep, throughput
    figures/*.png, figures/*.svg   popularity log-log, session lengths, metric
                                   comparison, Markov alpha sweep
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.sessions.batching import session_arrays
from gradtracer.recsys.sessions.evaluate import (
    DEFAULT_KS,
    NextItemResult,
    compare_next_item,
    evaluate_next_item,
)
from gradtracer.recsys.sessions.split import SessionSplit, split_sessions

__all__ = [
    "MODEL_NAMES",
    "attach_embedding_trackers",
    "SessionStudyConfig",
    "StudyResult",
    "load_model",
    "load_session_data",
    "load_split",
    "run_study",
    "save_split",
    "train_model",
]

logger = logging.getLogger(__name__)

#: Models the study trains, in reporting order.
MODEL_NAMES: tuple[str, ...] = ("popularity", "markov", "gru4rec")
SYNTHETIC = "synthetic"


def load_session_data(
    source: str, *, fmt: str = "tsv", n_sessions: int = 5000, n_items: int = 1000,
    random_state: int = 0,
) -> Interactions:
    """Return session data from a file (``load_sessions(source, fmt)``) or ``"synthetic"``.

    ``n_sessions``, ``n_items`` and ``random_state`` apply to the synthetic generator
    (:func:`gradtracer.recsys.data.synthetic.make_sessions`) only.
    """
    if source == SYNTHETIC:
        from gradtracer.recsys.data.synthetic import make_sessions

        return make_sessions(n_sessions=n_sessions, n_items=n_items, random_state=random_state)
    from gradtracer.recsys.data.sessions import load_sessions

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such session file (or pass 'synthetic')")
    return load_sessions(path, fmt=fmt)


def save_split(split: SessionSplit, directory: str | Path) -> Path:
    """Write ``train/``, ``test/`` and ``info.json`` into ``directory``."""
    d = Path(directory)
    split.train.save(d / "train")
    split.test.save(d / "test")
    (d / "info.json").write_text(json.dumps(split.info, indent=2, sort_keys=True, default=str))
    return d


def load_split(directory: str | Path) -> SessionSplit:
    """Read a split written by :func:`save_split` (train and test share one id map)."""
    d = Path(directory)
    for part in ("train", "test"):
        if not (d / part / "interactions.parquet").exists():
            raise FileNotFoundError(
                f"{d / part}: missing; create the split with `gradtracer sessions prepare`"
            )
    train = Interactions.load(d / "train")
    test = Interactions.load(d / "test")
    test = Interactions(test.frame, train.user_ids, train.item_ids, test.source)
    info = json.loads((d / "info.json").read_text()) if (d / "info.json").exists() else {}
    return SessionSplit(train, test, info)


def train_model(
    name: str,
    train: Interactions,
    *,
    alpha: float = 0.0,
    gru4rec: Any = None,
    on_backward: Callable[[float], None] | None = None,
    progress: bool | None = False,
) -> tuple[Any, dict[str, Any]]:
    """Fit model ``name`` (``popularity``, ``markov``, ``gru4rec``) on ``train``.

    Returns ``(model, log)`` where ``log`` has the training seconds and, for GRU4Rec,
    the per-epoch loss and events per second.
    """
    from gradtracer.recsys.models.gru4rec import GRU4Rec, GRU4RecConfig, train_gru4rec
    from gradtracer.recsys.models.markov import MarkovChain
    from gradtracer.recsys.models.session_popularity import SessionPopularity

    data = session_arrays(train)
    t0 = time.perf_counter()
    log: dict[str, Any] = {}
    if name == "popularity":
        model: Any = SessionPopularity(data.n_items).fit(data)
    elif name == "markov":
        model = MarkovChain(data.n_items, alpha).fit(data)
    elif name == "gru4rec":
        model = GRU4Rec(data.n_items, gru4rec or GRU4RecConfig())
        tl = train_gru4rec(model, data, on_backward=on_backward, progress=progress)
        log.update(epoch_loss=tl.epoch_loss, events_per_second=tl.events_per_second,
                   steps_per_epoch=tl.steps)
    else:
        raise ValueError(f"unknown session model {name!r}; choose from {MODEL_NAMES}")
    log["train_seconds"] = time.perf_counter() - t0
    return model, log


def load_model(directory: str | Path) -> Any:
    """Read any session model saved by its ``save`` method (``model.json`` names the kind)."""
    from gradtracer.recsys.models.gru4rec import GRU4Rec
    from gradtracer.recsys.models.markov import MarkovChain
    from gradtracer.recsys.models.session_popularity import SessionPopularity

    d = Path(directory)
    path = d / "model.json"
    if not path.exists():
        raise FileNotFoundError(f"{d}: no model.json (not a saved session model)")
    kind = json.loads(path.read_text()).get("model")
    classes = {"popularity": SessionPopularity, "markov": MarkovChain, "gru4rec": GRU4Rec}
    if kind not in classes:
        raise ValueError(f"{path}: unknown model kind {kind!r}; expected one of {sorted(classes)}")
    return classes[kind].load(d)


@dataclass
class SessionStudyConfig:
    """What :func:`run_study` does; the CLI fills the same fields."""

    source: str = SYNTHETIC  # session file, or "synthetic"
    fmt: str = "tsv"  # tsv | yoochoose | diginetica | retailrocket
    n_sessions: int = 5000  # synthetic only
    n_items: int = 1000  # synthetic only
    test_fraction: float = 0.2  # latest sessions by start time held out
    min_item_support: int = 1  # drop items with fewer events before splitting
    ks: tuple[int, ...] = DEFAULT_KS  # cut-offs of Recall/MRR/NDCG
    markov_alpha: float = 0.0  # popularity weight of the reported Markov model
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # Markov sweep
    models: tuple[str, ...] = MODEL_NAMES  # which models to train
    gru4rec: Any = None  # GRU4RecConfig; None = defaults
    track: bool = False  # attach EmbeddingTrackers to GRU4Rec's embedding tables
    random_state: int = 0  # synthetic data seed


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


def attach_embedding_trackers(model: Any) -> tuple[dict[str, Any], Callable[[float], None]]:
    """Attach an ``EmbeddingTracker`` to each of GRU4Rec's embedding tables.

    Returns ``(trackers by table name, on_backward)``; pass ``on_backward`` to
    :func:`~gradtracer.recsys.models.gru4rec.train_gru4rec` and ``detach()`` the trackers after.
    """
    from gradtracer.embedding.tracker import EmbeddingTracker

    trackers = {
        name: EmbeddingTracker(layer, name=f"gru4rec.{name}")
        for name, layer in model.embedding_layers().items()
    }

    def on_backward(loss: float) -> None:
        for tracker in trackers.values():
            tracker.step(loss=loss)

    return trackers, on_backward


def run_study(config: SessionStudyConfig, out_dir: str | Path) -> StudyResult:
    """Run the whole session study described by ``config``; write everything to ``out_dir``."""
    from gradtracer.recsys.models.gru4rec import GRU4Rec, GRU4RecConfig, train_gru4rec
    from gradtracer.recsys.models.markov import MarkovChain
    from gradtracer.recsys.sessions import figures

    out = Path(out_dir)
    unknown = sorted(set(config.models) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {MODEL_NAMES}")
    ix = load_session_data(config.source, fmt=config.fmt, n_sessions=config.n_sessions,
                           n_items=config.n_items, random_state=config.random_state)
    split = split_sessions(ix, config.test_fraction, min_item_support=config.min_item_support)
    save_split(split, out / "split")
    train, test = session_arrays(split.train), session_arrays(split.test)

    results: dict[str, NextItemResult] = {}
    logs: dict[str, dict[str, Any]] = {}
    trackers: dict[str, Any] = {}
    for name in config.models:
        if name == "gru4rec":
            model: Any = GRU4Rec(train.n_items, config.gru4rec or GRU4RecConfig())
            hook = None
            if config.track:
                trackers, hook = attach_embedding_trackers(model)
            t0 = time.perf_counter()
            tl = train_gru4rec(model, train, on_backward=hook)
            logs[name] = {"epoch_loss": tl.epoch_loss, "events_per_second": tl.events_per_second,
                          "train_seconds": time.perf_counter() - t0}
        else:
            model, logs[name] = train_model(name, split.train, alpha=config.markov_alpha)
        model.save(out / "models" / name)
        results[name] = evaluate_next_item(model, test, ks=config.ks, name=name)
        (out / "results").mkdir(parents=True, exist_ok=True)
        results[name].save(str(out / "results" / f"{name}.npz"))

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
    paths += figures.plot_metric_comparison({n: r.mean for n, r in results.items()},
                                            config.ks, fig_dir)
    if len(config.alphas):
        paths += figures.plot_alpha_sweep(sweep["alpha"], sweep[f"recall@{k_top}"],
                                          sweep[f"mrr@{k_top}"], k_top, fig_dir)
    summaries = {}
    for name, tracker in trackers.items():
        summaries[name] = tracker.summary()
        tracker.detach()
    study = StudyResult(results, split.info, logs, comparisons, sweep, paths, summaries)
    (out / "results.json").write_text(
        json.dumps(study.to_dict(), indent=2, sort_keys=True, default=_json_default)
    )
    return study


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
