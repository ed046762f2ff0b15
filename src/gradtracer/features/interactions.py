"""Pairwise interaction screening: nested-model F-tests with Benjamini-Hochberg control.

For every pair (i, j) the base OLS model y ~ 1 + x_1 + ... + x_p is compared with the
same model plus the product x_i * x_j. Both fits share the base QR factorisation: the
product is orthogonalised against the base columns and the residual sum of squares
drops by (z_r . r_0)^2 / (z_r . z_r), so testing all pairs costs one matrix product per
batch of pairs instead of one regression per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

__all__ = ["InteractionTest", "adjusted_r2", "benjamini_hochberg", "rank_interactions"]


@dataclass(frozen=True)
class InteractionTest:
    """The nested-model test of one product term ``feature_a * feature_b``.

    Attributes:
        f_stat: F statistic on (1, n - p - 2) degrees of freedom.
        p_value: P(F >= f_stat) under H0: the product's coefficient is 0.
        q_value: Benjamini-Hochberg adjusted p-value over all pairs tested.
        adj_r2_base: adjusted R^2 of the model without the product.
        delta_adj_r2: adjusted R^2 gained by adding the product.
    """

    feature_a: str
    feature_b: str
    f_stat: float
    p_value: float
    q_value: float
    adj_r2_base: float
    delta_adj_r2: float

    @property
    def name(self) -> str:
        """``"a*b"``."""
        return f"{self.feature_a}*{self.feature_b}"


def adjusted_r2(rss: float | np.ndarray, tss: float, n: int, k: int) -> float | np.ndarray:
    """Return adjusted R^2 of a model with ``k`` parameters (intercept included) on ``n`` rows."""
    return 1.0 - (rss / (n - k)) / (tss / (n - 1))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Return Benjamini-Hochberg (1995) adjusted p-values (q-values) for ``p_values`` (m,).

    Rejecting every hypothesis with q <= alpha controls the false discovery rate at alpha
    for independent or positively dependent tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.clip(q_sorted, 0.0, 1.0)
    return q


def rank_interactions(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    batch_size: int = 256,
) -> list[InteractionTest]:
    """Return one :class:`InteractionTest` per pair, strongest (largest F) first.

    Args:
        x: (n, p) features of the base model (already screened; p >= 1).
        y: (n,) target.
        names: (p,) feature names.
        pairs: column-index pairs to test (default: every pair i < j).
        batch_size: pairs orthogonalised per matrix product (memory: n * batch_size floats).

    Raises:
        ValueError: fewer than p + 3 rows (the full model would have no residual
            degrees of freedom) or a constant target.
    """
    from scipy import stats

    n, p = x.shape
    if n < p + 3:
        raise ValueError(
            f"interaction tests need at least n_features + 3 = {p + 3} rows, got {n} rows "
            f"for {p} features; remove features or add rows"
        )
    mean = x.mean(axis=0)
    xc = x - mean
    yc = y - y.mean()
    tss = float(yc @ yc)
    if tss <= 0:
        raise ValueError("the target y is constant: nothing to explain")
    base = np.column_stack([np.ones(n), xc])  # (n, p + 1)
    q, _ = np.linalg.qr(base)
    r0 = y - q @ (q.T @ y)
    rss0 = float(r0 @ r0)
    k_base = p + 1
    df2 = n - k_base - 1
    adj_base = float(adjusted_r2(rss0, tss, n, k_base))
    pairs = list(combinations(range(p), 2)) if pairs is None else list(pairs)
    rss1 = np.full(len(pairs), rss0)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        a = np.fromiter((i for i, _ in chunk), dtype=np.int64, count=len(chunk))
        b = np.fromiter((j for _, j in chunk), dtype=np.int64, count=len(chunk))
        z = xc[:, a] * xc[:, b]  # (n, B) centred products
        zr = z - q @ (q.T @ z)
        zz = np.einsum("ij,ij->j", zr, zr)
        zy = zr.T @ r0
        scale = np.einsum("ij,ij->j", z, z)
        ok = zz > 1e-10 * np.maximum(scale, 1e-300)  # product not already in the base span
        rss1[start : start + len(chunk)][ok] = rss0 - zy[ok] ** 2 / zz[ok]
    rss1 = np.maximum(rss1, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(rss1 > 0, (rss0 - rss1) / (rss1 / df2), np.inf)
    f = np.where(rss1 >= rss0, 0.0, f)
    pv = stats.f.sf(f, 1, df2)
    qv = benjamini_hochberg(pv)
    delta = np.asarray(adjusted_r2(rss1, tss, n, k_base + 1) - adj_base)
    results = [
        InteractionTest(
            names[i], names[j], float(f[t]), float(pv[t]), float(qv[t]), adj_base, float(delta[t])
        )
        for t, (i, j) in enumerate(pairs)
    ]
    return sorted(results, key=lambda r: (-r.f_stat, r.feature_a, r.feature_b))
