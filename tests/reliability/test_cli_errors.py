"""The command line never shows a traceback: usage errors exit 2 with a short message,
runtime failures exit 1 with one line naming the file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from reliability_faults import cli

from gradtracer.cli import main
from gradtracer.recsys.data import DATASETS, DatasetSpec

USAGE = [
    ["data", "info", "--no-such-option", "x"],
    ["data", "info"],  # missing argument
    ["data", "prepare", "u.data"],  # missing required option
    ["data", "prepare", "u.data", "--out", "o", "--k-core", "five"],  # bad value
    ["no-such-command"],
    ["audit", "replay"],
    ["report", "validate", "/no/such/report.json"],
]


@pytest.mark.parametrize("args", USAGE, ids=lambda a: " ".join(a))
def test_usage_errors_exit_2_with_a_short_message(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Error:" in err and "Traceback" not in err and len(err.splitlines()) <= 6


def test_bare_command_prints_usage_and_a_real_process_shows_no_traceback() -> None:
    bare = cli()
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr
    bad = cli("data", "info", "--bogus")
    assert bad.returncode == 2 and "No such option: --bogus" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_input_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir.data").mkdir()
    assert main(["data", "info", str(tmp_path / "dir.data"), "--format", "amazon"]) == 2
    assert "dir.data: is a directory" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing.data")]) == 2
    assert "missing.data: no such file" in capsys.readouterr().err
    bad = tmp_path / "u.data"
    bad.write_text("1\t2\t4\t5\n1\t3\tnan\t6\n")
    assert main(["data", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: column 'rating'" in err and "not finite" in err


def test_out_that_is_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "u.data"
    data.write_text("1\t2\t4\t5\n1\t3\t4\t6\n2\t3\t4\t7\n2\t4\t5\t8\n")
    out = tmp_path / "taken"
    out.write_text("keep me")
    assert main(["data", "prepare", str(data), "--out", str(out)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert out.read_text() == "keep me"


def test_data_info_json_is_strict_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "u.data"
    data.write_text("1\t2\t4\t5\n1\t3\t4\t6\n")
    assert main(["data", "info", str(data), "--json"]) == 0
    text = capsys.readouterr().out
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in --json output"))


def test_network_failure_in_download_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a local port with nothing listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-100k.zip"
    monkeypatch.setitem(DATASETS, "ml-100k", DatasetSpec(url=url, sha256="0" * 64))
    assert main(["data", "download", "ml-100k", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and url in err and "download of ml-100k failed" in err
    assert "Traceback" not in err and not list(tmp_path.glob("*.part"))


def test_audit_log_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "audit.jsonl").mkdir()
    for command in ("show", "replay"):
        assert main(["audit", command, str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "audit.jsonl: is a directory" in err and "Traceback" not in err
    from gradtracer.audit import AuditLogger

    with pytest.raises(IsADirectoryError, match="audit.jsonl"):
        AuditLogger(tmp_path)


def test_audit_show_and_replay_check_every_run_after_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    from test_audit_rotation import damp_event, start_event

    rng = np.random.default_rng(0)
    lines = [start_event("old"), damp_event("old", 1, np.arange(3), rng)]
    text = "\n".join(json.dumps(e) for e in lines) + "\n"
    text += '{"kind": "damp", "run_id": "old", "st'  # the old run crashed mid-line
    path = tmp_path / "audit.jsonl"
    path.write_text(text)
    from gradtracer.audit import AuditLogger

    with AuditLogger(tmp_path) as log:  # the next run appends after the torn line
        log.write(start_event("new"))
        bad = damp_event("new", 2, np.arange(4), rng)
        bad["scales"][0] = 0.123  # not what the policy gives: replay must notice
        log.write(bad)
    assert main(["audit", "show", str(tmp_path), "--json"]) == 0  # torn only: a warning
    shown = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in shown["runs"]] == ["old", "new"]
    assert shown["problems"][0]["line"] == 3 and shown["problems"][0]["torn"]
    assert main(["audit", "replay", str(tmp_path)]) == 1  # the new run is checked too
    assert "MISMATCH run new" in capsys.readouterr().err
    with path.open("a") as fh:
        fh.write('{"kind": "note", "step": "seven"}\nnot json at all\n')
    assert main(["audit", "show", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "audit.jsonl:6: field 'step' must be an integer" in err
    assert "audit.jsonl:7: unreadable" in err
