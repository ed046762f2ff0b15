"""Implicit-feedback matrix factorisation trained with sampled negatives (BCE) or BPR.

``score(u, i) = user_emb[u] . item_emb[i]``. The published GradTracer validation protocol
is the default: ``ImplicitMF(n_users, n_items, n_factors=32, init_std=0.01)`` (N(0, 0.01) init)
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
import warnings
from collections.abc import Callable
from dataclasses import KW_ONLY, InitVar, asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradtracer._progress import progress as progress_bar
from gradtracer._random import RandomState, torch_generator
from gradtracer.recsys.models.base import UserItemRecommender, as_user_index, deprecated_keyword
from gradtracer.recsys.models.registry import register_model

__all__ = ["LOSSES", "OPTIMIZERS", "ImplicitMF", "MFTrainConfig", "train_mf"]

logger = logging.getLogger(__name__)

LOSSES: tuple[str, ...] = ("bce", "bpr")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "adagrad", "adamw", "sparse_adam")
#: Optimizers that accept the sparse gradients of ``sparse=True`` embeddings.
SPARSE_OPTIMIZERS: tuple[str, ...] = ("sgd", "adagrad", "sparse_adam")


@register_model("implicit_mf")
class ImplicitMF(nn.Module, UserItemRecommender):
    """Dot-product matrix factorisation over user and item embedding tables.

    Args:
        n_users: rows of ``user_emb``.
        n_items: rows of ``item_emb``.
        n_factors: embedding dimension (default 32); ``dim=`` is its deprecated spelling.
        sparse: ``nn.Embedding(sparse=True)``: gradients touch only the looked-up rows
            (use with ``sgd``, ``adagrad`` or ``sparse_adam``). Default False.
        init_std: standard deviation of the N(0, init_std) initialisation (default 0.01).
        random_state: seed of the initialisation (default 0).
        config: the :class:`MFTrainConfig` :meth:`fit` uses (default: the published protocol).
    """

    format_version = 1

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 32,
        sparse: bool = False,
        init_std: float = 0.01,
        random_state: RandomState = 0,
        *,
        config: MFTrainConfig | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        n_factors = deprecated_keyword("dim", "n_factors", dim, n_factors, 32)
        for name, value in (("n_users", n_users), ("n_items", n_items), ("n_factors", n_factors)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.n_users, self.n_items, self.n_factors = n_users, n_items, n_factors
        self.sparse, self.init_std = sparse, float(init_std)
        self.config = config
        self.user_emb = nn.Embedding(n_users, n_factors, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, n_factors, sparse=sparse)
        gen = torch_generator(random_state)
        with torch.no_grad():
            self.user_emb.weight.normal_(0.0, init_std, generator=gen)
            self.item_emb.weight.normal_(0.0, init_std, generator=gen)

    @property
    def dim(self) -> int:
        """The embedding dimension (same as ``n_factors``)."""
        return self.n_factors

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return ``(N,)`` logits ``user_emb[users] . item_emb[items]`` for ``(N,)`` index pairs."""
        return (self.user_emb(users) * self.item_emb(items)).sum(-1)

    # --- UserItemRecommender interface -------------------------------------------------
    def fit(self, train: Any, config: MFTrainConfig | None = None) -> ImplicitMF:
        """Train on ``train`` (an ``Interactions``) with ``config`` (default ``self.config``)."""
        train_mf(self, train, config or self.config)
        return self

    def scorer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(user_factors (n_users, n_factors), item_factors (n_items, n_factors))``, detached."""
        return self.user_emb.weight.detach(), self.item_emb.weight.detach()

    def score_tensor(self, users: np.ndarray) -> torch.Tensor:
        """``(B, n_items)`` float32 scores ``user_emb[users] @ item_emb.T`` as a tensor."""
        idx = torch.from_numpy(as_user_index(users, self.n_users))
        with torch.no_grad():
            return self.user_emb.weight[idx] @ self.item_emb.weight.t()

    def score(self, users: Any) -> np.ndarray:
        """Return ``(B, n_items)`` float32 scores of the given users."""
        return self.score_tensor(users).cpu().numpy()

    def _to_artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_factors": self.n_factors,
            "sparse": self.sparse,
            "init_std": self.init_std,
        }
        user_f, item_f = (t.cpu().numpy().astype(np.float32) for t in self.scorer())
        return meta, {"user_emb": user_f, "item_emb": item_f}

    @classmethod
    def _from_artifact(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ImplicitMF:
        model = cls(
            int(meta["n_users"]),
            int(meta["n_items"]),
            int(
                meta["n_factors"] if "n_factors" in meta else meta["dim"]
            ),  # older artifacts: "dim"
            sparse=bool(meta["sparse"]),
            init_std=float(meta["init_std"]),
        )
        with torch.no_grad():
            model.user_emb.weight.copy_(torch.from_numpy(arrays["user_emb"]))
            model.item_emb.weight.copy_(torch.from_numpy(arrays["item_emb"]))
        return model


@dataclass
class MFTrainConfig:
    """How :func:`train_mf` trains. Defaults are the published validation protocol.

    ``lr=`` and ``epochs=`` are accepted as deprecated spellings of ``learning_rate`` and
    ``n_epochs`` (with a ``DeprecationWarning``).
    """

    loss: Literal["bce", "bpr"] = "bce"  # BCE on 1 positive + n_negatives, or pairwise BPR
    n_negatives: int = 4  # uniform negatives per positive
    batch_size: int = 256  # positive rows per optimizer step
    learning_rate: float = 0.01  # the published notebook used 0.05 on purpose
    n_epochs: int = 10  # passes over the positives
    optimizer: Literal["adam", "sgd", "adagrad", "adamw", "sparse_adam"] = "adam"
    weight_decay: float = 0.0  # L2; with sparse optimizers applied to the batch's rows
    random_state: RandomState = 0  # seeds shuffling and negative sampling
    _: KW_ONLY
    lr: InitVar[float | None] = None  # deprecated: learning_rate
    epochs: InitVar[int | None] = None  # deprecated: n_epochs

    def __post_init__(self, lr: float | None, epochs: int | None) -> None:
        self.learning_rate = deprecated_keyword("lr", "learning_rate", lr, self.learning_rate, 0.01)
        self.n_epochs = deprecated_keyword("epochs", "n_epochs", epochs, self.n_epochs, 10)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("n_negatives", "batch_size", "n_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(
                f"learning_rate must be a positive finite number, got {self.learning_rate}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not isinstance(out["random_state"], (int, type(None))):
            out["random_state"] = repr(out["random_state"])
        return out


def _deprecated_alias(old: str, new: str) -> property:
    def get(self: Any) -> Any:
        warnings.warn(f"{old} is deprecated, use {new}", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated spelling of ``{new}``.")


# Reading the old attribute names still works (with a warning); the dataclass __init__
# above already took their defaults.
setattr(MFTrainConfig, "lr", _deprecated_alias("lr", "learning_rate"))  # noqa: B010
setattr(MFTrainConfig, "epochs", _deprecated_alias("epochs", "n_epochs"))  # noqa: B010


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
        return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=config.learning_rate, weight_decay=wd)
    return torch.optim.SparseAdam(params, lr=config.learning_rate)


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
    decay = config.learning_rate * config.weight_decay if model.sparse else 0.0
    history: list[float] = []
    model.train()
    for epoch in range(config.n_epochs):
        order = torch.randperm(n_pos, generator=gen)
        total = 0.0
        starts = range(0, n_pos, config.batch_size)
        desc = f"epoch {epoch + 1}/{config.n_epochs}"
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
        logger.info("train_mf epoch %d/%d loss %.5f", epoch + 1, config.n_epochs, history[-1])
    model.eval()
    return history
