"""Pure table summary: per-row verdicts, the summary dict and per-row columns.

:func:`row_verdicts` judges every row once (exposed, zombie, frozen, and the table means
the verdicts depend on); the summary dict, the history snapshot of a distributed run,
``zombie_rows()`` and ``row_stats()`` all read the same :class:`RowVerdicts`, so they
cannot disagree. Nothing here keeps state or registers hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradtracer.embedding import stats as _stats
from gradtracer.embedding.state import RowState
from gradtracer.embedding.thresholds import EmbeddingThresholds, pressure_threshold, zombie_mask

__all__ = [
    "NEAR_IDENTICAL_SAMPLE",
    "NEAR_IDENTICAL_TOL",
    "NormStats",
    "RowVerdicts",
    "history_stats",
    "norm_stats",
    "row_columns",
    "row_verdicts",
    "table_summary",
]

#: rows sampled for the pairwise near-identical check (fixed seed; 32k pairs)
NEAR_IDENTICAL_SAMPLE = 256
#: two rows are near-identical when ``||a - b|| <= tol * max(||a||, ||b||)``
NEAR_IDENTICAL_TOL = 1e-3


@dataclass(frozen=True)
class RowVerdicts:
    """Every row judged once from a (merged) row state.

    Attributes:
        exposed: ``(N,)`` bool, rows that received gradient in at least one step.
        zombie: ``(N,)`` bool, exposed rows judged zombies now.
        frozen: ``(N,)`` bool, exposed rows whose velocity EMA is below the frozen level.
        n_exposed: exposed rows.
        mean_velocity: mean velocity EMA of exposed rows (weight units per touched step).
        mean_grad_norm: mean gradient-norm EMA of exposed rows (gradient units).
        oscillation_mean: mean EMA of consecutive-gradient cosines of paired rows.
        pressure: gradient-norm EMA a row needs to count as under pressure.
    """

    exposed: torch.Tensor
    zombie: torch.Tensor
    frozen: torch.Tensor
    n_exposed: int
    mean_velocity: float
    mean_grad_norm: float
    oscillation_mean: float
    pressure: float


def row_verdicts(state: RowState, thresholds: EmbeddingThresholds) -> RowVerdicts:
    """Judge every row of ``state`` (see :class:`RowVerdicts`)."""
    th = thresholds
    exposure = state.col("exposure")
    exposed = exposure > 0
    n_exp = int(exposed.sum())
    vel = state.col("velocity_ema")
    gn = state.col("grad_norm_ema")
    mean_vel = float(vel[exposed].double().mean()) if n_exp else 0.0
    mean_gn = float(gn[exposed].double().mean()) if n_exp else 0.0
    n_agree, n_disagree = state.col("n_agree"), state.col("n_disagree")
    has_pairs = (n_agree + n_disagree) > 0
    osc = float(state.col("cos_ema")[has_pairs].double().mean()) if bool(has_pairs.any()) else 0.0
    pressure = pressure_threshold(mean_gn, th.zombie)
    zombie = zombie_mask(
        n_agree,
        n_disagree,
        state.col("cos_ema"),
        gn,
        state.col("grad_norm_peak"),
        pressure,
        th.zombie,
    )
    frozen_tol = max(th.frozen_abs_velocity, th.frozen_rel_velocity * mean_vel)
    return RowVerdicts(
        exposed=exposed,
        zombie=zombie & exposed,
        frozen=exposed & (vel <= frozen_tol),
        n_exposed=n_exp,
        mean_velocity=mean_vel,
        mean_grad_norm=mean_gn,
        oscillation_mean=osc,
        pressure=float(pressure),
    )


def history_stats(verdicts: RowVerdicts, n_rows: int) -> dict[str, Any]:
    """The history numbers of a snapshot taken from a full (merged) row state."""
    return {
        "mean_velocity": verdicts.mean_velocity,
        "mean_grad_norm": verdicts.mean_grad_norm,
        "active_rows": verdicts.n_exposed,
        "coverage": verdicts.n_exposed / max(n_rows, 1),
        "oscillation_mean": verdicts.oscillation_mean,
        "zombie_count": int(verdicts.zombie.sum()),
    }


@dataclass(frozen=True)
class NormStats:
    """Row L2 norms of a table: mean, standard deviation and maximum (weight units)."""

    mean: float
    std: float
    max: float


def norm_stats(weight: torch.Tensor) -> NormStats:
    """:class:`NormStats` of the finite rows of ``weight`` (zeros for an empty table)."""
    norms = _row_norms(weight)
    if norms.numel() == 0:
        return NormStats(0.0, 0.0, 0.0)
    n = norms.double()
    return NormStats(float(n.mean()), float(n.std(unbiased=False)), float(n.max()))


def _row_norms(weight: torch.Tensor) -> torch.Tensor:
    norms = torch.linalg.vector_norm(weight.detach().float(), dim=1)
    return torch.where(torch.isfinite(norms), norms, torch.zeros_like(norms))


def near_identical_share(weight: torch.Tensor, *, seed: int) -> tuple[float, int]:
    """``(share, rows)``: share of a fixed sample of rows that have a near-identical
    partner in the sample (``||a - b|| <= NEAR_IDENTICAL_TOL * max(||a||, ||b||)``; two
    all-zero rows are identical), and the sample size. High when rows were initialised
    identically (or collapsed onto each other)."""
    n_rows = int(weight.shape[0])
    pick = _stats.sample_rows(n_rows, NEAR_IDENTICAL_SAMPLE, seed=seed + 1, device=weight.device)
    x = weight.detach().index_select(0, pick).double()
    x = x[torch.isfinite(x).all(dim=1)]
    m = int(x.shape[0])
    if m < 2:
        return 0.0, m
    dist = torch.cdist(x, x)
    norms = torch.linalg.vector_norm(x, dim=1)
    scale = torch.maximum(norms[:, None], norms[None, :])
    close = dist <= NEAR_IDENTICAL_TOL * scale
    close.fill_diagonal_(False)
    return float(close.any(dim=1).double().mean()), m


def table_summary(
    state: RowState,
    verdicts: RowVerdicts,
    weight: torch.Tensor,
    *,
    thresholds: EmbeddingThresholds,
    analysis_rows: int,
    seed: int,
    damped_ever: torch.Tensor | None,
    counters: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """``(summary, sample row ids per finding kind)`` of one table.

    Args:
        state: the (merged) row state; ``verdicts``: :func:`row_verdicts` of it.
        weight: the table now.
        damped_ever: ``(N,)`` bool rows an intervention ever damped, or None without one.
        counters: the tracker's plain values copied into the summary first (layer,
            step, loss, non-finite counts, timings ...).
    """
    th = thresholds
    n_rows, dim = int(weight.shape[0]), int(weight.shape[1])
    exposure = state.col("exposure")
    exposed, n_exp = verdicts.exposed, verdicts.n_exposed
    vel = state.col("velocity_ema")
    gn = state.col("grad_norm_ema")
    z_ids = torch.nonzero(verdicts.zombie).reshape(-1)
    posterior = _stats.disagreement_posterior(
        state.col("n_agree")[z_ids], state.col("n_disagree")[z_ids]
    )
    z_order = torch.argsort(gn[z_ids] * posterior, descending=True)
    unexposed = ~exposed
    n_zombie, n_frozen = int(z_ids.numel()), int(verdicts.frozen.sum())
    n_unexp = n_rows - n_exp
    zero_grad = exposed & (state.col("grad_norm_peak") == 0)

    norms = _row_norms(weight)
    now = norm_stats(weight)
    buckets = _stats.norm_by_popularity_bucket(norms.cpu(), exposure.cpu(), n_buckets=5)
    exposed_buckets = [b for b in buckets if b["min_exposure"] > 0]
    norm_ratio = None
    if len(exposed_buckets) >= 2 and exposed_buckets[0]["mean_norm"] > 0:
        norm_ratio = exposed_buckets[-1]["mean_norm"] / exposed_buckets[0]["mean_norm"]

    w = weight.detach()
    pool = (
        torch.nonzero(exposed).reshape(-1) if n_exp > 1 else torch.arange(n_rows, device=w.device)
    )
    pick = _stats.sample_rows(pool.numel(), analysis_rows, seed=seed, device=pool.device)
    sample = w.index_select(0, pool[pick]).float()
    sample = sample[torch.isfinite(sample).all(dim=1)]
    saliency = _stats.frequency_aware_saliency(vel, exposure)
    top_sal = torch.topk(saliency, min(10, n_rows)).indices
    exp_cpu = exposure.cpu()
    lorenz_x, lorenz_y = _stats.lorenz_curve(exp_cpu, n_points=21)
    identical, identical_rows = near_identical_share(w, seed=seed)
    out: dict[str, Any] = dict(counters)
    out.update(
        {
            "num_embeddings": n_rows,
            "embedding_dim": dim,
            "active_rows": n_exp,
            "active_coverage_pct": 100.0 * n_exp / max(n_rows, 1),
            "popularity_gini": _stats.gini(exp_cpu),
            "normalized_entropy": _stats.normalized_entropy(exp_cpu),
            "top1pct_share": _stats.top_share(exp_cpu, 0.01),
            "lorenz_x": lorenz_x,
            "lorenz_y": lorenz_y,
            "zombie_count": n_zombie,
            "zombie_ratio": n_zombie / max(n_exp, 1),
            "zombie_mean_posterior": float(posterior.double().mean()) if n_zombie else 0.0,
            "zombie_pressure_threshold": verdicts.pressure,
            "unexposed_count": n_unexp,
            "dead_count": n_unexp + n_frozen,
            "dead_ratio": (n_unexp + n_frozen) / max(n_rows, 1),
            "frozen_count": n_frozen,
            "zero_grad_row_share": int(zero_grad.sum()) / max(n_exp, 1),
            "mean_velocity": verdicts.mean_velocity,
            "mean_grad_norm": verdicts.mean_grad_norm,
            "oscillation_mean": verdicts.oscillation_mean,
            "mean_exposure": float(exposure.double().mean()) if n_rows else 0.0,
            "cold_start_share": _stats.cold_start_share(exposure, th.cold_start_exposure),
            "effective_rank": _stats.effective_rank(sample),
            "collapse_score": _stats.collapse_score(sample),
            "analysis_rows": int(sample.shape[0]),
            "mean_row_norm": now.mean,
            "std_row_norm": now.std,
            "max_row_norm": now.max,
            "near_identical_row_share": identical,
            "near_identical_sample_rows": identical_rows,
            "norm_by_popularity": buckets,
            "norm_popularity_ratio": norm_ratio,
            "saliency_top_rows": top_sal.tolist(),
            "autofix_damped_rows": 0 if damped_ever is None else int(damped_ever.sum()),
        }
    )
    samples = {
        "zombie": z_ids[z_order][:32].tolist(),
        "dead": torch.nonzero(unexposed).reshape(-1)[:32].tolist(),
        "frozen": torch.nonzero(verdicts.frozen).reshape(-1)[:32].tolist(),
    }
    if damped_ever is not None:
        samples["autofix"] = torch.nonzero(damped_ever).reshape(-1)[:32].tolist()
    return out, samples


def row_columns(state: RowState, verdicts: RowVerdicts) -> dict[str, np.ndarray]:
    """Per-row columns as NumPy arrays (``(N,)`` each; see ``EmbeddingTracker.row_stats``)."""
    n_agree = state.col("n_agree").to(torch.int64)
    n_disagree = state.col("n_disagree").to(torch.int64)
    pairs = n_agree + n_disagree
    rate = torch.where(pairs > 0, n_disagree.double() / pairs.clamp_min(1), 0.0)

    def np_of(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().copy()

    return {
        "exposure": np_of(state.col("exposure").to(torch.int64)),
        "last_seen": np_of(state.col("last_seen").to(torch.int64)),
        "velocity_ema": np_of(state.col("velocity_ema")),
        "grad_norm_ema": np_of(state.col("grad_norm_ema")),
        "grad_norm_peak": np_of(state.col("grad_norm_peak")),
        "cos_ema": np_of(state.col("cos_ema")),
        "n_pairs": np_of(pairs),
        "disagree_rate": np_of(rate.float()),
        "zombie": np_of(verdicts.zombie),
    }
