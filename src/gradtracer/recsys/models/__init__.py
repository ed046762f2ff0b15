"""Recommender models sharing one interface (fit / score / recommend / scorer / save / load)."""

from gradtracer.recsys.models.base import Recommender, recommend_from_scores
from gradtracer.recsys.models.mf import ImplicitMF, MFTrainConfig, train_mf
from gradtracer.recsys.models.popularity import PopularityRecommender

__all__ = [
    "ImplicitMF",
    "MFTrainConfig",
    "PopularityRecommender",
    "Recommender",
    "recommend_from_scores",
    "train_mf",
]
