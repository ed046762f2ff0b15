"""Evaluate compression at equal bytes, over paired seeds, against every baseline.

Per seed: train a float model (an :class:`~gradtracer.embedding.EmbeddingTracker` on
both tables), then for each budget (``ratio`` x smaller than the float32 tables) build
the advisor's recipe (chosen on validation) and every baseline at the same budget:
uniform precision (the most precise that fits), L2-norm pruning, frequency pruning,
per-table truncated SVD, mixed precision with unweighted error allocation, mixed
precision weighted by each plain and dynamics-aware signal, and a model of the
dimension the budget holds trained from scratch. Every model is evaluated with
full-ranking NDCG@10 and Recall@20 on test. Seeds pair the comparisons: the study
reports the mean relative change against float32, a t-based 95% interval over seeds
and paired t-tests of the recipe against each baseline.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.compress import methods
from gradtracer.compress.advisor import QuantizationAdvisor
from gradtracer.compress.allocate import BudgetError
from gradtracer.compress.model import CompressedMF
from gradtracer.compress.saliency import row_saliency, row_stats_of
from gradtracer.compress.workloads import DotMF, TrainConfig, Workload, evaluate_model, train_dot_mf

__all__ = ["StudyConfig", "StudyResult", "merge_results", "run_study", "summarize", "train_model"]

METRICS = ("ndcg@10", "recall@20")


@dataclass
class StudyConfig:
    """What :func:`run_study` measures."""

    ratios: tuple[int, ...] = (8, 16, 32)  # budgets: float32 bytes / ratio
    n_seeds: int = 5  # paired seeds
    n_factors: int = 64  # dimension of the float model
    train: TrainConfig = field(default_factory=TrainConfig)
    retrain: bool = True  # also train the smaller model from scratch
    first_seed: int = 0


@dataclass
class StudyResult:
    """Per-seed metrics of every method and their summary."""

    workload: str
    config: dict[str, Any]
    fp32: list[dict[str, float]]  # per seed: metric -> mean
    rows: list[dict[str, Any]]  # one per (seed, ratio, method)
    recipes: list[dict[str, Any]]  # the recipe of each (seed, ratio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _means(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(np.mean(per_user[m])) for m in METRICS}


def _baselines(
    user: Any,
    item: Any,
    budget: int,
    stats_u: dict[str, np.ndarray],
    stats_i: dict[str, np.ndarray],
) -> list[tuple[str, Callable[[], CompressedMF]]]:
    d = int(np.shape(user)[1])
    n = int(np.shape(user)[0]) + int(np.shape(item)[0])
    from gradtracer.compress.rowwise import packed_width

    fits = [p for p in ("fp16", "int8", "int4", "int2") if n * packed_width(p, d) <= budget]
    out: list[tuple[str, Callable[[], CompressedMF]]] = []
    if fits:
        out.append((f"uniform_{fits[0]}", lambda: methods.uniform(user, item, fits[0])))
    import torch

    nu = torch.as_tensor(user).norm(dim=1).numpy()
    ni = torch.as_tensor(item).norm(dim=1).numpy()
    out.append(
        ("prune_l2norm", lambda: methods.prune(user, item, budget, user_signal=nu, item_signal=ni))
    )
    fu, fi = stats_u["exposure"], stats_i["exposure"]
    out.append(
        (
            "prune_frequency",
            lambda: methods.prune(user, item, budget, user_signal=fu, item_signal=fi),
        )
    )
    out.append(("table_svd", lambda: methods.table_svd(user, item, budget)))
    out.append(("mixed_unweighted", lambda: methods.mixed(user, item, budget)))
    for sig in ("magnitude", "frequency", "fisher", "dynamics"):
        out.append(
            (
                f"mixed_score_{sig}",
                functools.partial(_weighted, user, item, budget, sig, stats_u, stats_i),
            )
        )
    out.append(("mixed_score_uniform", lambda: methods.mixed(user, item, budget, metric="score")))
    return out


def _weighted(
    user: Any,
    item: Any,
    budget: int,
    signal: str,
    stats_u: dict[str, np.ndarray],
    stats_i: dict[str, np.ndarray],
) -> CompressedMF:
    wu = row_saliency(signal, weight=user, stats=stats_u)
    wi = row_saliency(signal, weight=item, stats=stats_i)
    return methods.mixed(user, item, budget, user_weights=wu, item_weights=wi, metric="score")


def train_model(
    workload: Workload, n_factors: int, cfg: TrainConfig, seed: int, track: bool
) -> tuple[DotMF, Any]:
    """Train a :class:`DotMF`; with ``track`` also return both tables' row statistics."""
    from dataclasses import replace

    model = DotMF(workload.n_users, workload.n_items, n_factors, random_state=seed)
    trackers = None
    hook = None
    if track:
        from gradtracer.embedding import EmbeddingTracker

        tu = EmbeddingTracker(model.user_emb, name="user_emb")
        ti = EmbeddingTracker(model.item_emb, name="item_emb")
        trackers = (tu, ti)

        def hook(loss: Any) -> None:
            tu.step(loss=loss)
            ti.step(loss=loss)

    train_dot_mf(model, workload.train, replace(cfg, random_state=seed), on_backward=hook)
    if trackers is not None:
        stats = (row_stats_of(trackers[0]), row_stats_of(trackers[1]))
        for t in trackers:
            t.detach()
        return model, stats
    return model, None


