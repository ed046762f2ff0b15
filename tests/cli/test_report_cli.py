"""`gradtracer report ...` on report JSON written by a real FlowTracker."""

from __future__ import annotations

import json
import re
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


def _bad_variants(doc: dict) -> dict[str, str]:
    """Report JSON texts that are invalid in ways the schema alone does not catch."""
    nan_conf = json.loads(json.dumps(doc))
    nan_conf["findings"][0]["confidence"] = "__NAN__"
    inf_stat = json.loads(json.dumps(doc))
    inf_stat["stats"]["huge"] = "__INF__"
    unknown = json.loads(json.dumps(doc))
    unknown["findings"][0]["type"] = "NOT_A_FINDING_TYPE"  # matches the schema's pattern
    return {
        "nan_confidence": json.dumps(nan_conf, indent=1).replace('"__NAN__"', "NaN"),
        "infinite_stat": json.dumps(inf_stat, indent=1).replace('"__INF__"', "-Infinity"),
        "overflow_stat": json.dumps(inf_stat, indent=1).replace('"__INF__"', "1e400"),
        "unknown_type": json.dumps(unknown, indent=1),
    }


def test_validate_refuses_what_the_renderers_refuse(tmp_path, capsys):
    path, _ = _report_file(tmp_path)
    for name, text in _bad_variants(json.loads(path.read_text())).items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(text)
        code = main(["report", "validate", str(bad)])
        err = capsys.readouterr().err
        assert code in (1, 2) and f"{name}.json" in err, (name, code, err)
        assert "Traceback" not in err
        if name != "unknown_type":  # a literal that is not JSON: the line is named
            line = text[
                : text.index("NaN" if "nan" in name else ("Infinity" if "inf" in name else "1e400"))
            ].count("\n")
            assert f"{name}.json:{line + 1}: non-finite number" in err
        else:
            assert code == 1 and "NOT_A_FINDING_TYPE" in err
        for command in ("render", "agent", "xml"):  # each refuses it with one line too
            assert main(["report", command, str(bad)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: ") and f"{name}.json" in err


def test_plot_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    path, _ = _report_file(tmp_path)
    target = tmp_path / "figures.png"
    target.write_text("not a directory")
    assert main(["report", "plot", str(path), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a directory" in err and "Traceback" not in err
    assert target.read_text() == "not a directory"


def test_plot_of_an_extreme_report_never_shows_a_traceback(tmp_path, capsys):
    path, _ = _report_file(tmp_path)
    doc = json.loads(path.read_text())
    doc["subject"] = "s" * 20_000  # a very long subject
    long = tmp_path / "long.json"
    long.write_text(json.dumps(doc))
    code = main(["report", "plot", str(long), "--out", str(tmp_path / "fig")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err  # the file name is cut, not the figure
    assert all(len(p.name) < 120 for p in (tmp_path / "fig").iterdir())
    text, n = re.subn(r'"step": \d+', '"step": Infinity', path.read_text(), count=1)
    assert n == 1  # the report carries a run history with steps
    inf_step = tmp_path / "inf.json"
    inf_step.write_text(text)
    assert main(["report", "plot", str(inf_step), "--out", str(tmp_path / "fig2")]) == 2
    err = capsys.readouterr().err
    assert "inf.json" in err and "non-finite number Infinity" in err and "Traceback" not in err
