"""Figures of the session study, each written as PNG and SVG (matplotlib, Agg backend).

Every function takes plain numbers (no models), draws one figure and returns the paths
written: ``<out_dir>/<name>.png`` and ``<out_dir>/<name>.svg``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer._plotting import save_png_svg, subplots

__all__ = [
    "plot_alpha_sweep",
    "plot_metric_comparison",
    "plot_popularity",
    "plot_session_lengths",
]


def _figure(width: float = 6.0, height: float = 4.0) -> tuple[Any, Any]:
    fig, axes = subplots(width=width, height=height)
    return fig, axes[0][0]


def plot_popularity(counts: np.ndarray, out_dir: str | Path) -> list[Path]:
    """Item click counts against popularity rank, log-log (``popularity_loglog``)."""
    c = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    c = c[c > 0]
    fig, ax = _figure()
    ax.loglog(np.arange(1, len(c) + 1), c, "o", markersize=2, alpha=0.6)
    ax.set_xlabel("item popularity rank")
    ax.set_ylabel("clicks in training sessions")
    ax.set_title(f"Item popularity ({len(c):,} items)")
    ax.grid(True, which="both", alpha=0.3)
    return save_png_svg(fig, out_dir, "popularity_loglog")


def plot_session_lengths(lengths: Mapping[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Histogram of events per session for each part (``session_lengths``)."""
    fig, ax = _figure()
    top = max((int(v.max()) for v in lengths.values() if len(v)), default=2)
    bins = np.arange(1.5, min(top, 60) + 1.5)
    for name, values in lengths.items():
        ax.hist(
            np.minimum(values, bins[-1] - 0.5),
            bins=bins,
            alpha=0.6,
            label=f"{name} (mean {np.mean(values):.2f})",
        )
    ax.set_xlabel("events per session")
    ax.set_ylabel("sessions")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Session lengths")
    return save_png_svg(fig, out_dir, "session_lengths")


def plot_metric_comparison(
    means: Mapping[str, Mapping[str, float]], ks: Sequence[int], out_dir: str | Path
) -> list[Path]:
    """Grouped bars of Recall@K and MRR@K per model (``metric_comparison``)."""
    models = list(means)
    fig, grid = subplots(1, 2, width=10, height=4)
    axes = grid[0]
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(ks))
    for ax, metric in zip(axes, ("recall", "mrr"), strict=True):
        for j, model in enumerate(models):
            values = [means[model][f"{metric}@{k}"] for k in ks]
            ax.bar(x + (j - (len(models) - 1) / 2) * width, values, width, label=model)
        ax.set_xticks(x, [str(k) for k in ks])
        ax.set_xlabel("K")
        ax.set_ylabel(f"{'Recall' if metric == 'recall' else 'MRR'}@K")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle("Next-item prediction, full ranking")
    return save_png_svg(fig, out_dir, "metric_comparison")


def plot_alpha_sweep(
    alphas: Sequence[float],
    recall: Sequence[float],
    mrr: Sequence[float],
    k: int,
    out_dir: str | Path,
) -> list[Path]:
    """Recall@k and MRR@k of the Markov chain against the popularity weight alpha."""
    fig, ax = _figure()
    ax.plot(alphas, recall, "o-", label=f"Recall@{k}")
    ax.plot(alphas, mrr, "s-", label=f"MRR@{k}")
    best = int(np.argmax(recall))
    ax.axvline(alphas[best], color="grey", linestyle="--", label=f"best alpha {alphas[best]:g}")
    ax.set_xlabel("alpha (0 = Markov chain, 1 = popularity)")
    ax.set_ylabel("metric")
    ax.legend()
    ax.grid(True, alpha=0.3)
    ax.set_title("Markov chain blended with popularity")
    return save_png_svg(fig, out_dir, "markov_alpha_sweep")
