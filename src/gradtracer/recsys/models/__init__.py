"""Recommender models sharing one interface (fit / score / recommend / scorer / save / load).

User-item models subclass :class:`UserItemRecommender`; every model kind is registered in
:mod:`~gradtracer.recsys.models.registry` and saved in the one artifact format of
:mod:`~gradtracer.recsys.models.artifact`, so :func:`load_model` reads any of them.
"""

from gradtracer.recsys.models.artifact import ArtifactError, read_artifact, write_artifact
from gradtracer.recsys.models.base import (
    RawIdRecommender,
    Recommendations,
    Recommender,
    UserItemRecommender,
    recommend_from_scores,
)
from gradtracer.recsys.models.mf import ImplicitMF, MFTrainConfig, train_mf
from gradtracer.recsys.models.popularity import PopularityRecommender
from gradtracer.recsys.models.registry import (
    available_models,
    load_model,
    model_class,
    register_model,
)

__all__ = [
    "ArtifactError",
    "ImplicitMF",
    "MFTrainConfig",
    "PopularityRecommender",
    "RawIdRecommender",
    "Recommendations",
    "Recommender",
    "UserItemRecommender",
    "available_models",
    "load_model",
    "model_class",
    "read_artifact",
    "recommend_from_scores",
    "register_model",
    "train_mf",
    "write_artifact",
]
