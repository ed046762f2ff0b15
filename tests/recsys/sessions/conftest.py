"""Fixtures of the session study tests: small synthetic sessions and their split."""

from __future__ import annotations

import pytest
import torch

from gradtracer.recsys.data.synthetic import make_sessions
from gradtracer.recsys.sessions import SessionArrays, session_arrays, split_sessions
from gradtracer.recsys.sessions.split import SessionSplit


@pytest.fixture(scope="module")
def synthetic_split() -> SessionSplit:
    """1,500 planted-transition sessions over 200 items, latest 20% as test."""
    ix = make_sessions(n_sessions=1500, n_items=200, mean_length=6.0, random_state=7)
    return split_sessions(ix, test_fraction=0.2)


@pytest.fixture(scope="module")
def train_arrays(synthetic_split: SessionSplit) -> SessionArrays:
    return session_arrays(synthetic_split.train)


@pytest.fixture(scope="module")
def test_arrays(synthetic_split: SessionSplit) -> SessionArrays:
    return session_arrays(synthetic_split.test)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small models run fastest single-threaded (and do not fight over shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
