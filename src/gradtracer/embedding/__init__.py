"""Embedding-table tracking: per-row dynamics, diagnoses and the Auto-Fix hook.

>>> import torch
>>> from gradtracer.embedding import EmbeddingTracker
>>> emb = torch.nn.Embedding(100, 8)
>>> opt = torch.optim.Adam(emb.parameters(), lr=0.01)
>>> tracker = EmbeddingTracker(emb, name="item_emb")
>>> for _ in range(3):
...     opt.zero_grad()
...     emb(torch.tensor([1, 2, 3])).pow(2).sum().backward()
...     opt.step()
>>> tracker.summary()["active_rows"]
3
>>> tracker.detach()
"""

from __future__ import annotations

from gradtracer.embedding.diagnose import EmbeddingThresholds, ZombieThresholds, diagnose
from gradtracer.embedding.evidence import Intervention, RowEvidence
from gradtracer.embedding.state import RowState, SignSketch
from gradtracer.embedding.tracker import EmbeddingTracker

__all__ = [
    "EmbeddingThresholds",
    "EmbeddingTracker",
    "Intervention",
    "RowEvidence",
    "RowState",
    "SignSketch",
    "ZombieThresholds",
    "diagnose",
]
