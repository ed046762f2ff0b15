"""Diagnosis outside the fault suite: a hand-written MovieLens-100K MF loop, one fault per run.

Usage: .venv/bin/python bench/diagnosis_own_loop.py [--data ../shared/data/ml-100k/u.data]
       [--optimizer adam|sgd|sparseadam] [--seed 0] [--jobs 2] [--faults a,b,...]

The loop uses the public API only (``EmbeddingTracker`` on both tables and a
``FlowTracker`` through a ``FlowManager``, then ``diagnose``), with its own model (BPR MF,
d = 32, plus a dense ``head`` on the user vector whose gradient cancels in the BPR
difference), training loop and negatives. Each user's latest rating is held out
(``leave_one_out``) and scored by ``evaluate_topk`` (full-ranking NDCG@10, training items
excluded, conservative ties).
``--optimizer sparseadam`` steps the tables with SparseAdam and the head with a second
Adam the FlowTracker is not told about. Each run prints its NDCG@10, the health score and
the first three WARNING/CRITICAL findings. Nothing here is tuned: it checks that the
detectors work on a loop, a model and faults they were not tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gradtracer import EmbeddingTracker, FlowManager, FlowTracker
from gradtracer.diagnosis import diagnose
from gradtracer.recsys.data.movielens import load_movielens
from gradtracer.recsys.data.splits import Split, leave_one_out
from gradtracer.recsys.metrics import evaluate_topk

FAULTS = ("healthy", "undertrained", "lr_high", "lr_very_high", "lr_low", "init_huge",
          "weight_decay", "item_not_in_optimizer", "frozen_items", "tiny_pool",
          "negative_is_positive", "no_zero_grad", "nan_loss")  # fmt: skip
BASE_LR = {"adam": 0.005, "sgd": 20.0, "sparseadam": 0.005}


def _split(path: str) -> Split:
    return leave_one_out(load_movielens(path))  # each user's latest rating held out


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, std: float, sparse: bool) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, 32, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, 32, sparse=sparse)
        nn.init.normal_(self.user_emb.weight, std=std)
        nn.init.normal_(self.item_emb.weight, std=std)
        self.head = nn.Linear(32, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = self.user_emb(users)
        return (u * self.item_emb(items)).sum(-1) + self.head(u).squeeze(-1)


def _ndcg(model: MF, split: Split) -> float:
    """Full-ranking NDCG@10, training items excluded, ties against the held-out item; a
    table gone non-finite scores nothing."""

    @torch.no_grad()
    def scores(users: torch.Tensor) -> torch.Tensor:
        u = model.user_emb.weight[users]
        out = u @ model.item_emb.weight.T + model.head(u)
        return torch.nan_to_num(out, nan=-torch.inf)

    result = evaluate_topk(scores, split.test.user_items(), exclude=split.train.user_items(),
                           ks=(10,), progress=False)  # fmt: skip
    return float(result.mean["ndcg@10"])


def run(args: tuple[str, str, int, str]) -> dict[str, object]:
    fault, opt_name, seed, path = args
    torch.set_num_threads(1)
    split = _split(path)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_users, n_items = split.train.n_users, split.train.n_items
    base = BASE_LR[opt_name]
    lr = {"lr_high": base * 10, "lr_very_high": base * 100, "lr_low": base * 2e-4}.get(fault, base)
    epochs = 2 if fault == "undertrained" else 8
    model = MF(n_users, n_items, 10.0 if fault == "init_huge" else 0.1, opt_name == "sparseadam")
    wd = 0.3 if fault == "weight_decay" else 0.0
    if fault == "frozen_items":
        model.item_emb.weight.requires_grad_(False)
    tables = [model.user_emb.weight] + (
        [] if fault == "item_not_in_optimizer" else [model.item_emb.weight]
    )
    tables = [p for p in tables if p.requires_grad]
    head = list(model.head.parameters())
    second = None
    if opt_name == "adam":
        opt = torch.optim.Adam(tables + head, lr=lr, weight_decay=wd)
    elif opt_name == "sgd":
        opt = torch.optim.SGD(tables + head, lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.SparseAdam(tables, lr=lr)
        second = torch.optim.Adam(head, lr=0.005)
    manager = FlowManager("own_loop")
    manager.add_tracker("user", EmbeddingTracker(model.user_emb, name="user_emb"))
    manager.add_tracker("item", EmbeddingTracker(model.item_emb, name="item_emb"))
    manager.add_tracker("flow", FlowTracker(model, optimizer=opt))
    users = split.train.frame["user"].to_numpy()
    items = split.train.frame["item"].to_numpy()
    n, step = len(users), 0
    for _ in range(epochs):
        perm = rng.permutation(n)
        for b in range(0, n, 1024):
            idx = perm[b : b + 1024]
            u = torch.from_numpy(users[idx])
            pos = torch.from_numpy(items[idx])
            rand = torch.from_numpy(rng.integers(0, n_items, len(idx)))
            if fault == "tiny_pool":
                neg = torch.from_numpy(rng.integers(0, 5, len(idx)))
            elif fault == "negative_is_positive":
                neg = torch.where(torch.rand(len(idx)) < 0.6, pos, rand)
            else:
                neg = rand
            if fault != "no_zero_grad":
                opt.zero_grad()
                if second is not None:
                    second.zero_grad()
            loss = -F.logsigmoid(model(u, pos) - model(u, neg)).mean()
            if fault == "nan_loss" and step == 200:
                loss = loss * float("nan")
            loss.backward()
            manager.step(loss=loss)
            opt.step()
            if second is not None:
                second.step()
            step += 1
    d = diagnose(manager)
    named = [(f.type.value, f.severity.value, f.subject) for f in d.findings
             if f.severity.value != "info"][:3]  # fmt: skip
    return {"optimizer": opt_name, "fault": fault, "seed": seed, "ndcg@10": round(_ndcg(model, split), 4),
            "health": round(d.health, 1), "named": named}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path("../shared/data/ml-100k/u.data")))
    parser.add_argument("--optimizer", choices=sorted(BASE_LR), default="adam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    faults = args.faults.split(",")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    jobs = [(f, args.optimizer, args.seed, args.data) for f in faults]
    with ProcessPoolExecutor(args.jobs) as pool:
        for rec in pool.map(run, jobs):
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
