"""Audit rotation, several writer processes on one log, and bounded line size; the replay
(the pure policy re-deriving every logged scale) must pass on whatever the files keep."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from reliability_faults import child_env

from gradtracer.audit import AuditLogger, audit_files, encode_ids, read_audit, summarize_audit
from gradtracer.embedding.autofix.policy import AutoFixPolicy, damping_factors
from gradtracer.embedding.autofix.replay import replay_audit

POLICY = AutoFixPolicy()


def damp_event(run_id: str, step: int, rows: np.ndarray, rng: np.random.Generator) -> dict:
    """A ``damp`` event whose scales are what the policy gives for its logged inputs."""
    agree = rng.integers(0, 20, rows.size)
    disagree = rng.integers(0, 40, rows.size)
    p = 0.3
    scales = damping_factors(
        agree, disagree, p_improving=p, step=step, policy=POLICY, dead=np.zeros(rows.size, bool)
    )
    return {
        "kind": "damp", "run_id": run_id, "layer": "emb", "step": step,
        "rows": encode_ids(rows), "scales": scales.tolist(), "n_agree": agree.tolist(),
        "n_disagree": disagree.tolist(), "q": [0.5] * rows.size, "dead": [],
        "loss": 1.0, "loss_trend": {"p_improving": p},
    }  # fmt: skip


def start_event(run_id: str) -> dict:
    return {"kind": "run_start", "run_id": run_id, "layer": "emb", "step": 0,
            "format_version": 1, "policy": POLICY.to_dict()}  # fmt: skip


def test_rotated_out_run_start_is_reemitted_so_replay_still_passes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with AuditLogger(tmp_path, max_bytes=4096, backup_count=2) as log:
        log.write(start_event("r1"))
        for step in range(1, 200):
            log.write(damp_event("r1", step, np.arange(step % 7, step % 7 + 5), rng))
    files = audit_files(tmp_path)
    assert len(files) == 3  # the oldest files (with the first run_start) are gone
    read = read_audit(tmp_path, warn=False)
    assert read.problems == []
    assert read.events[0]["kind"] == "run_start" and read.events[0]["reemitted"] is True
    result = replay_audit(read.events)
    assert result.ok and result.n_events > 10, result.mismatches[:3]
    for f in files:  # every file on its own starts with the run's header
        first = read_audit(f, warn=False).events[0]
        assert first["kind"] == "run_start" and first["run_id"] == "r1"


def _writers(directory: Path, n_proc: int, n_events: int, max_bytes: int, backups: int) -> None:
    """``n_proc`` processes write their runs' events (made here) into one log at once."""
    go = directory.parent / f"{directory.name}-go"
    inputs = []
    for k in range(n_proc):
        run_id, rng = f"p{k}", np.random.default_rng(k)
        events = [start_event(run_id)]
        events += [damp_event(run_id, s, np.arange(s % 5, s % 5 + 3), rng)
                   for s in range(1, n_events + 1)]  # fmt: skip
        events.append({"kind": "run_end", "run_id": run_id, "layer": "emb", "step": n_events})
        path = directory.parent / f"{directory.name}-input-{k}.json"
        path.write_text(json.dumps(events))
        inputs.append(path)
    code = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from gradtracer.audit import AuditLogger
        events = json.loads(Path(sys.argv[1]).read_text())
        while not Path({str(go)!r}).exists():  # start together: the writes interleave
            time.sleep(0.001)
        with AuditLogger(Path({str(directory)!r}), max_bytes={max_bytes},
                         backup_count={backups}, fsync_every=10) as log:
            for event in events:
                log.write(event)
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], env=child_env(),
                         stderr=subprocess.PIPE)
        for path in inputs
    ]  # fmt: skip
    time.sleep(0.5)
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()


def test_processes_sharing_a_log_lose_no_event(tmp_path: Path) -> None:
    n_proc, n_events = 3, 150
    _writers(tmp_path / "log", n_proc, n_events, max_bytes=8192, backups=1000)
    tmp_path = tmp_path / "log"
    read = read_audit(tmp_path, warn=False)
    assert read.problems == []
    for k in range(n_proc):
        steps = [e["step"] for e in read.events if e["run_id"] == f"p{k}" and e["kind"] == "damp"]
        assert steps == list(range(1, n_events + 1))  # all there, once each, in order
    rows = {r["run_id"]: r for r in summarize_audit(read.events)}
    assert all(rows[f"p{k}"]["ended"] and rows[f"p{k}"]["interventions"] == n_events
               for k in range(n_proc))  # fmt: skip
    assert all(f.stat().st_size <= 8192 + 2048 for f in audit_files(tmp_path))
    assert replay_audit(read.events).ok


def test_processes_sharing_a_small_budget_still_replay(tmp_path: Path) -> None:
    _writers(tmp_path / "log", 3, 150, max_bytes=4096, backups=2)
    tmp_path = tmp_path / "log"
    read = read_audit(tmp_path, warn=False)
    assert read.problems == [] and len(audit_files(tmp_path)) == 3
    result = replay_audit(read.events)
    assert result.ok, result.mismatches[:3]  # no "damp without run_start" after rotation
    assert {r for r, _ in result.runs} <= {"p0", "p1", "p2"} and result.n_events > 0


def test_a_decision_on_many_rows_is_chunked_and_joined_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(1_000_000, size=100_000, replace=False))
    event = damp_event("big", 5, rows, rng)
    with AuditLogger(tmp_path, max_line_bytes=256 * 1024, chunk_rows=8192) as log:
        log.write(start_event("big"))
        log.write(event)
        log.write({"kind": "run_end", "run_id": "big", "layer": "emb", "step": 6})
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert len(lines) == 2 + 13 and max(len(x) for x in lines) < 1024 * 1024  # bounded
    read = read_audit(tmp_path, warn=False)
    assert read.problems == [] and read.events[1] == event  # joined: the exact event
    assert summarize_audit(read.events)[0]["interventions"] == 1
    assert replay_audit(read.events).ok
    # a lost middle chunk is named; the rows of the other chunks are still checked
    kept = [x for k, x in enumerate(lines) if k != 5]
    (tmp_path / "audit.jsonl").write_bytes(b"\n".join(kept) + b"\n")
    read = read_audit(tmp_path, warn=False)
    assert not read.complete and "only" in str(read.problems[0])
    assert sum(len(e["scales"]) for e in read.events if e["kind"] == "damp") < rows.size
    assert replay_audit(read.events).ok


def test_a_decision_cut_between_its_chunks_is_lost_alone_and_later_runs_keep_their_order(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(2)
    rows = np.arange(1_000)
    with AuditLogger(tmp_path, max_line_bytes=4096, chunk_rows=300) as log:
        log.write(start_event("crashed"))
        log.write(damp_event("crashed", 1, rows, rng))
        log.write(damp_event("crashed", 2, rows, rng))  # 4 chunks
    path = tmp_path / "audit.jsonl"
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1 + 4 + 4
    path.write_bytes(b"\n".join(lines[:-2]) + b"\n")  # a kill after two chunks of step 2
    with AuditLogger(tmp_path) as log:
        log.write(start_event("next"))
        log.write({"kind": "run_end", "run_id": "next", "layer": "emb", "step": 1})
    read = read_audit(tmp_path, warn=False)
    assert read.complete and len(read.problems) == 1 and read.problems[0].torn
    assert [e["step"] for e in read.events if e["kind"] == "damp"] == [1]  # step 2 lost alone
    assert [e["run_id"] for e in read.events] == ["crashed", "crashed", "next", "next"]
