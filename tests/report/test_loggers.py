"""W&B (offline) and TensorBoard bridges: real files written, then read back."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradtracer.export.metrics import report_metrics
from gradtracer.findings import Report


def test_metric_keys_are_composed_by_metric_key(fixed_report: Report) -> None:
    parent = Report.merge(
        "manager",
        "mgr",
        [fixed_report],
        health_score=80.0,
        tracker_health={"item": 75.0},
        pairs=[{"a": "x"}],
    )
    metrics = report_metrics(parent)
    assert metrics["mgr/health_score"] == 80.0
    assert metrics["mgr/tracker_health/item"] == 75.0
    assert metrics["item_emb/zombie_ratio"] == 0.085
    assert metrics["item_emb/norm_by_bucket/tail"] == 0.25
    assert metrics["item_emb/findings/ZOMBIE_EMBEDDINGS"] == 1.0
    assert metrics["item_emb/findings/total"] == 2.0
    assert "item_emb/effective_rank" not in metrics  # NaN is left out
    assert not any(k.startswith("mgr/pairs") for k in metrics)
    assert list(metrics) == sorted(metrics)


# --- TensorBoard -------------------------------------------------------------------------


def test_tensorboard_event_files_read_back(tmp_path: Path, fixed_report: Report) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradtracer.export.tensorboard import FINDINGS_TEXT_TAG, TensorBoardExporter

    with TensorBoardExporter(tmp_path) as exporter:
        written = exporter.log(fixed_report)  # step from the report: 340
        exporter.log(fixed_report, step=400)
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == set(written)
    events = acc.Scalars("item_emb/zombie_ratio")
    assert [e.step for e in events] == [340, 400]
    assert events[0].value == pytest.approx(0.085)
    text_events = acc.Tensors(f"{FINDINGS_TEXT_TAG}/text_summary")
    assert b"ZOMBIE_EMBEDDINGS" in text_events[0].tensor_proto.string_val[0]


def test_tensorboard_exporter_needs_one_target() -> None:
    from gradtracer.export.tensorboard import TensorBoardExporter

    with pytest.raises(ValueError, match="exactly one of log_dir= or writer="):
        TensorBoardExporter()


# --- W&B (offline) -----------------------------------------------------------------------

_BLOCK = 32 * 1024  # the .wandb transaction log is a LevelDB-style log of 32 KiB blocks


def _wandb_records(path: Path) -> Iterator[object]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # block trailer padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        pending = chunk if kind == 2 else pending + chunk  # 2 first, 3 middle, 4 last
        if kind in (1, 4):  # full record or last fragment
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def test_wandb_offline_run_reads_back(tmp_path: Path, fixed_report: Report, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    from gradtracer.export.wandb import FINDINGS_TABLE_KEY, log_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = wandb.init(project="gradtracer-tests", dir=str(tmp_path), mode="offline")
    try:
        logged = log_to_wandb(fixed_report, run=run, step=7)
    finally:
        run.finish()
        wandb.teardown()  # finish() returns before wandb-core has flushed the run file
    (log_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    records = list(_wandb_records(log_file))
    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    assert len(history) == 1
    items = {item.key or "/".join(item.nested_key): item.value_json for item in history[0].item}
    assert json.loads(items["_step"]) == 7
    for key, value in logged.items():
        assert json.loads(items[key]) == pytest.approx(value)
    assert json.loads(items[f"{FINDINGS_TABLE_KEY}/nrows"]) == 2


def test_wandb_without_a_run_says_what_to_do(fixed_report: Report) -> None:
    wandb = pytest.importorskip("wandb")
    from gradtracer.export.wandb import log_to_wandb

    assert wandb.run is None
    with pytest.raises(ValueError, match=r"call wandb.init\(\) or pass run="):
        log_to_wandb(fixed_report)
