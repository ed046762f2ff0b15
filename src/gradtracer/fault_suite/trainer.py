"""The family-specific part of a suite run: model, batches, negatives, loss and evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradtracer.fault_suite.data import (
    ImplicitData,
    amazon_data,
    implicit_data,
    movielens_data,
    noisy_tabular_data,
    real_data_kind,
    real_session_data,
    session_data,
    tabular_data,
)
from gradtracer.fault_suite.inject import _Ctx, _map_items, _map_users, _rows
from gradtracer.fault_suite.models import MF, MLP, GRURec, TwoTower

if TYPE_CHECKING:
    from gradtracer.fault_suite.loop import RunSpec


def _implicit(spec: RunSpec) -> ImplicitData:
    if spec.data_path is not None:
        if real_data_kind(spec.data_path) == "amazon":
            return amazon_data(spec.data_path)
        return movielens_data(spec.data_path)
    return implicit_data(spec.random_state, popularity_exponent=1.4 if spec.variant == "zipf"
                         else 1.0)  # fmt: skip


def _batches(n: int, batch: int, epochs: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for _ in range(epochs):
        perm = rng.permutation(n)
        for lo in range(0, n, batch):
            yield perm[lo : lo + batch]


def _bce(pos: torch.Tensor, neg: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
    if ctx.on("probabilities_as_logits") and not ctx.fix("fix_loss_input"):
        pos, neg = ctx.level * torch.sigmoid(pos), ctx.level * torch.sigmoid(neg)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
    )


class _Trainer:
    """Family-specific model, batches, loss and evaluation."""

    def __init__(self, spec: RunSpec, ctx: _Ctx) -> None:
        self.spec, self.ctx = spec, ctx
        self.rng = np.random.default_rng(spec.random_state)
        torch.manual_seed(spec.random_state)
        fam = spec.family
        d = ctx.cfg["dim"]
        self.n_neg = {"mf_bce": 4, "mf_bpr": 1}.get(fam, 64)
        if fam in ("mf_bce", "mf_bpr", "two_tower"):
            self.data = _implicit(spec)
            self.n_users, self.n_items = self.data.n_users, self.data.n_items
            self.n_rows = _rows(spec, ctx, self.n_items)
            if fam == "two_tower":
                self.model: nn.Module = TwoTower(
                    self.n_users, self.n_rows, d, 32,
                    dropout=0.3 if spec.variant == "dropout" else 0.0,
                )  # fmt: skip
            else:
                self.model = MF(self.n_users, self.n_rows, d, sparse=spec.variant == "sparse")
            self.n_train = len(self.data.users)
            q = self.data.item_counts + 1.0
            self.log_q = torch.tensor(np.log(q / q.sum()), dtype=torch.float32)
        elif fam == "gru":
            self.sdata = (real_session_data(spec.data_path) if spec.data_path is not None
                          else session_data(spec.random_state))  # fmt: skip
            self.model = GRURec(self.sdata.n_items, d, 32)
            self.n_train = len(self.sdata.train_y)
        else:
            self.tdata = (noisy_tabular_data(spec.random_state) if spec.variant == "small_noisy"
                          else tabular_data(spec.random_state))  # fmt: skip
            sig = ctx.fault == "vanishing_sigmoid" and not ctx.fix("change_activation")
            self.model = MLP(
                self.tdata.train_x.shape[1], d, int(ctx.level) if sig else 2,
                activation=nn.Sigmoid if sig else nn.ReLU,
                dropout=0.3 if spec.variant == "dropout" else 0.0,
            )  # fmt: skip
            self.n_train = len(self.tdata.train_y)
        self.batches = list(_batches(self.n_train, ctx.cfg["batch_size"], ctx.cfg["n_epochs"],
                                     self.rng))  # fmt: skip
        #: steps of the usual epochs (a run trained past them continues with other draws)
        self.n_usual = len(self.batches)
        self.batches += _batches(self.n_train, ctx.cfg["batch_size"], ctx.cfg["extra_epochs"],
                                 np.random.default_rng(spec.random_state + 31))  # fmt: skip
        # negatives and fault masks drawn up front, identical for twins
        nb = len(self.batches)
        self.neg_draw = self.rng.random((nb, ctx.cfg["batch_size"], self.n_neg))
        self.fault_draw = np.random.default_rng(spec.random_state + 7).random(
            (nb, ctx.cfg["batch_size"], max(self.n_neg, 1))
        )
        self.nan_draw = np.random.default_rng(spec.random_state + 11).random(nb)
        self.label_draw = np.random.default_rng(spec.random_state + 13).random(
            (nb, ctx.cfg["batch_size"])
        )
        self.pool = np.random.default_rng(spec.random_state + 17).permutation(
            getattr(self, "n_items", 2)
        )

    # -- losses
    def loss(self, step: int, idx: np.ndarray) -> torch.Tensor:
        fam = self.spec.family
        if fam in ("mf_bce", "mf_bpr", "two_tower"):
            return self._loss_implicit(step, idx)
        if fam == "gru":
            x = torch.from_numpy(self.sdata.train_x[idx])
            y = torch.from_numpy(self.sdata.train_y[idx])
            logits = self.model(x)
            logits = self._nan(step, logits)
            return F.cross_entropy(logits, y)
        x = torch.from_numpy(self.tdata.train_x[idx])
        y = torch.from_numpy(self.tdata.train_y[idx])
        if self.ctx.on("labels_no_signal") and not self.ctx.fix("check_labels"):
            flip = torch.from_numpy(self.label_draw[step, : len(idx)] < self.ctx.level)
            rnd = torch.from_numpy((self.fault_draw[step, : len(idx), 0] < 0.5).astype(np.float32))
            y = torch.where(flip, rnd, y)
        logits = self._nan(step, self.model(x))
        if self.ctx.on("probabilities_as_logits") and not self.ctx.fix("fix_loss_input"):
            logits = self.ctx.level * torch.sigmoid(logits)
        return F.binary_cross_entropy_with_logits(logits, y)

    def _nan(self, step: int, scores: torch.Tensor) -> torch.Tensor:
        if self.ctx.on("non_finite_loss") and self.nan_draw[step] < self.ctx.level:
            bad = torch.zeros_like(scores)
            bad.view(-1)[0] = float("nan")
            return scores + bad
        return scores

    def _negatives(self, step: int, pos: np.ndarray) -> np.ndarray:
        ctx, b = self.ctx, len(pos)
        draw = self.neg_draw[step, :b]
        n = self.n_items
        if ctx.on("popularity_negatives_no_logq") or (
            self.spec.fault == "popularity_negatives_no_logq" and ctx.fix("apply_logq_correction")
            and ctx.active
        ):  # fmt: skip
            w = (self.data.item_counts + 1.0) ** ctx.level
            cdf = np.cumsum(w / w.sum())
            neg = np.minimum(np.searchsorted(cdf, draw), n - 1)
        else:
            neg = np.minimum((draw * n).astype(np.int64), n - 1)
        if ctx.on("negatives_tiny_pool") and not ctx.fix("sample_negatives_from_catalog"):
            neg = self.pool[: int(ctx.level)][neg % int(ctx.level)]
        if ctx.on("negatives_include_positive"):
            same = self.fault_draw[step, :b, : neg.shape[1]] < ctx.level
            neg = np.where(same, pos[:, None], neg)
        if ctx.fix("exclude_positives_from_negatives"):
            clash = neg == pos[:, None]
            neg = np.where(clash, (neg + 1 + (draw * (n - 1)).astype(np.int64)) % n, neg)
            neg = np.where(neg == pos[:, None], (neg + 1) % n, neg)
        return neg

    def _loss_implicit(self, step: int, idx: np.ndarray) -> torch.Tensor:
        ctx = self.ctx
        users_np = self.data.users[idx]
        pos_np = self.data.items[idx].copy()
        if ctx.on("labels_no_signal") and not ctx.fix("check_labels"):
            swap = self.label_draw[step, : len(idx)] < ctx.level
            rnd = (self.fault_draw[step, : len(idx), 0] * self.n_items).astype(np.int64)
            pos_np = np.where(swap, np.minimum(rnd, self.n_items - 1), pos_np)
        users = _map_users(ctx, torch.from_numpy(users_np), self.n_users)
        pos = torch.from_numpy(pos_np)
        fam = self.spec.family
        if fam == "two_tower" and self.spec.variant != "sampled":
            m = self.model
            assert isinstance(m, TwoTower)
            u = m.users(users)
            v = m.items(_map_items(ctx, pos, self.n_rows))
            logits = u @ v.T / 0.2
            logits = logits - self.log_q[pos][None, :]  # logQ correction of in-batch negatives
            logits = self._nan(step, logits)
            return F.cross_entropy(logits, torch.arange(len(idx)))
        neg = torch.from_numpy(self._negatives(step, pos_np))
        if fam == "two_tower":
            m = self.model
            assert isinstance(m, TwoTower)
            u = m.users(users)  # (B, d)
            cand = torch.cat([pos[:, None], neg], dim=1)  # (B, 1 + K)
            v = m.items(_map_items(ctx, cand, self.n_rows).reshape(-1)).reshape(*cand.shape, -1)
            logits = torch.einsum("bd,bkd->bk", u, v) / 0.2
            if ctx.fix("apply_logq_correction"):
                logits = logits - self.log_q[cand]
            logits = self._nan(step, logits)
            return F.cross_entropy(logits, torch.zeros(len(idx), dtype=torch.long))
        m = self.model
        assert isinstance(m, MF)
        s_pos = m.score(users, _map_items(ctx, pos, self.n_rows))
        s_neg = m.score(users, _map_items(ctx, neg, self.n_rows))
        s_pos = self._nan(step, s_pos)
        if fam == "mf_bpr":
            return -F.logsigmoid(s_pos - s_neg[:, 0]).mean()
        return _bce(s_pos, s_neg, ctx)

    # -- evaluation
    @torch.no_grad()
    def validate(self) -> float | None:
        """Accuracy on the validation split (None when the data has none)."""
        if self.spec.family != "mlp" or self.tdata.valid_x is None:
            return None
        assert self.tdata.valid_y is not None
        self.model.eval()
        try:
            logits = self.model(torch.from_numpy(self.tdata.valid_x))
            y = torch.from_numpy(self.tdata.valid_y)
            return float(((logits > 0).float() == y).float().mean())
        finally:
            self.model.train()

    @torch.no_grad()
    def evaluate(self) -> tuple[float, str]:
        self.model.eval()
        try:
            if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                return 0.0, "accuracy" if self.spec.family == "mlp" else "ndcg@10"
            fam = self.spec.family
            if fam == "mlp":
                logits = self.model(torch.from_numpy(self.tdata.test_x))
                y = torch.from_numpy(self.tdata.test_y)
                return float(((logits > 0).float() == y).float().mean()), "accuracy"
            if fam == "gru":
                logits = self.model(torch.from_numpy(self.sdata.test_x))
                logits[:, 0] = -math.inf
                target = torch.from_numpy(self.sdata.test_y)
                return _ndcg(logits, target), "ndcg@10"
            users = np.nonzero(self.data.test_items >= 0)[0]
            u = torch.from_numpy(users)
            mu = _map_users(self.ctx, u, self.n_users)
            items = _map_items(self.ctx, torch.arange(self.n_items), self.n_rows)
            m = self.model
            if isinstance(m, TwoTower):
                scores = m.users(mu) @ m.items(items).T
            else:
                assert isinstance(m, MF)
                scores = m.user_emb(mu) @ m.item_emb(items).T
            seen = np.zeros((self.n_users, self.n_items), dtype=bool)
            seen[self.data.users, self.data.items] = True
            scores[torch.from_numpy(seen[users])] = -math.inf
            target = torch.from_numpy(self.data.test_items[users])
            return _ndcg(scores, target), "ndcg@10"
        finally:
            self.model.train()


def _ndcg(scores: torch.Tensor, target: torch.Tensor, k: int = 10) -> float:
    """Mean NDCG@k of one held-out item per row; ties count against the target."""
    t = scores.gather(1, target[:, None])
    rank = (scores >= t).sum(1) - 1
    gain = torch.where(rank < k, 1.0 / torch.log2(rank.double() + 2.0), torch.zeros(()))
    return float(gain.mean())
