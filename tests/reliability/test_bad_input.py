"""Malformed input to every loader: a clear error naming file, line, field and value."""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gradtracer.durable import CorruptFileError, atomic_savez, load_json, load_npz
from gradtracer.errors import DataFormatError, GradTracerWarning
from gradtracer.recsys.data import (
    Interactions,
    Split,
    leave_one_out,
    load_amazon,
    load_interactions,
    load_movielens,
    load_sessions,
    ratio_split,
    temporal_split,
    to_implicit,
)

BAD_RATINGS = [
    ("nan", "not finite"),
    ("inf", "not finite"),
    ("-Infinity", "not finite"),
    ("1e39", "does not fit float32"),
    ("", "expected a numeric rating"),
    ("4 stars", "expected a numeric rating"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_RATINGS)
@pytest.mark.parametrize("layout", ["u.data", "ratings.dat", "ratings.csv"])
def test_movielens_rating_must_be_finite_and_fit(
    tmp_path: Path, layout: str, value: str, reason: str
) -> None:
    sep = {"u.data": "\t", "ratings.dat": "::", "ratings.csv": ","}[layout]
    header = "userId,movieId,rating,timestamp\n" if layout == "ratings.csv" else ""
    rows = [["1", "2", "4", "10"], ["2", "3", value, "11"], ["3", "4", "5", "12"]]
    path = tmp_path / layout
    path.write_text(header + "\n".join(sep.join(r) for r in rows) + "\n")
    line = 3 if header else 2
    with pytest.raises(DataFormatError, match=f"{layout}:{line}: column 'rating'") as info:
        load_movielens(path)
    assert reason in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("stamp", ["1e30", "nan", "99999999999999999999"])
def test_timestamps_that_overflow_are_refused(tmp_path: Path, stamp: str) -> None:
    path = tmp_path / "u.data"
    path.write_text(f"1\t2\t4\t10\n1\t3\t4\t{stamp}\n")
    with pytest.raises(DataFormatError, match=r"u.data:2: column 'timestamp'"):
        load_movielens(path)
    amazon = tmp_path / "reviews.jsonl"
    amazon.write_text(
        '{"reviewerID": "a", "asin": "x", "overall": 5, "unixReviewTime": 1}\n'
        f'{{"reviewerID": "b", "asin": "y", "overall": 4, "unixReviewTime": "{stamp}"}}\n'
    )
    with pytest.raises(DataFormatError, match=r"reviews.jsonl:2: column 'unixReviewTime'"):
        load_amazon(amazon)
    tsv = tmp_path / "s.tsv"
    tsv.write_text(f"SessionId\tItemId\tTime\n1\t5\t10\n1\t6\t{stamp}\n")
    with pytest.raises(DataFormatError, match=r"s.tsv:3: column 'Time'"):
        load_sessions(tsv, "tsv")


def test_nan_rating_in_amazon_json_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    path.write_text(
        '[{"reviewerID": "a", "asin": "x", "overall": 5, "unixReviewTime": 1},\n'
        ' {"reviewerID": "b", "asin": "y", "overall": NaN, "unixReviewTime": 2}]'
    )
    with pytest.raises(DataFormatError, match=r"column 'overall' \(row 1\).*'nan'"):
        load_amazon(path)


def test_non_object_element_of_a_json_array_is_named(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    record = {"reviewerID": "a", "asin": "x", "overall": 5, "unixReviewTime": 1}
    path.write_text(json.dumps([record, record, 7]))
    with pytest.raises(DataFormatError, match="element 2 of the JSON array is int"):
        load_amazon(path)


@pytest.mark.parametrize(
    ("name", "text", "load"),
    [
        ("ratings.csv", "userId,movieId,rating,timestamp\n", load_movielens),
        ("s.tsv", "SessionId\tItemId\tTime\n", lambda p: load_sessions(p, "tsv")),
        ("d.csv", "session_id;user_id;item_id;timeframe;eventdate\n",
         lambda p: load_sessions(p, "diginetica")),
        ("r.csv", "reviewerID,asin,overall,unixReviewTime\n", load_amazon),
    ],
)  # fmt: skip
def test_header_only_files_are_refused(
    tmp_path: Path, name: str, text: str, load: Callable[[Path], object]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFormatError, match=f"{name}: file has only a header line"):
        load(path)


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("u.data", "1\t2\t3\t4\n" * 5000, "movielens"),
        ("s.tsv", "SessionId\tItemId\tTime\n" + "1\t2\t3\n" * 5000, "tsv"),
        ("r.jsonl", '{"reviewerID": "a", "asin": "x", "overall": 5, "unixReviewTime": 1}\n'
         * 2000, "amazon"),
    ],
)  # fmt: skip
def test_truncated_gzip_is_named(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    path = tmp_path / (name + ".gz")
    data = gzip.compress(text.encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=f"{name}.gz: truncated or corrupt gzip"):
        load_interactions(path, fmt)


def test_a_directory_given_as_a_file_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "reviews.json").mkdir()
    with pytest.raises(IsADirectoryError, match="reviews.json: is a directory"):
        load_amazon(tmp_path / "reviews.json")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_sessions(tmp_path / "reviews.json", "tsv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_amazon(tmp_path / "missing.json")


def test_quoted_multiline_csv_fields_keep_true_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        "reviewerID,asin,overall,unixReviewTime,reviewText\n"
        'a,x,5,1,"fine"\n'
        'b,y,4,2,"spans\nthree\nlines"\n'
        'c,z,bad,3,"x"\n'
    )
    with pytest.raises(DataFormatError, match=r"reviews.csv:6: column 'overall'.*'bad'"):
        load_amazon(path)


