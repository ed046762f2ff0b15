"""Settings of a model-based CF fit and the constants the pipeline shares."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from gradtracer.recsys.models.svd import SOLVERS

__all__ = ["ALL_SOLVERS", "DEFAULT_GRID", "DEFAULT_KS", "RANKING_METRICS", "CFConfig"]

#: Cutoffs of the ranking metrics.
DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
#: ``n_factors`` grid of :func:`~gradtracer.recsys.cf.tune_n_factors` (the reference notebook's).
DEFAULT_GRID: tuple[int, ...] = (10, 20, 30, 50, 75, 100)
#: Ranking metrics :func:`~gradtracer.recsys.cf.evaluate` reports.
RANKING_METRICS: tuple[str, ...] = ("recall", "ndcg", "map")
#: ``CFConfig.solver`` values: the SVD backends and implicit ALS.
ALL_SOLVERS: tuple[str, ...] = (*SOLVERS, "als")


@dataclass
class CFConfig:
    """Settings of one model-based CF fit (the CLI fills the same fields)."""

    n_factors: int = 50  # latent dimensions; clamped with a warning to min(n_users, n_items) - 1
    solver: str = "sklearn"  # "sklearn" TruncatedSVD | "scipy" svds | "als" implicit ALS
    center: bool = True  # SVD: subtract each user's observed mean rating (added back to predict)
    n_iter: int = 5  # SVD "sklearn": randomized power iterations
    regularization: float = 0.01  # ALS: L2 penalty
    alpha: float = 1.0  # ALS: confidence scale
    iterations: int = 15  # ALS: sweeps
    use_ratings: bool = False  # ALS: ratings as confidences instead of ones
    num_threads: int = 1  # ALS: implicit's CPU threads
    rating_scale: tuple[float, float] | None = (
        None  # clip range of predictions; None: train min/max
    )
    random_state: int = 0  # seed of the randomized solvers

    def __post_init__(self) -> None:
        if self.solver not in ALL_SOLVERS:
            raise ValueError(f"solver must be one of {ALL_SOLVERS}, got {self.solver!r}")
        if int(self.n_factors) < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if self.rating_scale is not None:
            lo, hi = (float(x) for x in self.rating_scale)
            if not lo <= hi:
                raise ValueError(
                    f"rating_scale must be (low, high) with low <= high, got {self.rating_scale}"
                )
            self.rating_scale = (lo, hi)

    @property
    def is_rating_model(self) -> bool:
        """True for SVD (predicts ratings); False for ALS (predicts preferences)."""
        return self.solver != "als"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        out = asdict(self)
        out["rating_scale"] = None if self.rating_scale is None else list(self.rating_scale)
        return out

    def to_json(self) -> str:
        """The config as JSON text (sorted keys); :meth:`to_dict` gives the dict."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, data: str | dict[str, Any]) -> CFConfig:
        """Read :meth:`to_json` text (a dict is accepted too, as :meth:`from_dict`)."""
        return cls.from_dict(json.loads(data) if isinstance(data, str) else data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CFConfig:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CFConfig field(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(data)
        if kwargs.get("rating_scale") is not None:
            kwargs["rating_scale"] = tuple(kwargs["rating_scale"])
        return cls(**kwargs)
