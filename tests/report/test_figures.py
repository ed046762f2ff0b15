"""Figures of embedding and manager reports: files, their content, thinning, errors."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from gradtracer.cli import main
from gradtracer.embedding import EmbeddingTracker
from gradtracer.export.json_report import write_json
from gradtracer.export.schema import validate_report
from gradtracer.findings import Report
from gradtracer.flow.tracker import FlowTracker
from gradtracer.manager import FlowManager
from gradtracer.report.figures import plot_report
from gradtracer.report.history import MAX_HISTORY_POINTS, thin_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trained_manager(steps: int = 240, interval: int = 1) -> FlowManager:
    """Two tables; item rows 0-4 oscillate, rows 40-49 are never used."""
    torch.manual_seed(0)
    users, items = nn.Embedding(30, 8), nn.Embedding(50, 8)
    opt = torch.optim.Adam([*users.parameters(), *items.parameters()], lr=0.05)
    manager = FlowManager("mf")
    manager.add_tracker("user", EmbeddingTracker(users, name="user_emb", track_interval=interval))
    manager.add_tracker("item", EmbeddingTracker(items, name="item_emb", track_interval=interval))
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(40, 8, generator=gen)
    for step in range(steps):
        u = torch.randint(0, 30, (32,), generator=gen)
        i = torch.cat([torch.randint(5, 40, (27,), generator=gen), torch.arange(5)])
        sign = 1.0 if step % 2 else -1.0
        pull = target.clone()
        pull[:5] = sign * 3.0
        opt.zero_grad()
        loss = (users(u) * items(i)).sum(1).pow(2).mean() + (items(i) - pull[i]).pow(2).mean()
        loss.backward()
        manager.step(loss=loss.item())
        opt.step()
    return manager


def _svg_text(path) -> str:
    """The text elements of an SVG written with text kept as text."""
    return " ".join(re.findall(r">([^<>]+)</text>", path.read_text()))


def test_tracker_plot_draws_its_statistics(tmp_path):
    manager = _trained_manager()
    tracker = manager["item"]
    stats = tracker.summary()
    assert stats["zombie_count"] >= 1 and stats["unexposed_count"] == 10
    paths = tracker.plot(tmp_path)
    assert [p.name for p in paths] == ["item_emb_dynamics.png", "item_emb_dynamics.svg"]
    # a real 4-panel PNG at 110 dpi is tens of KB; an empty or failed figure is a few KB
    assert paths[0].read_bytes()[:8] == PNG_MAGIC and paths[0].stat().st_size > 20_000
    text = _svg_text(paths[1])
    assert f"Gini {stats['popularity_gini']:.3f}" in text
    assert f"{stats['unexposed_count']:,} (20.0%)" in text  # never-exposed rows
    assert f"{stats['zombie_count']:,} (" in text
    assert "50 x 8, step 240" in text
    manager.detach()


def test_report_history_is_thinned_and_valid_json(tmp_path):
    manager = _trained_manager(steps=450)
    report = manager["item"].to_report()
    hist = report.metadata["history"]
    full = manager["item"].history
    assert len(full) == 450 and len(hist) == MAX_HISTORY_POINTS
    assert hist[0]["step"] == full[0]["step"] and hist[-1]["step"] == full[-1]["step"]
    assert hist[-1]["mean_velocity"] == pytest.approx(full[-1]["mean_velocity"])
    validate_report(report.to_dict())
    manager.detach()


def test_manager_report_from_json_and_cli(tmp_path, capsys):
    manager = _trained_manager()
    path = write_json(manager, tmp_path / "report.json")
    manager.detach()
    doc = json.loads(path.read_text())
    written = plot_report(doc, tmp_path / "figs")
    assert sorted(p.name for p in written if p.suffix == ".png") == [
        "item_emb_dynamics.png",
        "mf_towers.png",
        "user_emb_dynamics.png",
    ]
    towers = _svg_text(tmp_path / "figs" / "mf_towers.svg")
    assert "2 tracked tables" in towers and "health score" in towers
    assert "user" in towers and "item" in towers  # one velocity curve per tower
    assert main(["report", "plot", str(path), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert out.count("wrote") == 6
    assert (tmp_path / "cli" / "mf_towers.png").read_bytes()[:8] == PNG_MAGIC


def test_flow_tracker_plot_ranks_layers_by_health(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # oversized updates somewhere
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    tracker = FlowTracker(model, name="mlp", optimizer=opt, scheduler=sched)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    for _ in range(30):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        tracker.step(loss=loss.item())
    layers = tracker.summary()["layers"]
    paths = tracker.plot(tmp_path)
    assert [p.name for p in paths] == ["mlp_flow.png", "mlp_flow.svg"]
    text = _svg_text(paths[1])
    assert "learning rate" in text  # the schedule is drawn beside the loss
    order = sorted(layers, key=lambda n: (layers[n]["health"], n))  # least healthy first
    names = [n for n in re.findall(r"[\w.]+", text) if n in layers]
    assert names == order
    worst = order[0]
    assert f"{layers[worst]['update_ratio']:.1e}" in text
    assert len(tracker.to_report().metadata["history"]) == 30


def test_figures_without_history_say_so(tmp_path):
    torch.manual_seed(0)
    layer = nn.Embedding(20, 4)
    tracker = EmbeddingTracker(layer, name="emb", track_interval=1000)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.tensor([1, 2, 3])).sum().backward()
        opt.step()
    svg = tracker.plot(tmp_path)[1]
    assert "no history snapshots yet" in _svg_text(svg)
    tracker.detach()


def test_unsupported_reports_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'trees'"):
        plot_report(Report(kind="trees", subject="xgb"), tmp_path)
    with pytest.raises(TypeError, match="list"):
        plot_report([1, 2], tmp_path)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # nothing half-written


@given(n=st.integers(0, 700), max_points=st.integers(2, 300))
def test_thin_history_keeps_ends_and_order(n, max_points):
    history = [
        {"step": 5 * (i + 1), "mean_velocity": float(i), "touched_rows": 3} for i in range(n)
    ]
    thinned = thin_history(history, max_points)
    assert len(thinned) == min(n, max_points)
    steps = [h["step"] for h in thinned]
    assert steps == sorted(set(steps))
    if n:
        assert steps[0] == 5 and steps[-1] == 5 * n
    assert all("touched_rows" not in h for h in thinned)  # only the keys the figures use


def test_thin_history_rejects_too_few_points():
    with pytest.raises(ValueError, match="max_points"):
        thin_history([], 1)


def test_children_with_one_name_get_one_figure_each(tmp_path):
    torch.manual_seed(0)
    a, b = nn.Embedding(20, 4), nn.Embedding(20, 4)
    opt = torch.optim.SGD([*a.parameters(), *b.parameters()], lr=0.1)
    manager = FlowManager("twins")
    manager.add_tracker("a", EmbeddingTracker(a, name="emb"))  # both trackers named "emb"
    manager.add_tracker("b", EmbeddingTracker(b, name="emb"))
    for _ in range(5):
        idx = torch.randint(0, 20, (8,))
        opt.zero_grad()
        (a(idx) * b(idx)).sum().backward()
        manager.step()
        opt.step()
    names = sorted(p.name for p in plot_report(manager.to_report(), tmp_path))
    assert "emb_dynamics.png" in names and "emb_2_dynamics.png" in names
    assert len(names) == len(set(names)) == len(list(tmp_path.iterdir()))


def test_a_very_long_subject_gives_a_short_file_name(tmp_path):
    manager = _trained_manager(steps=20)
    report = manager["item"].to_report()
    long = Report.from_dict({**report.to_dict(), "subject": "x" * 20_000})
    other = Report.from_dict({**report.to_dict(), "subject": "x" * 19_999 + "y"})
    first, second = plot_report(long, tmp_path), plot_report(other, tmp_path)
    assert all(len(p.name) < 120 for p in first + second)
    assert {p.name for p in first}.isdisjoint(p.name for p in second)  # the hash tells them apart
