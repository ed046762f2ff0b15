"""Workloads of the compression study: data, a small BPR/BCE MF trainer, evaluation.

The trainer is deliberately small and fully seeded so that every compression method of
one seed starts from the same float model, and so that the
:class:`~gradtracer.embedding.EmbeddingTracker` can watch both tables during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from gradtracer._random import RandomState, check_random_state, torch_generator

__all__ = [
    "WORKLOADS",
    "DotMF",
    "TrainConfig",
    "Workload",
    "evaluate_model",
    "evaluate_popularity",
    "load_workload",
    "train_dot_mf",
    "tune_float",
]

#: Workload names :func:`load_workload` knows.
WORKLOADS: tuple[str, ...] = ("synthetic", "ml-100k", "amazon-mi")


@dataclass
class Workload:
    """One dataset split into train / valid / test user-item matrices."""

    name: str
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


def load_workload(
    name: str, data_dir: str | Path = "../shared/data", *, random_state: RandomState = 0
) -> Workload:
    """Load ``name`` (one of :data:`WORKLOADS`) with a leave-one-out split (valid + test).

    ``ml-100k`` reads ``<data_dir>/ml-100k/u.data`` (every rating is a positive);
    ``amazon-mi`` reads the Amazon Musical Instruments 5-core reviews;
    ``synthetic`` generates a small power-law dataset (``random_state`` seeds it).
    """
    from gradtracer.recsys.data import leave_one_out, load_amazon, load_movielens, make_implicit

    root = Path(data_dir)
    if name == "synthetic":
        ix = make_implicit(
            n_users=300, n_items=400, n_interactions=8_000, random_state=random_state
        )
    elif name == "ml-100k":
        ix = load_movielens(root / "ml-100k" / "u.data")
    elif name == "amazon-mi":
        folder = root / "amazon" / "musical-instruments-5core-2014"
        files = sorted(p for p in folder.glob("*.json*")) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"{folder}: no Amazon Musical Instruments json file")
        ix = load_amazon(files[0])
    else:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {name!r}")
    split = leave_one_out(ix, with_valid=True)
    assert split.valid is not None
    return Workload(
        name, split.train.user_items(), split.valid.user_items(), split.test.user_items()
    )


class DotMF(nn.Module):
    """``score(u, i) = user_emb[u] . item_emb[i]`` with N(0, init_std) initialisation.

    Args:
        n_users, n_items: table rows.
        n_factors: embedding dimension.
        init_std: initialisation standard deviation (default 0.05).
        random_state: seed of the initialisation.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        *,
        init_std: float = 0.05,
        random_state: RandomState = 0,
    ) -> None:
        super().__init__()
        for label, v in (("n_users", n_users), ("n_items", n_items), ("n_factors", n_factors)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{label} must be a positive int, got {v!r}")
        self.n_users, self.n_items, self.n_factors = n_users, n_items, n_factors
        self.user_emb = nn.Embedding(n_users, n_factors)
        self.item_emb = nn.Embedding(n_items, n_factors)
        gen = torch_generator(random_state)
        with torch.no_grad():
            self.user_emb.weight.normal_(0.0, init_std, generator=gen)
            self.item_emb.weight.normal_(0.0, init_std, generator=gen)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(N,)`` logits for ``(N,)`` index pairs."""
        return (self.user_emb(users) * self.item_emb(items)).sum(-1)

    def scorer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user_factors, item_factors)``, detached, for the evaluators."""
        return self.user_emb.weight.detach(), self.item_emb.weight.detach()


@dataclass
class TrainConfig:
    """How :func:`train_dot_mf` trains (defaults: BPR, Adam, 30 epochs)."""

    loss: Literal["bpr", "bce"] = "bpr"  # pairwise BPR or BCE on 1 positive + 1 negative
    n_epochs: int = 30  # passes over the positives
    batch_size: int = 1024  # positives per step
    learning_rate: float = 0.005  # Adam step size
    weight_decay: float = 1e-5  # L2 on the looked-up rows, per step
    random_state: RandomState = 0  # shuffling and negative sampling

    def __post_init__(self) -> None:
        if self.loss not in ("bpr", "bce"):
            raise ValueError(f"loss must be 'bpr' or 'bce', got {self.loss!r}")
        for label in ("n_epochs", "batch_size"):
            v = getattr(self, label)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{label} must be a positive int, got {v!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be positive and finite, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not isinstance(out["random_state"], (int, type(None))):
            out["random_state"] = repr(out["random_state"])
        return out


def train_dot_mf(
    model: DotMF,
    train: sp.csr_matrix,
    config: TrainConfig | None = None,
    *,
    on_backward: Callable[[torch.Tensor], Any] | None = None,
    on_epoch: Callable[[int], Any] | None = None,
) -> list[float]:
    """Train ``model`` on the positives of ``train``; return the mean loss of each epoch.

    ``on_backward(loss)`` runs after ``loss.backward()`` and before ``optimizer.step()``
    (where an :class:`~gradtracer.embedding.EmbeddingTracker` or a manager steps);
    ``on_epoch(n_done)`` runs after each epoch with the number of epochs done.
    """
    cfg = config or TrainConfig()
    coo = sp.csr_matrix(train).tocoo()
    if coo.shape != (model.n_users, model.n_items):
        raise ValueError(f"train matrix is {coo.shape}, model is {(model.n_users, model.n_items)}")
    if coo.nnz == 0:
        raise ValueError("train matrix has no positives")
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64))
    rng = check_random_state(cfg.random_state)
    gen = torch_generator(rng)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    losses = []
    for _ in range(cfg.n_epochs):
        order = torch.randperm(users.numel(), generator=gen)
        total, n_batches = 0.0, 0
        for start in range(0, order.numel(), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            u, i = users[idx], items[idx]
            j = torch.randint(0, model.n_items, (idx.numel(),), generator=gen)
            pos, neg = model(u, i), model(u, j)
            if cfg.loss == "bpr":
                loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
            else:
                logits = torch.cat([pos, neg])
                target = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            if cfg.weight_decay:
                reg = (
                    model.user_emb(u).pow(2).sum()
                    + model.item_emb(i).pow(2).sum()
                    + model.item_emb(j).pow(2).sum()
                )
                loss = loss + cfg.weight_decay * reg / idx.numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if on_backward is not None:
                on_backward(loss)
            opt.step()
            total += float(loss.detach())
            n_batches += 1
        losses.append(total / max(n_batches, 1))
        if on_epoch is not None:
            on_epoch(len(losses))
    return losses


def evaluate_model(model: Any, workload: Workload, *, part: str = "test") -> dict[str, np.ndarray]:
    """Per-user full-ranking ``ndcg@10`` and ``recall@20`` of ``model`` on ``part``.

    Training items are excluded; for ``part="test"`` the validation items too.
    """
    from gradtracer.recsys.metrics import evaluate_topk

    if part == "valid":
        target, exclude = workload.valid, workload.train
    elif part == "test":
        target, exclude = workload.test, (workload.train + workload.valid).tocsr()
    else:
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    res = evaluate_topk(
        model, target, exclude=exclude, ks=(10, 20), metrics=("ndcg", "recall"), progress=False
    )
    return {
        "ndcg@10": res.per_user["ndcg@10"],
        "recall@20": res.per_user["recall@20"],
        "users": res.users,
    }


def evaluate_popularity(workload: Workload, *, part: str = "test") -> dict[str, np.ndarray]:
    """:func:`evaluate_model` of the most-popular ranking (training counts) on ``part``."""
    from gradtracer.recsys.models.popularity import PopularityRecommender

    pop = PopularityRecommender(workload.n_users, workload.n_items)
    pop.counts = np.asarray(workload.train.sum(axis=0), dtype=np.float32).reshape(-1)
    return evaluate_model(pop, workload, part=part)


@dataclass
class TuneResult:
    """What :func:`tune_float` chose and every trial it measured (validation only)."""

    config: TrainConfig
    valid_ndcg: float
    trials: list[dict[str, float]]
    popularity_valid_ndcg: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "valid_ndcg@10": self.valid_ndcg,
            "popularity_valid_ndcg@10": self.popularity_valid_ndcg,
            "trials": self.trials,
        }