def test_in_memory_frames_are_validated_too() -> None:
    frame = pl.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, float("nan")],
                          "timestamp": [1, 2]})  # fmt: skip
    with pytest.raises(DataFormatError, match=r"column 'rating' \(row 1\).*not finite"):
        Interactions.from_raw(frame)
    frame = frame.with_columns(pl.Series("rating", [1.0, 2.0]),
                               pl.Series("timestamp", [1.0, 1e30]))  # fmt: skip
    with pytest.raises(DataFormatError, match=r"column 'timestamp' \(row 1\)"):
        Interactions.from_raw(frame)


def test_nan_never_becomes_a_positive() -> None:
    ix = Interactions.from_raw(
        pl.DataFrame(
            {
                "user": [1, 2, 3],
                "item": [1, 2, 3],
                "rating": [5.0, 1.0, 4.0],
                "timestamp": [1, 2, 3],
            }
        )
    )
    # a NaN slipped in past the loaders (a frame edited by hand)
    poisoned = ix.with_frame(ix.frame.with_columns(pl.Series("rating", [5.0, float("nan"), 1.0],
                                                             dtype=pl.Float32)))  # fmt: skip
    assert to_implicit(poisoned, 4).frame["user"].to_list() == [0]
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        to_implicit(ix, float("nan"))


def test_duplicate_pairs_across_train_and_test_are_counted_and_warned() -> None:
    ix = Interactions.from_raw(
        pl.DataFrame(
            {
                "user": [1, 1, 1, 2, 2],
                "item": [7, 8, 7, 7, 8],
                "rating": [1.0] * 5,
                "timestamp": [1, 2, 3, 1, 2],
            }
        )
    )
    with pytest.warns(GradTracerWarning, match="1 test row.*also occurs in train"):
        split = leave_one_out(ix)
    assert split.info["test_pairs_in_train"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = leave_one_out(
            ix.with_frame(ix.frame.unique(["user", "item"], keep="first", maintain_order=True))
        )
    assert clean.info["test_pairs_in_train"] == 0


def test_split_keyword_names_and_their_deprecated_spellings() -> None:
    ix = Interactions.from_raw(pl.DataFrame({"user": [1] * 10 + [2] * 10,
                                             "item": list(range(20)), "rating": [1.0] * 20,
                                             "timestamp": list(range(20))}))  # fmt: skip
    with pytest.warns(DeprecationWarning, match=r"valid=\.\.\.\) is deprecated; use with_valid"):
        old = leave_one_out(ix, valid=True)
    assert old.info == leave_one_out(ix, with_valid=True).info
    with pytest.raises(TypeError, match="with_valid must be a bool"):
        leave_one_out(ix, 0.1)  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match="use test_fraction"):
        a = ratio_split(ix, test=0.3, random_state=1)
    b = ratio_split(ix, test_fraction=0.3, random_state=1)
    assert a.test.frame.equals(b.test.frame) and b.info["test_fraction"] == 0.3
    split = temporal_split(ix, test_fraction=0.2, valid_fraction=0.1, by="time")
    assert split.info["valid_fraction"] == 0.1


