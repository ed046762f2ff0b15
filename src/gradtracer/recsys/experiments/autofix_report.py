"""Render an Auto-Fix study result: plain verdicts, Markdown tables, JSON, and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradtracer.recsys.experiments.autofix_study import HR, NDCG, LrResult, StudyResult

__all__ = ["study_verdicts", "to_markdown", "write_study"]


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if abs(x) >= 10 ** (-digits) or x == 0 else f"{x:.2e}"


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def study_verdicts(result: StudyResult) -> list[str]:
    """Return one plain sentence per finding of the study (significance said explicitly)."""
    out = []
    alpha = result.config.alpha
    pop = result.references["popularity"]["ndcg@10"]
    tuned = result.references["tuned_mf"]["ndcg@10"]
    for lr_res in result.results:
        base = sum(r.ndcg for r in lr_res.baseline) / len(lr_res.baseline)
        fix = sum(r.ndcg for r in lr_res.autofix) / len(lr_res.autofix)
        stats = lr_res.across_seeds.get(NDCG)
        if stats is None or stats["p_value"] is None:
            test = "only one seed, so no across-seed test"
        else:
            word = "SIGNIFICANT" if stats["significant"] else "NOT significant"
            test = (
                f"across-seed paired t-test p = {_p(stats['p_value'])} -> {word} at "
                f"alpha={alpha:g}; mean difference {_fmt(stats['diff_mean'])} "
                f"(95% CI {_ci(stats['diff_ci_t'])})"
            )
        direction = "higher" if fix > base else "lower" if fix < base else "equal"
        out.append(
            f"lr {lr_res.lr:g}: Auto-Fix NDCG@10 {_fmt(fix)} vs baseline {_fmt(base)} "
            f"({direction}); {test}."
        )
        n_sig = sum(t["significant"] for t in lr_res.per_seed_tests)
        out.append(
            f"lr {lr_res.lr:g}: per-user paired t-test significant in {n_sig} of "
            f"{len(lr_res.per_seed_tests)} seeds."
        )
        ci = stats["baseline_ci"] if stats is not None else None
        low, high = (ci[0], ci[1]) if ci else (base, base)
        relation = (
            "WORSE than"
            if high < pop
            else "BETTER than"
            if low > pop
            else "not distinguishable from"
        )
        span = f", 95% CI over seeds {_ci(ci)}" if ci else ""
        out.append(
            f"lr {lr_res.lr:g}: the protocol's baseline MF (NDCG@10 {_fmt(base)}{span}) "
            f"is {relation} the popularity ranking (NDCG@10 {_fmt(pop)}) on the same "
            "split."
        )
    out.append(
        f"Reference MF ({result.references['tuned_mf']['note']}): NDCG@10 {_fmt(tuned)}; "
        f"popularity NDCG@10 {_fmt(pop)}."
    )
    return out


def _lr_table(lr_res: LrResult) -> list[str]:
    lines = [
        f"### Adam lr = {lr_res.lr:g}",
        "",
        "| seed | baseline HR@10 | baseline NDCG@10 | Auto-Fix HR@10 | Auto-Fix NDCG@10 "
        "| rows damped | per-user t | per-user p |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, b, f, t in zip(
        lr_res.seeds, lr_res.baseline, lr_res.autofix, lr_res.per_seed_tests, strict=True
    ):
        damped = "-" if f.autofix is None else str(f.autofix.get("rows_ever_scaled", "-"))
        lines.append(
            f"| {seed} | {_fmt(b.hr)} | {_fmt(b.ndcg)} | {_fmt(f.hr)} | {_fmt(f.ndcg)} "
            f"| {damped} | {_fmt(t['t'], 3)} | {_p(t['p_value'])} |"
        )
    lines += [
        "",
        "| metric | baseline mean (95% CI) | Auto-Fix mean (95% CI) | diff (95% t CI) "
        "| diff (95% bootstrap CI) | t | p (across seeds) | Cohen's d_z |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for key in (NDCG, HR):
        s = lr_res.across_seeds.get(key)
        if s is None:
            continue
        lines.append(
            f"| {key} | {_fmt(s['baseline_mean'])} {_ci(s['baseline_ci'])} "
            f"| {_fmt(s['autofix_mean'])} {_ci(s['autofix_ci'])} "
            f"| {_fmt(s['diff_mean'])} {_ci(s['diff_ci_t'])} | {_ci(s['diff_ci_bootstrap'])} "
            f"| {_fmt(s['t'], 3)} | {_p(s['p_value'])} | {_fmt(s['cohens_d'], 3)} |"
        )
    return lines + [""]


def to_markdown(result: StudyResult) -> str:
    """Return the study as Markdown: data, references, per-lr tables, verdicts."""
    ds = result.dataset
    cfg = result.config
    lines = [
        "## Auto-Fix validation study",
        "",
        f"Data: {ds['source']} — {ds['n_users']} users, {ds['n_items']} items, "
        f"{ds['positives']} positives (rating >= {cfg.threshold:g}), "
        f"{ds['train_rows']} train / {ds['test_rows']} test (leave-one-out: last timestamp, later file row on ties).",
        f"Protocol: MF dim {cfg.dim}, N(0, {cfg.init_std:g}) init, BCE with logits, "
        f"{cfg.n_negatives} uniform negatives per positive, batch {cfg.batch_size} positives, "
        f"Adam, {cfg.epochs} epochs, tracker on item_emb (track_interval={cfg.track_interval}); "
        f"full-ranking HR@{cfg.k}/NDCG@{cfg.k}, training items masked. "
        f"Seeds: {list(cfg.seeds)}.",
        "",
        "| reference (same split) | HR@10 | NDCG@10 | note |",
        "|---|---:|---:|---|",
    ]
    for name, ref in result.references.items():
        lines.append(f"| {name} | {_fmt(ref['hr@10'])} | {_fmt(ref['ndcg@10'])} | {ref['note']} |")
    lines.append("")
    for lr_res in result.results:
        lines += _lr_table(lr_res)
    lines += ["### Verdict", ""] + [f"- {v}" for v in study_verdicts(result)] + [""]
    return "\n".join(lines)


def _plot(result: StudyResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.results)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    pop = result.references["popularity"]["ndcg@10"]
    tuned = result.references["tuned_mf"]["ndcg@10"]
    for ax, lr_res in zip(axes[0], result.results, strict=True):
        seeds = range(len(lr_res.seeds))
        ax.plot(seeds, [r.ndcg for r in lr_res.baseline], "o-", label="baseline MF")
        ax.plot(seeds, [r.ndcg for r in lr_res.autofix], "s-", label="Auto-Fix MF")
        ax.axhline(pop, color="gray", ls="--", label="popularity")
        ax.axhline(tuned, color="green", ls=":", label="reference MF")
        ax.set_xticks(list(seeds), [str(s) for s in lr_res.seeds])
        ax.set_xlabel("seed")
        ax.set_ylabel("NDCG@10 (full ranking)")
        p = (lr_res.across_seeds.get(NDCG) or {}).get("p_value")
        ax.set_title(f"Adam lr {lr_res.lr:g} (across-seed p = {_p(p)})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_study(result: StudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``autofix_study.json``, ``autofix_study.md`` and ``autofix_study.png``; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "autofix_study.json",
        "markdown": out / "autofix_study.md",
        "plot": out / "autofix_study.png",
    }
    payload: dict[str, Any] = result.to_dict()
    payload["verdicts"] = study_verdicts(result)
    paths["json"].write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))
    paths["markdown"].write_text(to_markdown(result))
    _plot(result, paths["plot"])
    return paths


def _json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")
