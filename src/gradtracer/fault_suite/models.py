"""The suite's models: plain PyTorch modules, small enough that a run takes about a second."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MF", "MLP", "GRURec", "TwoTower"]


class MF(nn.Module):
    """Implicit matrix factorization: ``score(u, i) = <user_emb[u], item_emb[i]>``."""

    def __init__(self, n_users: int, n_items: int, dim: int, *, sparse: bool = False) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``users[b]`` against ``items[b, ...]`` (items may have extra dims)."""
        u = self.user_emb(users)  # (B, d)
        v = self.item_emb(items)  # (B, ..., d)
        if v.dim() == 3:
            return torch.einsum("bd,bkd->bk", u, v)
        return (u * v).sum(-1)

    def all_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users) @ self.item_emb.weight.T


def _tower(dim: int, hidden: int, dropout: float, activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim, hidden), activation(), nn.Dropout(dropout), nn.Linear(hidden, dim)
    )


class TwoTower(nn.Module):
    """Id embedding + MLP per tower; scores are dot products of the tower outputs."""

    def __init__(self, n_users: int, n_items: int, dim: int, hidden: int, *,
                 dropout: float = 0.0, activation: type[nn.Module] = nn.ReLU) -> None:  # fmt: skip
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        self.user_tower = _tower(dim, hidden, dropout, activation)
        self.item_tower = _tower(dim, hidden, dropout, activation)
        self.detach_user = False
        self.detach_item = False

    def users(self, users: torch.Tensor) -> torch.Tensor:
        out = self.user_tower(self.user_emb(users))
        return out.detach() if self.detach_user else out

    def items(self, items: torch.Tensor) -> torch.Tensor:
        out = self.item_tower(self.item_emb(items))
        return out.detach() if self.detach_item else out

    def all_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.users(users) @ self.items(torch.arange(self.item_emb.num_embeddings)).T


class GRURec(nn.Module):
    """GRU over the session prefix; logits over items through the (tied) item table."""

    def __init__(self, n_items: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items, dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, dim)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.item_emb(prefix))  # (B, L, H)
        return self.out(h[:, -1]) @ self.item_emb.weight.T  # (B, n_items)


class MLP(nn.Module):
    """A plain MLP for binary classification (one logit per example)."""

    def __init__(self, n_features: int, hidden: int, depth: int, *,
                 activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), activation()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
