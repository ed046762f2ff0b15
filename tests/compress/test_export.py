"""safetensors artifacts, artifacts checked against their recipe, TorchRec export."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gradtracer.compress import (
    ArtifactError,
    CompressedMF,
    LowRankTable,
    QuantizationAdvisor,
    QuantizedTable,
    apply_recipe,
    load_compressed,
    methods,
)


@pytest.fixture()
def model() -> CompressedMF:
    g = torch.Generator().manual_seed(0)
    user = torch.randn(120, 16, generator=g)
    item = torch.randn(90, 16, generator=g)
    prec = np.random.default_rng(0).choice(["fp16", "int8", "int4", "int2", "drop"], size=90)
    return CompressedMF(
        QuantizedTable.from_weight(user, "int4", name="user"),
        QuantizedTable.from_weight(item, prec, name="item"),
        info={"method": "mixed"},
    )


def _header(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8 : 8 + n])


def test_safetensors_round_trip(tmp_path: Path, model: CompressedMF) -> None:
    pytest.importorskip("safetensors")
    path = model.save(tmp_path / "m.safetensors")
    assert path.read_bytes()[:2] != b"PK"  # really safetensors, not an npz renamed
    n, header = _header(path)
    assert json.loads(header["__metadata__"]["gradtracer"])["format"] == "gradtracer.compressed/1"
    back = load_compressed(path)
    assert back.nbytes() == model.nbytes() and back.info == model.info
    assert torch.equal(back.item_table.dequantize(), model.item_table.dequantize())
    rows = torch.arange(90)
    assert torch.equal(back.item_table.lookup(rows), model.item_table.lookup(rows))
    # the same model as npz loads to the same tables
    npz = load_compressed(model.save(tmp_path / "m.npz"))
    assert torch.equal(npz.user_table.dequantize(), back.user_table.dequantize())
    forced = model.save(tmp_path / "m.bin", file_format="safetensors")
    assert load_compressed(forced).nbytes() == model.nbytes()
    with pytest.raises(ValueError, match="file_format must be one of"):
        model.save(tmp_path / "m.x", file_format="pickle")


def test_safetensors_tampering_is_named(tmp_path: Path, model: CompressedMF) -> None:
    pytest.importorskip("safetensors")
    path = model.save(tmp_path / "m.safetensors")
    n, header = _header(path)
    raw = bytearray(path.read_bytes())
    key = "item/rows_int4"
    start = 8 + n + header[key]["data_offsets"][0]
    raw[start] ^= 1  # one flipped bit in the int4 codes
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=f"array '{key}' does not match its checksum"):
        load_compressed(bad)
    bad.write_bytes(bytes(path.read_bytes()[:-5]))  # truncated
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_compressed(bad)
    import safetensors.numpy

    bad.write_bytes(safetensors.numpy.save({"x": np.zeros(3, np.float32)}))
    with pytest.raises(ArtifactError, match="not a GradTracer compressed artifact"):
        load_compressed(bad)
    # a manifest that was edited (bytes claimed) is refused by the byte check
    manifest = json.loads(header["__metadata__"]["gradtracer"])
    manifest["nbytes"] += 1
    arrays = safetensors.numpy.load_file(str(path))
    bad.write_bytes(safetensors.numpy.save(arrays, metadata={"gradtracer": json.dumps(manifest)}))
    with pytest.raises(ArtifactError, match="manifest says"):
        load_compressed(bad)


def test_artifact_checked_against_its_recipe(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    user, item = torch.randn(60, 8, generator=g), torch.randn(50, 8, generator=g)
    advisor = QuantizationAdvisor(user, item)
    recipe = advisor.advise(methods.fp32_bytes(user, item) // 8)
    path = apply_recipe(recipe, user, item).save(tmp_path / "a.npz")
    assert load_compressed(path, recipe=recipe).nbytes() <= recipe.budget_bytes
    other = advisor.advise(methods.fp32_bytes(user, item) // 4)
    with pytest.raises(ArtifactError, match="not from this recipe"):
        load_compressed(path, recipe=other)
    small = QuantizationAdvisor(user[:30], item).advise(methods.fp32_bytes(user[:30], item) // 8)
    with pytest.raises(ArtifactError, match="a recipe for another model"):
        load_compressed(path, recipe=small)


def test_torchrec_export_matches_pooled_lookups() -> None:
    from gradtracer.compress.export import to_torchrec, torchrec_available

    if not torchrec_available():
        pytest.skip(
            "torchrec is not importable (optional: pip install fbgemm-gpu-cpu==1.8.0 && "
            "pip install torchrec==1.8.0 --no-deps)"
        )
    g = torch.Generator().manual_seed(2)
    w = torch.randn(200, 16, generator=g) * 2
    tables: dict[str, QuantizedTable | LowRankTable] = {
        p: QuantizedTable.from_weight(w, p, name=p)
        for p in ("fp32", "fp16", "int8", "int4", "int2")
    }
    tables["low_rank"] = LowRankTable.from_weight(w, 8, name="low_rank", precision="int4")
    export = to_torchrec(tables)
    idx = torch.randint(0, 200, (60,), generator=g)
    lengths = torch.tensor([5, 0, 25, 30])
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    pooled = export.pooled({k: (idx, lengths) for k in tables})
    for name, table in tables.items():
        ours = table.embedding_bag(idx, offsets, include_last_offset=True)
        # int8: TorchRec keeps a float16 scale and bias where ours are float32
        tol = 2e-2 if name == "int8" else 1e-4
        torch.testing.assert_close(pooled[name], ours, rtol=0, atol=tol, msg=name)
    assert (
        float(pooled["int8"].sub(tables["int8"].embedding_bag(idx, offsets[:-1])).abs().max()) > 0
    )
    mixed = QuantizedTable.from_weight(w, np.where(np.arange(200) % 2 == 0, "int4", "drop"))
    with pytest.raises(ValueError, match="one data type"):
        to_torchrec({"mixed": mixed})
