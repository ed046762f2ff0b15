"""Fixtures of the manager tests: a scripted tracker with known velocities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from gradtracer.findings import Finding, Report


class ScriptedTracker:
    """A tracker whose mean velocity per step is given; implements the TrackerLike protocol.

    Records a history snapshot every ``track_interval`` steps, like EmbeddingTracker.
    """

    def __init__(
        self,
        name: str,
        velocities: Sequence[float],
        *,
        track_interval: int = 1,
        stats: dict[str, Any] | None = None,
        findings: Sequence[Finding] = (),
    ) -> None:
        self.name = name
        self.velocities = list(velocities)
        self.track_interval = track_interval
        self.extra = dict(stats or {})
        self._findings = list(findings)
        self.history: list[dict[str, Any]] = []
        self.n_steps = 0
        self.losses: list[Any] = []
        self.detached = False

    def step(self, loss: Any = None) -> None:
        self.n_steps += 1
        self.losses.append(loss)
        if self.n_steps % self.track_interval == 0:
            v = self.velocities[(self.n_steps - 1) % len(self.velocities)]
            self.history.append(
                {
                    "step": self.n_steps,
                    "loss": None if loss is None else float(loss),
                    "mean_velocity": v,
                }
            )

    def summary(self) -> dict[str, Any]:
        last = self.history[-1]["mean_velocity"] if self.history else None
        return {"layer": self.name, "step": self.n_steps, "mean_velocity": last, **self.extra}

    def findings(self) -> list[Finding]:
        return list(self._findings)

    def to_report(self) -> Report:
        return Report(
            kind="embedding",
            subject=self.name,
            stats=self.summary(),
            findings=self.findings(),
            metadata={"step": self.n_steps},
        )

    def detach(self) -> None:
        self.detached = True


@pytest.fixture()
def scripted() -> type[ScriptedTracker]:
    """The ScriptedTracker class (fixtures cannot be imported from conftest by name)."""
    return ScriptedTracker