def tune_float(
    workload: Workload,
    n_factors: int,
    *,
    weight_decays: tuple[float, ...] = (1e-5, 1e-3, 1e-2, 3e-2),
    learning_rates: tuple[float, ...] = (0.005,),
    max_epochs: int = 40,
    eval_every: int = 5,
    base: TrainConfig | None = None,
    random_state: RandomState = 0,
) -> TuneResult:
    """Choose ``weight_decay``, ``learning_rate`` and ``n_epochs`` by validation NDCG@10.

    One model per (weight decay, learning rate) is trained for ``max_epochs`` and scored
    on the **validation** items every ``eval_every`` epochs; the best (config, epoch) wins.
    Test items are never read. ``random_state`` seeds the trial models.
    """
    from dataclasses import replace

    if max_epochs < 1 or eval_every < 1:
        raise ValueError(f"max_epochs and eval_every must be >= 1, got {max_epochs}, {eval_every}")
    cfg0 = base or TrainConfig()
    seed = random_state if isinstance(random_state, int) else 0
    trials: list[dict[str, float]] = []
    for wd in weight_decays:
        for lr in learning_rates:
            cfg = replace(
                cfg0, weight_decay=wd, learning_rate=lr, n_epochs=max_epochs, random_state=seed
            )
            model = DotMF(workload.n_users, workload.n_items, n_factors, random_state=seed)

            def check(done: int, model: DotMF = model, wd: float = wd, lr: float = lr) -> None:
                if done % eval_every == 0 or done == max_epochs:
                    ndcg = float(np.mean(evaluate_model(model, workload, part="valid")["ndcg@10"]))
                    trials.append(
                        {
                            "weight_decay": wd,
                            "learning_rate": lr,
                            "n_epochs": done,
                            "valid_ndcg@10": ndcg,
                        }
                    )

            train_dot_mf(model, workload.train, cfg, on_epoch=check)
    best = max(trials, key=lambda t: t["valid_ndcg@10"])
    chosen = replace(
        cfg0,
        weight_decay=float(best["weight_decay"]),
        learning_rate=float(best["learning_rate"]),
        n_epochs=int(best["n_epochs"]),
    )
    pop = float(np.mean(evaluate_popularity(workload, part="valid")["ndcg@10"]))
    return TuneResult(chosen, float(best["valid_ndcg@10"]), trials, pop)
