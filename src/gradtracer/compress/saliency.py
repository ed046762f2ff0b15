"""Saliency of embedding rows and layers: which parts of a model carry what it learned.

Row signals (one value per row, higher = more important), all from the table and the
:class:`~gradtracer.embedding.EmbeddingTracker` state:

========== ====================================================================
signal     definition
========== ====================================================================
magnitude  L2 norm of the row
frequency  exposure: tracked steps in which the row received a gradient
fisher     ``exposure * grad_norm_ema**2`` (a diagonal empirical Fisher estimate)
dynamics   frequency-aware saliency: ``velocity_ema * (1 - oscillation) /
           log2(2 + exposure / mean exposure)``: applied movement that is consistent
           in direction, normalised so that popular rows are not important just for
           being seen often
uniform    all ones (the unweighted allocation)
========== ====================================================================

``oscillation`` is the row's share of disagreeing update directions
(``n_disagree / (n_agree + n_disagree)``). Rows never exposed score 0 on every signal
but ``magnitude`` and ``uniform``.

Layer saliency (:func:`layer_saliency`) ranks the layers a
:class:`~gradtracer.flow.FlowTracker` watched by update ratio times gradient SNR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["ROW_SIGNALS", "layer_saliency", "row_saliency", "row_stats_of"]

#: Row signals :func:`row_saliency` computes.
ROW_SIGNALS: tuple[str, ...] = ("magnitude", "frequency", "fisher", "dynamics", "uniform")

_COLUMNS = ("exposure", "velocity_ema", "grad_norm_ema", "n_agree", "n_disagree")


def row_stats_of(tracker: Any) -> dict[str, np.ndarray]:
    """Per-row columns of an ``EmbeddingTracker`` as numpy arrays.

    Uses ``tracker.row_stats()`` when the tracker has it, else ``tracker.row_state.col``.
    Returns at least ``exposure``, ``velocity_ema``, ``grad_norm_ema`` and ``oscillation``.
    """
    stats: dict[str, np.ndarray] = {}
    getter = getattr(tracker, "row_stats", None)
    if callable(getter):
        stats = {k: np.asarray(v) for k, v in getter().items()}
    if not all(k in stats for k in ("exposure", "velocity_ema", "grad_norm_ema")):
        state = tracker.row_state
        for name in _COLUMNS:
            stats.setdefault(name, state.col(name).detach().cpu().numpy().astype(np.float64))
    if "oscillation" not in stats:
        if "n_agree" not in stats or "n_disagree" not in stats:
            state = tracker.row_state
            stats["n_agree"] = state.col("n_agree").cpu().numpy().astype(np.float64)
            stats["n_disagree"] = state.col("n_disagree").cpu().numpy().astype(np.float64)
        agree = np.asarray(stats["n_agree"], dtype=np.float64)
        dis = np.asarray(stats["n_disagree"], dtype=np.float64)
        total = agree + dis
        stats["oscillation"] = np.divide(dis, total, out=np.zeros_like(dis), where=total > 0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in stats.items()}


def row_saliency(
    signal: str,
    *,
    weight: torch.Tensor | np.ndarray | None = None,
    stats: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``(n_rows,)`` float64 importance of each row under ``signal`` (see the module table).

    Args:
        signal: one of :data:`ROW_SIGNALS`.
        weight: the ``(n, d)`` table (needed for ``magnitude`` and ``uniform``).
        stats: per-row tracker columns (:func:`row_stats_of`), needed for the others.

    >>> import numpy as np
    >>> row_saliency("frequency", stats={"exposure": np.array([0.0, 3.0])}).tolist()
    [0.0, 3.0]
    """
    if signal not in ROW_SIGNALS:
        raise ValueError(f"signal must be one of {ROW_SIGNALS}, got {signal!r}")
    if signal in ("magnitude", "uniform"):
        if weight is None:
            raise ValueError(f"signal {signal!r} needs the table weight")
        w = torch.as_tensor(weight).detach().to("cpu", torch.float64)
        if signal == "uniform":
            return np.ones(w.shape[0])
        return w.norm(dim=1).numpy()
    if stats is None:
        raise ValueError(f"signal {signal!r} needs the tracker's row statistics (stats=...)")
    need = {"frequency": ("exposure",), "fisher": ("exposure", "grad_norm_ema"),
            "dynamics": ("exposure", "velocity_ema", "oscillation")}[signal]  # fmt: skip
    missing = [k for k in need if k not in stats]
    if missing:
        raise ValueError(f"signal {signal!r} needs row statistics {missing}")
    exposure = np.asarray(stats["exposure"], dtype=np.float64)
    if signal == "frequency":
        return exposure.copy()
    if signal == "fisher":
        g = np.asarray(stats["grad_norm_ema"], dtype=np.float64)
        return exposure * g * g
    vel = np.asarray(stats["velocity_ema"], dtype=np.float64)
    osc = np.clip(np.asarray(stats["oscillation"], dtype=np.float64), 0.0, 1.0)
    mean_exp = float(exposure[exposure > 0].mean()) if (exposure > 0).any() else 1.0
    out = vel * (1.0 - osc) / np.log2(2.0 + exposure / mean_exp)
    out[exposure <= 0] = 0.0
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def layer_saliency(snapshots: Any) -> dict[str, float]:
    """``{layer: update_ratio * min(snr, 100)}`` from FlowTracker snapshots, most salient first.

    ``snapshots`` is a ``FlowTracker`` or its :meth:`snapshots` list. Layers without
    enough observations (NaN SNR) score their update ratio alone.
    """
    snaps = snapshots.snapshots() if hasattr(snapshots, "snapshots") else list(snapshots)
    scores: dict[str, float] = {}
    for s in snaps:
        if not getattr(s, "numel", 0):
            continue
        ratio = float(s.update_ratio) if math.isfinite(s.update_ratio) else 0.0
        snr = float(s.snr) if math.isfinite(s.snr) else (100.0 if s.snr == math.inf else 1.0)
        scores[s.name] = ratio * min(snr, 100.0)
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))
