"""The published import paths and the validation notebook's training loop, unchanged."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn as nn

from gradtracer.export.schema import validate_agent_report, validate_report

N_USERS, N_ITEMS, N_POSITIVES = 943, 1682, 55_375  # MovieLens-100K, ratings >= 4


def test_published_import_paths_resolve_to_the_current_classes() -> None:
    import gradtracer
    from gradtracer.agent import AgentExporter
    from gradtracer.analyzers.embedding import EmbeddingTracker
    from gradtracer.analyzers.manager import FlowManager
    from gradtracer.embedding.tracker import EmbeddingTracker as CurrentTracker
    from gradtracer.flow import FlowManager as FlowPackageManager
    from gradtracer.flow.manager import FlowManager as FlowModuleManager
    from gradtracer.manager import FlowManager as CurrentManager

    assert EmbeddingTracker is CurrentTracker and gradtracer.EmbeddingTracker is CurrentTracker
    assert CurrentManager is FlowModuleManager is FlowPackageManager is gradtracer.FlowManager
    # the published path keeps the printing report() of the notebook; otherwise the same class
    assert issubclass(FlowManager, CurrentManager) and FlowManager.__name__ == "FlowManager"
    assert gradtracer.AgentExporter is AgentExporter


@pytest.mark.parametrize("package", ["gradtracer.export", "gradtracer.flow"])
def test_lazy_namespaces_resolve_every_public_name(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(module._LAZY)
    for name in module.__all__:
        assert getattr(module, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def _ml100k_shaped_positives(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """~55k unique (user, item) positives with Zipf item popularity and skewed user activity."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
    user_p = rng.lognormal(0.0, 1.0, N_USERS)
    n_draw = int(N_POSITIVES * 1.3)
    users = rng.choice(N_USERS, n_draw, p=user_p / user_p.sum())
    items = rng.permutation(N_ITEMS)[rng.choice(N_ITEMS, n_draw, p=item_p / item_p.sum())]
    pairs = np.unique(users * N_ITEMS + items)
    pairs = rng.permutation(pairs)[:N_POSITIVES]
    return torch.from_numpy(pairs // N_ITEMS), torch.from_numpy(pairs % N_ITEMS)


def _train_loader(
    users: torch.Tensor,
    items: torch.Tensor,
    *,
    seed: int,
    num_negatives: int = 4,
    batch_size: int = 256,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The notebook's batches (user repeated, positive then uniform negatives), vectorised."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(users.numel(), generator=gen)
    for start in range(0, order.numel(), batch_size):
        idx = order[start : start + batch_size]
        b = idx.numel()
        negs = torch.randint(0, N_ITEMS, (b, num_negatives), generator=gen)
        batch_items = torch.cat([items[idx].unsqueeze(1), negs], dim=1).reshape(-1)
        batch_users = users[idx].repeat_interleave(1 + num_negatives)
        labels = torch.cat([torch.ones(b, 1), torch.zeros(b, num_negatives)], dim=1).reshape(-1)
        yield batch_users, batch_items, labels


class MatrixFactorization(nn.Module):
    def __init__(self, num_users: int, num_items: int, dim: int = 32) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(num_users, dim)
        self.item_emb = nn.Embedding(num_items, dim)
        nn.init.normal_(self.user_emb.weight, std=0.01)
        nn.init.normal_(self.item_emb.weight, std=0.01)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return (self.user_emb(user) * self.item_emb(item)).sum(dim=1)


def test_validation_notebook_training_code_runs_unchanged(capsys) -> None:
    from gradtracer.agent import AgentExporter
    from gradtracer.analyzers.embedding import EmbeddingTracker
    from gradtracer.analyzers.manager import FlowManager

    torch.manual_seed(0)
    users, items = _ml100k_shaped_positives(seed=0)
    train_loader = list(_train_loader(users, items, seed=0))
    auto_fix = False

    # --- the notebook's train_model(), one epoch -----------------------------------
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    criterion = nn.BCEWithLogitsLoss()

    manager = FlowManager()
    item_tracker = EmbeddingTracker(
        model.item_emb, name="item_emb", auto_fix=auto_fix, track_interval=20
    )
    manager.add_tracker("item", item_tracker)

    model.train()
    for users_b, items_b, labels in train_loader:
        optimizer.zero_grad()
        preds = model(users_b, items_b)
        loss = criterion(preds, labels)
        loss.backward()
        manager.step()
        optimizer.step()
    text = manager.report()
    # ---------------------------------------------------------------------------------

    try:
        assert capsys.readouterr().out == text + "\n"
        n_batches = len(train_loader)
        assert manager.n_steps == n_batches
        assert len(item_tracker.history) == n_batches // 20
        summary = manager.summary()["trackers"]["item"]
        assert summary["step"] == n_batches and summary["num_embeddings"] == N_ITEMS
        assert 0.0 < summary["popularity_gini"] < 1.0  # Zipf exposure is skewed
        assert "GradTracer embedding report: item_emb [item]" in text

        report = manager.to_report()
        validate_report(report.to_dict())
        assert report.stats["health_score"] is not None
        assert 0.0 <= report.stats["health_score"] <= 100.0

        manager_doc = json.loads(AgentExporter.export_manager(manager))
        validate_agent_report(manager_doc)
        tracker_doc = json.loads(AgentExporter.export_embedding(item_tracker))
        validate_agent_report(tracker_doc)
        body = tracker_doc["gradtracer_embedding_report"]
        assert body["layer"] == "item_emb" and body["step"] == n_batches
        assert body["embedding_stats"]["num_embeddings"] == N_ITEMS
        root = ET.fromstring(AgentExporter.to_agent_xml(item_tracker))
        assert root.get("layer") == "item_emb"
        assert len(root.findall("causal_model")) == len(body["diagnostics"])
    finally:
        manager.detach()


def test_two_towers_with_the_real_tracker_and_a_loss() -> None:
    """Both towers tracked; the user tower is frozen, so the manager flags the imbalance."""
    from gradtracer.analyzers.embedding import EmbeddingTracker
    from gradtracer.analyzers.manager import FlowManager

    torch.manual_seed(1)
    users, items = _ml100k_shaped_positives(seed=1)
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=16)
    nn.init.normal_(model.user_emb.weight, std=0.1)
    nn.init.normal_(model.item_emb.weight, std=0.1)
    # user tower learns 1e4 times slower than the item tower
    optimizer = torch.optim.SGD(
        [
            {"params": model.user_emb.parameters(), "lr": 1e-5},
            {"params": model.item_emb.parameters(), "lr": 0.1},
        ]
    )
    criterion = nn.BCEWithLogitsLoss()
    manager = FlowManager("two_tower")
    manager.add_tracker("user", EmbeddingTracker(model.user_emb, name="user_emb", track_interval=5))
    manager.add_tracker("item", EmbeddingTracker(model.item_emb, name="item_emb", track_interval=5))
    try:
        for i, (u, it, labels) in enumerate(_train_loader(users, items, seed=1)):
            if i == 60:
                break
            optimizer.zero_grad()
            loss = criterion(model(u, it), labels)
            loss.backward()
            optimizer.step()
            manager.step(loss)  # after optimizer.step() works too
        report = manager.to_report()
        validate_report(report.to_dict())
        pair = report.stats["pairs"][0]
        assert pair["n_points"] == 12 and pair["velocity_correlation"] is not None
        assert report.stats["velocity_loss_correlation"]["item"] is not None
        imbalance = [f for f in report.findings if f.type == "TOWER_IMBALANCE"]
        assert imbalance and imbalance[0].evidence["slow_tracker"] == "user"
    finally:
        manager.detach()


@pytest.mark.parametrize("bad_key", ["item"])
def test_duplicate_key_with_real_trackers(bad_key: str) -> None:
    from gradtracer.analyzers.embedding import EmbeddingTracker
    from gradtracer.analyzers.manager import FlowManager

    model = MatrixFactorization(10, 20, dim=4)
    manager = FlowManager()
    manager.add_tracker(bad_key, EmbeddingTracker(model.item_emb, name="item_emb"))
    second = EmbeddingTracker(model.user_emb, name="user_emb")
    try:
        with pytest.raises(ValueError, match="already registered"):
            manager.add_tracker(bad_key, second)
    finally:
        manager.detach()
        second.detach()


def test_manager_mixes_embedding_and_flow_trackers() -> None:
    """A FlowTracker (layers) and an EmbeddingTracker under one manager: all outputs valid."""
    from gradtracer.agent import AgentExporter
    from gradtracer.analyzers.embedding import EmbeddingTracker
    from gradtracer.analyzers.manager import FlowManager
    from gradtracer.flow.tracker import FlowTracker

    torch.manual_seed(2)
    emb = nn.Embedding(30, 8)
    head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD([*emb.parameters(), *head.parameters()], lr=0.1)
    manager = FlowManager()
    manager.add_tracker("emb", EmbeddingTracker(emb, name="emb"))
    manager.add_tracker("head", FlowTracker(head, name="head", history_dir="unused"))
    try:
        for _ in range(12):
            ids = torch.randint(0, 30, (32,))
            loss = head(emb(ids)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            manager.step(loss)
        report = manager.to_report()
        validate_report(report.to_dict())
        assert [c.kind for c in report.children] == ["embedding", "flow"]
        # layer and row velocities are not compared with each other
        assert not [f for f in report.findings if f.type == "TOWER_IMBALANCE"]
        emb_steps = {h["step"] for h in manager["emb"].history if h["mean_velocity"] is not None}
        flow_steps = {h["step"] for h in manager["head"].history if h["mean_velocity"] is not None}
        shared = len(emb_steps & flow_steps)
        # the pair correlation uses exactly the snapshots both trackers recorded
        assert shared >= 10 and report.stats["pairs"][0]["n_points"] == shared
        assert report.stats["tracker_health"]["head"] == report.children[1].stats["health"]
        doc = json.loads(AgentExporter.export_manager(manager))
        validate_agent_report(doc)
        assert [t["kind"] for t in doc["gradtracer_manager_report"]["trackers"]] == [
            "embedding",
            "flow",
        ]
        root = ET.fromstring(AgentExporter.to_agent_xml(manager))
        assert [c.tag for c in root][-2:] == [
            "gradtracer_embedding_report",
            "gradtracer_flow_report",
        ]
    finally:
        manager.detach()


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("gradtracer.export.text", "gradtracer.report.text", ["render_text", "print_report"]),
        ("gradtracer.export.figures", "gradtracer.report.figures", ["plot_report", "thin_history"]),
        (
            "gradtracer.export.audit",
            "gradtracer.audit",
            ["read_audit", "AuditLogger", "encode_ids"],
        ),
        ("gradtracer.export._coerce", "gradtracer.report.coerce", ["as_report"]),
        (
            "gradtracer.flow.manager",
            "gradtracer.manager",
            ["FlowManager", "detect_tower_imbalance"],
        ),
        ("gradtracer.flow.manager", "gradtracer.report.history", ["history_series"]),
    ],
)
def test_moved_names_keep_their_old_import_paths(old: str, new: str, names: list[str]) -> None:
    import importlib

    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), (old, name)
