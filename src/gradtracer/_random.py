"""Seeding: every stochastic entry point normalises ``random_state`` through here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a torch generator is made, not with this module
    import torch

RandomState = int | np.random.Generator | None


def check_random_state(random_state: RandomState) -> np.random.Generator:
    """Return a numpy ``Generator`` for an int seed, an existing Generator, or None (fresh)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be an int, a numpy Generator or None, got {type(random_state).__name__}"
    )


def torch_generator(
    random_state: RandomState, device: str | torch.device = "cpu"
) -> torch.Generator:
    """Return a seeded ``torch.Generator`` derived from ``random_state``."""
    import torch

    seed = int(check_random_state(random_state).integers(0, 2**63 - 1))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
