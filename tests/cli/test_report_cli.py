"""`gradtracer report ...` on report JSON written by a real FlowTracker."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import torch
from torch import nn

from gradtracer.cli import main
from gradtracer.export.json_report import write_json
from gradtracer.flow.tracker import FlowTracker


def _report_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # large lr: oversized updates
    tracker = FlowTracker(model, name="mlp")
    x = torch.randn(32, 4)
    for _ in range(12):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        tracker.step(loss=loss.item())
    return write_json(tracker, tmp_path / "flow.json"), tracker


def test_validate_render_and_xml(tmp_path, capsys):
    path, tracker = _report_file(tmp_path)
    assert main(["report", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    n = len(tracker.findings())
    assert n > 0 and f"{n} findings" in out
    assert main(["report", "render", str(path)]) == 0
    assert "HIGH_UPDATE_RATIO" in capsys.readouterr().out
    assert main(["report", "xml", str(path)]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    assert len(root.findall(".//causal_model")) == n


def test_validate_names_every_violation(tmp_path, capsys):
    path, _ = _report_file(tmp_path)
    doc = json.loads(path.read_text())
    doc["findings"][0]["confidence"] = 7
    del doc["subject"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["report", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "confidence" in err and "subject" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "flow",\n "subject": ')
    assert main(["report", "validate", str(broken)]) == 2
    assert "broken.json:2" in capsys.readouterr().err
