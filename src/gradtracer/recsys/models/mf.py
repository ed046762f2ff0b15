"""Implicit-feedback matrix factorisation trained with sampled negatives (BCE) or BPR.

``score(u, i) = user_emb[u] . item_emb[i]``. The published GradTracer validation protocol
is the default: ``ImplicitMF(n_users, n_items, dim=32, init_std=0.01)`` (N(0, 0.01) init)
and ``MFTrainConfig(loss="bce", n_negatives=4, batch_size=256)``.

Training loop per batch of ``batch_size`` positive (user, item) rows::

    negatives = randint(0, n_items, (B, n_negatives))       # one tensor op per batch
    logits    = model(users_all, items_all)                 # one forward over B * (1 + n_neg)
    loss      = BCE(logits, [1]*B + [0]*B*n_neg)  or  -log sigmoid(pos - neg).mean()
    loss.backward(); on_backward(loss); optimizer.step()

Negatives are drawn uniformly over the whole catalogue (a drawn item may be one of the
user's positives, as in the published protocol).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from gradtracer._progress import progress as progress_bar
from gradtracer._random import RandomState, torch_generator
from gradtracer.recsys.models.base import (
    as_user_index,
    read_artifacts,
    recommend_from_scores,
    write_artifacts,
)
from gradtracer.recsys.models.registry import register_model

__all__ = ["LOSSES", "OPTIMIZERS", "ImplicitMF", "MFTrainConfig", "train_mf"]

logger = logging.getLogger(__name__)

LOSSES: tuple[str, ...] = ("bce", "bpr")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "adagrad", "adamw", "sparse_adam")
#: Optimizers that accept the sparse gradients of ``sparse=True`` embeddings.
SPARSE_OPTIMIZERS: tuple[str, ...] = ("sgd", "adagrad", "sparse_adam")
_KIND = "implicit_mf"


@register_model("implicit_mf")
class ImplicitMF(nn.Module):
    """Dot-product matrix factorisation over user and item embedding tables.

    Args:
        n_users: rows of ``user_emb``.
        n_items: rows of ``item_emb``.
        dim: embedding dimension (default 32).
        sparse: ``nn.Embedding(sparse=True)``: gradients touch only the looked-up rows
            (use with ``sgd``, ``adagrad`` or ``sparse_adam``). Default False.
        init_std: standard deviation of the N(0, init_std) initialisation (default 0.01).
        random_state: seed of the initialisation (default 0).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 32,
        sparse: bool = False,
        init_std: float = 0.01,
        random_state: RandomState = 0,
    ) -> None:
        super().__init__()
        for name, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.sparse, self.init_std = sparse, float(init_std)
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        gen = torch_generator(random_state)
        with torch.no_grad():
            self.user_emb.weight.normal_(0.0, init_std, generator=gen)
            self.item_emb.weight.normal_(0.0, init_std, generator=gen)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return ``(N,)`` logits ``user_emb[users] . item_emb[items]`` for ``(N,)`` index pairs."""
        return (self.user_emb(users) * self.item_emb(items)).sum(-1)

    # --- Recommender interface ---------------------------------------------------------
    def fit(self, train: Any, config: MFTrainConfig | None = None) -> ImplicitMF:
        """Train on ``train`` (an ``Interactions``) with ``config``; return ``self``."""
        train_mf(self, train, config)
        return self

    def scorer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(user_factors (n_users, dim), item_factors (n_items, dim))``, detached."""
        return self.user_emb.weight.detach(), self.item_emb.weight.detach()

    def score(self, users: Any) -> np.ndarray:
        """Return ``(B, n_items)`` float32 scores of the given users."""
        idx = torch.from_numpy(as_user_index(users, self.n_users))
        with torch.no_grad():
            out = self.user_emb.weight[idx] @ self.item_emb.weight.t()
        return out.cpu().numpy()

    def recommend(
        self, users: Any, k: int = 10, *, exclude: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Return ``(B, k)`` highest-scoring items per user, skipping ``exclude`` items."""
        idx = as_user_index(users, self.n_users)
        with torch.no_grad():
            scores = self.user_emb.weight[torch.from_numpy(idx)] @ self.item_emb.weight.t()
        return recommend_from_scores(scores, idx, k, exclude)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` (sizes, options) and ``arrays.npz`` (both tables, float32)."""
        meta = {
            "kind": _KIND,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "dim": self.dim,
            "sparse": self.sparse,
            "init_std": self.init_std,
        }
        user_f, item_f = (t.cpu().numpy().astype(np.float32) for t in self.scorer())
        return write_artifacts(directory, meta, {"user_emb": user_f, "item_emb": item_f})

    @classmethod
    def load(cls, directory: str | Path) -> ImplicitMF:
        """Read a model written by :meth:`save`."""
        meta, arrays = read_artifacts(directory, _KIND)
        model = cls(
            int(meta["n_users"]),
            int(meta["n_items"]),
            int(meta["dim"]),
            sparse=bool(meta["sparse"]),
            init_std=float(meta["init_std"]),
        )
        with torch.no_grad():
            model.user_emb.weight.copy_(torch.from_numpy(arrays["user_emb"]))
            model.item_emb.weight.copy_(torch.from_numpy(arrays["item_emb"]))
        return model


@dataclass
class MFTrainConfig:
    """How :func:`train_mf` trains. Defaults are the published validation protocol."""

    loss: Literal["bce", "bpr"] = "bce"  # BCE on 1 positive + n_negatives, or pairwise BPR
    n_negatives: int = 4  # uniform negatives per positive
    batch_size: int = 256  # positive rows per optimizer step
    lr: float = 0.01  # learning rate (the published notebook used 0.05 on purpose)
    epochs: int = 10  # passes over the positives
    optimizer: Literal["adam", "sgd", "adagrad", "adamw", "sparse_adam"] = "adam"
    weight_decay: float = 0.0  # L2; with sparse optimizers applied to the batch's rows
    random_state: RandomState = 0  # seeds shuffling and negative sampling

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("n_negatives", "batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not isinstance(out["random_state"], (int, type(None))):
            out["random_state"] = repr(out["random_state"])
        return out


def _make_optimizer(model: ImplicitMF, config: MFTrainConfig) -> torch.optim.Optimizer:
    name, params = config.optimizer, list(model.parameters())
    if model.sparse and name not in SPARSE_OPTIMIZERS:
        raise ValueError(
            f"optimizer {name!r} cannot update sparse=True embeddings; use one of {SPARSE_OPTIMIZERS}"
        )
    if not model.sparse and name == "sparse_adam":
        raise ValueError("optimizer 'sparse_adam' needs ImplicitMF(..., sparse=True)")
    wd = 0.0 if model.sparse else config.weight_decay
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=wd)
    return torch.optim.SparseAdam(params, lr=config.lr)


def train_mf(
    model: ImplicitMF,
    train: Any,
    config: MFTrainConfig | None = None,
    *,
    on_backward: Callable[[float], None] | None = None,
    progress: bool | None = None,
) -> list[float]:
    """Train ``model`` in place on the positive rows of ``train``; return the mean loss per epoch.

    Args:
        model: the :class:`ImplicitMF` to train (its device is used).
        train: an ``Interactions``; every row is a positive (user, item) pair.
        config: :class:`MFTrainConfig` (default: the published protocol).
        on_backward: called with the batch loss after ``loss.backward()`` and before
            ``optimizer.step()`` (where a tracker's ``step()`` goes).
        progress: progress bar over batches (None: only on a terminal).
    """
    config = config or MFTrainConfig()
    device = model.user_emb.weight.device
    users = torch.from_numpy(train.frame["user"].to_numpy().astype(np.int64))
    items = torch.from_numpy(train.frame["item"].to_numpy().astype(np.int64))
    if users.numel() == 0:
        raise ValueError(f"{train.source}: no training rows")
    if int(users.max()) >= model.n_users or int(items.max()) >= model.n_items:
        raise ValueError(
            f"{train.source}: indices up to user {int(users.max())}, item {int(items.max())} "
            f"do not fit a model of {model.n_users} users x {model.n_items} items"
        )
    optimizer = _make_optimizer(model, config)
    gen = torch_generator(config.random_state)
    n_pos, n_neg = users.numel(), config.n_negatives
    n_batches = math.ceil(n_pos / config.batch_size)
    decay = config.lr * config.weight_decay if model.sparse else 0.0
    history: list[float] = []
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n_pos, generator=gen)
        total = 0.0
        starts = range(0, n_pos, config.batch_size)
        desc = f"epoch {epoch + 1}/{config.epochs}"
        for start in progress_bar(starts, total=n_batches, desc=desc, enabled=progress):
            idx = order[start : start + config.batch_size]
            u, i = users[idx], items[idx]  # (B,)
            b = u.numel()
            neg = torch.randint(0, model.n_items, (b, n_neg), generator=gen)  # (B, n_neg)
            all_u = torch.cat([u, u.repeat_interleave(n_neg)]).to(device)
            all_i = torch.cat([i, neg.reshape(-1)]).to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(all_u, all_i)  # (B * (1 + n_neg),)
            if config.loss == "bce":
                labels = torch.zeros_like(logits)
                labels[:b] = 1.0
                loss = F.binary_cross_entropy_with_logits(logits, labels)
            else:
                pos, negs = logits[:b], logits[b:].view(b, n_neg)
                loss = -F.logsigmoid(pos[:, None] - negs).mean()
            loss.backward()
            value = float(loss.detach())
            if on_backward is not None:
                on_backward(value)
            optimizer.step()
            if decay:
                with torch.no_grad():
                    for table, rows in ((model.user_emb, all_u), (model.item_emb, all_i)):
                        touched = rows.unique()
                        table.weight[touched] *= 1.0 - decay
            total += value * b
        history.append(total / n_pos)
        logger.info("train_mf epoch %d/%d loss %.5f", epoch + 1, config.epochs, history[-1])
    model.eval()
    return history