def run_study(
    workload: Workload,
    config: StudyConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run the equal-bytes comparison on ``workload`` (see the module docstring)."""
    cfg = config or StudyConfig()
    say = progress or (lambda _msg: None)
    fp32_rows: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    recipes: list[dict[str, Any]] = []
    for s in range(cfg.first_seed, cfg.first_seed + cfg.n_seeds):
        model, stats = train_model(workload, cfg.n_factors, cfg.train, s, track=True)
        stats_u, stats_i = stats
        user, item = model.scorer()
        base = _means(evaluate_model(model, workload))
        fp32_rows.append({"seed": s, **base})
        fp32_bytes = methods.fp32_bytes(user, item)
        say(f"{workload.name} seed {s}: fp32 ndcg@10 {base['ndcg@10']:.4f}")

        def validate(m: CompressedMF) -> float:
            return float(np.mean(evaluate_model(m, workload, part="valid")["ndcg@10"]))

        advisor = QuantizationAdvisor(
            user, item, user_stats=stats_u, item_stats=stats_i, validate=validate
        )
        for ratio in cfg.ratios:
            budget = fp32_bytes // ratio
            recipe = advisor.advise(budget)
            from gradtracer.compress.recipe import apply_recipe

            cm = apply_recipe(recipe, user, item)
            res = _means(evaluate_model(cm, workload))
            recipe.measured = {
                "test_ndcg@10": res["ndcg@10"],
                "test_recall@20": res["recall@20"],
                "fp32_test_ndcg@10": base["ndcg@10"],
                "relative_loss": 1.0 - res["ndcg@10"] / base["ndcg@10"],
                "bytes": cm.nbytes(),
            }
            recipes.append({"seed": s, "ratio": ratio, "recipe": recipe.to_dict()})
            detail = recipe.method + "".join(
                f" {k}={v}" for k, v in sorted(recipe.params.items()) if k != "ranks"
            )
            rows.append(_row(s, ratio, "recipe", cm.nbytes(), fp32_bytes, res, base, detail))
            for name, build in _baselines(user, item, budget, stats_u, stats_i):
                try:
                    bm = build()
                except BudgetError:
                    continue
                rows.append(
                    _row(
                        s,
                        ratio,
                        name,
                        bm.nbytes(),
                        fp32_bytes,
                        _means(evaluate_model(bm, workload)),
                        base,
                    )
                )
            if cfg.retrain:
                dim = budget // (4 * (workload.n_users + workload.n_items))
                if dim >= 1:
                    small, _ = train_model(workload, int(dim), cfg.train, s, track=False)
                    n_bytes = 4 * dim * (workload.n_users + workload.n_items)
                    res_s = _means(evaluate_model(small, workload))
                    rows.append(
                        _row(s, ratio, f"retrain_dim{dim}", n_bytes, fp32_bytes, res_s, base)
                    )
            say(f"  {ratio}x: recipe {recipe.method} {recipe.params} -> {res['ndcg@10']:.4f}")
    conf = {
        "ratios": list(cfg.ratios),
        "n_seeds": cfg.n_seeds,
        "n_factors": cfg.n_factors,
        "train": cfg.train.to_dict(),
    }
    return StudyResult(workload.name, conf, fp32_rows, rows, recipes)


def _row(
    seed: int,
    ratio: int,
    method: str,
    n_bytes: int,
    fp32_bytes: int,
    res: dict[str, float],
    base: dict[str, float],
    detail: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seed": seed,
        "ratio": ratio,
        "method": "retrain_small" if method.startswith("retrain_dim") else method,
        "detail": detail or method,
        "bytes": int(n_bytes),
        "achieved_ratio": fp32_bytes / n_bytes,
    }
    for m in METRICS:
        out[m] = res[m]
        out[f"rel_{m}"] = res[m] / base[m] - 1.0
    return out


def summarize(result: StudyResult | dict[str, Any]) -> list[dict[str, Any]]:
    """Per (ratio, method): mean relative change of each metric, 95% CI over seeds, and the
    paired t-test (across seeds) of the recipe against that method (H0: equal means)."""
    from gradtracer.recsys.stats import aggregate_seeds

    data = result.to_dict() if isinstance(result, StudyResult) else result
    rows = data["rows"]
    out = []
    for ratio in sorted({r["ratio"] for r in rows}):
        by_method: dict[str, dict[int, dict[str, Any]]] = {}
        for r in rows:
            if r["ratio"] == ratio:
                by_method.setdefault(r["method"], {})[r["seed"]] = r
        recipe = by_method.get("recipe", {})
        for method, seeds in sorted(by_method.items()):
            keys = sorted(seeds)
            entry: dict[str, Any] = {
                "ratio": ratio,
                "method": method,
                "n_seeds": len(keys),
                "achieved_ratio": float(np.mean([seeds[k]["achieved_ratio"] for k in keys])),
                "details": sorted({seeds[k]["detail"] for k in keys}),
            }
            for m in METRICS:
                vals = [seeds[k][f"rel_{m}"] for k in keys]
                agg = aggregate_seeds(vals)
                entry[f"rel_{m}"] = agg.treatment.mean
                entry[f"rel_{m}_ci"] = [agg.treatment.ci_low, agg.treatment.ci_high]
                entry[m] = float(np.mean([seeds[k][m] for k in keys]))
                common = [k for k in keys if k in recipe]
                if method != "recipe" and len(common) >= 2:
                    test = aggregate_seeds(
                        [recipe[k][m] for k in common],
                        [seeds[k][m] for k in common],
                        names=("recipe", method),
                    ).test
                    if test is not None:
                        entry[f"recipe_minus_{m}"] = test.mean_diff
                        entry[f"p_{m}"] = test.p_value
            out.append(entry)
    return out


def write_outputs(results: Sequence[StudyResult], out_dir: str | Path) -> list[Path]:
    """Write ``study.json``, ``summary.md`` and the Pareto figure into ``out_dir``."""
    from gradtracer.durable import atomic_write_json, atomic_write_text

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    payload = {r.workload: {"result": r.to_dict(), "summary": summarize(r)} for r in results}
    paths = [atomic_write_json(d / "study.json", payload)]
    paths.append(atomic_write_text(d / "summary.md", summary_markdown(results)))
    from gradtracer.compress.figures import plot_pareto

    paths.extend(plot_pareto(results, d))
    return paths


def summary_markdown(results: Sequence[StudyResult]) -> str:
    """Markdown tables of :func:`summarize` for each workload."""
    lines = []
    for r in results:
        base = np.mean([f["ndcg@10"] for f in r.fp32])
        lines.append(f"### {r.workload} (fp32 NDCG@10 {base:.4f}, {r.config['n_seeds']} seeds)\n")
        lines.append(
            "| budget | method | achieved | NDCG@10 change [95% CI] | Recall@20 change | recipe - method (NDCG@10), p |"
        )
        lines.append("|---|---|---|---|---|---|")
        for e in summarize(r):
            ci = e["rel_ndcg@10_ci"]
            test = ""
            if "p_ndcg@10" in e:
                test = f"{e['recipe_minus_ndcg@10']:+.4f}, p={e['p_ndcg@10']:.3g}"
            name = (
                e["method"]
                if e["method"] != "recipe"
                else "**recipe** (" + ", ".join(e["details"]) + ")"
            )
            lines.append(
                f"| {e['ratio']}x | {name} | {e['achieved_ratio']:.1f}x | "
                f"{100 * e['rel_ndcg@10']:+.1f}% [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | "
                f"{100 * e['rel_recall@20']:+.1f}% | {test} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def merge_results(parts: Sequence[StudyResult | dict[str, Any]]) -> StudyResult:
    """One :class:`StudyResult` from per-seed runs of the same workload and configuration."""
    items = [p if isinstance(p, StudyResult) else StudyResult(**p) for p in parts]
    if not items:
        raise ValueError("merge_results needs at least one result")
    names = {p.workload for p in items}
    if len(names) != 1:
        raise ValueError(f"cannot merge results of different workloads: {sorted(names)}")
    seeds = [f["seed"] for p in items for f in p.fp32]
    if len(seeds) != len(set(seeds)):
        raise ValueError(f"seeds repeat across the parts: {sorted(seeds)}")
    config = dict(items[0].config)
    config["n_seeds"] = len(seeds)
    return StudyResult(
        workload=items[0].workload,
        config=config,
        fp32=[f for p in items for f in p.fp32],
        rows=[r for p in items for r in p.rows],
        recipes=[r for p in items for r in p.recipes],
    )
