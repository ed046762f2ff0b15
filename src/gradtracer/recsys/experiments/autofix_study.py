"""The Auto-Fix validation study: baseline MF vs MF with Auto-Fix, over seeds and learning rates.

Reproduces the published v0.6 protocol (implicit MF on MovieLens-100K, ratings >= 4 as
positives, leave-one-out by last timestamp, 4 uniform negatives per positive, batch 256
positives, dim 32, N(0, 0.01) init, BCE with logits, Adam, 3 epochs, tracker on the item
table with ``track_interval=20``; full-ranking HR@10 / NDCG@10 with training items masked)
and adds what the notebook lacked: several seeds, per-seed and across-seed paired tests,
effect sizes, 95% CIs, and two reference rows on the same split (popularity and a
sanely trained MF).

One module past 400 lines: the protocol's split, training arms and statistics are the
study's definition, read top to bottom; its rendering lives in ``autofix_report``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradtracer.embedding.autofix import AutoFixPolicy

__all__ = [
    "ArmResult",
    "AutoFixStudyConfig",
    "LrResult",
    "StudyResult",
    "notebook_leave_one_out",
    "run_autofix_study",
]

logger = logging.getLogger(__name__)

NDCG = "ndcg@10"
HR = "hr@10"


@dataclass(frozen=True)
class AutoFixStudyConfig:
    """Settings of the study; defaults are the published protocol.

    Attributes:
        data: MovieLens ratings file (``u.data``) or directory; ``None`` -> synthetic data
            from ``make_implicit`` (sizes below).
        seeds: training seeds; each seed trains both arms from the same init and batches.
        lrs: Adam learning rates compared (the protocol's is 0.05).
        epochs: training epochs per arm (3).
        dim: embedding dimension (32).
        batch_size: positives per batch (256; each with ``n_negatives`` negatives).
        n_negatives: uniform random negatives per positive (4).
        init_std: std of the N(0, std) embedding init (0.01).
        track_interval: tracker summary interval in steps (20).
        k: cutoff of HR/NDCG (10).
        threshold: minimum rating counted as positive (4.0).
        tuned_lr, tuned_epochs, tuned_weight_decay: the "sane" MF reference row.
        policy: Auto-Fix policy of the treatment arm.
        alpha: significance level (0.05).
        synthetic_users, synthetic_items, synthetic_interactions: synthetic data size.
    """

    data: Path | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    lrs: tuple[float, ...] = (0.05,)
    epochs: int = 3
    dim: int = 32
    batch_size: int = 256
    n_negatives: int = 4
    init_std: float = 0.01
    track_interval: int = 20
    k: int = 10
    threshold: float = 4.0
    tuned_lr: float = 0.002
    tuned_epochs: int = 20
    tuned_weight_decay: float = 0.0
    policy: AutoFixPolicy = field(default_factory=AutoFixPolicy)
    alpha: float = 0.05
    synthetic_users: int = 943
    synthetic_items: int = 1682
    synthetic_interactions: int = 55_000

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise ValueError(f"lrs must be positive finite numbers, got {self.lrs}")
        for name in ("epochs", "dim", "batch_size", "track_interval", "k", "tuned_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = None if self.data is None else str(self.data)
        return out


@dataclass
class ArmResult:
    """One trained model's test metrics (per-user NDCG kept for paired tests)."""

    hr: float
    ndcg: float
    per_user_ndcg: np.ndarray
    final_loss: float
    autofix: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hr@10": self.hr,
            "ndcg@10": self.ndcg,
            "final_loss": self.final_loss,
            "autofix": self.autofix,
        }


@dataclass
class LrResult:
    """Both arms over every seed at one learning rate, with the tests."""

    lr: float
    seeds: list[int]
    baseline: list[ArmResult]
    autofix: list[ArmResult]
    per_seed_tests: list[dict[str, Any]]
    across_seeds: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "seeds": self.seeds,
            "baseline": [a.to_dict() for a in self.baseline],
            "autofix": [a.to_dict() for a in self.autofix],
            "per_seed_tests": self.per_seed_tests,
            "across_seeds": self.across_seeds,
        }


@dataclass
class StudyResult:
    """Everything the study measured (render with :func:`to_markdown`)."""

    config: AutoFixStudyConfig
    dataset: dict[str, Any]
    references: dict[str, dict[str, Any]]
    results: list[LrResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "dataset": self.dataset,
            "references": self.references,
            "results": [r.to_dict() for r in self.results],
        }


