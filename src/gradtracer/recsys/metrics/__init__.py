"""Recommender evaluation: full-ranking top-K metrics, single-target ranks, rating errors.

Per-user arrays first, means second, ``@k`` in every key (``"ndcg@10"``). Ties between
equal scores are handled explicitly (:mod:`~gradtracer.recsys.metrics.ties`).
"""

from gradtracer.recsys.metrics.functional import (
    METRICS,
    average_precision_at_k,
    hit_rate_at_k,
    metrics_from_hits,
    metrics_from_positions,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)
from gradtracer.recsys.metrics.ranks import metrics_from_ranks, target_ranks
from gradtracer.recsys.metrics.rating import mae, rmse
from gradtracer.recsys.metrics.result import FULL_RANKING, RankingResult, sampled_protocol
from gradtracer.recsys.metrics.sampled import evaluate_sampled
from gradtracer.recsys.metrics.ties import TIES
from gradtracer.recsys.metrics.topk import evaluate_topk, tied_topk_hits

__all__ = [
    "FULL_RANKING",
    "METRICS",
    "TIES",
    "RankingResult",
    "average_precision_at_k",
    "evaluate_sampled",
    "evaluate_topk",
    "hit_rate_at_k",
    "mae",
    "metrics_from_hits",
    "metrics_from_positions",
    "metrics_from_ranks",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
    "sampled_protocol",
    "target_ranks",
    "tied_topk_hits",
]
