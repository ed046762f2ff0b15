"""``gradtracer data info | prepare`` through ``gradtracer.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradtracer.cli import main
from gradtracer.recsys.data import Interactions, Split, make_implicit, make_sessions


@pytest.fixture()
def ratings_file(tmp_path: Path) -> Path:
    """A u.data-style file written from the synthetic generator (ratings 1..5)."""
    ix = make_implicit(n_users=60, n_items=90, n_interactions=900, random_state=1)
    f = ix.frame
    rating = (f["user"] + f["item"]) % 5 + 1
    lines = [
        f"{u + 1}\t{i + 1}\t{r}\t{t}"
        for u, i, r, t in zip(f["user"], f["item"], rating, f["timestamp"], strict=True)
    ]
    path = tmp_path / "u.data"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_info_prints_sizes(ratings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(ratings_file)]) == 0
    out = capsys.readouterr().out
    assert "rows:      900" in out and "users:     60" in out and "density:" in out
    assert main(["data", "info", str(ratings_file), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 900 and stats["users"] == 60


def test_info_on_sessions_reports_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = make_sessions(n_sessions=40, n_items=30, random_state=0)
    f = ix.frame
    path = tmp_path / "train.tsv"
    path.write_text(
        "SessionId\tItemId\tTime\n"
        + "".join(
            f"{s}\t{i}\t{t}\n"
            for s, i, t in zip(f["session"], f["item"], f["timestamp"], strict=True)
        )
    )
    assert main(["data", "info", str(path), "--format", "tsv"]) == 0
    assert "sessions:  40 " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "has_valid"),
    [
        (["--split", "loo"], False),
        (["--split", "loo", "--valid-fraction", "0.1"], True),
        (["--split", "ratio", "--test-fraction", "0.25", "--seed", "3"], False),
        (["--split", "temporal", "--by", "time", "--valid-fraction", "0.1"], True),
    ],
    ids=["loo", "loo-valid", "ratio", "temporal-time"],
)
def test_prepare_writes_a_loadable_split(
    ratings_file: Path, tmp_path: Path, args: list[str], has_valid: bool
) -> None:
    out = tmp_path / "prepared"
    code = main(
        [
            "data",
            "prepare",
            str(ratings_file),
            "--out",
            str(out),
            "--implicit-threshold",
            "3",
            "--k-core",
            "2",
            *args,
        ]
    )
    assert code == 0
    split = Split.load(out)
    assert (split.valid is not None) == has_valid
    steps = [s["step"] for s in split.info["preprocessing"]]
    assert steps == ["load", "to_implicit", "k_core", "compact"]
    kept = split.info["preprocessing"][-1]["rows"]
    assert sum(len(p) for p in split.parts().values()) == kept
    assert set(split.train.frame["rating"].unique().to_list()) == {1.0}
    # compacted: every user and item in the maps occurs somewhere
    whole = [p.frame for p in split.parts().values()]
    assert {u for f in whole for u in f["user"].to_list()} == set(range(split.train.n_users))
    assert {i for f in whole for i in f["item"].to_list()} == set(range(split.train.n_items))


def test_prepare_and_info_report_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "u.data"
    bad.write_text("1\t2\t3\t4\n1\t2\n")
    assert main(["data", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "expected 4 tab-separated fields" in err
    assert (
        main(["data", "prepare", str(bad), "--out", str(tmp_path / "o"), "--split", "kfold"]) == 2
    )
    assert "--split must be one of" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing.data")]) == 2


def test_info_reads_a_saved_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ix: Interactions = make_implicit(n_users=20, n_items=30, n_interactions=200, random_state=0)
    ix.save(tmp_path / "saved")
    assert main(["data", "info", str(tmp_path / "saved")]) == 0
    assert "rows:      200" in capsys.readouterr().out
