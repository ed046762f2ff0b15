"""Recommender data: loaders, preprocessing, splits, synthetic generators and downloads.

Every loader returns an :class:`Interactions` (a polars frame with dense ``user``/``item``
ids, ``rating``, ``timestamp`` in seconds and, for session logs, ``session``).
"""

from gradtracer.recsys.data.amazon import load_amazon
from gradtracer.recsys.data.download import (
    DATASETS,
    ChecksumError,
    DatasetSpec,
    DownloadError,
    default_cache_dir,
    download_dataset,
)
from gradtracer.recsys.data.formats import FORMATS, describe, detect_format, load_interactions
from gradtracer.recsys.data.interactions import IdMap, Interactions, concat, encode_ids
from gradtracer.recsys.data.movielens import load_movielens
from gradtracer.recsys.data.preprocess import compact, deduplicate, k_core, to_implicit
from gradtracer.recsys.data.sessions import SESSION_FORMATS, load_sessions, sessionize
from gradtracer.recsys.data.splits import Split, leave_one_out, ratio_split, temporal_split
from gradtracer.recsys.data.synthetic import make_implicit, make_sessions

__all__ = [
    "DATASETS",
    "FORMATS",
    "SESSION_FORMATS",
    "ChecksumError",
    "DatasetSpec",
    "DownloadError",
    "IdMap",
    "Interactions",
    "Split",
    "compact",
    "concat",
    "deduplicate",
    "default_cache_dir",
    "describe",
    "detect_format",
    "download_dataset",
    "encode_ids",
    "k_core",
    "leave_one_out",
    "load_amazon",
    "load_interactions",
    "load_movielens",
    "load_sessions",
    "make_implicit",
    "make_sessions",
    "ratio_split",
    "sessionize",
    "temporal_split",
    "to_implicit",
]