def test_stale_valid_of_an_old_split_layout_is_ignored(tmp_path: Path) -> None:
    ix = Interactions.from_raw(pl.DataFrame({"user": [1] * 6 + [2] * 6, "item": list(range(12)),
                                             "rating": [1.0] * 12,
                                             "timestamp": list(range(12))}))  # fmt: skip
    leave_one_out(ix, with_valid=True).save(tmp_path / "s")
    leave_one_out(ix).save(tmp_path / "s")  # the new split has no valid part
    assert not (tmp_path / "s" / "valid").exists() and Split.load(tmp_path / "s").valid is None
    # a directory from before split.json listed its parts, with a left-over valid/
    leave_one_out(ix, with_valid=True).valid.save(tmp_path / "s" / "valid")  # type: ignore[union-attr]
    info = json.loads((tmp_path / "s" / "split.json").read_text())
    del info["parts"]
    (tmp_path / "s" / "split.json").write_text(json.dumps(info))
    with pytest.warns(GradTracerWarning, match="valid: not part of the split"):
        assert Split.load(tmp_path / "s").valid is None


def test_refuses_to_replace_a_directory_that_is_not_a_split(tmp_path: Path) -> None:
    ix = Interactions.from_raw(pl.DataFrame({"user": [1, 1], "item": [1, 2], "rating": [1.0, 1.0],
                                             "timestamp": [1, 2]}))  # fmt: skip
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and not a saved split"):
        leave_one_out(ix).save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- npz and json read helpers ----------------------------------------------------------
def test_load_npz_names_file_and_array(tmp_path: Path) -> None:
    good = atomic_savez(tmp_path / "w.npz", w=np.arange(50_000.0), b=np.ones(2))
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "tail.npz": data[:-20],
        "garbage.npz": b"\x00garbage" * 20,
        "empty.npz": b"",
    }
    flipped = bytearray(data)
    flipped[300] ^= 0xFF
    cases["crc.npz"] = bytes(flipped)
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CorruptFileError, match=name) as info:
            load_npz(tmp_path / name)
        assert "pickle" not in str(info.value).replace("never unpickled", "")
    with pytest.raises(CorruptFileError, match=r"w.npz: missing array\(s\) \['v'\]"):
        load_npz(good, required=["w", "v"])
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CorruptFileError, match="array 'a' of .*obj.npz: holds an object array"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_npz(tmp_path)
    with pytest.raises(TypeError, match="dtype object"):
        atomic_savez(tmp_path / "o2.npz", a=np.array([None], dtype=object))


def test_load_json_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"kind": "mf",\n "n": }')
    with pytest.raises(CorruptFileError, match="model.json:2: not valid JSON"):
        load_json(path)
    path.write_text('{"kind": NaN}')
    with pytest.raises(CorruptFileError, match="non-finite number NaN"):
        load_json(path)
    path.write_text('{"kind": "mf"}')
    with pytest.raises(CorruptFileError, match=r"missing key\(s\) \['format_version'\]"):
        load_json(path, required=["kind", "format_version"])
    assert load_json(path, required=["kind"]) == {"kind": "mf"}


def test_a_corrupt_saved_table_is_named(tmp_path: Path) -> None:
    ix = Interactions.from_raw(pl.DataFrame({"user": [1, 2], "item": [3, 4],
                                             "rating": [1.0, 2.0], "timestamp": [5, 6]}))  # fmt: skip
    d = ix.save(tmp_path / "ix")
    parquet = d / "interactions.parquet"
    parquet.write_bytes(parquet.read_bytes()[:40])
    with pytest.raises(DataFormatError, match="interactions.parquet: corrupt parquet"):
        Interactions.load(d)
    ix.save(d)
    (d / "item_ids.json").write_text('{"name": "item"}')
    with pytest.raises(DataFormatError, match="item_ids.json: not a saved id map"):
        Interactions.load(d)
