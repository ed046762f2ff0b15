"""The planted-bottleneck distillation check: does acting on the flagged layer help?

A two-tower teacher (an embedding and a two-layer MLP per tower, dot-product score) is
trained with BPR. A student of the same shape but with a hidden width of
``bottleneck`` in one tower is distilled from it (BPR plus the MSE between student and
teacher scores) while a :class:`~gradtracer.compress.distill.DistillationTracker`
follows every mapped layer pair. The tracker's finding names the layer it fails to
mimic; the student is then rebuilt with that layer widened to the teacher's width and
distilled again with the same seed. Both students are evaluated with full-ranking
NDCG@10 on held-out items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from gradtracer._random import torch_generator
from gradtracer.compress.distill import DistillationTracker, linear_cka
from gradtracer.compress.workloads import Workload, evaluate_model

__all__ = ["TwoTower", "planted_bottleneck_study", "train_two_tower"]


class TwoTower(nn.Module):
    """Embedding + ``Linear(d, h) -> ReLU -> Linear(h, out)`` per tower; dot-product score.

    Args:
        n_users, n_items: table rows.
        embedding_dim: embedding width (default 32).
        user_hidden, item_hidden: hidden width of each tower (default 32).
        out_dim: output width of both towers (default 16).
        random_state: initialisation seed.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        embedding_dim: int = 32,
        user_hidden: int = 32,
        item_hidden: int = 32,
        out_dim: int = 16,
        random_state: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(int(random_state))
        self.n_users, self.n_items = n_users, n_items
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        nn.init.normal_(self.user_emb.weight, 0.0, 0.1)
        nn.init.normal_(self.item_emb.weight, 0.0, 0.1)
        self.user_tower = nn.Sequential(
            nn.Linear(embedding_dim, user_hidden), nn.ReLU(), nn.Linear(user_hidden, out_dim)
        )
        self.item_tower = nn.Sequential(
            nn.Linear(embedding_dim, item_hidden), nn.ReLU(), nn.Linear(item_hidden, out_dim)
        )

    def users(self, idx: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.user_emb(idx))

    def items(self, idx: torch.Tensor) -> torch.Tensor:
        return self.item_tower(self.item_emb(idx))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.users(users) * self.items(items)).sum(-1)

    def scorer(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return (
                self.users(torch.arange(self.n_users)),
                self.items(torch.arange(self.n_items)),
            )


def train_two_tower(
    model: TwoTower,
    train: sp.csr_matrix,
    *,
    n_epochs: int = 20,
    batch_size: int = 512,
    learning_rate: float = 0.005,
    random_state: int = 0,
    teacher: TwoTower | None = None,
    distill_weight: float = 1.0,
    tracker: DistillationTracker | None = None,
) -> None:
    """BPR training, plus ``distill_weight * MSE(student scores, teacher scores)`` with a teacher."""
    coo = sp.csr_matrix(train).tocoo()
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64))
    gen = torch_generator(random_state)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    for _ in range(n_epochs):
        order = torch.randperm(users.numel(), generator=gen)
        for start in range(0, order.numel(), batch_size):
            idx = order[start : start + batch_size]
            u, i = users[idx], items[idx]
            j = torch.randint(0, model.n_items, (idx.numel(),), generator=gen)
            pos, neg = model(u, i), model(u, j)
            loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
            if teacher is not None:
                with torch.no_grad():
                    t_pos, t_neg = teacher(u, i), teacher(u, j)
                loss = loss + distill_weight * (
                    (pos - t_pos).pow(2).mean() + (neg - t_neg).pow(2).mean()
                )
                if tracker is not None:  # the hooks hold the last forward pair, on (u, j)
                    tracker.step()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


@dataclass
class BottleneckResult:
    """Outcome of :func:`planted_bottleneck_study` for one seed."""

    seed: int
    flagged: str | None
    cka: dict[str, float]
    full_cka: dict[str, float]
    teacher_ndcg: float
    distilled_ndcg: float
    widened_ndcg: float
    topk_overlap: float

    @property
    def lift(self) -> float:
        """Relative NDCG@10 gain of the widened student over distillation alone."""
        return self.widened_ndcg / self.distilled_ndcg - 1.0


_PAIRS = {
    "user_tower.0": "user_tower.0",
    "user_tower.2": "user_tower.2",
    "item_tower.0": "item_tower.0",
    "item_tower.2": "item_tower.2",
}


def planted_bottleneck_study(
    workload: Workload,
    *,
    seed: int = 0,
    bottleneck: int = 2,
    n_epochs: int = 20,
) -> BottleneckResult:
    """Run the planted-bottleneck check on ``workload`` for one seed (see the module docstring)."""
    nu, ni = workload.n_users, workload.n_items
    teacher = TwoTower(nu, ni, random_state=seed)
    train_two_tower(teacher, workload.train, n_epochs=n_epochs, random_state=seed)
    teacher.eval()
    student = TwoTower(nu, ni, item_hidden=bottleneck, random_state=seed + 1000)
    tracker = DistillationTracker(teacher, student, _PAIRS)
    train_two_tower(
        student,
        workload.train,
        n_epochs=n_epochs,
        random_state=seed,
        teacher=teacher,
        tracker=tracker,
    )
    tracker.detach()
    t_scores = _full_scores(teacher)
    s_scores = _full_scores(student)
    overlap = tracker.final_overlap(t_scores, s_scores, k=10)
    findings = tracker.findings()
    flagged = findings[0].subject if findings else None
    full = _full_cka(teacher, student)
    widened_ndcg = float("nan")
    if flagged is not None:
        tower = flagged.split(".")[0]
        kwargs: dict[str, Any] = {"item_hidden": bottleneck}
        if tower == "item_tower":
            kwargs["item_hidden"] = 32
        else:
            kwargs["user_hidden"] = 32
        wide = TwoTower(nu, ni, random_state=seed + 1000, **kwargs)
        train_two_tower(wide, workload.train, n_epochs=n_epochs, random_state=seed, teacher=teacher)
        widened_ndcg = float(np.mean(evaluate_model(wide, workload)["ndcg@10"]))
    return BottleneckResult(
        seed=seed,
        flagged=flagged,
        cka={s: h.cka for s, h in tracker.history.items()},
        full_cka=full,
        teacher_ndcg=float(np.mean(evaluate_model(teacher, workload)["ndcg@10"])),
        distilled_ndcg=float(np.mean(evaluate_model(student, workload)["ndcg@10"])),
        widened_ndcg=widened_ndcg,
        topk_overlap=overlap,
    )


def _full_scores(model: TwoTower, n_users: int = 256) -> torch.Tensor:
    u, i = model.scorer()
    return u[:n_users] @ i.T


def _full_cka(teacher: TwoTower, student: TwoTower, n_rows: int = 2048) -> dict[str, float]:
    """Full-batch CKA of each pair on the first ``n_rows`` (user or item) inputs."""
    out = {}
    with torch.no_grad():
        for name in _PAIRS:
            tower, layer = name.split(".")
            n = teacher.n_users if tower == "user_tower" else teacher.n_items
            idx = torch.arange(min(n, n_rows))

            def act(
                m: TwoTower, tower: str = tower, layer: str = layer, idx: torch.Tensor = idx
            ) -> torch.Tensor:
                emb = m.user_emb if tower == "user_tower" else m.item_emb
                seq = getattr(m, tower)
                return seq[: int(layer) + 1](emb(idx))

            out[name] = linear_cka(act(student), act(teacher))
    return out
