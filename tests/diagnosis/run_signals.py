"""Hand-built diagnosis signals for the detector and health tests: a healthy-looking table,
layer and run that each test changes where it matters."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gradtracer.diagnosis.signals import LayerSignals, RunSignals, TableSignals


def table(name: str = "item_emb", **changes: Any) -> TableSignals:
    """A 200 x 16 table that trains normally (1.2% movement per update, uniform exposure)."""
    base = TableSignals(
        name=name, n_rows=200, dim=16, steps=100, requires_grad=True, in_optimizer=True,
        weight_decay=0.0, learning_rate=0.01, finite=True, coord_rms=0.3, mean_row_norm=1.2,
        rel_velocity=0.012, mean_grad_norm=1e-3, oscillation=0.1,
        exposure=np.full(200, 50.0), grad_pressure=np.full(200, 1e-3), duplicate_share=0.0,
        spectrum=np.array([3.0, 2.5, 2.0, 1.5]),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def layer(name: str = "net.0.weight", **changes: Any) -> LayerSignals:
    """A 20-input weight matrix with a normal gain (0.7) and update ratio (0.5%)."""
    base = LayerSignals(
        name=name, module=name.rsplit(".", 1)[0], numel=640, n_obs=50, fan_in=20, gain=0.7,
        all_zero=False, update_ratio=0.005, velocity=0.01, grad_norm=0.1,
        grad_norm_median=0.1, grad_norm_max=0.3, snr=0.05, spikes=0, requires_grad=True,
        in_optimizer=True, weight_decay=0.0, learning_rate=0.003,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def series(values: Any) -> tuple[tuple[int, float], ...]:
    """``(step, value)`` pairs at steps 1, 2, ..."""
    return tuple((i + 1, float(v)) for i, v in enumerate(values))


def run(**changes: Any) -> RunSignals:
    """100 steps of one healthy table, no layers, a loss falling from 0.69 to 0.5."""
    base = RunSignals(
        step=100, tables=(table(),), layers=(), dead_fractions={},
        losses=series(np.linspace(0.69, 0.5, 100)), grad_norms=series(np.full(100, 0.01)),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)
