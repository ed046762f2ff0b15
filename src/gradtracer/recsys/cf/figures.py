"""Figures of the CF pipeline: the ``n_factors`` tuning curve and validation vs test bars.

Drawn through :mod:`gradtracer._plotting` like every GradTracer figure: each call writes a
PNG and an SVG next to each other and returns the PNG's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradtracer._plotting import save_png_svg, subplots
from gradtracer.recsys.cf.evaluate import CFEvaluation
from gradtracer.recsys.cf.tune import TuningResult

__all__ = ["plot_tuning_curve", "plot_valid_vs_test"]


def _save(fig: object, path: str | Path) -> Path:
    out = Path(path)
    return save_png_svg(fig, out.parent, out.stem if out.suffix == ".png" else out.name)[0]


def plot_tuning_curve(
    result: TuningResult, path: str | Path, *, metrics: Sequence[str] | None = None
) -> Path:
    """Draw validation metrics against ``n_factors``, marking the chosen value.

    Writes ``path`` (PNG) and the same name with ``.svg``; returns the PNG path.
    """
    metrics = list(
        metrics
        or [m for m in ("ndcg@10", "recall@10", "map@10") if m in result.evaluations[0].mean]
    )
    fig, axes = subplots(width=6.4, height=4.0)
    ax = axes[0, 0]
    for m in metrics:
        ax.plot(result.grid, [ev.mean[m] for ev in result.evaluations], marker="o", label=m)
    best = max(ev.mean[result.metric] for ev in result.evaluations)
    ax.axhline(
        best * (1 - result.tolerance),
        color="grey",
        ls=":",
        lw=1,
        label=f"{result.metric} within {result.tolerance:.0%} of best",
    )
    ax.axvline(
        result.chosen, color="black", ls="--", lw=1, label=f"chosen n_factors={result.chosen}"
    )
    ax.set_xlabel("n_factors")
    ax.set_ylabel("validation score")
    ax.set_title("n_factors tuning (validation)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_valid_vs_test(valid: CFEvaluation, test: CFEvaluation, path: str | Path) -> Path:
    """Draw grouped bars of each ranking metric on validation vs test.

    Writes ``path`` (PNG) and the same name with ``.svg``; returns the PNG path.
    """
    keys = [k for k in valid.mean if k in test.mean]
    x = np.arange(len(keys))
    fig, axes = subplots(width=max(6.4, 0.6 * len(keys) + 2), height=4.0)
    ax = axes[0, 0]
    ax.bar(
        x - 0.2,
        [valid.mean[k] for k in keys],
        width=0.4,
        label=f"{valid.split} (n={valid.n_users})",
    )
    ax.bar(
        x + 0.2, [test.mean[k] for k in keys], width=0.4, label=f"{test.split} (n={test.n_users})"
    )
    ax.set_xticks(x, keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mean over users")
    ax.set_title(f"validation vs test (n_factors={test.n_factors})")
    ax.legend(fontsize=8)
    return _save(fig, path)
