"""The one model artifact format: crash-safe writes, old layouts, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradtracer.durable import IncompleteOutputError, mark_incomplete
from gradtracer.recsys.models import artifact
from gradtracer.recsys.models.artifact import ArtifactError, read_artifact, write_artifact
from gradtracer.recsys.models.registry import (
    available_models,
    load_model,
    model_class,
    register_model,
)


def _save(d, value: float, kind: str = "demo"):
    return write_artifact(
        d, kind=kind, format_version=2, meta={"value": value}, arrays={"x": np.full(3, value)}
    )


def test_round_trip_adds_kind_and_version(tmp_path):
    _save(tmp_path / "m", 1.5)
    meta, arrays = read_artifact(tmp_path / "m", expected_kind="demo")
    assert meta == {"value": 1.5, "kind": "demo", "format_version": 2}
    assert arrays["x"].tolist() == [1.5, 1.5, 1.5]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]


def test_wrong_kind_and_future_version_are_named(tmp_path):
    _save(tmp_path / "m", 1.0)
    with pytest.raises(ArtifactError, match=r"model.json: holds a 'demo' model, not 'other'"):
        read_artifact(tmp_path / "m", expected_kind="other")
    with pytest.raises(ArtifactError, match="format_version 2 is newer than this release"):
        read_artifact(tmp_path / "m", max_version=1)


def test_reserved_meta_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved key"):
        write_artifact(tmp_path, kind="demo", format_version=1, meta={"kind": "x"}, arrays={})
    with pytest.raises(ValueError, match="format_version must be a positive int"):
        write_artifact(tmp_path, kind="demo", format_version=0, meta={}, arrays={})
    assert not (tmp_path / "model.json").exists()


def test_kill_before_the_renames_keeps_the_previous_model(tmp_path, monkeypatch):
    _save(tmp_path / "m", 1.0)

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifact, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "m", 2.0)
    monkeypatch.undo()
    meta, arrays = read_artifact(tmp_path / "m")
    assert meta["value"] == 1.0 and arrays["x"][0] == 1.0


def test_kill_between_the_renames_reads_the_new_complete_model(tmp_path, monkeypatch):
    _save(tmp_path / "m", 1.0)
    real, calls = artifact._publish, []

    def second_rename_killed(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(artifact, "_publish", second_rename_killed)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "m", 2.0)
    monkeypatch.undo()
    meta, arrays = read_artifact(tmp_path / "m")
    assert meta["value"] == 2.0 and arrays["x"][0] == 2.0
    _save(tmp_path / "m", 3.0)  # the next save cleans up
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]


def test_mixed_files_from_two_saves_are_refused(tmp_path):
    _save(tmp_path / "a", 1.0)
    _save(tmp_path / "b", 2.0)
    (tmp_path / "a" / "arrays.npz").write_bytes((tmp_path / "b" / "arrays.npz").read_bytes())
    with pytest.raises(ArtifactError, match="arrays.npz: does not belong to"):
        read_artifact(tmp_path / "a")


def test_truncated_and_non_zip_npz_name_the_file(tmp_path):
    d = _save(tmp_path / "m", 1.0)
    data = (d / "arrays.npz").read_bytes()
    (d / "arrays.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"arrays.npz: cannot read the arrays") as info:
        read_artifact(d)
    assert "allow_pickle" not in str(info.value)
    (d / "arrays.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ArtifactError, match="not an .npz archive") as info:
        read_artifact(d)
    assert "allow_pickle" not in str(info.value)


def test_missing_files_and_incomplete_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        read_artifact(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.json: missing"):
        read_artifact(tmp_path / "empty")
    d = _save(tmp_path / "m", 1.0)
    (d / "arrays.npz").unlink()
    with pytest.raises(FileNotFoundError, match="arrays.npz: missing"):
        read_artifact(d)
    d = _save(tmp_path / "run", 1.0)
    mark_incomplete(d)
    with pytest.raises(IncompleteOutputError, match="did not finish"):
        read_artifact(d)


def test_old_user_item_layout_without_version(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"kind": "popularity", "n_users": 2, "n_items": 3}))
    np.savez(d / "arrays.npz", counts=np.array([3.0, 1.0, 2.0], dtype=np.float32))
    meta, arrays = read_artifact(d, expected_kind="popularity")
    assert meta["format_version"] == 1
    model = load_model(d)
    assert type(model).__name__ == "PopularityRecommender"
    assert model.recommend([0], k=1).tolist() == [[0]]


def test_old_session_layout_maps_to_its_kind(tmp_path):
    d = tmp_path / "session"
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"model": "popularity", "n_items": 3}))
    np.savez(d / "counts.npz", counts=np.array([1.0, 5.0, 2.0]))
    meta, arrays = read_artifact(d)
    assert meta["kind"] == "session_popularity" and meta["n_items"] == 3
    assert arrays["counts"].tolist() == [1.0, 5.0, 2.0]
    (d / "model.json").write_text(json.dumps({"model": "transformer", "n_items": 3}))
    with pytest.raises(ArtifactError, match="unknown model 'transformer'"):
        read_artifact(d)


def test_registry_dispatches_on_kind_and_refuses_unknown(tmp_path):
    assert {"implicit_mf", "popularity"} <= set(available_models())

    @register_model("test_constant")
    class Constant:
        def __init__(self, value: float) -> None:
            self.value = value

        @classmethod
        def load(cls, directory):
            meta, _ = read_artifact(directory, expected_kind="test_constant")
            return cls(meta["value"])

    assert Constant.kind == "test_constant" and model_class("test_constant") is Constant
    _save(tmp_path / "c", 4.0, kind="test_constant")
    assert load_model(tmp_path / "c").value == 4.0
    _save(tmp_path / "u", 4.0, kind="no_such_kind")
    with pytest.raises(ValueError, match="unknown model kind 'no_such_kind'; registered"):
        load_model(tmp_path / "u")
    with pytest.raises(ValueError, match="already registered"):

        @register_model("popularity")
        class Other:
            pass
