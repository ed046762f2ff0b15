from __future__ import annotations

import numpy as np
import pytest

from gradtracer.findings import FindingType, Severity
from gradtracer.trees import (
    TreeThresholds,
    detect_feature_dominance,
    detect_overfitting_onset,
    detect_tree_explosion,
    detect_tree_stagnation,
)
from gradtracer.trees.diagnose import is_higher_better

ROUNDS = np.arange(100)


def test_stagnation_found_with_start_round() -> None:
    leaf_std = np.where(ROUNDS < 40, 1.0, 1e-4)  # planted collapse at round 40
    f = detect_tree_stagnation(leaf_std, ROUNDS, subject="m")
    assert f is not None and f.type == FindingType.TREE_STAGNATION.value
    assert f.evidence["stagnation_round"] == 40 + TreeThresholds().window - 1
    assert f.evidence["leaf_std_ratio"] == pytest.approx(1e-4)


def test_no_stagnation_on_slow_decay_or_short_runs() -> None:
    assert detect_tree_stagnation(0.98**ROUNDS, ROUNDS, subject="m") is None
    assert detect_tree_stagnation(np.array([1.0, 0.0]), np.arange(2), subject="m") is None


def test_explosion_on_growth_and_on_nonfinite() -> None:
    growing = 1.5**ROUNDS
    f = detect_tree_explosion(growing, np.zeros(100), ROUNDS, subject="m")
    assert f is not None and f.type == FindingType.TREE_EXPLOSION.value
    assert f.evidence["peak_round"] == 99
    nonfinite = np.zeros(100)
    nonfinite[17] = 3
    f = detect_tree_explosion(np.ones(100), nonfinite, ROUNDS, subject="m")
    assert f is not None and f.severity == Severity.CRITICAL
    assert f.evidence["first_round"] == 17
    assert detect_tree_explosion(np.ones(100), np.zeros(100), ROUNDS, subject="m") is None


def test_feature_dominance_uses_gain_then_count() -> None:
    names = ["a", "b", "c"]
    counts = np.array([10, 10, 10])
    f = detect_feature_dominance(counts, np.array([90.0, 5.0, 5.0]), names, subject="m")
    assert f is not None and f.evidence["feature"] == "a" and f.evidence["share_by"] == "gain"
    assert f.evidence["share"] == pytest.approx(0.9)
    f = detect_feature_dominance(np.array([1, 8, 1]), None, names, subject="m")
    assert f is not None and f.evidence["feature"] == "b" and f.evidence["share_by"] == "count"
    assert detect_feature_dominance(counts, np.ones(3), names, subject="m") is None


def test_overfitting_onset_round_is_after_best() -> None:
    valid = np.concatenate([np.linspace(2.0, 1.0, 31), np.linspace(1.0, 1.5, 21)[1:]])
    train = np.linspace(2.0, 0.1, valid.size)
    f = detect_overfitting_onset(
        valid,
        np.arange(valid.size),
        subject="m",
        metric="valid/rmse",
        higher_is_better=False,
        train=train,
    )
    assert f is not None and f.type == FindingType.OVERFITTING_ONSET.value
    assert f.evidence["best_round"] == 30 and f.evidence["onset_round"] == 31
    assert f.evidence["gap_last"] == pytest.approx(1.5 - 0.1)


def test_overfitting_respects_direction_and_patience() -> None:
    auc = np.concatenate([np.linspace(0.6, 0.9, 20), np.linspace(0.9, 0.8, 11)[1:]])
    up = detect_overfitting_onset(
        auc, np.arange(auc.size), subject="m", metric="valid/auc", higher_is_better=True
    )
    assert up is not None and up.evidence["onset_round"] == 20
    # read as a loss, the same curve is best at round 0 and worse ever after
    down = detect_overfitting_onset(
        auc, np.arange(auc.size), subject="m", metric="valid/auc", higher_is_better=False
    )
    assert down is not None and down.evidence["onset_round"] == 1
    improving = np.linspace(2.0, 1.0, 30)
    assert (
        detect_overfitting_onset(
            improving, np.arange(30), subject="m", metric="v", higher_is_better=False
        )
        is None
    )
    late = np.concatenate([np.linspace(2.0, 1.0, 30), [1.2, 1.3]])  # 2 rounds < patience 5
    assert (
        detect_overfitting_onset(
            late, np.arange(late.size), subject="m", metric="v", higher_is_better=False
        )
        is None
    )


@pytest.mark.parametrize(
    ("metric", "higher"),
    [
        ("auc", True),
        ("ndcg@5", True),
        ("map@10", True),
        ("rmse", False),
        ("l2", False),
        ("logloss", False),
        ("Accuracy", True),
        ("MultiClass", False),
    ],
)
def test_metric_direction(metric: str, higher: bool) -> None:
    assert is_higher_better(metric) is higher
