"""Variance inflation factors and iterative VIF filtering (statsmodels' auxiliary regressions)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CollinearDrop", "VifFilterResult", "compute_vif", "filter_by_vif"]


def _gram_factor(x: np.ndarray) -> np.ndarray:
    """Return R (p, p) with R^T R = Z^T Z for the standardised columns Z of ``x`` (n, p)."""
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    r: np.ndarray = np.linalg.qr(z, mode="r")  # type: ignore[assignment]  # mode="r" returns R only
    return r


def compute_vif(x: np.ndarray) -> np.ndarray:
    """Return the (p,) variance inflation factors of the columns of ``x`` (n, p).

    VIF_i = 1 / (1 - R_i^2), R_i^2 from regressing standardised column i on the others
    (O'Brien 2007). The regressions are statsmodels' ``variance_inflation_factor`` run
    on the (p, p) triangular factor R of the standardised matrix, which has the same
    cross-products as the data (so the same R_i^2) at a cost independent of n.
    Perfectly collinear columns get VIF ~1e15. Columns must be non-constant.
    """
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    if x.shape[1] < 2:
        return np.ones(x.shape[1])
    r = _gram_factor(x)
    with warnings.catch_warnings():  # collinearity is what we are measuring, not a problem
        warnings.simplefilter("ignore")
        return np.asarray(
            [variance_inflation_factor(r, i, standardize=False) for i in range(x.shape[1])]
        )


@dataclass(frozen=True)
class CollinearDrop:
    """One column removed by :func:`filter_by_vif`, with its VIF and closest partner."""

    feature: str
    vif: float
    partner: str
    correlation: float


@dataclass(frozen=True)
class VifFilterResult:
    """Columns kept (input order) and dropped (drop order), plus the final VIFs of the kept."""

    kept: tuple[int, ...]
    dropped: tuple[CollinearDrop, ...]
    vif: np.ndarray


def filter_by_vif(
    x: np.ndarray, names: Sequence[str], *, threshold: float = 10.0
) -> VifFilterResult:
    """Drop the column with the largest VIF while it exceeds ``threshold``; return what is left.

    ``threshold`` 10 is the usual rule of thumb (Kutner et al., Applied Linear Statistical
    Models); 5 is stricter.
    """
    if threshold <= 1.0:
        raise ValueError(f"threshold must be > 1 (a VIF is always >= 1), got {threshold!r}")
    kept = list(range(x.shape[1]))
    dropped: list[CollinearDrop] = []
    vif = compute_vif(x[:, kept])
    while len(kept) > 1 and np.max(vif) > threshold:
        worst = int(np.argmax(vif))
        col = kept[worst]
        others = [k for k in kept if k != col]
        corr = np.corrcoef(x[:, [col, *others]], rowvar=False)[0, 1:]
        partner = int(np.argmax(np.abs(corr)))
        dropped.append(
            CollinearDrop(
                names[col], float(vif[worst]), names[others[partner]], float(corr[partner])
            )
        )
        kept = others
        vif = compute_vif(x[:, kept])
    return VifFilterResult(kept=tuple(kept), dropped=tuple(dropped), vif=vif)
