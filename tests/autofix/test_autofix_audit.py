"""Audit log: id encoding, writer (flush, rotation), damage-tolerant reader."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.errors import GradTracerWarning
from gradtracer.export.audit import (
    AuditLogger,
    audit_files,
    decode_ids,
    encode_ids,
    read_audit,
)


def test_encode_ids_example_and_compactness() -> None:
    assert encode_ids([3, 4, 5, 9]) == [3, 3, 3, 1]  # ids 3..5, then 3 skipped, then 9
    assert encode_ids([]) == []
    assert len(encode_ids(np.arange(100_000))) == 2  # a contiguous block is one run
    with pytest.raises(ValueError, match=">= 0"):
        encode_ids([-1, 2])
    with pytest.raises(ValueError, match="pairs"):
        decode_ids([1, 0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5000), max_size=300))
def test_encode_decode_roundtrip(ids: list[int]) -> None:
    runs = encode_ids(ids)
    np.testing.assert_array_equal(decode_ids(runs), np.unique(np.array(ids, dtype=np.int64)))


def test_writer_flushes_each_event_and_reader_reads_them(tmp_path: Path) -> None:
    log = AuditLogger(tmp_path / "a", fsync_every=2)
    log.write({"kind": "note", "step": 1})
    # flushed per event: another reader sees it before close
    assert read_audit(tmp_path / "a").events == [{"kind": "note", "step": 1}]
    log.write({"kind": "note", "step": 2})
    log.close()
    log.close()  # idempotent
    assert [e["step"] for e in read_audit(tmp_path / "a" / "audit.jsonl").events] == [1, 2]
    with pytest.raises(ValueError, match="closed"):
        log.write({"kind": "x"})


def test_torn_last_line_warns_and_keeps_everything_before(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    good = [json.dumps({"kind": "note", "step": i}) for i in range(3)]
    path.write_text("\n".join(good) + '\n{"kind": "damp", "st')
    with pytest.warns(GradTracerWarning, match=r"audit.jsonl:4: torn last line"):
        log = read_audit(path)
    assert [e["step"] for e in log.events] == [0, 1, 2]
    assert log.torn_tail and log.complete


def test_corrupt_middle_line_is_named_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"kind": "note", "step": 1}\nGARBAGE\n{"kind": "note", "step": 3}\n')
    with pytest.warns(GradTracerWarning, match=r"audit.jsonl:2: unreadable"):
        log = read_audit(path)
    assert [e["step"] for e in log.events] == [1, 3]
    assert not log.complete and "audit.jsonl:2" in (log.damage or "")


def test_rotation_keeps_every_event_in_order(tmp_path: Path) -> None:
    log = AuditLogger(tmp_path, max_bytes=1024, backup_count=50)
    for i in range(200):
        log.write({"kind": "note", "step": i, "pad": "x" * 40})
    log.close()
    files = audit_files(tmp_path)
    assert len(files) > 3
    assert all(f.stat().st_size <= 1024 for f in files)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = read_audit(tmp_path).events
    assert [e["step"] for e in events] == list(range(200))


def test_rotation_drops_oldest_beyond_backup_count(tmp_path: Path) -> None:
    log = AuditLogger(tmp_path, max_bytes=1024, backup_count=1)
    for i in range(100):
        log.write({"kind": "note", "step": i, "pad": "x" * 40})
    log.close()
    assert len(audit_files(tmp_path)) == 2
    steps = [e["step"] for e in read_audit(tmp_path).events]
    assert steps[-1] == 99 and steps == sorted(steps) and len(steps) < 100


def test_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no audit log"):
        read_audit(tmp_path / "nope.jsonl")
