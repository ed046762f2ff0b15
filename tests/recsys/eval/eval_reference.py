"""A naive per-user Python reference evaluator the vectorised one is checked against."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp


def naive_user_metrics(
    scores: np.ndarray, relevant: set[int], excluded: set[int], k: int, ties: str
) -> dict[str, float]:
    """Rank one user's items with a Python sort and compute every metric by its definition.

    Tie policy: conservative puts relevant items after non-relevant ones of equal score,
    optimistic before them.
    """
    items = [i for i in range(len(scores)) if i not in excluded or i in relevant]
    masked = [i for i in range(len(scores)) if i in excluded and i not in relevant]
    if ties == "conservative":
        order = sorted(items, key=lambda i: (-scores[i], i in relevant, i))
    else:
        order = sorted(items, key=lambda i: (-scores[i], i not in relevant, i))
    order += masked  # excluded items at -inf, never relevant
    top = order[:k]
    rel = [1.0 if i in relevant else 0.0 for i in top]
    n_rel = len(relevant)
    dcg = sum(r / math.log2(p + 2) for p, r in enumerate(rel))
    idcg = sum(1 / math.log2(p + 2) for p in range(min(n_rel, k)))
    ap, hits = 0.0, 0
    for p, r in enumerate(rel):
        if r:
            hits += 1
            ap += hits / (p + 1)
    first = next((p for p, r in enumerate(rel) if r), None)
    return {
        f"hr@{k}": float(sum(rel) > 0),
        f"recall@{k}": sum(rel) / n_rel,
        f"precision@{k}": sum(rel) / k,
        f"ndcg@{k}": dcg / idcg,
        f"map@{k}": ap / min(n_rel, k),
        f"mrr@{k}": 0.0 if first is None else 1.0 / (first + 1),
    }


def random_csr(rng: np.random.Generator, shape: tuple[int, int], density: float) -> sp.csr_matrix:
    mask = rng.random(shape) < density
    return sp.csr_matrix(mask.astype(np.float32))
