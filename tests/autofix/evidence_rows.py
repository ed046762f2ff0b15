"""A stand-in for the tracker's row state when an Auto-Fix controller is driven directly
(imported by the tests of this directory)."""

from __future__ import annotations

import torch

from gradtracer.embedding.autofix import AutoFixController
from gradtracer.embedding.evidence import RowEvidence


class EvidenceRows:
    """The latest evidence of every row, read back by the controller at its decisions."""

    def __init__(self) -> None:
        self.latest: dict[int, tuple[float, float, float]] = {}
        self.step = 0
        self.layer = "item_emb"

    def drive(self, ctrl: AutoFixController, ev: RowEvidence) -> torch.Tensor | None:
        """Record ``ev`` as the rows' current state and hand the step to ``ctrl.on_step``;
        returns the factors of ``ev.rows`` (None while no row is scaled)."""
        self.step, self.layer = ev.step, ev.layer
        for i, r in enumerate(ev.rows.tolist()):
            self.latest[r] = (
                float(ev.n_agree[i]),
                float(ev.n_disagree[i]),
                float(ev.grad_norm_ema[i]),
            )
        table = ctrl.on_step(ev.step, ev.rows, ev.loss, self.read)
        return None if table is None else table[ev.rows]

    def read(self, rows: torch.Tensor) -> RowEvidence:
        vals = torch.tensor([self.latest[r] for r in rows.tolist()], dtype=torch.float32)
        vals = vals.reshape(-1, 3)
        n = rows.numel()
        return RowEvidence(
            step=self.step,
            layer=self.layer,
            rows=rows,
            n_agree=vals[:, 0].to(torch.int32),
            n_disagree=vals[:, 1].to(torch.int32),
            cos_ema=torch.zeros(n),
            grad_norm_ema=vals[:, 2],
            velocity_ema=torch.ones(n),
            exposure=torch.ones(n, dtype=torch.int32),
            loss=None,
        )
