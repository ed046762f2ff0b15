"""FeatureAnalyzer: screen a feature matrix, filter collinear columns, suggest interactions.

Pipeline of :meth:`FeatureAnalyzer.fit`:

1. screen columns: NaN/inf (MISSING_VALUES; columns above ``max_missing`` are dropped,
   then incomplete rows) and constant columns (CONSTANT_FEATURE, dropped);
2. iterative VIF filtering (COLLINEAR_FEATURES for each dropped column);
3. every pair of the remaining columns is tested as a product term with a nested-model
   F-test; Benjamini-Hochberg over all pairs tried; pairs with q <= ``alpha`` become
   FEATURE_INTERACTION findings, ranked by F (equivalently by adjusted-R^2 gain).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradtracer.features.diagnose import (
    detect_collinear_feature,
    detect_constant_features,
    detect_feature_interaction,
    detect_missing_values,
)
from gradtracer.features.interactions import InteractionTest, rank_interactions
from gradtracer.features.screening import ColumnScreen, as_matrix, screen_columns
from gradtracer.features.vif import VifFilterResult, filter_by_vif
from gradtracer.findings import Finding, Report
from gradtracer.report.text import ReportText, report_text

__all__ = ["FeatureAnalyzer", "FeatureAnalyzerConfig"]


@dataclass(frozen=True)
class FeatureAnalyzerConfig:
    """Settings of :class:`FeatureAnalyzer` (defaults in comments).

    Attributes:
        vif_threshold: drop columns while the largest VIF exceeds this (10.0).
        alpha: false discovery rate for interaction suggestions (0.05).
        max_missing: drop a column whose NaN/inf fraction exceeds this (0.5); below it,
            incomplete rows are dropped instead.
        max_suggestions: at most this many FEATURE_INTERACTION findings (10).
        min_delta_adj_r2: ignore significant pairs gaining less adjusted R^2 (0.0).
    """

    vif_threshold: float = 10.0
    alpha: float = 0.05
    max_missing: float = 0.5
    max_suggestions: int = 10
    min_delta_adj_r2: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not 0.0 <= self.max_missing < 1.0:
            raise ValueError(f"max_missing must be in [0, 1), got {self.max_missing!r}")
        if self.vif_threshold <= 1.0:
            raise ValueError(f"vif_threshold must be > 1, got {self.vif_threshold!r}")
        if self.max_suggestions < 0:
            raise ValueError(f"max_suggestions must be >= 0, got {self.max_suggestions!r}")


class FeatureAnalyzer:
    """VIF-filtered interaction suggestions for a tabular regression problem.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 4))
        >>> y = X[:, 0] + 2 * X[:, 1] * X[:, 2] + rng.normal(size=500)
        >>> fa = FeatureAnalyzer().fit(X, y, feature_names=["a", "b", "c", "d"])
        >>> fa.interactions_[0].name
        'b*c'

    Args:
        name: subject of the report (default ``"features"``).
        config: :class:`FeatureAnalyzerConfig`; keyword overrides of its fields are
            accepted too (``FeatureAnalyzer(alpha=0.01)``).
    """

    def __init__(
        self, name: str = "features", config: FeatureAnalyzerConfig | None = None, **overrides: Any
    ) -> None:
        base = config or FeatureAnalyzerConfig()
        self.config = FeatureAnalyzerConfig(**{**base.__dict__, **overrides})
        self.name = name
        self.feature_names_: list[str] = []
        self.screen_: ColumnScreen | None = None
        self.vif_: VifFilterResult | None = None
        self.kept_: list[str] = []
        self.interactions_: list[InteractionTest] = []
        self.n_rows_: int = 0
        self.n_rows_used_: int = 0

    def fit(self, x: Any, y: Any, feature_names: Sequence[str] | None = None) -> FeatureAnalyzer:
        """Analyse ``x`` (n_rows, n_features) array or pandas/polars frame against ``y``; return self.

        Raises:
            TypeError: a non-numeric column.
            ValueError: shapes disagree, fewer usable rows than features + 3 after
                screening, no usable feature, or a constant target.
        """
        arr, names = as_matrix(x, feature_names)
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        if target.shape[0] != arr.shape[0]:
            raise ValueError(f"X has {arr.shape[0]} rows but y has {target.shape[0]} values")
        self.feature_names_ = names
        self.n_rows_ = arr.shape[0]
        screen = screen_columns(arr, target, max_missing=self.config.max_missing)
        self.screen_ = screen
        rows = screen.row_mask
        self.n_rows_used_ = int(rows.sum())
        if not screen.kept:
            raise ValueError(
                f"no usable feature among {len(names)}: "
                f"{len(screen.constant)} constant, {len(screen.dropped_missing)} mostly missing"
            )
        kept_cols = list(screen.kept)
        if self.n_rows_used_ < len(kept_cols) + 3:
            raise ValueError(
                f"X has {self.n_rows_used_} usable rows (of {self.n_rows_}) for "
                f"{len(kept_cols)} features: OLS-based VIF and F-tests need at least "
                f"n_features + 3 = {len(kept_cols) + 3} rows; select features first or add rows"
            )
        sub = arr[np.ix_(rows, np.asarray(kept_cols, dtype=np.intp))]
        vif = filter_by_vif(sub, [names[i] for i in kept_cols], threshold=self.config.vif_threshold)
        self.vif_ = vif
        self.kept_ = [names[kept_cols[i]] for i in vif.kept]
        self.interactions_ = rank_interactions(sub[:, list(vif.kept)], target[rows], self.kept_)
        return self

    def _check_fitted(self) -> tuple[ColumnScreen, VifFilterResult]:
        if self.screen_ is None or self.vif_ is None:
            raise RuntimeError("FeatureAnalyzer is not fitted: call fit(X, y) first")
        return self.screen_, self.vif_

    def suggestions(self) -> list[InteractionTest]:
        """Return the significant pairs (q <= alpha, gain >= min_delta_adj_r2), strongest first."""
        self._check_fitted()
        cfg = self.config
        return [
            t
            for t in self.interactions_
            if t.q_value <= cfg.alpha and t.delta_adj_r2 >= cfg.min_delta_adj_r2
        ][: cfg.max_suggestions]

    def summary(self) -> dict[str, Any]:
        """Return JSON-safe summary statistics of the last :meth:`fit`."""
        screen, vif = self._check_fitted()
        names = self.feature_names_
        return {
            "n_rows": self.n_rows_,
            "n_rows_used": self.n_rows_used_,
            "n_features": len(names),
            "target_missing": screen.target_missing,
            "missing_features": [names[i] for i in np.flatnonzero(screen.missing_fraction)],
            "dropped_missing": [names[i] for i in screen.dropped_missing],
            "constant_features": [names[i] for i in screen.constant],
            "collinear_dropped": [d.feature for d in vif.dropped],
            "kept_features": list(self.kept_),
            "vif": {n: float(v) for n, v in zip(self.kept_, vif.vif, strict=True)},
            "n_pairs_tested": len(self.interactions_),
            "n_significant": len([t for t in self.interactions_ if t.q_value <= self.config.alpha]),
            "adj_r2_base": self.interactions_[0].adj_r2_base if self.interactions_ else None,
            "top_interactions": [
                {
                    "pair": t.name,
                    "f_stat": t.f_stat,
                    "p_value": t.p_value,
                    "q_value": t.q_value,
                    "delta_adj_r2": t.delta_adj_r2,
                }
                for t in self.interactions_[:10]
            ],
        }

    def findings(self) -> list[Finding]:
        """Return MISSING_VALUES, CONSTANT_FEATURE, COLLINEAR_FEATURES and FEATURE_INTERACTION."""
        screen, vif = self._check_fitted()
        names, subject = self.feature_names_, self.name
        found = [
            detect_missing_values(screen, names, self.n_rows_, self.n_rows_used_, subject=subject),
            detect_constant_features(screen, names, subject=subject),
        ]
        found += [
            detect_collinear_feature(d, self.config.vif_threshold, subject=subject)
            for d in vif.dropped
        ]
        n_pairs = len(self.interactions_)
        found += [
            detect_feature_interaction(t, n_pairs, subject=subject) for t in self.suggestions()
        ]
        return [f for f in found if f is not None]

    def to_report(self) -> Report:
        """Return the :class:`~gradtracer.findings.Report` (kind ``"features"``)."""
        return Report(
            kind="features",
            subject=self.name,
            stats=self.summary(),
            findings=self.findings(),
            metadata={"config": dict(self.config.__dict__)},
        )

    def report(self) -> ReportText:
        """Return the readable report (:func:`gradtracer.report.text.render_text` of
        :meth:`to_report`); it does not print."""
        return report_text(self)
