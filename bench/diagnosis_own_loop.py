"""Diagnosis outside the fault suite: a hand-written MovieLens-100K MF loop, one fault per run.

Usage: .venv/bin/python bench/diagnosis_own_loop.py [--data ../shared/data/ml-100k/u.data]
       [--optimizer adam|sgd|sparseadam] [--seed 0] [--jobs 2] [--faults a,b,...]

The loop uses the public API only (``EmbeddingTracker`` on both tables and a
``FlowTracker`` through a ``FlowManager``, then ``diagnose``), with its own model (BPR MF,
d = 32, plus a dense ``head`` on the user vector whose gradient cancels in the BPR
difference), data split (each user's last rating held out), negatives and evaluator
(full-ranking NDCG@10, training items excluded, ties counted against the held-out item).
``--optimizer sparseadam`` steps the tables with SparseAdam and the head with a second
Adam the FlowTracker is not told about. Each run prints its NDCG@10, the health score and
the first three WARNING/CRITICAL findings. Nothing here is tuned: it checks that the
detectors work on a loop, a model and faults they were not tuned on.
"""

from __future__ import annotations

import argparse
import json
import math
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

FAULTS = ("healthy", "undertrained", "lr_high", "lr_very_high", "lr_low", "init_huge",
          "weight_decay", "item_not_in_optimizer", "frozen_items", "tiny_pool",
          "negative_is_positive", "no_zero_grad", "nan_loss")  # fmt: skip
BASE_LR = {"adam": 0.005, "sgd": 20.0, "sparseadam": 0.005}


def _split(path: str) -> dict[str, object]:
    data = load_movielens(path)
    users, items = data.frame["user"].to_numpy(), data.frame["item"].to_numpy()
    order = np.argsort(data.frame["timestamp"].to_numpy(), kind="stable")
    last = {int(users[k]): int(k) for k in order}  # each user's latest rating
    test = np.zeros(len(users), dtype=bool)
    test[list(last.values())] = True
    return {"n_users": data.n_users, "n_items": data.n_items, "users": users[~test],
            "items": items[~test], "test": {u: int(items[k]) for u, k in last.items()}}  # fmt: skip


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


def _ndcg(model: MF, split: dict[str, object]) -> float:
    with torch.no_grad():
        u = model.user_emb.weight
        scores = u @ model.item_emb.weight.T + model.head(u)
    seen = np.zeros(scores.shape, dtype=bool)
    seen[split["users"], split["items"]] = True  # type: ignore[index]
    out = []
    for user, item in split["test"].items():  # type: ignore[attr-defined]
        s = scores[user].numpy().copy()
        s[seen[user]] = -np.inf
        s[item] = scores[user, item].item()
        if not math.isfinite(s[item]):
            out.append(0.0)
            continue
        rank = int((s >= s[item]).sum()) - 1  # ties count against the held-out item
        out.append(1.0 / math.log2(rank + 2) if rank < 10 else 0.0)
    return float(np.mean(out))


def run(args: tuple[str, str, int, str]) -> dict[str, object]:
    fault, opt_name, seed, path = args
    torch.set_num_threads(1)
    split = _split(path)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_users, n_items = int(split["n_users"]), int(split["n_items"])  # type: ignore[call-overload]
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
    users, items = split["users"], split["items"]
    n, step = len(users), 0  # type: ignore[arg-type]
    for _ in range(epochs):
        perm = rng.permutation(n)
        for b in range(0, n, 1024):
            idx = perm[b : b + 1024]
            u = torch.from_numpy(users[idx])  # type: ignore[index]
            pos = torch.from_numpy(items[idx])  # type: ignore[index]
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
