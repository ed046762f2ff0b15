"""Fixtures of the report tests: a fixed Report."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gradtracer.findings import Finding, FindingType, Report, Severity


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    """Tiny tensors: intra-op threads only contend on a shared machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_fixed_report() -> Report:
    """An embedding report with two findings, awkward characters and a NaN statistic."""
    zombie = Finding(
        type=FindingType.ZOMBIE_EMBEDDINGS,
        severity=Severity.CRITICAL,
        subject="item_emb",
        premise="8.5% of rows move fast but flip direction (cos < 0) <\"&'> \x01 here.",
        implies="The optimizer oscillates on rare items.",
        action="DECREASE_LR_OR_USE_SPARSE_ADAM",
        expected_effect="Smoother trajectories of rare items.",
        confidence=0.92,
        evidence={"zombie_ratio": 0.085, "threshold": 0.05, "optimizer": "adam"},
        sample_ids=(3, 17, 42),
    )
    bias = Finding(
        type=FindingType.POPULARITY_BIAS,
        severity=Severity.WARNING,
        subject="item_emb",
        premise="Exposure Gini 0.85 > 0.8.",
        implies="Long-tail rows learn little.",
        action="APPLY_LOG_Q_CORRECTION_OR_INVERSE_FREQUENCY_SAMPLING",
        expected_effect="Better long-tail coverage.",
        confidence=0.95,
        evidence={"popularity_gini": 0.85},
    )
    return Report(
        kind="embedding",
        subject="item_emb",
        stats={
            "num_embeddings": 1682,
            "embedding_dim": 32,
            "active_coverage_pct": 20.4,
            "popularity_gini": 0.85,
            "zombie_ratio": 0.085,
            "dead_ratio": 0.1,
            "mean_velocity": 0.0123,
            "effective_rank": float("nan"),
            "norm_by_bucket": {"head": 1.5, "tail": 0.25},
        },
        findings=[bias, zombie],
        metadata={"step": 340, "run_id": "fixed", "created_unix": 1.0},
    )


@pytest.fixture()
def fixed_report() -> Report:
    return make_fixed_report()
