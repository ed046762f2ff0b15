"""`gradtracer audit show|replay` on logs written by a real controller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from evidence_rows import EvidenceRows

from gradtracer.cli import main
from gradtracer.embedding.autofix import AutoFixController, AutoFixPolicy
from gradtracer.embedding.evidence import RowEvidence

FAST = AutoFixPolicy(warmup_steps=5, min_pairs=4, update_every=5, min_loss_points=5)


def _write_log(directory: Path, steps: int = 40) -> Path:
    ctrl = AutoFixController("item_emb", policy=FAST, audit=directory, run_id="abc")
    table = EvidenceRows()
    for s in range(1, steps + 1):
        rows = torch.tensor([0, 1, 2, 7])
        table.drive(
            ctrl,
            RowEvidence(
                step=s,
                layer="item_emb",
                rows=rows,
                n_agree=torch.tensor([0.0, s, s // 3, 0.0]),
                n_disagree=torch.tensor([s, 0.0, s - s // 3, s]),
                cos_ema=torch.zeros(4),
                grad_norm_ema=torch.ones(4),
                velocity_ema=torch.ones(4),
                exposure=torch.full((4,), float(s)),
                loss=1.0 / s,
            ),
        )
    ctrl.close()
    return directory / "audit.jsonl"


def test_show_and_replay_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_log(tmp_path)
    assert main(["audit", "show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "abc" in out and "item_emb" in out
    assert main(["audit", "show", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"][0]["rows_ever_damped"] >= 2 and summary["damage"] is None
    assert main(["audit", "replay", str(path)]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_replay_mismatch_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_log(tmp_path)
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        ev = json.loads(line)
        if ev["kind"] == "damp":
            ev["n_agree"][0] += 50  # the logged inputs no longer give the logged scale
            lines[i] = json.dumps(ev)
            break
    path.write_text("\n".join(lines) + "\n")
    assert main(["audit", "replay", str(path)]) == 1
    assert "MISMATCH" in capsys.readouterr().err


def test_damaged_log_named_and_torn_tail_tolerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_log(tmp_path)
    text = path.read_text()
    path.write_text(text + '{"kind": "damp", "ro')  # torn last line: nothing else lost
    assert main(["audit", "replay", str(path)]) == 0
    assert "torn last line" in capsys.readouterr().err
    lines = text.splitlines()
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    assert main(["audit", "replay", str(path)]) == 3
    assert "audit.jsonl:3" in capsys.readouterr().err
    assert main(["audit", "show", str(path)]) == 3  # damage: named, the rest still listed
    assert "audit.jsonl:3" in capsys.readouterr().err


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    assert main(["audit", "show", str(tmp_path / "none.jsonl")]) == 2
