"""Small synthetic regression data for the tree-dynamics tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def regression_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_valid, y_valid): y = 3*x0 + x1*x2 + noise, 8 features, 600/400 rows."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1000, 8))
    y = 3.0 * x[:, 0] + x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=1000)
    return x[:600], y[:600], x[600:], y[600:]


@pytest.fixture(scope="module")
def noisy_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tiny, mostly-noise data on which deep trees with a high learning rate overfit."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(400, 6))
    y = 2.0 * x[:, 0] + 1.0 * rng.normal(size=400)
    return x[:150], y[:150], x[150:], y[150:]
