"""Planted oscillating / steady / noisy / unused rows: the zombie detector must find them."""

from __future__ import annotations

import pytest
from embedding_planted import NOISY, OSC, STEADY, UNUSED, precision_recall

from gradtracer.findings import FindingType


@pytest.mark.parametrize("track_interval", [1, 20], ids=lambda t: f"interval{t}")
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_planted_zombies_precision_recall(planted, optimizer, sparse, track_interval):
    run = planted(optimizer=optimizer, sparse=sparse, track_interval=track_interval, steps=120)
    found = run.tracker.zombie_rows()
    precision, recall = precision_recall(found, OSC)
    # measured 1.0 and 1.0 on every parametrization (docs/embedding_tracker.md)
    assert precision == 1.0 and recall == 1.0, (precision, recall, found.tolist())
    stats = run.tracker.summary()
    assert stats["zombie_count"] == found.numel()
    assert stats["unexposed_count"] == UNUSED.numel()
    kinds = {f.type for f in run.tracker.findings()}
    assert FindingType.ZOMBIE_EMBEDDINGS.value in kinds
    zombie = next(f for f in run.tracker.findings() if f.type == "ZOMBIE_EMBEDDINGS")
    assert set(zombie.sample_ids) <= set(OSC.tolist())
    assert zombie.confidence > 0.9
    assert len(run.tracker.history) == 120 // track_interval
    run.tracker.detach()


@pytest.mark.parametrize("optimizer", ["adamw", "adagrad"])
def test_planted_zombies_other_optimizers(planted, optimizer):
    run = planted(optimizer=optimizer, steps=120)
    precision, recall = precision_recall(run.tracker.zombie_rows(), OSC)
    assert (precision, recall) == (1.0, 1.0)
    run.tracker.detach()


def test_planted_zombies_embedding_bag_sparse_adam(planted):
    run = planted(optimizer="adam", sparse=True, bag=True, steps=120)
    precision, recall = precision_recall(run.tracker.zombie_rows(), OSC)
    assert (precision, recall) == (1.0, 1.0)
    run.tracker.detach()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_no_zombies_without_oscillation(planted, optimizer):
    run = planted(optimizer=optimizer, steps=120, oscillate=False)
    assert run.tracker.zombie_rows().numel() == 0
    assert run.tracker.summary()["zombie_count"] == 0
    run.tracker.detach()


def test_steady_rows_agree_and_noisy_rows_do_not_oscillate(planted):
    run = planted(optimizer="sgd", steps=120)
    st = run.tracker.row_state
    cos = st.col("cos_ema")
    assert float(cos[OSC].mean()) < -0.9
    assert float(cos[STEADY].mean()) > 0.5
    assert abs(float(cos[NOISY].mean())) < 0.3
    assert int(st.col("exposure")[UNUSED].sum()) == 0
    run.tracker.detach()
