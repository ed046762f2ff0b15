"""FeatureAnalyzer end to end: planted structure, bad input, and scikit-learn's diabetes data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from gradtracer.features import FeatureAnalyzer, FeatureAnalyzerConfig
from gradtracer.findings import FindingType, Report


def planted(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """x5 ~ x0 (collinear), y has the interaction x1*x2 and nothing else multiplicative."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 5] = x[:, 0] + 0.05 * rng.normal(size=n)
    y = x[:, 0] + x[:, 3] + 1.0 * x[:, 1] * x[:, 2] + rng.normal(size=n)
    return x, y, ["age", "price", "discount", "rating", "clicks", "age_copy"]


def by_type(findings, kind: FindingType):
    return [f for f in findings if f.type == kind.value]


def test_planted_interaction_recovered_and_collinearity_flagged(seed: int) -> None:
    x, y, names = planted(seed)
    fa = FeatureAnalyzer().fit(x, y, feature_names=names)
    findings = fa.findings()
    (inter,) = by_type(findings, FindingType.FEATURE_INTERACTION)
    assert set(inter.sample_ids) == {"price", "discount"}
    # the planted product term is strong: far below any usual FDR level, among C(5, 2) pairs
    assert inter.evidence["q_value"] < 1e-6 and inter.evidence["n_pairs_tested"] == 10
    (col,) = by_type(findings, FindingType.COLLINEAR_FEATURES)
    assert set(col.sample_ids) == {"age", "age_copy"}
    assert col.evidence["vif"] > 10  # above the default vif_threshold that dropped it
    assert fa.summary()["collinear_dropped"] in (["age"], ["age_copy"])


def test_no_interaction_no_suggestion(seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(400, 6))
    y = x @ np.arange(1.0, 7.0) + rng.normal(size=400)
    fa = FeatureAnalyzer().fit(x, y)
    assert fa.summary()["n_pairs_tested"] == 15
    assert by_type(fa.findings(), FindingType.FEATURE_INTERACTION) == []


def test_constant_and_missing_columns(seed: int) -> None:
    x, y, names = planted(seed)
    x = np.column_stack([x, np.full(len(y), 3.0), np.full(len(y), np.nan)])
    x[:25, 3] = np.nan  # 5% missing in "rating"
    names = [*names, "const", "empty"]
    fa = FeatureAnalyzer().fit(x, y, feature_names=names)
    findings = fa.findings()
    (const,) = by_type(findings, FindingType.CONSTANT_FEATURE)
    assert const.sample_ids == ("const",)
    (missing,) = by_type(findings, FindingType.MISSING_VALUES)
    assert set(missing.sample_ids) == {"rating", "empty"}
    assert missing.evidence["missing_fraction/rating"] == pytest.approx(0.05)
    assert missing.evidence["rows_dropped"] == 25
    s = fa.summary()
    assert s["n_rows_used"] == len(y) - 25 and s["dropped_missing"] == ["empty"]
    assert "const" not in s["kept_features"] and "empty" not in s["kept_features"]
    assert by_type(findings, FindingType.FEATURE_INTERACTION)  # still recovered


def test_missing_target_rows_are_dropped(seed: int) -> None:
    x, y, names = planted(seed)
    y = y.copy()
    y[:10] = np.nan
    fa = FeatureAnalyzer().fit(x, y, feature_names=names)
    (missing,) = by_type(fa.findings(), FindingType.MISSING_VALUES)
    assert missing.evidence["target_missing"] == 10 and fa.n_rows_used_ == len(y) - 10


def test_bad_input_errors_say_what_is_wrong() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="12 usable rows .* 30 features"):
        FeatureAnalyzer().fit(rng.normal(size=(12, 30)), rng.normal(size=12))
    with pytest.raises(ValueError, match="X has 10 rows but y has 9"):
        FeatureAnalyzer().fit(rng.normal(size=(10, 2)), rng.normal(size=9))
    with pytest.raises(ValueError, match="2-D"):
        FeatureAnalyzer().fit(rng.normal(size=10), rng.normal(size=10))
    with pytest.raises(ValueError, match="no usable feature"):
        FeatureAnalyzer().fit(np.ones((10, 2)), rng.normal(size=10))
    with pytest.raises(ValueError, match="constant"):
        FeatureAnalyzer().fit(rng.normal(size=(30, 2)), np.ones(30))
    frame = pd.DataFrame({"a": rng.normal(size=5), "city": list("abcde")})
    with pytest.raises(TypeError, match="'city'"):
        FeatureAnalyzer().fit(frame, rng.normal(size=5))
    with pytest.raises(ValueError, match="2 feature names for 3 columns"):
        FeatureAnalyzer().fit(rng.normal(size=(10, 3)), rng.normal(size=10), ["a", "b"])
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureAnalyzer().findings()
    with pytest.raises(ValueError, match="alpha"):
        FeatureAnalyzer(alpha=1.5)


def test_frames_and_config(seed: int) -> None:
    x, y, names = planted(seed)
    frame = pl.DataFrame({n: x[:, i] for i, n in enumerate(names)})
    fa = FeatureAnalyzer(config=FeatureAnalyzerConfig(vif_threshold=1000.0)).fit(frame, y)
    assert fa.feature_names_ == names
    assert fa.summary()["collinear_dropped"] == []  # VIF ~400 stays under 1000
    assert FeatureAnalyzer(max_suggestions=0).fit(x, y).suggestions() == []


def test_diabetes_real_data() -> None:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True)
    fa = FeatureAnalyzer(name="diabetes").fit(data.data, data.target)
    s = fa.summary()
    assert s["n_rows"] == 442 and s["n_features"] == 10
    # s1 (total cholesterol) and s2 (LDL) are strongly collinear in this data set
    collinear = by_type(fa.findings(), FindingType.COLLINEAR_FEATURES)
    assert collinear and {"s1", "s2"} & set(collinear[0].sample_ids) == {"s1", "s2"}
    assert s["n_pairs_tested"] == len(s["kept_features"]) * (len(s["kept_features"]) - 1) // 2
    for f in by_type(fa.findings(), FindingType.FEATURE_INTERACTION):
        assert f.evidence["q_value"] <= 0.05 and f.evidence["delta_adj_r2"] > 0
    report = fa.to_report()
    assert report.kind == "features"
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert len(back.findings) == len(report.findings)
    assert "diabetes" in fa.report()
