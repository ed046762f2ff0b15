"""Full and read-only disks: every writer fails with a message naming the file, and what
was written before survives unchanged."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from reliability_faults import fill, run_python

from gradtracer.audit import AuditLogger, read_audit
from gradtracer.cli import main
from gradtracer.durable import atomic_savez, atomic_write_json, atomic_write_text, load_npz
from gradtracer.export.json_report import read_json, write_json
from gradtracer.findings import Report
from gradtracer.recsys.data import Interactions, Split, leave_one_out, make_implicit


def _ratings(path: Path, n_users: int = 30, n_items: int = 40, rows: int = 600) -> Path:
    rng = np.random.default_rng(0)
    lines = [
        f"{rng.integers(1, n_users)}\t{rng.integers(1, n_items)}\t{rng.integers(1, 6)}\t{t}"
        for t in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _leftovers(directory: Path) -> list[str]:
    """Temporary files a failed write would have left behind."""
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# --- tmpfs: a real ENOSPC ----------------------------------------------------------------
def test_atomic_writes_on_a_full_disk_keep_the_previous_file(small_disk: Path) -> None:
    target = small_disk / "weights.npz"
    atomic_savez(target, w=np.arange(10.0))
    report = write_json(Report(kind="flow", subject="mlp", stats={"n": 1}), small_disk / "r.json")
    before_npz, before_report = target.read_bytes(), report.read_bytes()
    fill(small_disk)
    with pytest.raises(OSError, match="weights.npz") as info:
        atomic_savez(target, w=np.zeros(50_000))
    assert info.value.errno == 28  # ENOSPC
    with pytest.raises(OSError, match="r.json"):
        write_json(Report(kind="flow", subject="mlp", stats={"pad": "x" * 300_000}), report)
    assert target.read_bytes() == before_npz and report.read_bytes() == before_report
    assert load_npz(target, required=["w"])["w"].tolist() == list(np.arange(10.0))
    assert read_json(report).stats == {"n": 1}
    assert _leftovers(small_disk) == []


def test_data_prepare_on_a_full_disk_exits_1_and_keeps_the_old_split(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _ratings(tmp_path / "u.data")
    out = small_disk / "split"
    assert main(["data", "prepare", str(data), "--out", str(out), "--valid-fraction", "0.1"]) == 0
    before = Split.load(out)
    fill(small_disk, leave=4096)
    capsys.readouterr()
    assert main(["data", "prepare", str(data), "--out", str(out), "--split", "ratio"]) == 1
    err = capsys.readouterr().err
    assert "no space left on device" in err and "Traceback" not in err
    assert str(small_disk) in err  # the message names the file being written
    after = Split.load(out)
    assert after.info == before.info and after.valid is not None and before.valid is not None
    for a, b in (
        (after.train, before.train),
        (after.valid, before.valid),
        (after.test, before.test),
    ):
        assert a.frame.equals(b.frame)
    assert _leftovers(small_disk) == [] and not list(small_disk.glob(".split.*"))


def test_audit_on_a_full_disk_loses_only_the_events_that_did_not_fit(small_disk: Path) -> None:
    log = AuditLogger(small_disk, fsync_every=1)
    log.write({"kind": "run_start", "run_id": "a", "layer": "emb", "step": 0, "policy": {}})
    for step in range(1, 4):
        log.write({"kind": "note", "step": step})
    fill(small_disk, leave=0)
    with pytest.raises(OSError):
        for step in range(4, 10_000):
            log.write({"kind": "note", "step": step, "pad": "x" * 500})
    log.close()
    for filler in small_disk.glob("filler*"):
        filler.unlink()  # space again: a new run appends after the torn line
    with AuditLogger(small_disk) as again:
        again.write({"kind": "run_start", "run_id": "b", "layer": "emb", "step": 0, "policy": {}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = read_audit(small_disk)
    steps = [e["step"] for e in read.events if e["kind"] == "note"]
    assert steps[:3] == [1, 2, 3] and steps == sorted(steps)
    assert [e["run_id"] for e in read.events if e["kind"] == "run_start"] == ["a", "b"]
    assert read.complete  # only torn lines (interrupted writes), nothing else


def test_read_only_directory(
    small_disk: Path,
    remount_read_only: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = small_disk / "a.json"
    atomic_write_json(target, {"v": 1})
    remount_read_only(small_disk)  # type: ignore[operator]
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "x")
    assert info.value.errno == 30  # EROFS
    assert json.loads(target.read_text()) == {"v": 1}
    data = str(_ratings(tmp_path / "u.data"))
    assert main(["data", "prepare", data, "--out", str(small_disk / "s")]) == 1
    err = capsys.readouterr().err
    assert "read-only file system" in err and str(small_disk) in err and "Traceback" not in err


# --- RLIMIT_FSIZE: a full disk without mounting -------------------------------------------
def test_file_size_limit_child_keeps_previous_outputs(tmp_path: Path) -> None:
    split_dir, report_path, npz_path = tmp_path / "split", tmp_path / "r.json", tmp_path / "w.npz"
    ix = make_implicit(n_users=40, n_items=50, n_interactions=800, random_state=0)
    leave_one_out(ix).save(split_dir)
    write_json(Report(kind="flow", subject="mlp", stats={"n": 1}), report_path)
    atomic_savez(npz_path, w=np.ones(3))
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = f"""
    import numpy as np
    import polars as pl
    from pathlib import Path
    from gradtracer.durable import atomic_savez
    from gradtracer.export.json_report import write_json
    from gradtracer.findings import Report
    from gradtracer.recsys.data import Interactions, leave_one_out
    n = 60_000
    big = Interactions.from_raw(pl.DataFrame({{"user": np.arange(n) % 400,
        "item": np.arange(n) % 997, "rating": np.ones(n), "timestamp": np.arange(n)}}))
    failures = []
    for name, write in [
        ("split", lambda: leave_one_out(big, with_valid=True).save(Path({str(split_dir)!r}))),
        ("report", lambda: write_json(Report(kind="flow", subject="m",
            stats={{"pad": "x" * 200_000}}), Path({str(report_path)!r}))),
        ("npz", lambda: atomic_savez(Path({str(npz_path)!r}), w=np.zeros(100_000))),
    ]:
        try:
            write()
        except OSError as exc:
            failures.append((name, exc.errno, str(exc.filename)))
    print(failures)
    """
    result = run_python(code, fsize=64 * 1024)
    assert result.returncode == 0, result.stderr
    failures = eval(result.stdout.strip())  # a list of tuples printed by the child
    assert [f[0] for f in failures] == ["split", "report", "npz"]
    assert all(f[1] == 27 for f in failures)  # EFBIG, the file-size limit's ENOSPC
    assert all(str(tmp_path) in f[2] for f in failures)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == snapshot  # nothing written before was changed, nothing left behind
    assert Split.load(split_dir).info["rows"] == 800


def test_interactions_save_interrupted_is_refused_on_load(tmp_path: Path) -> None:
    ix = Interactions.from_raw(
        pl.DataFrame({"user": [1, 2], "item": [3, 4], "rating": [1.0, 2.0], "timestamp": [5, 6]})
    )
    code = f"""
    import polars as pl
    from gradtracer.recsys.data import Interactions
    ix = Interactions.from_raw(pl.DataFrame({{"user": list(range(50_000)),
        "item": list(range(50_000)), "rating": [1.0] * 50_000, "timestamp": [0] * 50_000}}))
    try:
        ix.save({str(tmp_path / "ix")!r})
    except OSError as exc:
        print("failed", exc.errno)
    """
    ix.save(tmp_path / "ix")
    result = run_python(code, fsize=8 * 1024)
    assert "failed 27" in result.stdout, result.stderr
    from gradtracer.durable import IncompleteOutputError

    with pytest.raises(IncompleteOutputError, match="did not finish"):
        Interactions.load(tmp_path / "ix")
