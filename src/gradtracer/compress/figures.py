"""Figures of the compression study: bytes against quality (a Pareto plot per workload)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_pareto"]

#: Methods drawn in colour with a legend entry (with ``uniform_*`` and the recipe); the
#: other candidates are drawn in light grey.
_LABELLED: tuple[str, ...] = (
    "prune_l2norm",
    "prune_frequency",
    "table_svd",
    "mixed_unweighted",
    "mixed_score_dynamics",
    "mixed_score_magnitude",
    "retrain_small",
    "score_svd_int4",
    "score_svd_twoscale_int4",
    "score_svd_twoscale_int3",
    "score_svd_mixed_2x",
    "recipe_by_validation",
)


def plot_pareto(results: Sequence[Any], out_dir: str | Path) -> list[Path]:
    """``compression_pareto.png/.svg``: mean NDCG@10 change vs compression ratio, per method.

    The recipe, the issue's baselines and a few candidate kinds are drawn in colour; the
    advisor's other candidates in grey without a legend entry.

    ``results`` are :class:`~gradtracer.compress.study.StudyResult` objects.
    """
    from gradtracer._plotting import save_png_svg, subplots
    from gradtracer.compress.study import summarize

    fig, axes = subplots(1, max(1, len(results)), width=6.0 * max(1, len(results)), height=4.5)
    for ax, result in zip(axes[0], results):
        entries = summarize(result)
        methods = sorted({e["method"] for e in entries})
        import matplotlib

        palette = matplotlib.colormaps["tab20"]
        named = [m for m in methods if m in _LABELLED or m.startswith("uniform_")]
        for m in methods:
            pts = sorted(
                (e["achieved_ratio"], 100 * e["rel_ndcg@10"]) for e in entries if e["method"] == m
            )
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            style: dict[str, Any]
            if m == "recipe":
                style = {"lw": 2.5, "marker": "*", "ms": 12, "color": "black", "zorder": 5}
            elif m in named:
                style = {"marker": "o", "lw": 1, "color": palette(named.index(m) % 20)}
            else:  # the advisor's other candidates: context, not labelled
                style = {"marker": ".", "lw": 0.6, "color": "0.75", "zorder": 1}
            ax.plot(xs, ys, label=m if (m == "recipe" or m in named) else None, **style)
        ax.set_xscale("log", base=2)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("compression ratio vs float32 tables (log2)")
        ax.set_ylabel("NDCG@10 change vs float32 (%)")
        ax.set_title(f"{result.workload}: bytes vs quality")
        ax.set_ylim(bottom=max(-100.0, ax.get_ylim()[0]))
        ax.legend(fontsize=7, ncol=2)
    return save_png_svg(fig, out_dir, "compression_pareto")
