"""``RankingResult``: per-user metric arrays first, means second, with the protocol named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradtracer.recsys.metrics._table import format_table

__all__ = ["FULL_RANKING", "RankingResult", "sampled_protocol"]

#: ``protocol`` of :func:`evaluate_topk`: every item in the catalogue is ranked.
FULL_RANKING = "full ranking"


def sampled_protocol(n_negatives: int) -> str:
    """Protocol label of sampled evaluation, e.g. ``"sampled (100 negatives)"``."""
    return f"sampled ({n_negatives} negatives)"


@dataclass(frozen=True)
class RankingResult:
    """Top-K ranking metrics of one model on one test set.

    Attributes:
        mean: ``{"ndcg@10": mean over evaluated users, ...}``.
        per_user: ``{"ndcg@10": (n_evaluated,) float64 array}`` aligned with ``users``.
        users: ``(n_evaluated,)`` int64 indices of the evaluated users (ascending).
        n_skipped: users in the test matrix without any held-out item; they are not
            evaluated and not averaged in.
        coverage: ``{"coverage@10": fraction of the catalogue in at least one top-10 list}``.
        ks: the cutoffs.
        ties: tie policy used (see :mod:`gradtracer.recsys.metrics.ties`).
        protocol: ``"full ranking"`` or ``"sampled (N negatives)"``.
        n_items: catalogue size ranked against (full ranking) or sampled from.
    """

    mean: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    n_skipped: int
    coverage: dict[str, float]
    ks: tuple[int, ...]
    ties: str
    protocol: str = FULL_RANKING
    n_items: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        """Number of evaluated users (those with at least one held-out item)."""
        return int(self.users.shape[0])

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """JSON-safe dict; per-user arrays included (as lists) only when ``per_user=True``."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "ties": self.ties,
            "ks": list(self.ks),
            "n_users": self.n_users,
            "n_skipped": self.n_skipped,
            "n_items": self.n_items,
            "mean": {k: float(v) for k, v in sorted(self.mean.items())},
            "coverage": {k: float(v) for k, v in sorted(self.coverage.items())},
            "metadata": dict(self.metadata),
        }
        if per_user:
            out["users"] = self.users.tolist()
            out["per_user"] = {k: v.tolist() for k, v in sorted(self.per_user.items())}
        return out

    def __str__(self) -> str:
        rows = [[k, v] for k, v in self.mean.items()]
        rows += [[k, v] for k, v in self.coverage.items()]
        title = (
            f"{self.protocol} | {self.n_users} users evaluated, {self.n_skipped} skipped "
            f"(no held-out item) | ties={self.ties}"
        )
        return format_table(["metric", "value"], rows, title=title)