# --------------------------------------------------------------------------- data
def notebook_leave_one_out(ix: Any) -> Any:
    """Return the published notebook's leave-one-out split of ``ix`` as a ``Split``.

    Each user's test item is the last row after a *stable* sort by ``(user, timestamp)``,
    i.e. among equal timestamps the row that comes later in the file (what the
    notebook's ``sort_values`` + ``groupby.tail(1)`` does). This differs from
    :func:`gradtracer.recsys.data.leave_one_out`, which breaks timestamp ties by the
    highest item index: on MovieLens-100K many ratings share a second, and the choice
    changes the test items (popularity NDCG@10 0.039 here vs 0.029 with the library
    tie break). Every user gets a test row, as in the notebook.
    """
    import polars as pl

    from gradtracer.recsys.data import Split

    f = ix.frame.with_row_index("_row").sort(["user", "timestamp", "_row"])
    test_rows = f.group_by("user").agg(pl.col("_row").last())["_row"]
    is_test = pl.col("_row").is_in(test_rows.implode())
    frame = ix.frame.with_row_index("_row")
    train = ix.with_frame(frame.filter(~is_test).drop("_row"))
    test = ix.with_frame(frame.filter(is_test).drop("_row"))
    info = {
        "method": "notebook_leave_one_out",
        "tie_break": "later row in the file among equal timestamps (stable sort)",
        "train_rows": train.frame.height,
        "test_rows": test.frame.height,
    }
    return Split(train=train, test=test, valid=None, info=info)


def load_study_split(config: AutoFixStudyConfig) -> tuple[Any, dict[str, Any]]:
    """Return the leave-one-out split of the positives and a description of the data."""
    from gradtracer.recsys.data.preprocess import compact, to_implicit

    if config.data is not None:
        from gradtracer.recsys.data import load_movielens

        raw = load_movielens(config.data)
        ix = compact(to_implicit(raw, threshold=config.threshold))
        source = str(config.data)
    else:
        from gradtracer.recsys.data import make_implicit

        ix = compact(
            make_implicit(
                n_users=config.synthetic_users,
                n_items=config.synthetic_items,
                n_interactions=config.synthetic_interactions,
                random_state=0,
            )
        )
        source = "synthetic (make_implicit, random_state=0)"
    split = notebook_leave_one_out(ix)
    info = {
        "source": source,
        "n_users": ix.n_users,
        "n_items": ix.n_items,
        "positives": ix.frame.height,
        "train_rows": split.train.frame.height,
        "test_rows": split.test.frame.height,
    }
    return split, info


# --------------------------------------------------------------------------- arms
def _evaluate(scorer: Any, split: Any, k: int) -> tuple[float, float, np.ndarray]:
    from gradtracer.recsys.metrics import evaluate_topk

    res = evaluate_topk(
        scorer,
        split.test.user_items(),
        exclude=split.train.user_items(),
        ks=(k,),
        metrics=("hr", "ndcg"),
        progress=False,
    )
    return (
        float(res.mean[f"hr@{k}"]),
        float(res.mean[f"ndcg@{k}"]),
        np.asarray(res.per_user[f"ndcg@{k}"], dtype=np.float64),
    )


def _train_arm(
    split: Any,
    config: AutoFixStudyConfig,
    *,
    seed: int,
    lr: float,
    epochs: int,
    autofix: bool,
    weight_decay: float = 0.0,
    track: bool = True,
) -> ArmResult:
    from gradtracer.recsys.models.mf import ImplicitMF, MFTrainConfig, train_mf

    train = split.train
    model = ImplicitMF(
        train.n_users,
        train.n_items,
        n_factors=config.dim,
        init_std=config.init_std,
        random_state=seed,
    )
    cfg = MFTrainConfig(
        loss="bce",
        n_negatives=config.n_negatives,
        batch_size=config.batch_size,
        learning_rate=lr,
        n_epochs=epochs,
        optimizer="adam",
        weight_decay=weight_decay,
        random_state=seed,
    )
    tracker = None
    controller = None
    on_backward: Callable[[float], None] | None = None
    if track:
        from gradtracer.embedding.autofix import AutoFixController
        from gradtracer.embedding.tracker import EmbeddingTracker

        if autofix:
            controller = AutoFixController(
                "item_emb", policy=config.policy, audit=None, run_id=f"study-seed{seed}-lr{lr:g}"
            )
        tracker = EmbeddingTracker(
            model.item_emb,
            name="item_emb",
            auto_fix=controller if controller is not None else False,
            track_interval=config.track_interval,
        )

        def on_backward(loss: float) -> None:
            tracker.step(loss=loss)

    try:
        losses = train_mf(model, train, cfg, on_backward=on_backward, progress=False)
    finally:
        if tracker is not None:
            tracker.detach()
    with torch.no_grad():
        scorer = (model.user_emb.weight.detach().clone(), model.item_emb.weight.detach().clone())
    hr, ndcg, per_user = _evaluate(scorer, split, config.k)
    summary = controller.summary() if controller is not None else None
    return ArmResult(hr, ndcg, per_user, float(losses[-1]) if losses else math.nan, summary)


def _popularity(split: Any, k: int) -> dict[str, Any]:
    counts = np.asarray(split.train.user_items().sum(axis=0), dtype=np.float32).ravel()
    item_scores = torch.from_numpy(counts)

    def scores(users: torch.Tensor) -> torch.Tensor:
        return item_scores.expand(users.shape[0], -1).clone()

    hr, ndcg, _ = _evaluate(scores, split, k)
    return {"hr@10": hr, "ndcg@10": ndcg, "note": "train interaction counts, same split"}


