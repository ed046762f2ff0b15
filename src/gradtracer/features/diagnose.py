"""Pure detectors of the feature analysis: one ``detect_*`` per finding type.

Each takes what :class:`~gradtracer.features.analyzer.FeatureAnalyzer` measured (the
column screen, a VIF drop, an interaction test) and returns ``Finding | None``; the texts
come from :data:`gradtracer.report.catalog.CATALOG`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradtracer.features.interactions import InteractionTest
from gradtracer.features.screening import ColumnScreen
from gradtracer.features.vif import CollinearDrop
from gradtracer.findings import Finding, FindingType, Severity
from gradtracer.report.catalog import make_finding

__all__ = [
    "detect_collinear_feature",
    "detect_constant_features",
    "detect_feature_interaction",
    "detect_missing_values",
]


def detect_missing_values(
    screen: ColumnScreen, names: Sequence[str], n_rows: int, n_rows_used: int, *, subject: str
) -> Finding | None:
    """MISSING_VALUES when any column or the target had NaN/inf; a warning when columns or
    rows were dropped for it, else info."""
    missing = [int(i) for i in np.flatnonzero(screen.missing_fraction)]
    if not missing and not screen.target_missing:
        return None
    dropped = [names[i] for i in screen.dropped_missing]
    lost = n_rows - n_rows_used
    parts = [f"{names[i]} {screen.missing_fraction[i]:.1%}" for i in missing]
    if screen.target_missing:
        parts.append(f"target {screen.target_missing} rows")
    return make_finding(
        FindingType.MISSING_VALUES,
        severity=Severity.WARNING if dropped or lost else Severity.INFO,
        subject=subject,
        premise=(
            f"NaN/inf values in {', '.join(parts)}; dropped columns {dropped} "
            f"and {lost} of {n_rows} incomplete rows."
        ),
        confidence=1.0,
        evidence={
            **{f"missing_fraction/{names[i]}": float(screen.missing_fraction[i]) for i in missing},
            "target_missing": screen.target_missing,
            "rows_dropped": lost,
        },
        sample_ids=tuple(names[i] for i in missing),
    )


def detect_constant_features(
    screen: ColumnScreen, names: Sequence[str], *, subject: str
) -> Finding | None:
    """CONSTANT_FEATURE when the screen found constant columns (one finding for all)."""
    if not screen.constant:
        return None
    constant = [names[i] for i in screen.constant]
    return make_finding(
        FindingType.CONSTANT_FEATURE,
        subject=subject,
        premise=f"{len(constant)} constant column(s): {', '.join(constant)}.",
        confidence=1.0,
        evidence={"n_constant": len(constant)},
        sample_ids=tuple(constant),
    )


def detect_collinear_feature(drop: CollinearDrop, threshold: float, *, subject: str) -> Finding:
    """COLLINEAR_FEATURES for one column the VIF filter dropped (VIF above ``threshold``)."""
    return make_finding(
        FindingType.COLLINEAR_FEATURES,
        subject=subject,
        premise=(
            f"{drop.feature!r} has VIF {drop.vif:.3g} > {threshold:g}"
            f" (correlation {drop.correlation:+.3f} with {drop.partner!r})."
        ),
        confidence=float(min(0.99, 1.0 - threshold / drop.vif / 2)),
        evidence={
            "vif": drop.vif,
            "partner": drop.partner,
            "correlation": drop.correlation,
            "threshold": threshold,
        },
        sample_ids=(drop.feature, drop.partner),
    )


def detect_feature_interaction(test: InteractionTest, n_pairs: int, *, subject: str) -> Finding:
    """FEATURE_INTERACTION for one significant pair (the analyzer selects the pairs)."""
    return make_finding(
        FindingType.FEATURE_INTERACTION,
        subject=subject,
        premise=(
            f"Adding {test.name} raises adjusted R^2 by {test.delta_adj_r2:.4f} "
            f"(F = {test.f_stat:.3g}, BH q = {test.q_value:.2g} over {n_pairs} pairs)."
        ),
        confidence=float(min(0.99, max(0.0, 1.0 - test.q_value))),
        evidence={
            "f_stat": test.f_stat,
            "p_value": test.p_value,
            "q_value": test.q_value,
            "delta_adj_r2": test.delta_adj_r2,
            "adj_r2_base": test.adj_r2_base,
            "n_pairs_tested": n_pairs,
        },
        sample_ids=(test.feature_a, test.feature_b),
        delta_adj_r2=test.delta_adj_r2,
    )
