"""``kill -9`` in the middle of each writer: what was written before is intact and readable.

Each child rewrites its output in a loop (after signalling it is ready) until it is killed
at a random moment; the parent then checks that the output is one complete version.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from reliability_faults import kill_when

from gradtracer.audit import AuditLogger, read_audit
from gradtracer.durable import load_npz
from gradtracer.export.json_report import read_json
from gradtracer.recsys.data import Split

DELAYS = (0.05, 0.2, 0.5)


@pytest.mark.parametrize("delay", DELAYS)
def test_kill_during_report_and_npz_rewrites(tmp_path: Path, delay: float) -> None:
    code = f"""
    import numpy as np
    from pathlib import Path
    from gradtracer.durable import atomic_savez
    from gradtracer.export.json_report import write_json
    from gradtracer.findings import Report
    d = Path({str(tmp_path)!r})
    k = 0
    while True:
        write_json(Report(kind="flow", subject="m", stats={{"version": k, "pad": "x" * 50_000}}),
                   d / "report.json")
        atomic_savez(d / "w.npz", w=np.full(20_000, float(k)), version=np.array(k))
        if k == 0:
            (d / "ready").touch()
        k += 1
    """
    kill_when(code, tmp_path / "ready", delay=delay)
    report = read_json(tmp_path / "report.json")
    arrays = load_npz(tmp_path / "w.npz", required=["w", "version"])
    version = int(arrays["version"])
    assert np.all(arrays["w"] == version)  # one complete version, never a mix
    assert abs(report.stats["version"] - version) <= 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the temp file of the write that was killed


@pytest.mark.parametrize("delay", (0.1, 0.4))
def test_kill_during_split_save_keeps_a_complete_split(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "split"
    code = f"""
    import numpy as np
    import polars as pl
    from pathlib import Path
    from gradtracer.recsys.data import Interactions, leave_one_out
    n = 20_000
    k = 0
    while True:
        ix = Interactions.from_raw(pl.DataFrame({{"user": np.arange(n) % 300,
            "item": (np.arange(n) * 7 + k) % 500, "rating": np.full(n, float(k % 5 + 1)),
            "timestamp": np.arange(n)}}))
        split = leave_one_out(ix, with_valid=k % 2 == 1)
        split.info["version"] = k
        split.save(Path({str(out)!r}))
        if k == 0:
            Path({str(tmp_path / "ready")!r}).touch()
        k += 1
    """
    kill_when(code, tmp_path / "ready", delay=delay)
    split = Split.load(out)  # restores the previous copy if the swap itself was cut
    version = split.info["version"]
    assert (split.valid is not None) == (version % 2 == 1)  # parts match split.json
    ratings = {float(r) for part in split.parts().values() for r in part.frame["rating"]}
    assert ratings == {float(version % 5 + 1)}  # every part from the same version


@pytest.mark.parametrize("delay", DELAYS)
def test_kill_during_audit_writes_then_a_new_run_is_kept(tmp_path: Path, delay: float) -> None:
    code = f"""
    from pathlib import Path
    from gradtracer.audit import AuditLogger, encode_ids
    log = AuditLogger(Path({str(tmp_path)!r}), fsync_every=1000, max_bytes=200_000,
                      backup_count=50, max_line_bytes=4096, chunk_rows=300)
    log.write({{"kind": "run_start", "run_id": "crashed", "layer": "emb", "step": 0,
               "policy": {{}}}})
    step = 0
    while True:
        step += 1
        n = 50 + step % 1000
        log.write({{"kind": "damp", "run_id": "crashed", "layer": "emb", "step": step,
                   "rows": encode_ids(range(n)), "scales": [0.5] * n, "n_agree": [1] * n,
                   "n_disagree": [step] * n, "q": [0.9] * n, "dead": []}})
        if step == 20:
            Path({str(tmp_path / "ready")!r}).touch()
    """
    kill_when(code, tmp_path / "ready", delay=delay)
    with AuditLogger(tmp_path, max_bytes=200_000, backup_count=50) as log:
        log.write({"kind": "run_start", "run_id": "next", "layer": "emb", "step": 0, "policy": {}})
        log.write({"kind": "run_end", "run_id": "next", "layer": "emb", "step": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = read_audit(tmp_path)
    assert read.complete, read.problems  # at most torn lines: nothing but the cut event lost
    steps = [e["step"] for e in read.events if e["kind"] == "damp"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 20  # no gap, in order
    for ev in read.events:
        if ev["kind"] == "damp":  # chunks joined back: one event per decision, all its rows
            assert len(ev["scales"]) == 50 + ev["step"] % 1000
    assert [e["run_id"] for e in read.events[-2:]] == ["next", "next"]


def test_a_torn_line_left_by_an_old_writer_is_ended_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    good = json.dumps({"kind": "run_start", "run_id": "a", "layer": "e", "step": 0, "policy": {}})
    path.write_text(good + '\n{"kind": "damp", "run_id": "a", "st')  # a crash mid-line
    with AuditLogger(tmp_path) as log:
        log.write({"kind": "run_start", "run_id": "b", "layer": "e", "step": 0, "policy": {}})
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["run_id"] == "b"  # not glued on
    read = read_audit(tmp_path, warn=False)
    assert [e["run_id"] for e in read.events] == ["a", "b"]
    assert [str(p).split(":", 1)[1] for p in read.problems] == ["2: torn line (interrupted write)"]


def test_kill_during_model_artifact_save_keeps_a_readable_model(tmp_path: Path) -> None:
    from gradtracer.recsys.models.artifact import read_artifact

    code = f"""
    import numpy as np
    from pathlib import Path
    from gradtracer.recsys.models.artifact import write_artifact
    k = 0
    while True:
        write_artifact(Path({str(tmp_path / "model")!r}), kind="demo", format_version=1,
                       meta={{"version": k}}, arrays={{"w": np.full(50_000, float(k))}})
        if k == 0:
            Path({str(tmp_path / "ready")!r}).touch()
        k += 1
    """
    kill_when(code, tmp_path / "ready", delay=0.2)
    meta, arrays = read_artifact(tmp_path / "model", expected_kind="demo")
    assert np.all(arrays["w"] == float(meta["version"]))  # model.json and weights agree