# --------------------------------------------------------------------------- statistics
def _paired_stats(
    autofix: Sequence[float], baseline: Sequence[float], alpha: float
) -> dict[str, Any]:
    from gradtracer.recsys.stats import aggregate_seeds, bootstrap_ci, cohens_d_paired

    a, b = np.asarray(autofix, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    agg = aggregate_seeds(a, b, names=("autofix", "baseline"), alpha=alpha)
    out: dict[str, Any] = {
        "autofix_mean": agg.treatment.mean,
        "autofix_ci": [agg.treatment.ci_low, agg.treatment.ci_high],
        "baseline_mean": agg.baseline.mean if agg.baseline else None,
        "baseline_ci": [agg.baseline.ci_low, agg.baseline.ci_high] if agg.baseline else None,
        "diff_mean": agg.difference.mean if agg.difference else None,
        "diff_ci_t": ([agg.difference.ci_low, agg.difference.ci_high] if agg.difference else None),
        "t": None,
        "p_value": None,
        "significant": False,
        "cohens_d": None,
        "diff_ci_bootstrap": None,
    }
    if agg.test is not None:
        out.update(
            t=agg.test.statistic,
            p_value=agg.test.p_value,
            significant=bool(agg.test.significant),
            verdict=agg.test.verdict,
        )
        d = a - b
        if np.ptp(d) > 0:
            out["cohens_d"] = cohens_d_paired(a, b).d
            ci = bootstrap_ci(d, method="percentile", random_state=0)
            out["diff_ci_bootstrap"] = [ci.low, ci.high]
    return out


def _per_seed_test(autofix: ArmResult, baseline: ArmResult, alpha: float) -> dict[str, Any]:
    from gradtracer.recsys.stats import paired_ttest

    res = paired_ttest(autofix.per_user_ndcg, baseline.per_user_ndcg, alpha=alpha)
    return {
        "t": res.statistic,
        "p_value": res.p_value,
        "mean_diff": res.mean_diff,
        "n_users": res.n,
        "significant": bool(res.significant),
        "verdict": res.verdict,
    }


# --------------------------------------------------------------------------- study
def run_autofix_study(config: AutoFixStudyConfig, *, progress: bool | None = None) -> StudyResult:
    """Run the study: references once, then baseline and Auto-Fix per learning rate and seed.

    Args:
        progress: progress bar over training runs (None: only on a terminal).
    """
    from gradtracer._progress import progress as progress_bar

    split, dataset = load_study_split(config)
    jobs = [(lr, seed) for lr in config.lrs for seed in config.seeds]
    n_runs = 2 * len(jobs) + 1
    bar = iter(progress_bar(range(n_runs), total=n_runs, desc="autofix study", enabled=progress))

    def tick() -> None:
        next(bar, None)

    references = {"popularity": _popularity(split, config.k)}
    tuned = _train_arm(
        split,
        config,
        seed=config.seeds[0],
        lr=config.tuned_lr,
        epochs=config.tuned_epochs,
        autofix=False,
        weight_decay=config.tuned_weight_decay,
        track=False,
    )
    tick()
    references["tuned_mf"] = {
        "hr@10": tuned.hr,
        "ndcg@10": tuned.ndcg,
        "note": (
            f"Adam lr {config.tuned_lr:g}, {config.tuned_epochs} epochs, "
            f"weight decay {config.tuned_weight_decay:g}, seed {config.seeds[0]}, no tracker"
        ),
    }
    results = []
    for lr in config.lrs:
        base_runs, fix_runs = [], []
        for seed in config.seeds:
            base_runs.append(
                _train_arm(split, config, seed=seed, lr=lr, epochs=config.epochs, autofix=False)
            )
            tick()
            fix_runs.append(
                _train_arm(split, config, seed=seed, lr=lr, epochs=config.epochs, autofix=True)
            )
            tick()
            logger.info(
                "lr %g seed %d: baseline ndcg %.4f, autofix ndcg %.4f",
                lr,
                seed,
                base_runs[-1].ndcg,
                fix_runs[-1].ndcg,
            )
        per_seed = [
            _per_seed_test(f, b, config.alpha) for f, b in zip(fix_runs, base_runs, strict=True)
        ]
        across = {
            NDCG: _paired_stats(
                [r.ndcg for r in fix_runs], [r.ndcg for r in base_runs], config.alpha
            )
            if len(config.seeds) >= 2
            else None,
            HR: _paired_stats([r.hr for r in fix_runs], [r.hr for r in base_runs], config.alpha)
            if len(config.seeds) >= 2
            else None,
        }
        results.append(LrResult(lr, list(config.seeds), base_runs, fix_runs, per_seed, across))
    for _ in bar:
        pass
    return StudyResult(config, dataset, references, results)
