"""Auto-Fix against the remedy the diagnosis prescribes, on an oscillation fault, paired by seed.

For every seed the same run is trained four ways, with identical data, initial weights,
batch order and negatives: the healthy twin; the faulty run (tracked, diagnosed at the
end); the faulty run retrained with the top finding's remedy (applied as the suite applies
it, to every subject the diagnosis names with that cause); and the faulty run with
Auto-Fix on every embedding table. The remedy arm and the Auto-Fix arm are compared with a
paired t-test over the seeds. A seed whose diagnosis prescribes nothing keeps the faulty
run's quality in the remedy arm (the remedy is counted as having done nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["compare_autofix", "to_markdown", "write_comparison"]


def _seed_row(family: str, fault: str, intensity: int, seed: int) -> dict[str, Any]:
    from gradtracer.fault_suite.loop import RunSpec, cause_findings, train_run
    from gradtracer.fault_suite.runner import top_remedies

    twin = train_run(RunSpec(family, random_state=seed, track=False))
    faulty = train_run(RunSpec(family, random_state=seed, fault=fault, intensity=intensity))
    findings = faulty.final.findings if faulty.final else []
    found = top_remedies(findings)
    causes = cause_findings(findings)
    remedied = faulty.quality
    if found is not None:
        remedy, more = found
        remedied = train_run(RunSpec(family, random_state=seed, fault=fault, intensity=intensity,
                                     remedy=remedy, more_remedies=more, track=False)).quality  # fmt: skip
    autofix = train_run(RunSpec(family, random_state=seed, fault=fault, intensity=intensity,
                                auto_fix=True))  # fmt: skip
    return {
        "random_state": seed,
        "twin": twin.quality,
        "faulty": faulty.quality,
        "top": causes[0]["type"] if causes else None,
        "remedy": None if found is None else [r.to_dict() for r in (found[0], *found[1])],
        "remedied": remedied,
        "autofix": autofix.quality,
    }


def compare_autofix(
    seeds: Sequence[int] = tuple(range(10)),
    *,
    family: str = "mf_bce",
    fault: str = "lr_high_embedding",
    intensity: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Paired comparison of Auto-Fix and the prescribed remedy on one fault.

    Args:
        seeds: ``random_state`` of each pair (default 0-9).
        family: suite model family with embedding tables (default implicit MF, BCE).
        fault: suite fault (default ``lr_high_embedding``, a learning rate that makes the
            table rows oscillate).
        intensity: index of the fault's intensity (default 0: 30x).
        progress: progress bar (None: only on a terminal).

    Returns:
        JSON-safe dict: ``rows`` (one per seed: NDCG@10 of twin, faulty, remedied and
        Auto-Fix arms, the top cause and the applied remedy), the arms' means, ``test``
        (paired t-test remedy vs Auto-Fix) and ``verdict``.

    Raises:
        ValueError: fewer than two seeds, or a fault that does not apply to ``family``.
    """
    from gradtracer._progress import progress as bar
    from gradtracer.fault_suite.loop import RunSpec
    from gradtracer.recsys.stats import paired_ttest

    if len(seeds) < 2:
        raise ValueError(f"need at least two seeds for a paired test, got {list(seeds)}")
    RunSpec(family, fault=fault, intensity=intensity)  # validates family / fault / intensity
    rows = [_seed_row(family, fault, intensity, int(s))
            for s in bar(seeds, total=len(seeds), desc="auto-fix vs remedy", enabled=progress)]  # fmt: skip
    remedied = [r["remedied"] for r in rows]
    autofix = [r["autofix"] for r in rows]
    test = paired_ttest(remedied, autofix)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("twin", "faulty", "remedied",
                                                              "autofix")}  # fmt: skip
    if test.p_value < 0.05:
        winner = "the prescribed remedy" if test.mean_diff > 0 else "Auto-Fix"
        verdict = f"{winner} wins (paired t-test p = {test.p_value:.2g}, n = {len(rows)})"
    else:
        verdict = (f"no significant difference (paired t-test p = {test.p_value:.2g}, "
                   f"n = {len(rows)})")  # fmt: skip
    return {
        "family": family,
        "fault": fault,
        "intensity": intensity,
        "rows": rows,
        "mean": mean,
        "recovered_remedy": mean["remedied"] / mean["twin"] if mean["twin"] > 0 else math.nan,
        "recovered_autofix": mean["autofix"] / mean["twin"] if mean["twin"] > 0 else math.nan,
        "test": test.to_dict(),
        "verdict": verdict,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (one row per seed) and the verdict."""
    lines = [
        f"# Auto-Fix vs the prescribed remedy: {result['fault']} (intensity index "
        f"{result['intensity']}) on {result['family']}",
        "",
        "| seed | twin | faulty | top cause | remedied | Auto-Fix |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['random_state']} | {r['twin']:.4f} | {r['faulty']:.4f} | "
                     f"{r['top'] or 'none'} | {r['remedied']:.4f} | {r['autofix']:.4f} |")  # fmt: skip
    m = result["mean"]
    lines += [
        f"| mean | {m['twin']:.4f} | {m['faulty']:.4f} | | {m['remedied']:.4f} | "
        f"{m['autofix']:.4f} |",
        "",
        f"Remedy recovers {100 * result['recovered_remedy']:.0f}% of the twin's NDCG@10, "
        f"Auto-Fix {100 * result['recovered_autofix']:.0f}%. Mean difference remedy - "
        f"Auto-Fix {result['test']['mean_diff']:+.4f}. **Verdict: {result['verdict']}.**",
    ]
    return "\n".join(lines) + "\n"


def write_comparison(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``autofix_vs_remedy.json`` and ``.md`` into ``out_dir``; returns their paths."""
    from gradtracer.fault_suite.report import write_json_markdown

    return write_json_markdown(result, to_markdown(result), out_dir, "autofix_vs_remedy")
