"""One suite run: a plain PyTorch training loop with an optional injected fault and remedy.

:func:`train_run` builds the family's data and model, trains it tracked through the public
API (an :class:`~gradtracer.embedding.tracker.EmbeddingTracker` per embedding table and a
:class:`~gradtracer.flow.tracker.FlowTracker` on the whole model, both in a
:class:`~gradtracer.flow.manager.FlowManager`), runs :func:`gradtracer.diagnosis.diagnose`
at checkpoints and evaluates the model (NDCG@10 by full ranking for the recommender
families, accuracy for the MLP).

A healthy run and its faulty twin share data, seed, initial weights, batch order and the
negative draws: all sampling comes from generators seeded by ``random_state`` before
the fault is applied, and the fault only transforms what was drawn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradtracer.diagnosis.suite.data import (
    ImplicitData,
    implicit_data,
    movielens_data,
    session_data,
    tabular_data,
)
from gradtracer.diagnosis.suite.faults import FAMILIES, fault_spec
from gradtracer.diagnosis.suite.models import MF, MLP, GRURec, TwoTower
from gradtracer.findings import Remedy

__all__ = ["VARIANTS", "RunResult", "RunSpec", "train_run"]

#: healthy variants per family: odd-looking but fine training set-ups
VARIANTS: dict[str, tuple[str, ...]] = {
    "mf_bce": ("default", "zipf", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "long",
               "sparse"),
    "mf_bpr": ("default", "zipf", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "long",
               "sparse"),
    "two_tower": ("default", "zipf", "tuned_high_lr", "warmup", "lr_decay", "small_batch",
                  "dropout", "long", "sampled"),
    "gru": ("default", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "long"),
    "mlp": ("default", "tuned_high_lr", "warmup", "lr_decay", "small_batch", "dropout", "long"),
}  # fmt: skip

_BASE: dict[str, dict[str, Any]] = {
    "mf_bce": {"learning_rate": 0.01, "batch_size": 256, "n_epochs": 5, "dim": 16},
    "mf_bpr": {"learning_rate": 0.01, "batch_size": 256, "n_epochs": 5, "dim": 16},
    "two_tower": {"learning_rate": 0.005, "batch_size": 256, "n_epochs": 5, "dim": 16},
    "gru": {"learning_rate": 0.005, "batch_size": 128, "n_epochs": 3, "dim": 24},
    "mlp": {"learning_rate": 0.003, "batch_size": 64, "n_epochs": 3, "dim": 64},
}


@dataclass(frozen=True)
class RunSpec:
    """What to train.

    Attributes:
        family: one of :data:`~gradtracer.diagnosis.suite.faults.FAMILIES`.
        random_state: seed of data, initial weights, batch order and negatives.
        variant: healthy variant (see :data:`VARIANTS`; a fault may require one).
        fault: injected fault name, or None for a healthy run.
        intensity: index (0 or 1) into the fault's two intensities.
        onset: fraction of training at which the fault starts (0.0 or 0.3 in the suite).
        remedy: a remedy applied on top of the fault (or None).
        data_path: MovieLens ratings file for the MF and two-tower families (None: synthetic).
        track: track with the public API and diagnose at checkpoints (default True).
        auto_fix: turn on Auto-Fix on every embedding table.
    """

    family: str
    random_state: int = 0
    variant: str = "default"
    fault: str | None = None
    intensity: int = 0
    onset: float = 0.0
    remedy: Remedy | None = None
    data_path: str | None = None
    track: bool = True
    auto_fix: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.variant not in VARIANTS[self.family]:
            raise ValueError(
                f"family {self.family!r} has no variant {self.variant!r}; "
                f"known: {', '.join(VARIANTS[self.family])}"
            )
        if self.fault is not None:
            spec = fault_spec(self.fault)
            if self.family not in spec.families:
                raise ValueError(
                    f"fault {self.fault!r} cannot be applied to family {self.family!r} "
                    f"(applies to {', '.join(spec.families)})"
                )
        if self.intensity not in (0, 1):
            raise ValueError(f"intensity must be 0 or 1, got {self.intensity!r}")
        if not 0.0 <= self.onset < 1.0:
            raise ValueError(f"onset must be in [0, 1), got {self.onset!r}")
        if self.data_path is not None and self.family not in ("mf_bce", "mf_bpr", "two_tower"):
            raise ValueError(f"data_path applies to user-item families, not {self.family!r}")

    def key(self) -> str:
        """Short unique label of the run."""
        parts = [self.family, self.variant, f"s{self.random_state}"]
        if self.data_path:
            parts.append("ml100k")
        if self.fault:
            parts += [self.fault, f"i{self.intensity}", f"o{self.onset:g}"]
        if self.remedy:
            parts.append(f"fix:{self.remedy.kind}")
        if self.auto_fix:
            parts.append("autofix")
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["remedy"] = None if self.remedy is None else self.remedy.to_dict()
        return out


@dataclass
class Checkpoint:
    """The diagnosis at one step: ranked findings (dicts) and the health score."""

    step: int
    findings: list[dict[str, Any]]
    health: float


@dataclass
class RunResult:
    """What one run produced."""

    spec: RunSpec
    quality: float
    quality_name: str
    n_steps: int
    onset_step: int
    losses: list[float]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    layer_stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def final(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "key": self.spec.key(),
            "quality": self.quality,
            "quality_name": self.quality_name,
            "n_steps": self.n_steps,
            "onset_step": self.onset_step,
            "losses": [x if math.isfinite(x) else None for x in self.losses],
            "checkpoints": [asdict(c) for c in self.checkpoints],
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------------------- helpers
class _Ctx:
    """Mutable per-run state the injection points read."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.fault = spec.fault
        self.level = fault_spec(spec.fault).intensities[spec.intensity] if spec.fault else 0.0
        self.active = spec.fault is not None and spec.onset == 0.0
        self.remedy = spec.remedy
        cfg = dict(_BASE[spec.family])
        v = spec.variant
        if v == "tuned_high_lr":
            cfg["learning_rate"] *= 3.0
        if v == "small_batch":
            cfg["batch_size"] = max(16, cfg["batch_size"] // 4)
            cfg["n_epochs"] = max(1, cfg["n_epochs"] // 2)
        if v == "long":
            cfg["n_epochs"] *= 3
        self.cfg = cfg

    def on(self, name: str) -> bool:
        return self.active and self.fault == name

    def fix(self, kind: str) -> Remedy | None:
        return self.remedy if self.remedy is not None and self.remedy.kind == kind else None


def _rows(spec: RunSpec, ctx: _Ctx, n: int) -> int:
    return int(math.ceil(n / ctx.level)) if spec.fault == "hash_collisions" and not ctx.fix(
        "enlarge_table") else n  # fmt: skip


def _map_items(ctx: _Ctx, items: torch.Tensor, n_rows: int) -> torch.Tensor:
    return items % n_rows


def _map_users(ctx: _Ctx, users: torch.Tensor, n_users: int) -> torch.Tensor:
    if ctx.on("unreachable_rows") and not ctx.fix("fix_id_mapping"):
        cut = int(n_users * (1.0 - ctx.level))
        return torch.where(users >= cut, users % cut, users)
    return users


def _init_fault(ctx: _Ctx, model: nn.Module) -> None:
    """Apply an initialisation fault (at step 0, or at the onset as a bad reload)."""
    if ctx.fix("reinitialize"):
        return
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    gen = torch.Generator().manual_seed(12345 + ctx.spec.random_state)
    with torch.no_grad():
        if ctx.fault == "init_huge_std":
            if isinstance(model, MLP):
                for mod in model.modules():
                    if isinstance(mod, nn.Linear):
                        mod.weight.mul_(ctx.level / 10.0)
            for t in tables:
                t.weight.normal_(0.0, 0.1 * ctx.level, generator=gen)
        elif ctx.fault == "init_identical_rows":
            for t in tables:
                n = t.num_embeddings
                rows = torch.randperm(n, generator=gen)[: int(round(ctx.level * n))]
                t.weight[rows] = t.weight[rows[0]].clone()
        elif ctx.fault == "init_zero":
            if isinstance(model, MLP):
                for mod in model.modules():
                    if isinstance(mod, nn.Linear):
                        mod.weight.zero_()
                        mod.bias.zero_()
            else:
                assert isinstance(model, MF)
                model.item_emb.weight.zero_()
                if ctx.level >= 1.0:
                    model.user_emb.weight.zero_()
        elif ctx.fault == "dead_relu":
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            hidden = linears[:-1] if isinstance(model, MLP) else linears[0::2]
            for mod in hidden:
                mod.bias.fill_(-ctx.level)
        elif ctx.fault == "gru_exploding":
            assert isinstance(model, GRURec)
            for name in ("weight_hh_l0", "weight_ih_l0"):
                cast(torch.Tensor, getattr(model.gru, name)).mul_(ctx.level)


_INIT_FAULTS = {"init_huge_std", "init_identical_rows", "init_zero", "dead_relu", "gru_exploding"}


def _groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Parameter groups by role: tables by name, dense layers by their top-level module."""
    out: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        if isinstance(model, MLP):
            top = "net." + name.split(".")[1]
        out.setdefault(top, []).append(p)
    return out


def _is_table(group: str) -> bool:
    return group.endswith("_emb")


def _dense_groups(model: nn.Module, groups: dict[str, list[nn.Parameter]]) -> list[str]:
    return [g for g in groups if not _is_table(g)]


def _lr_factor(ctx: _Ctx, group: str, model: nn.Module) -> float:
    factor = 1.0
    if not ctx.active:
        return factor
    f = ctx.fault
    if f in ("lr_high_embedding", "lr_high_sparse") and _is_table(group):
        factor *= ctx.level
    if f == "lr_high_dense" and not _is_table(group):
        factor *= ctx.level
    if f == "lr_too_low":
        factor /= ctx.level
    if f == "tower_lr_skew" and group in ("item_emb", "item_tower"):
        factor /= ctx.level
    if f == "norm_growth" and group == "item_emb":
        factor *= ctx.level
    return factor


def _excluded(ctx: _Ctx, group: str, model: nn.Module, order: list[str]) -> bool:
    if not ctx.active or ctx.fix("add_to_optimizer"):
        return False
    if ctx.fault == "table_not_in_optimizer":
        if isinstance(model, GRURec):
            return group == "item_emb"
        return group == ("item_emb" if ctx.level == 0.0 else "user_emb")
    if ctx.fault == "layer_not_in_optimizer":
        dense = [g for g in order if not _is_table(g)]
        if isinstance(model, TwoTower):
            return group == "item_tower" or (ctx.level >= 2 and group == "user_tower")
        return group in dense[: int(ctx.level)]
    return False


def _remedy_lr(ctx: _Ctx, group: str) -> float:
    fix = ctx.fix("scale_learning_rate")
    if fix is None:
        return 1.0
    subject = str(fix.params.get("subject") or "*")
    factor = float(fix.params.get("factor") or 1.0)
    hit = subject in ("*", "", "model") or subject == group or subject.startswith(group) or (
        group.startswith(subject.split(".")[0]))  # fmt: skip
    return factor if hit else 1.0


def _weight_decay(ctx: _Ctx, group: str) -> float:
    wd = 0.0
    if ctx.on("weight_decay_collapse") and _is_table(group):
        wd = ctx.level
    fix = ctx.fix("scale_weight_decay")
    if fix is not None:
        wd *= float(fix.params.get("factor") or 1.0)
    add = ctx.fix("add_weight_decay")
    if add is not None and _is_table(group):
        wd += float(add.params.get("weight_decay") or 0.1)
    return wd


def _make_optimizer(ctx: _Ctx, model: nn.Module) -> tuple[torch.optim.Optimizer, list[dict]]:
    groups = _groups(model)
    order = list(groups)
    lr = ctx.cfg["learning_rate"]
    sparse = ctx.spec.variant == "sparse"
    param_groups = []
    for g in order:
        param_groups.append({
            "params": groups[g], "name": g,
            "lr": lr * (10.0 if sparse else 1.0) * _lr_factor(ctx, g, model) * _remedy_lr(ctx, g),
            "base_lr": lr * (10.0 if sparse else 1.0) * _remedy_lr(ctx, g),
            "weight_decay": _weight_decay(ctx, g),
            "excluded": _excluded(ctx, g, model, order),
        })  # fmt: skip
    kept = [dict(pg) for pg in param_groups if not pg["excluded"]]
    for pg in kept:
        pg.pop("excluded")
    opt: torch.optim.Optimizer
    if sparse:
        for pg in kept:
            pg.pop("weight_decay")
        opt = torch.optim.Adagrad(kept)
    else:
        opt = torch.optim.AdamW(kept, betas=(0.9, 0.999))
    return opt, param_groups


def _apply_onset(ctx: _Ctx, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Switch the fault on mid-run: reload-style init faults, optimizer and model changes."""
    ctx.active = True
    if ctx.fault in _INIT_FAULTS:
        _init_fault(ctx, model)
    groups = _groups(model)
    order = list(groups)
    for pg in list(opt.param_groups):
        name = pg["name"]
        if _excluded(ctx, name, model, order):
            for p in pg["params"]:
                opt.state.pop(p, None)
            opt.param_groups.remove(pg)
            continue
        pg["lr"] = pg["base_lr"] * _lr_factor(ctx, name, model)
        if "weight_decay" in pg:
            pg["weight_decay"] = _weight_decay(ctx, name)
    _freeze(ctx, model)


def _freeze(ctx: _Ctx, model: nn.Module) -> None:
    if ctx.on("frozen_table") and not ctx.fix("set_requires_grad"):
        table = getattr(model, "item_emb" if ctx.level == 0.0 else "user_emb", None)
        if table is None:  # the GRU has only an item table
            table = model.item_emb
        cast(nn.Embedding, table).weight.requires_grad_(False)
    if ctx.on("detached_tower") and not ctx.fix("reconnect_gradient"):
        assert isinstance(model, TwoTower)
        if ctx.level == 0.0:
            model.detach_item = True
        else:
            model.detach_user = True


def _lr_schedule(ctx: _Ctx, step: int, n_steps: int) -> float:
    v = ctx.spec.variant
    if v == "warmup":  # warm-up to 3x over the first 10%, then linear decay to 0.3x
        w = max(1, n_steps // 10)
        return 3.0 * (step + 1) / w if step < w else 3.0 - 2.7 * (step - w) / max(1, n_steps - w)
    if v == "lr_decay":
        return 1.0 if step < n_steps // 2 else 0.05
    return 1.0


# ------------------------------------------------------------------------------ families
def _implicit(spec: RunSpec) -> ImplicitData:
    if spec.data_path is not None:
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
            self.sdata = session_data(spec.random_state)
            self.model = GRURec(self.sdata.n_items, d, 32)
            self.n_train = len(self.sdata.train_y)
        else:
            self.tdata = tabular_data(spec.random_state)
            sig = ctx.fault == "vanishing_sigmoid" and not ctx.fix("change_activation")
            self.model = MLP(
                self.tdata.train_x.shape[1], d, int(ctx.level) if sig else 2,
                activation=nn.Sigmoid if sig else nn.ReLU,
                dropout=0.3 if spec.variant == "dropout" else 0.0,
            )  # fmt: skip
            self.n_train = len(self.tdata.train_y)
        self.batches = list(_batches(self.n_train, ctx.cfg["batch_size"], ctx.cfg["n_epochs"],
                                     self.rng))  # fmt: skip
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


# ---------------------------------------------------------------------------------- main
def _tracking(trainer: _Trainer, opt: torch.optim.Optimizer, spec: RunSpec, n_steps: int) -> Any:
    from gradtracer.embedding.tracker import EmbeddingTracker
    from gradtracer.flow.manager import FlowManager
    from gradtracer.flow.tracker import FlowTracker

    manager = FlowManager(spec.family)
    interval = max(1, n_steps // 40)
    for name, mod in trainer.model.named_modules():
        if isinstance(mod, nn.Embedding):
            manager.add_tracker(name, EmbeddingTracker(
                mod, name=name, track_interval=interval, auto_fix=spec.auto_fix))  # fmt: skip
    manager.add_tracker("model", FlowTracker(
        trainer.model, name=spec.family, optimizer=opt, track_activations=True, sample_size=2048,
        history_dir="/nonexistent-gradtracer-runs"))  # fmt: skip
    return manager


def train_run(spec: RunSpec, *, n_checkpoints: int = 10) -> RunResult:
    """Train one run and diagnose it at ``n_checkpoints`` evenly spaced steps (and the end).

    Returns:
        :class:`RunResult` with the quality (NDCG@10 or accuracy), the loss per step and
        the ranked findings and health score at each checkpoint.
    """
    from gradtracer.diagnosis import diagnose

    start = time.perf_counter()
    ctx = _Ctx(spec)
    trainer = _Trainer(spec, ctx)
    model = trainer.model
    if ctx.active and spec.fault in _INIT_FAULTS:
        _init_fault(ctx, model)
    opt, _ = _make_optimizer(ctx, model)
    n_steps = len(trainer.batches)
    onset_step = int(round(spec.onset * n_steps)) if spec.fault else 0
    # trackers attach first: a tracker cannot hook a table that is already frozen
    manager = _tracking(trainer, opt, spec, n_steps) if spec.track else None
    if ctx.active:
        _freeze(ctx, model)
    marks = sorted({max(1, int(round(n_steps * (j + 1) / n_checkpoints))) for j in
                    range(n_checkpoints)})  # fmt: skip
    base_lrs = [pg["lr"] for pg in opt.param_groups]
    losses: list[float] = []
    checkpoints: list[Checkpoint] = []
    accumulate = spec.fault == "missing_zero_grad"
    with torch.random.fork_rng():
        torch.manual_seed(spec.random_state + 1)
        for step, idx in enumerate(trainer.batches):
            if spec.fault and step == onset_step and not ctx.active:
                _apply_onset(ctx, model, opt)
                base_lrs = [pg["lr"] for pg in opt.param_groups]
            factor = _lr_schedule(ctx, step, n_steps)
            for pg, lr in zip(opt.param_groups, base_lrs):
                pg["lr"] = lr * factor
            every = int(ctx.level) if accumulate else 1
            skip_zero = accumulate and ctx.active and not ctx.fix("call_zero_grad") and (
                every == 0 or step % every != 0)  # fmt: skip
            if not skip_zero:
                opt.zero_grad(set_to_none=True)
            loss = trainer.loss(step, idx)
            value = float(loss.detach())
            losses.append(value)
            guard = ctx.fix("skip_non_finite_batches") is not None
            if guard and not math.isfinite(value):
                opt.zero_grad(set_to_none=True)
                if manager is not None:
                    manager.step(loss=value)
                continue
            loss.backward()
            clip = ctx.fix("clip_gradients")
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), float(clip.params.get(
                    "max_norm") or 1.0))  # fmt: skip
            if manager is not None:
                manager.step(loss=value)
            opt.step()
            if manager is not None and step + 1 in marks:
                d = diagnose(manager)
                checkpoints.append(Checkpoint(step + 1, [f.to_dict() for f in d.findings],
                                              d.health))  # fmt: skip
    quality, qname = trainer.evaluate()
    layer_stats: dict[str, Any] = {}
    if manager is not None:
        layer_stats = _flow_layer_stats(manager)
        manager.detach()
    return RunResult(spec, quality, qname, n_steps, onset_step, losses, checkpoints,
                     layer_stats, time.perf_counter() - start)  # fmt: skip


def _flow_layer_stats(manager: Any) -> dict[str, Any]:
    """Per-layer gradient statistics the baselines read (first / last layer gradient norms,
    dead fractions)."""
    flow = manager["model"]
    snaps = flow.snapshots()
    return {
        s.name: {
            "grad_norm_median": s.grad_norm_median,
            "grad_norm_max": s.grad_norm_max,
            "weight_norm": s.weight_norm,
            "numel": s.numel,
            "dead_fraction": s.dead_fraction,
        }
        for s in snaps
    }
