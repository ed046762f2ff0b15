"""Fixtures for the EmbeddingTracker tests (helpers live in embedding_planted.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from embedding_planted import PlantedRun, run_planted


@pytest.fixture()
def planted() -> Callable[..., PlantedRun]:
    return run_planted


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors: one intra-op thread is faster and avoids oversubscribing shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
