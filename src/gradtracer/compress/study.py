"""Evaluate compression at equal bytes, over paired seeds, against every baseline.

Per seed: train a float model (an :class:`~gradtracer.embedding.EmbeddingTracker` on
both tables; trained models are cached by configuration and seed), then for each budget
(``ratio`` x smaller than the float32 tables) let the advisor build every candidate plan
and choose one under the advisor's selection rule (default: the largest sum of the
standardized fidelity to the float model's rankings and the standardized **validation**
NDCG@10; ``StudyConfig.selection``), and measure the recipe and every candidate on
**test**: uniform precision (the most precise that fits), L2-norm and
frequency pruning (kept rows at fp32/int8/int4), per-table SVD, mixed precision with
unweighted error allocation and weighted by each plain and dynamics-aware signal,
score-matrix SVD (row-wise, two-scale, mixed per-row precision), and optionally a model
of the dimension the budget holds trained from scratch. Full-ranking NDCG@10 and
Recall@20; the mean relative change against float32, a t-based 95% interval over seeds,
paired t-tests of the recipe against each method over seeds, and per-user paired tests
(paired t and Wilcoxon over the pooled (seed, user) NDCG@10 differences; each row keeps
its users' NDCG@10 as a compact hit-rank string, :func:`encode_hits`). The plans the
other selection rules would have chosen are measured too (``recipe_by_<rule>``). The
most-popular ranking is
measured beside the float model.

The module runs past 400 lines: the study, its summary tables and the float-model cache
share the row layout of the results and change together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.compress import methods
from gradtracer.compress.advisor import (
    SELECTION_KEYS,
    SELECTION_RULES,
    QuantizationAdvisor,
    select_plan,
)
from gradtracer.compress.model import CompressedMF
from gradtracer.compress.saliency import row_stats_of
from gradtracer.compress.workloads import (
    DotMF,
    TrainConfig,
    Workload,
    evaluate_model,
    evaluate_popularity,
    train_dot_mf,
)

__all__ = [
    "StudyConfig",
    "StudyResult",
    "apply_plan",
    "cached_float_model",
    "candidate_name",
    "decode_hits",
    "encode_hits",
    "per_user_test",
    "recipe_choices",
    "signal_comparison",
    "merge_results",
    "run_study",
    "summarize",
    "train_model",
]

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
    cache_dir: str | None = None  # where trained float models are kept (None: not cached)
    track_interval: int = 1  # EmbeddingTracker interval on the float model (steps)
    tuning: dict[str, Any] | None = None  # how ``train`` was chosen (recorded, not used)
    selection: str = (
        "fidelity_plus_validation"  # the advisor's plan-selection rule (SELECTION_RULES)
    )


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


#: Per-user NDCG@10 of one held-out item: 0 (missed) or 1 / log2(1 + rank), rank 1-10.
_HIT_GAINS = np.concatenate([[0.0], 1.0 / np.log2(np.arange(2, 12))])
_HIT_CHARS = "0123456789a"


def encode_hits(ndcg: np.ndarray) -> str | None:
    """Per-user NDCG@10 of one held-out item per user as one character per user (the
    item's rank 1-10 in base 11, ``0`` for a miss); None if a value is not such a gain.

    >>> encode_hits(np.array([0.0, 1.0, 1 / np.log2(11)]))
    '01a'
    >>> decode_hits('01a').round(4).tolist()
    [0.0, 1.0, 0.2891]
    """
    v = np.asarray(ndcg, dtype=np.float64).reshape(-1)
    code = np.abs(v[:, None] - _HIT_GAINS[None, :]).argmin(1)
    if v.size and np.abs(_HIT_GAINS[code] - v).max() > 1e-6:
        return None
    return "".join(_HIT_CHARS[c] for c in code)


def decode_hits(text: str) -> np.ndarray:
    """Inverse of :func:`encode_hits`: per-user NDCG@10 (float64)."""
    try:
        return _HIT_GAINS[[_HIT_CHARS.index(c) for c in text]]
    except ValueError as exc:
        raise ValueError(
            f"not a hit-rank string (characters {_HIT_CHARS!r}): {text[:20]!r}"
        ) from exc


def candidate_name(label: str, params: dict[str, Any], base_rank: int = 0) -> str:
    """The study's method name of an advisor candidate ``(label, params)``.

    >>> candidate_name("mixed", {"signal": "uniform", "metric": "identity"})
    'mixed_unweighted'
    >>> candidate_name("score_svd_mixed", {"rank": 12}, base_rank=8)
    'score_svd_mixed_1.5x'
    """
    if label == "uniform":
        return f"uniform_{params['precision']}"
    if label == "mixed":
        if params.get("metric") == "identity":
            return "mixed_unweighted"
        return f"mixed_score_{params['signal']}"
    if label == "score_svd":
        return f"score_svd_{params['precision']}"
    if label == "score_svd_twoscale":
        return f"score_svd_twoscale_int{params['bits']}"
    if label == "score_svd_mixed":
        share = params["rank"] / base_rank if base_rank else 0.0
        return f"score_svd_mixed_{share:g}x"
    if label == "prune":
        prec = params.get("precision")
        return f"prune_{params['signal']}" + (f"_{prec}" if prec else "")
    if label == "table_svd":
        prec = params.get("precision", "fp32")
        return "table_svd" if prec == "fp32" else f"table_svd_{prec}"
    return label


def _cache_path(
    cache_dir: str | Path,
    workload: Workload,
    n_factors: int,
    cfg: TrainConfig,
    seed: int,
    track_interval: int,
) -> Path:
    import hashlib
    import json

    key = json.dumps(
        {
            "workload": workload.name,
            "shape": [workload.n_users, workload.n_items, int(workload.train.nnz)],
            "n_factors": n_factors,
            "train": cfg.to_dict(),
            "seed": seed,
            "track_interval": track_interval,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"float_{workload.name}_d{n_factors}_s{seed}_{digest}.npz"


def cached_float_model(
    workload: Workload,
    n_factors: int,
    cfg: TrainConfig,
    seed: int,
    cache_dir: str | Path | None,
    *,
    track_interval: int = 1,
) -> tuple[DotMF, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """:func:`train_model` with tracking, reading / writing ``cache_dir`` when given.

    The cache key is the workload's name and shape, the dimension, the training
    configuration and the seed; files are npz (no pickle).
    """
    import torch

    from gradtracer.durable import atomic_savez

    path = (
        None
        if cache_dir is None
        else _cache_path(cache_dir, workload, n_factors, cfg, seed, track_interval)
    )
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            model = DotMF(workload.n_users, workload.n_items, n_factors, random_state=seed)
            with torch.no_grad():
                model.user_emb.weight.copy_(torch.from_numpy(z["user"]))
                model.item_emb.weight.copy_(torch.from_numpy(z["item"]))
            su = {k[2:]: z[k] for k in z.files if k.startswith("u_")}
            si = {k[2:]: z[k] for k in z.files if k.startswith("i_")}
        return model, (su, si)
    model, stats = train_model(
        workload, n_factors, cfg, seed, track=True, track_interval=track_interval
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        user, item = model.scorer()
        arrays = {"user": user.numpy(), "item": item.numpy()}
        arrays.update({f"u_{k}": v for k, v in stats[0].items()})
        arrays.update({f"i_{k}": v for k, v in stats[1].items()})
        atomic_savez(path, **arrays)
    return model, stats


def apply_plan(recipe: Any, user: Any, item: Any) -> CompressedMF:
    """:func:`~gradtracer.compress.recipe.apply_recipe`, or for a plan kind it does not know
    (one of :data:`~gradtracer.compress.methods.EXTRA_METHODS`) the same rebuild through
    :func:`~gradtracer.compress.methods.build_extra`, with the recipe's budget check."""
    from gradtracer.compress.recipe import RecipeError, apply_recipe

    if recipe.method not in methods.EXTRA_METHODS:
        return apply_recipe(recipe, user, item)
    try:
        return apply_recipe(recipe, user, item)
    except RecipeError as exc:
        if "unknown method" not in str(exc) and "not one of" not in str(exc):
            raise
    recipe.check_tables(user, item)
    model = methods.build_extra(
        recipe.method, user, item, recipe.budget_bytes, dict(recipe.params), dict(recipe.decisions)
    )
    if model.nbytes() > recipe.budget_bytes:
        raise RecipeError(
            f"applied recipe holds {model.nbytes()} bytes, over its budget of {recipe.budget_bytes}"
        )
    return model


def train_model(
    workload: Workload,
    n_factors: int,
    cfg: TrainConfig,
    seed: int,
    track: bool,
    *,
    track_interval: int = 1,
) -> tuple[DotMF, Any]:
    """Train a :class:`DotMF`; with ``track`` also return both tables' row statistics
    (trackers step every ``track_interval`` optimizer steps)."""
    from dataclasses import replace

    model = DotMF(workload.n_users, workload.n_items, n_factors, random_state=seed)
    trackers = None
    hook = None
    if track:
        from gradtracer.embedding import EmbeddingTracker

        tu = EmbeddingTracker(model.user_emb, name="user_emb", track_interval=track_interval)
        ti = EmbeddingTracker(model.item_emb, name="item_emb", track_interval=track_interval)
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
    pop = {
        f"popularity_{k}": v for k, v in _means(evaluate_popularity(workload, part="test")).items()
    }
    for s in range(cfg.first_seed, cfg.first_seed + cfg.n_seeds):
        model, stats = cached_float_model(
            workload, cfg.n_factors, cfg.train, s, cfg.cache_dir, track_interval=cfg.track_interval
        )
        stats_u, stats_i = stats
        user, item = model.scorer()
        base = _means(evaluate_model(model, workload))
        valid = _means(evaluate_model(model, workload, part="valid"))
        fp32_rows.append({"seed": s, **base, **{f"valid_{k}": v for k, v in valid.items()}, **pop})
        fp32_bytes = methods.fp32_bytes(user, item)
        d = int(user.shape[1])
        say(f"{workload.name} seed {s}: fp32 ndcg@10 {base['ndcg@10']:.4f}")

        def validate(m: CompressedMF) -> float:
            return float(np.mean(evaluate_model(m, workload, part="valid")["ndcg@10"]))

        advisor = QuantizationAdvisor(
            user,
            item,
            user_stats=stats_u,
            item_stats=stats_i,
            validate=validate,
            selection=cfg.selection,
            exclude=workload.train,
        )
        for ratio in cfg.ratios:
            budget = fp32_bytes // ratio
            plans = advisor.candidates(budget)
            recipe = advisor.advise(budget, plans=plans)
            cm = apply_plan(recipe, user, item)
            res_users = evaluate_model(cm, workload)
            res = _means(res_users)
            recipe.measured = {
                "test_ndcg@10": res["ndcg@10"],
                "test_recall@20": res["recall@20"],
                "fp32_test_ndcg@10": base["ndcg@10"],
                "relative_loss": 1.0 - res["ndcg@10"] / base["ndcg@10"],
                "bytes": cm.nbytes(),
            }
            recipes.append({"seed": s, "ratio": ratio, "recipe": recipe.to_dict()})
            detail = recipe.method + "".join(
                f" {k}={v}" for k, v in sorted(recipe.params.items()) if k not in ("ranks",)
            )
            rows.append(
                _row(s, ratio, "recipe", cm.nbytes(), fp32_bytes, res, base, detail, res_users)
            )
            # every candidate the advisor considered, measured on test as a fixed method
            # (the baselines of the issue are among them: uniform, L2-norm / frequency
            # pruning, per-table SVD, unweighted and signal-weighted mixed precision)
            base_rank = methods.mixed_ranks(workload.n_users + workload.n_items, d, budget)
            by_plan: dict[str, dict[str, Any]] = {}
            for label, params, bm in plans:
                name = candidate_name(label, params, base_rank[0] if base_rank else 0)
                detail = label + "".join(f" {k}={v}" for k, v in sorted(params.items()))
                per_user = evaluate_model(bm, workload)
                row = _row(
                    s,
                    ratio,
                    name,
                    bm.nbytes(),
                    fp32_bytes,
                    _means(per_user),
                    base,
                    detail,
                    per_user,
                )
                rows.append(row)
                by_plan[_plan_key(label, params)] = row
            # the plan each other selection rule would have chosen, measured the same way
            for rule in SELECTION_RULES:
                if rule == cfg.selection:
                    continue
                needed = {SELECTION_KEYS[rule], SELECTION_KEYS["fidelity"]}
                scored = [c for c in recipe.candidates if needed <= set(c)]
                if len(scored) != len(recipe.candidates):
                    continue
                pick = scored[select_plan(scored, rule)]
                chosen = by_plan.get(_plan_key(str(pick["method"]), dict(pick["params"])))
                if chosen is not None:
                    rows.append({**chosen, "method": f"recipe_by_{rule}"})
            if cfg.retrain:
                dim = budget // (4 * (workload.n_users + workload.n_items))
                if dim >= 1:
                    small, _ = train_model(workload, int(dim), cfg.train, s, track=False)
                    n_bytes = 4 * dim * (workload.n_users + workload.n_items)
                    per_s = evaluate_model(small, workload)
                    rows.append(
                        _row(
                            s,
                            ratio,
                            f"retrain_dim{dim}",
                            n_bytes,
                            fp32_bytes,
                            _means(per_s),
                            base,
                            per_user=per_s,
                        )
                    )
            say(f"  {ratio}x: recipe {recipe.method} {recipe.params} -> {res['ndcg@10']:.4f}")
    conf = {
        "ratios": list(cfg.ratios),
        "n_seeds": cfg.n_seeds,
        "n_factors": cfg.n_factors,
        "train": cfg.train.to_dict(),
        "tuning": cfg.tuning,
        "track_interval": cfg.track_interval,
        "retrain": cfg.retrain,
        "selection": cfg.selection,
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
    per_user: dict[str, np.ndarray] | None = None,
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
    if per_user is not None:
        hits = encode_hits(per_user["ndcg@10"])
        if hits is not None:
            out["ndcg@10_hits"] = hits
    return out


def _plan_key(label: str, params: dict[str, Any]) -> str:
    import json

    return label + json.dumps(params, sort_keys=True, default=str)


def per_user_test(
    rows: Sequence[dict[str, Any]], ratio: int, a: str, b: str
) -> dict[str, Any] | None:
    """Paired tests of method ``a`` against ``b`` over the pooled (seed, user) NDCG@10
    differences at ``ratio``: the paired t-test and the Wilcoxon signed-rank test (zero
    differences dropped). Pairs are treated as independent, which ignores the
    seed-to-seed variance of the float model; None when no seed has both methods' users.
    """
    from gradtracer.recsys.stats import paired_ttest, wilcoxon

    ha = {
        r["seed"]: r["ndcg@10_hits"]
        for r in rows
        if r["ratio"] == ratio and r["method"] == a and "ndcg@10_hits" in r
    }
    hb = {
        r["seed"]: r["ndcg@10_hits"]
        for r in rows
        if r["ratio"] == ratio and r["method"] == b and "ndcg@10_hits" in r
    }
    common = [k for k in sorted(set(ha) & set(hb)) if len(ha[k]) == len(hb[k])]
    if not common:
        return None
    va = np.concatenate([decode_hits(ha[k]) for k in common])
    vb = np.concatenate([decode_hits(hb[k]) for k in common])
    if va.size < 2:
        return None
    t = paired_ttest(va, vb)
    w = wilcoxon(va, vb)
    return {
        "n_pairs": int(va.size),
        "n_seeds": len(common),
        "mean_diff": float((va - vb).mean()),
        "p_t": t.p_value,
        "p_wilcoxon": w.p_value,
        "n_nonzero": int(np.count_nonzero(va - vb)),
    }


def summarize(result: StudyResult | dict[str, Any]) -> list[dict[str, Any]]:
    """Per (ratio, method): mean relative change of each metric, 95% CI over seeds, the
    paired t-test (across seeds) of the recipe against that method (H0: equal means) and,
    for NDCG@10, the per-user paired tests of :func:`per_user_test` (``user_*`` keys)."""
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
            if method != "recipe":
                pu = per_user_test(rows, ratio, "recipe", method)
                if pu is not None:
                    entry.update({f"user_{k}": v for k, v in pu.items()})
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


#: Methods the issue names as baselines (the rest are the advisor's other candidates).
ISSUE_BASELINES: tuple[str, ...] = (
    "uniform_fp16",
    "uniform_int8",
    "uniform_int4",
    "uniform_int2",
    "prune_l2norm",
    "prune_frequency",
    "table_svd",
    "mixed_unweighted",
    "retrain_small",
)
#: Plain signals the dynamics-aware one is compared with (mixed, score metric).
PLAIN_SIGNALS: tuple[str, ...] = ("magnitude", "frequency", "fisher", "uniform")


def _paired(
    rows: Sequence[dict[str, Any]], ratio: int, a: str, b: str, metric: str = "ndcg@10"
) -> dict[str, Any] | None:
    from gradtracer.recsys.stats import aggregate_seeds

    va = {r["seed"]: r[metric] for r in rows if r["ratio"] == ratio and r["method"] == a}
    vb = {r["seed"]: r[metric] for r in rows if r["ratio"] == ratio and r["method"] == b}
    common = sorted(set(va) & set(vb))
    if len(common) < 2:
        return None
    agg = aggregate_seeds([va[k] for k in common], [vb[k] for k in common], names=(a, b))
    if agg.test is None:
        return None
    return {
        "a": a,
        "b": b,
        "n_seeds": len(common),
        "mean_diff": agg.test.mean_diff,
        "p": agg.test.p_value,
    }


def signal_comparison(result: StudyResult | dict[str, Any]) -> list[dict[str, Any]]:
    """Per budget: the dynamics-weighted allocation against each plain weighting and the
    unweighted row-error allocation, at equal bytes (paired NDCG@10 difference and p)."""
    data = result.to_dict() if isinstance(result, StudyResult) else result
    rows = data["rows"]
    out = []
    for ratio in sorted({r["ratio"] for r in rows}):
        for other in [f"mixed_score_{s}" for s in PLAIN_SIGNALS] + ["mixed_unweighted"]:
            cmp = _paired(rows, ratio, "mixed_score_dynamics", other)
            if cmp is not None:
                out.append({"ratio": ratio, **cmp})
    return out


def recipe_choices(result: StudyResult | dict[str, Any]) -> dict[int, dict[str, int]]:
    """Per budget: how often each plan kind was the recipe (under the study's selection rule)."""
    data = result.to_dict() if isinstance(result, StudyResult) else result
    out: dict[int, dict[str, int]] = {}
    for r in data["rows"]:
        if r["method"] == "recipe":
            kind = str(r["detail"]).split(" ")[0]
            out.setdefault(int(r["ratio"]), {}).setdefault(kind, 0)
            out[int(r["ratio"])][kind] += 1
    return out


def summary_markdown(results: Sequence[StudyResult]) -> str:
    """Markdown tables of :func:`summarize` for each workload, the signal comparison and
    how often each plan kind was chosen."""
    lines = []
    for r in results:
        base = np.mean([f["ndcg@10"] for f in r.fp32])
        pop = [f["popularity_ndcg@10"] for f in r.fp32 if "popularity_ndcg@10" in f]
        valid = [f["valid_ndcg@10"] for f in r.fp32 if "valid_ndcg@10" in f]
        extra = f", popularity {pop[0]:.4f}" if pop else ""
        extra += f", fp32 validation {np.mean(valid):.4f}" if valid else ""
        lines.append(
            f"### {r.workload} (fp32 test NDCG@10 {base:.4f}{extra}, {r.config['n_seeds']} seeds)\n"
        )
        lines.append(
            "| budget | method | achieved | NDCG@10 change [95% CI] | Recall@20 change "
            "| recipe - method (NDCG@10), seed-paired p | per-user p (t / Wilcoxon) |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for e in summarize(r):
            ci = e["rel_ndcg@10_ci"]
            test = ""
            if "p_ndcg@10" in e:
                test = f"{e['recipe_minus_ndcg@10']:+.4f}, p={e['p_ndcg@10']:.3g}"
            user = ""
            if "user_p_t" in e:
                user = f"{e['user_p_t']:.3g} / {e['user_p_wilcoxon']:.3g}"
            name = (
                e["method"]
                if e["method"] != "recipe"
                else "**recipe** (" + ", ".join(e["details"]) + ")"
            )
            lines.append(
                f"| {e['ratio']}x | {name} | {e['achieved_ratio']:.1f}x | "
                f"{100 * e['rel_ndcg@10']:+.1f}% [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | "
                f"{100 * e['rel_recall@20']:+.1f}% | {test} | {user} |"
            )
        lines.append("")
        cmp = signal_comparison(r)
        if cmp:
            lines.append(f"Dynamics-aware weights vs the others ({r.workload}, NDCG@10):\n")
            lines.append("| budget | dynamics - method | mean difference | p |")
            lines.append("|---|---|---|---|")
            for c in cmp:
                lines.append(f"| {c['ratio']}x | {c['b']} | {c['mean_diff']:+.4f} | {c['p']:.3g} |")
            lines.append("")
        choices = recipe_choices(r)
        if choices:
            rule = r.config.get("selection", "validation")
            lines.append(f"Plans the advisor chose (selection rule: {rule}; {r.workload}):\n")
            for ratio, counts in sorted(choices.items()):
                text = ", ".join(
                    f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda t: -t[1])
                )
                lines.append(f"- {ratio}x: {text}")
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
