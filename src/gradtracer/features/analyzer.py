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

from gradtracer.features.interactions import InteractionTest, rank_interactions
from gradtracer.features.screening import ColumnScreen, as_matrix, screen_columns
from gradtracer.features.vif import VifFilterResult, filter_by_vif
from gradtracer.findings import Finding, FindingType, Report, Severity

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
        sub = arr[np.ix_(rows, kept_cols)]
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
        names = self.feature_names_
        out: list[Finding] = []
        missing = np.flatnonzero(screen.missing_fraction)
        if missing.size or screen.target_missing:
            dropped = [names[i] for i in screen.dropped_missing]
            lost = self.n_rows_ - self.n_rows_used_
            parts = [f"{names[i]} {screen.missing_fraction[i]:.1%}" for i in missing]
            if screen.target_missing:
                parts.append(f"target {screen.target_missing} rows")
            out.append(
                Finding(
                    type=FindingType.MISSING_VALUES,
                    severity=Severity.WARNING if dropped or lost else Severity.INFO,
                    subject=self.name,
                    premise=(
                        f"NaN/inf values in {', '.join(parts)}; dropped columns {dropped} "
                        f"and {lost} of {self.n_rows_} incomplete rows."
                    ),
                    implies="The analysis ran on complete cases only, which can bias it "
                    "if values are not missing at random.",
                    action="IMPUTE_OR_ADD_MISSING_INDICATOR",
                    expected_effect="All rows and columns take part in the analysis.",
                    confidence=1.0,
                    evidence={
                        **{
                            f"missing_fraction/{names[i]}": float(screen.missing_fraction[i])
                            for i in missing
                        },
                        "target_missing": screen.target_missing,
                        "rows_dropped": lost,
                    },
                    sample_ids=tuple(names[i] for i in missing),
                )
            )
        if screen.constant:
            constant = [names[i] for i in screen.constant]
            out.append(
                Finding(
                    type=FindingType.CONSTANT_FEATURE,
                    severity=Severity.WARNING,
                    subject=self.name,
                    premise=f"{len(constant)} constant column(s): {', '.join(constant)}.",
                    implies="They carry no information and make linear models singular.",
                    action="DROP_CONSTANT_FEATURES",
                    expected_effect="Same model quality with fewer columns.",
                    confidence=1.0,
                    evidence={"n_constant": len(constant)},
                    sample_ids=tuple(constant),
                )
            )
        for drop in vif.dropped:
            out.append(
                Finding(
                    type=FindingType.COLLINEAR_FEATURES,
                    severity=Severity.WARNING,
                    subject=self.name,
                    premise=(
                        f"{drop.feature!r} has VIF {drop.vif:.3g} > {self.config.vif_threshold:g}"
                        f" (correlation {drop.correlation:+.3f} with {drop.partner!r})."
                    ),
                    implies="Its coefficient and importance are unstable and split with "
                    "its collinear partners.",
                    action="DROP_OR_COMBINE_COLLINEAR_FEATURE",
                    expected_effect="Stable coefficients and importances; fewer redundant columns.",
                    confidence=float(min(0.99, 1.0 - self.config.vif_threshold / drop.vif / 2)),
                    evidence={
                        "vif": drop.vif,
                        "partner": drop.partner,
                        "correlation": drop.correlation,
                        "threshold": self.config.vif_threshold,
                    },
                    sample_ids=(drop.feature, drop.partner),
                )
            )
        n_pairs = len(self.interactions_)
        for t in self.suggestions():
            out.append(
                Finding(
                    type=FindingType.FEATURE_INTERACTION,
                    severity=Severity.INFO,
                    subject=self.name,
                    premise=(
                        f"Adding {t.name} raises adjusted R^2 by {t.delta_adj_r2:.4f} "
                        f"(F = {t.f_stat:.3g}, BH q = {t.q_value:.2g} over {n_pairs} pairs)."
                    ),
                    implies="The effect of one feature depends on the other; a model "
                    "without the product misses it.",
                    action="ADD_INTERACTION_FEATURE",
                    expected_effect=f"About {t.delta_adj_r2:.4f} more adjusted R^2 in a "
                    "linear model; easier splits for trees.",
                    confidence=float(min(0.99, max(0.0, 1.0 - t.q_value))),
                    evidence={
                        "f_stat": t.f_stat,
                        "p_value": t.p_value,
                        "q_value": t.q_value,
                        "delta_adj_r2": t.delta_adj_r2,
                        "adj_r2_base": t.adj_r2_base,
                        "n_pairs_tested": n_pairs,
                    },
                    sample_ids=(t.feature_a, t.feature_b),
                )
            )
        return out

    def to_report(self) -> Report:
        """Return the :class:`~gradtracer.findings.Report` (kind ``"features"``)."""
        return Report(
            kind="features",
            subject=self.name,
            stats=self.summary(),
            findings=self.findings(),
            metadata={"config": dict(self.config.__dict__)},
        )

    def report(self) -> str:
        """Return a short human-readable text report."""
        s = self.summary()
        lines = [
            f"FeatureAnalyzer {self.name!r}: {s['n_features']} features, "
            f"{s['n_rows_used']}/{s['n_rows']} rows used; kept {len(s['kept_features'])}, "
            f"{s['n_pairs_tested']} pairs tested, {s['n_significant']} significant "
            f"(BH alpha {self.config.alpha:g})",
        ]
        for f in Report(
            kind="features", subject=self.name, findings=self.findings()
        ).sorted_findings():
            lines.append(f"  [{f.severity.value.upper()}] {f.type}: {f.premise}")
        return "\n".join(lines)
