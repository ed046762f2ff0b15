"""The planted-bottleneck distillation check: does acting on the flagged layer help?

A two-tower teacher (an embedding and a two-layer MLP per tower, dot-product score) is
trained with BPR. A student of the same shape but with a hidden width of
``bottleneck`` in one tower is distilled from it (BPR plus the MSE between student and
teacher scores) while a :class:`~gradtracer.compress.distill.DistillationTracker`
follows every mapped layer pair over the last epoch(s). The tracker's finding names the
layer the student mimics worst and the action its remedy calls for; the study takes that
action and distils again with the same seed: ``widen`` rebuilds the student with the
target layer's tower at the teacher's width, ``hint_loss`` adds a FitNets hint (MSE between a
learned linear map of the flagged student layer and the teacher's layer). For reference
the study also distils the student with the planted layer widened (the best any action
on it can do). Every student is evaluated with full-ranking NDCG@10 on held-out items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from gradtracer._random import torch_generator
from gradtracer.compress.distill import DistillationTracker, linear_cka
from gradtracer.compress.workloads import Workload, evaluate_model

__all__ = [
    "BottleneckConfig",
    "BottleneckResult",
    "TwoTower",
    "planted_bottleneck_study",
    "summarize_bottleneck",
    "train_teacher",
    "train_two_tower",
]


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
    track_last: int | None = None,
    hints: Mapping[str, str] | None = None,
    hint_weight: float = 1.0,
    weight_decay: float = 0.0,
    on_epoch: Callable[[int], Any] | None = None,
    track_rows: int | None = None,
) -> None:
    """BPR training, plus ``distill_weight * MSE(student scores, teacher scores)`` with a teacher.

    Args:
        weight_decay: L2 on the looked-up embedding rows per step (as
            :func:`~gradtracer.compress.workloads.train_dot_mf`; default 0).
        on_epoch: called with the number of epochs done after each epoch.
        track_rows: the tracker measures the first this many pairs of each batch
            (default: the whole batch); its minibatch CKA costs O(rows^3).
        track_last: step ``tracker`` only in the last this many epochs (default: all),
            so its statistics describe the trained student.
        hints: ``{student layer: teacher layer}`` FitNets hints: each adds ``hint_weight *
            MSE(Linear(student output), teacher output)``, the linear map trained too.
    """
    coo = sp.csr_matrix(train).tocoo()
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64))
    gen = torch_generator(random_state)
    params = list(model.parameters())
    captured: dict[tuple[str, str], torch.Tensor] = {}
    handles = []
    regressors: dict[str, nn.Linear] = {}
    if hints:
        if teacher is None:
            raise ValueError("hints need a teacher")
        s_mods, t_mods = dict(model.named_modules()), dict(teacher.named_modules())
        for s_name, t_name in hints.items():
            if s_name not in s_mods or t_name not in t_mods:
                raise KeyError(f"hint {s_name!r} -> {t_name!r}: no such student/teacher module")
            s_mod, t_mod = s_mods[s_name], t_mods[t_name]
            assert isinstance(s_mod, nn.Linear) and isinstance(t_mod, nn.Linear)
            regressors[s_name] = nn.Linear(s_mod.out_features, t_mod.out_features)
            params += list(regressors[s_name].parameters())
            for side, name, mod in (("s", s_name, s_mod), ("t", t_name, t_mod)):

                def hook(
                    _m: nn.Module, _i: Any, out: Any, key: tuple[str, str] = (side, name)
                ) -> None:
                    captured[key] = out

                handles.append(mod.register_forward_hook(hook))
    opt = torch.optim.Adam(params, lr=learning_rate)
    first_tracked = 0 if track_last is None else max(0, n_epochs - int(track_last))
    t_scores = None  # the teacher's full score matrix, read where no hook needs its forward
    if teacher is not None and model.n_users * model.n_items <= 50_000_000:
        with torch.no_grad():
            tu, ti = teacher.scorer()
            t_scores = tu @ ti.T
    for epoch in range(n_epochs):
        order = torch.randperm(users.numel(), generator=gen)
        for start in range(0, order.numel(), batch_size):
            idx = order[start : start + batch_size]
            u, i = users[idx], items[idx]
            j = torch.randint(0, model.n_items, (idx.numel(),), generator=gen)
            pos, neg = model(u, i), model(u, j)
            loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
            if weight_decay:
                reg = (
                    model.user_emb(u).pow(2).sum()
                    + model.item_emb(i).pow(2).sum()
                    + model.item_emb(j).pow(2).sum()
                )
                loss = loss + weight_decay * reg / idx.numel()
            if teacher is not None:
                tracked = tracker is not None and epoch >= first_tracked
                with torch.no_grad():
                    if hints or tracked or t_scores is None:  # the hooks need the forward
                        t_pos, t_neg = teacher(u, i), teacher(u, j)
                    else:
                        t_pos, t_neg = t_scores[u, i], t_scores[u, j]
                loss = loss + distill_weight * (
                    (pos - t_pos).pow(2).mean() + (neg - t_neg).pow(2).mean()
                )
                for s_name, t_name in (hints or {}).items():  # on the (u, j) pass
                    pred = regressors[s_name](captured[("s", s_name)])
                    loss = loss + hint_weight * (pred - captured[("t", t_name)]).pow(2).mean()
                if tracker is not None and epoch >= first_tracked:
                    if track_rows is not None and idx.numel() > track_rows:
                        # minibatch CKA costs O(n^3) in the rows: measure a slice of the batch
                        with torch.no_grad():
                            teacher(u[:track_rows], j[:track_rows])
                            model(u[:track_rows], j[:track_rows])
                    tracker.step()  # the hooks hold the last forward pair, on (u, j)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch + 1)
    for handle in handles:
        handle.remove()


@dataclass
class BottleneckResult:
    """Outcome of :func:`planted_bottleneck_study` for one seed.

    ``acted_ndcg`` is the student after the finding's action (``action``: ``widen`` or
    ``hint_loss``); ``widened_ndcg`` the student with the planted layer widened.
    """

    seed: int
    flagged: str | None
    action: str | None
    target: str | None
    cka: dict[str, float]
    fit: dict[str, float]
    coverage: dict[str, float]
    full_cka: dict[str, float]
    teacher_ndcg: float
    distilled_ndcg: float
    acted_ndcg: float
    widened_ndcg: float
    topk_overlap: float
    distilled_per_user: np.ndarray | None = None  # per-user NDCG@10 (evaluation users' order)
    acted_per_user: np.ndarray | None = None
    valid_ndcg: dict[str, float] = field(default_factory=dict)  # the same models on validation

    @property
    def lift(self) -> float:
        """Relative NDCG@10 gain of acting on the finding over distillation alone (NaN when
        the distilled student scores 0: a relative change is undefined there)."""
        if self.distilled_ndcg == 0:
            return math.nan
        return self.acted_ndcg / self.distilled_ndcg - 1.0

    @property
    def flagged_planted(self) -> bool:
        """Whether the layer acted on is in the bottlenecked (item) tower."""
        where = self.target if self.action == "widen" else self.flagged
        return bool(where and where.startswith("item_tower"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "flagged": self.flagged,
            "action": self.action,
            "target": self.target,
            "cka": self.cka,
            "fit": self.fit,
            "coverage": self.coverage,
            "full_cka": self.full_cka,
            "teacher_ndcg": self.teacher_ndcg,
            "distilled_ndcg": self.distilled_ndcg,
            "acted_ndcg": self.acted_ndcg,
            "widened_ndcg": self.widened_ndcg,
            "topk_overlap": self.topk_overlap,
            "lift": self.lift,
            "valid_ndcg": self.valid_ndcg,
            **{
                k: None if v is None else [float(x) for x in v]
                for k, v in (
                    ("distilled_per_user", self.distilled_per_user),
                    ("acted_per_user", self.acted_per_user),
                )
            },
        }


_PAIRS = {
    "user_tower.0": "user_tower.0",
    "user_tower.2": "user_tower.2",
    "item_tower.0": "item_tower.0",
    "item_tower.2": "item_tower.2",
}


@dataclass(frozen=True)
class BottleneckConfig:
    """How :func:`planted_bottleneck_study` trains (defaults: the measured setting).

    The teacher setting was chosen on the MovieLens-100K **validation** items (seed 0):
    batch 2048, learning rate 0.01, 30 epochs reach validation NDCG@10 0.044 (10 epochs:
    0.028, 20: 0.034, 40: 0.045), against 0.020-0.029 on test for the earlier 10-epoch,
    batch-512 teachers. The students train 10 epochs at batch 4096 and learning rate 0.02
    (a quarter of the teacher's steps) to fit the study's CPU budget.
    """

    teacher_epochs: int = 30  # epochs of the teacher
    teacher_batch_size: int = 2048  # positives per teacher step
    teacher_learning_rate: float = 0.01  # Adam step size of the teacher
    n_epochs: int = 10  # epochs of every student
    batch_size: int = 4096  # positives per student step
    learning_rate: float = 0.02  # Adam step size of the students
    weight_decay: float = 0.0  # L2 on the looked-up rows
    bottleneck: int = 2  # hidden width of the student's item tower (the teacher's is 32)
    track_last: int = 1  # epochs at the end whose batches the tracker measures
    track_rows: int = 512  # pairs of each batch the tracker measures (its CKA is O(rows^3))
    hint_weight: float = 1.0  # weight of the hint loss when the action is ``hint_loss``

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_teacher(workload: Workload, config: BottleneckConfig, seed: int) -> TwoTower:
    """The two-tower teacher of :func:`planted_bottleneck_study` for ``seed``."""
    teacher = TwoTower(workload.n_users, workload.n_items, random_state=seed)
    train_two_tower(
        teacher, workload.train, n_epochs=config.teacher_epochs,
        batch_size=config.teacher_batch_size, learning_rate=config.teacher_learning_rate,
        weight_decay=config.weight_decay, random_state=seed,
    )  # fmt: skip
    return teacher.eval()


def planted_bottleneck_study(
    workload: Workload,
    *,
    seed: int = 0,
    config: BottleneckConfig | None = None,
    teacher: TwoTower | None = None,
    part: str = "test",
) -> BottleneckResult:
    """Run the planted-bottleneck check on ``workload`` for one seed (see the module docstring).

    Args:
        seed: seed of the teacher (when trained here) and of every student's shuffling
            and negatives; students are initialised with ``seed + 1000``.
        config: training settings (:class:`BottleneckConfig`).
        teacher: a trained teacher to reuse (default: :func:`train_teacher` of ``seed``).
        part: ``"test"`` (default) or ``"valid"``: the held-out items every NDCG@10 is on.
    """
    cfg = config or BottleneckConfig()
    nu, ni = workload.n_users, workload.n_items
    if teacher is None:
        teacher = train_teacher(workload, cfg, seed)
    teacher.eval()
    t = teacher

    def distil(
        tracked: bool = False, hints: Mapping[str, str] | None = None, **widths: int
    ) -> tuple[TwoTower, DistillationTracker | None]:
        student = TwoTower(nu, ni, random_state=seed + 1000, **widths)
        tr = DistillationTracker(t, student, _PAIRS) if tracked else None
        train_two_tower(
            student, workload.train, n_epochs=cfg.n_epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, random_state=seed,
            teacher=t, tracker=tr, track_last=cfg.track_last, hints=hints,
            hint_weight=cfg.hint_weight, track_rows=cfg.track_rows,
        )  # fmt: skip
        if tr is not None:
            tr.detach()
        return student, tr

    valid: dict[str, float] = {}

    def per_user(m: TwoTower, label: str = "") -> np.ndarray:
        if label and part != "valid":  # the same models on the validation items
            valid[label] = float(np.mean(evaluate_model(m, workload, part="valid")["ndcg@10"]))
        return np.asarray(evaluate_model(m, workload, part=part)["ndcg@10"], dtype=np.float64)

    student, tracker = distil(tracked=True, item_hidden=cfg.bottleneck)
    assert tracker is not None
    overlap = tracker.final_overlap(_full_scores(t), _full_scores(student), k=10)
    findings = tracker.findings()
    flagged = findings[0].subject if findings else None
    action = str(findings[0].evidence["action"]) if findings else None
    target = str(findings[0].evidence["target"]) if findings else None
    widened_users = per_user(distil()[0], "widened")  # the planted layer at the teacher's width
    distilled_users = per_user(student, "distilled")
    acted_users = np.full_like(distilled_users, np.nan)
    if target is not None and action == "widen":
        # the target's tower at the teacher's width (32); the user tower already has it
        acted_users = widened_users if target.startswith("item_tower") else distilled_users
    elif flagged is not None:
        hinted = distil(hints={flagged: _PAIRS[flagged]}, item_hidden=cfg.bottleneck)[0]
        acted_users = per_user(hinted, "hinted")
    return BottleneckResult(
        seed=seed,
        flagged=flagged,
        action=action,
        target=target,
        cka={s: h.cka for s, h in tracker.history.items()},
        fit={s: h.fit for s, h in tracker.history.items()},
        coverage={s: h.coverage()[0] for s, h in tracker.history.items()},
        full_cka=_full_cka(t, student),
        teacher_ndcg=float(np.mean(per_user(t, "teacher"))),
        distilled_ndcg=float(np.mean(distilled_users)),
        acted_ndcg=float(np.mean(acted_users)),
        widened_ndcg=float(np.mean(widened_users)),
        topk_overlap=overlap,
        distilled_per_user=distilled_users,
        acted_per_user=acted_users,
        valid_ndcg=valid,
    )


def summarize_bottleneck(results: list[BottleneckResult]) -> dict[str, Any]:
    """Mean lift with a 95% t-interval over seeds (seeds with a defined lift) and the
    seed-paired t-test of acted against distilled NDCG@10; how often the planted tower
    was flagged."""
    from gradtracer.recsys.stats import aggregate_seeds

    acted = [r.acted_ndcg for r in results]
    agg = aggregate_seeds(acted, [r.distilled_ndcg for r in results], names=("acted", "distilled"))
    finite = [r.lift for r in results if math.isfinite(r.lift)]
    lifts = aggregate_seeds(finite if finite else [math.nan])
    out: dict[str, Any] = {
        "n_seeds": len(results),
        "flagged_planted": sum(r.flagged_planted for r in results),
        "n_lift_defined": len(finite),
        "lift_mean": lifts.treatment.mean,
        "lift_ci": [lifts.treatment.ci_low, lifts.treatment.ci_high],
        "n_lift_ge_3pct": sum(r.lift >= 0.03 for r in results),
        "acted_minus_distilled": None if agg.test is None else agg.test.mean_diff,
        "p_value": None if agg.test is None else agg.test.p_value,
    }
    out.update(_per_user_test(results))
    return out


def _per_user_test(results: list[BottleneckResult]) -> dict[str, Any]:
    """Per-user paired tests: each user's acted minus distilled NDCG@10 averaged over the
    seeds, tested over users (t-test and Wilcoxon signed-rank); per seed, the t-test p."""
    from gradtracer.recsys.stats import paired_ttest, wilcoxon

    pairs = [
        (r.acted_per_user, r.distilled_per_user)
        for r in results
        if r.acted_per_user is not None and r.distilled_per_user is not None
    ]
    pairs = [(a, d) for a, d in pairs if a.shape == d.shape and np.isfinite(a).all()]
    if not pairs or len({a.shape for a, _ in pairs}) != 1:
        return {}
    acted = np.mean([a for a, _ in pairs], axis=0)
    distilled = np.mean([d for _, d in pairs], axis=0)
    t = paired_ttest(acted, distilled)
    w = wilcoxon(acted, distilled)
    return {
        "n_users": int(acted.size),
        "per_user_mean_diff": float(np.mean(acted - distilled)),
        "per_user_t_p": float(t.p_value),
        "per_user_wilcoxon_p": float(w.p_value),
        "per_seed_user_t_p": [float(paired_ttest(a, d).p_value) for a, d in pairs],
    }


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
