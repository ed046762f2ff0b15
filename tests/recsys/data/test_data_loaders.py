"""Loaders: every supported layout, id ordering, bad input, and the real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from gradtracer.errors import DataFormatError
from gradtracer.recsys.data import (
    Interactions,
    describe,
    detect_format,
    encode_ids,
    load_amazon,
    load_interactions,
    load_movielens,
    load_sessions,
)

ML_ROWS = [(10, 2, 4, 100), (2, 10, 5, 90), (10, 10, 3, 80)]


def _raw_triples(ix: Interactions) -> set[tuple[str, str, float, int]]:
    f = ix.frame
    return {
        (ix.user_ids.raw(u), ix.item_ids.raw(i), float(r), int(t))
        for u, i, r, t in zip(f["user"], f["item"], f["rating"], f["timestamp"], strict=True)
    }


# --- ids ------------------------------------------------------------------------------
def test_numeric_ids_are_ordered_numerically() -> None:
    codes, idmap = encode_ids(pl.Series(["10", "2", "1", "2"]))
    assert idmap.ids == ["1", "2", "10"]
    assert codes.to_list() == [2, 1, 0, 1]


def test_mixed_and_zero_padded_ids_are_ordered_as_strings() -> None:
    _, mixed = encode_ids(pl.Series(["b", "10", "2"]))
    assert mixed.ids == ["10", "2", "b"]
    _, padded = encode_ids(pl.Series(["07", "10", "7"]))
    assert padded.ids == ["07", "10", "7"]  # "07" != "7": kept distinct, string order


def test_from_raw_accepts_pandas_and_polars_alike() -> None:
    data = {"u": ["x", "y", "x"], "i": [3, 1, 2], "r": [1.0, 2.0, 3.0], "t": [5, 6, 7]}
    a = Interactions.from_raw(
        pd.DataFrame(data), user_col="u", item_col="i", rating_col="r", timestamp_col="t"
    )
    b = Interactions.from_raw(
        pl.DataFrame(data), user_col="u", item_col="i", rating_col="r", timestamp_col="t"
    )
    assert a.frame.equals(b.frame)
    assert a.item_ids.ids == ["1", "2", "3"]


def test_save_load_roundtrip(tmp_path: Path) -> None:
    ix = Interactions.from_raw(
        pl.DataFrame(
            {"user": ["a", "b"], "item": ["p", "q"], "rating": [1, 2], "timestamp": [1, 2]}
        )
    )
    back = Interactions.load(ix.save(tmp_path / "ix"))
    assert back.frame.equals(ix.frame) and back.user_ids.ids == ix.user_ids.ids


def test_interactions_rejects_indices_outside_the_id_maps() -> None:
    ix = Interactions.from_raw(
        pl.DataFrame({"user": ["a"], "item": ["p"], "rating": [1.0], "timestamp": [0]})
    )
    with pytest.raises(ValueError, match=r"column 'item' holds indices outside \[0, 1\)"):
        ix.with_frame(ix.frame.with_columns(pl.lit(3).alias("item")))


# --- MovieLens ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "sep", "header", "gz"),
    [
        ("u.data", "\t", "", False),
        ("ratings.dat", "::", "", False),
        ("ratings.csv", ",", "userId,movieId,rating,timestamp\n", False),
        ("u.data", "\t", "", True),
    ],
    ids=["100k-tab", "1m-dat", "20m-csv", "100k-gzip"],
)
def test_movielens_variants_load_the_same_rows(write, name, sep, header, gz) -> None:
    text = header + "".join(sep.join(map(str, r)) + "\n" for r in ML_ROWS)
    ix = load_movielens(write(name, text, gz=gz))
    assert _raw_triples(ix) == {(str(u), str(i), float(r), t) for u, i, r, t in ML_ROWS}
    assert ix.user_ids.ids == ["2", "10"] and ix.item_ids.ids == ["2", "10"]


def test_movielens_directory_and_sniffing(write, tmp_path: Path) -> None:
    write("u.data", "1\t1\t5\t10\n")
    assert len(load_movielens(tmp_path)) == 1
    sniffed = write("custom.txt", "1::1::5::10\n2::1::3::11\n")
    assert len(load_movielens(sniffed)) == 2


def test_movielens_short_line_names_file_line_and_layout(write) -> None:
    path = write("u.data", "1\t2\t3\t4\n5\t6\t7\t8\n9\t10\t11\n")
    with pytest.raises(DataFormatError) as err:
        load_movielens(path)
    assert err.value.line == 3 and err.value.path == str(path)
    assert "expected 4 tab-separated fields user item rating timestamp, got 3" in str(err.value)


def test_movielens_blank_lines_keep_line_numbers(write) -> None:
    path = write("u.data", "1\t2\t3\t4\n\n1\t2\t3\n")
    with pytest.raises(DataFormatError) as err:
        load_movielens(path)
    assert err.value.line == 3


def test_movielens_non_numeric_timestamp_names_column(write) -> None:
    path = write("ratings.dat", "1::2::3::4\n1::3::4::yesterday\n")
    with pytest.raises(DataFormatError, match=r"ratings.dat:2: column 'timestamp'.*'yesterday'"):
        load_movielens(path)


def test_movielens_csv_missing_column(write) -> None:
    path = write("ratings.csv", "userId,movieId,rating\n1,2,3\n")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['timestamp'\]"):
        load_movielens(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.data"):
        load_movielens(tmp_path / "nope.data")


# --- Amazon ---------------------------------------------------------------------------
REVIEWS_2014 = [
    {
        "reviewerID": "A2",
        "asin": "B1",
        "overall": 5.0,
        "unixReviewTime": 1393545600,
        "reviewText": "great",
        "helpful": [0, 0],
    },
    {"reviewerID": "A1", "asin": "0042", "overall": 3.0, "unixReviewTime": 1363392000},
]
REVIEWS_2023 = [
    {
        "user_id": "U1",
        "parent_asin": "P9",
        "asin": "X",
        "rating": 4.0,
        "timestamp": 1588687728923,
        "text": "ok",
    },
    {"user_id": "U2", "parent_asin": "P9", "rating": 2.0, "timestamp": 1588687729000},
]


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.mark.parametrize(
    ("container", "gz"),
    [
        ("jsonl", False),
        ("jsonl", True),
        ("array", False),
        ("array", True),
        ("csv", False),
        ("csv", True),
        ("parquet", False),
    ],
    ids=["jsonl", "jsonl-gz", "array", "array-gz", "csv", "csv-gz", "parquet"],
)
def test_amazon_2014_containers(write, tmp_path: Path, container: str, gz: bool) -> None:
    cols = ["reviewerID", "asin", "overall", "unixReviewTime"]
    if container == "jsonl":
        path = write("reviews.json", _jsonl(REVIEWS_2014), gz=gz)
    elif container == "array":
        path = write("reviews.json", json.dumps(REVIEWS_2014), gz=gz)
    elif container == "csv":
        frame = pl.DataFrame([{c: r[c] for c in cols} for r in REVIEWS_2014])
        path = write("reviews.csv", frame.write_csv(), gz=gz)
    else:
        path = tmp_path / "reviews.parquet"
        pl.DataFrame([{c: r[c] for c in cols} for r in REVIEWS_2014]).write_parquet(path)
    ix = load_amazon(path)
    assert _raw_triples(ix) == {("A2", "B1", 5.0, 1393545600), ("A1", "0042", 3.0, 1363392000)}
    assert ix.item_ids.ids == ["0042", "B1"]


def test_amazon_2023_milliseconds_become_seconds(write) -> None:
    ix = load_amazon(write("reviews.jsonl", _jsonl(REVIEWS_2023)))
    assert _raw_triples(ix) == {("U1", "P9", 4.0, 1588687728), ("U2", "P9", 2.0, 1588687729)}


def test_amazon_bad_json_line_is_located(write) -> None:
    text = _jsonl(REVIEWS_2014) + '{"reviewerID": "A3", "asin": \n'
    with pytest.raises(DataFormatError) as err:
        load_amazon(write("reviews.json", text))
    assert err.value.line == 3 and "JSON object per line" in str(err.value)


def test_amazon_missing_column_is_named(write) -> None:
    records = [{k: v for k, v in r.items() if k != "overall"} for r in REVIEWS_2014]
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['overall'\]"):
        load_amazon(write("reviews.json", _jsonl(records)))


def test_amazon_non_numeric_timestamp_names_column_and_line(write) -> None:
    records = [dict(REVIEWS_2014[0]), dict(REVIEWS_2014[1], unixReviewTime="July")]
    with pytest.raises(DataFormatError) as err:
        load_amazon(write("reviews.json", "\n" + _jsonl(records)))
    assert err.value.line == 3 and "'unixReviewTime'" in str(err.value)


# --- sessions -------------------------------------------------------------------------
def test_sessions_tsv_orders_clicks_inside_sessions(write) -> None:
    text = "SessionId\tItemId\tTime\n2\t7\t100.5\n1\t5\t50.2\n1\t6\t50.1\n2\t8\t100.9\n"
    ix = load_sessions(write("train.tsv", text), "tsv")
    f = ix.frame
    assert f["session"].to_list() == [0, 0, 1, 1]
    assert ix.item_ids.raws(f["item"]) == ["6", "5", "7", "8"]  # 50.1 before 50.2
    assert f["timestamp"].to_list() == [50, 50, 100, 100]


def test_sessions_yoochoose_iso_times(write) -> None:
    text = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,0\n"
    ix = load_sessions(write("yoochoose-clicks.dat", text), "yoochoose")
    assert ix.frame["timestamp"].to_list() == [1396867869, 1396868049]


def test_sessions_yoochoose_bad_time(write) -> None:
    path = write("clicks.dat", "1,2014-04-07T10:51:09.277Z,5,0\n1,07/04/2014,6,0\n")
    with pytest.raises(DataFormatError, match=r"clicks.dat:2: column 'timestamp'"):
        load_sessions(path, "yoochoose")


def test_sessions_diginetica_time_is_date_plus_timeframe(write) -> None:
    text = (
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n"
    )
    ix = load_sessions(write("views.csv", text), "diginetica")
    day = 1462752000  # 2016-05-09T00:00:00Z
    assert ix.frame["timestamp"].to_list() == [day + 526, day + 1031]


def test_sessions_retailrocket_cut_by_inactivity_gap(write) -> None:
    t0 = 1433221332000
    minute = 60_000
    rows = [
        (t0, 7, "view", 1, ""),
        (t0 + 10 * minute, 7, "addtocart", 2, ""),
        (t0 + 50 * minute, 7, "transaction", 2, "99"),  # 40 min gap: new session
        (t0 + 5 * minute, 8, "view", 3, ""),
    ]
    text = "timestamp,visitorid,event,itemid,transactionid\n" + "".join(
        ",".join(map(str, r)) + "\n" for r in rows
    )
    path = write("events.csv", text)
    ix = load_sessions(path, "retailrocket")
    per_session = ix.frame.group_by("session").agg(pl.len(), pl.col("user").first()).sort("session")
    # sessions numbered by start time: visitor 7 (t0), visitor 8 (t0+5m), visitor 7 (t0+50m)
    assert per_session["len"].to_list() == [2, 1, 1]
    assert ix.user_ids.raws(per_session["user"]) == ["7", "8", "7"]
    one_session = load_sessions(path, "retailrocket", session_gap=3600)
    assert one_session.frame["session"].n_unique() == 2


def test_sessions_missing_column_and_unknown_format(write) -> None:
    path = write("views.csv", "session_id;item_id;eventdate\n1;2;2016-01-01\n")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['timeframe'\]"):
        load_sessions(path, "diginetica")
    with pytest.raises(ValueError, match="fmt must be one of"):
        load_sessions(path, "csv")


def test_detect_format(write) -> None:
    assert detect_format(write("u.data", "1\t1\t1\t1\n")) == "movielens"
    assert detect_format(write("a.json", _jsonl(REVIEWS_2014))) == "amazon"
    assert detect_format(write("s.tsv", "SessionId\tItemId\tTime\n1\t1\t1\n")) == "tsv"
    assert detect_format(write("d.csv", "session_id;user_id;item_id;timeframe;eventdate\n")) == (
        "diginetica"
    )
    assert detect_format(write("r.csv", "timestamp,visitorid,event,itemid,transactionid\n")) == (
        "retailrocket"
    )
    assert detect_format(write("y.dat", "1,2014-04-07T10:51:09.277Z,5,0\n")) == "yoochoose"
    with pytest.raises(DataFormatError, match="cannot detect"):
        detect_format(write("x.txt", "hello world\n"))


# --- real data ------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_movielens_100k(shared_data: Path) -> None:
    ix = load_interactions(shared_data / "ml-100k" / "u.data")
    assert (len(ix), ix.n_users, ix.n_items) == (100_000, 943, 1_682)
    hist = ix.frame["rating"].value_counts().sort("rating")["count"].to_list()
    assert hist == [6_110, 11_370, 27_145, 34_174, 21_201]
    assert ix.user_ids.raw(int(ix.frame["user"][0])) == "196"


@pytest.mark.realdata
def test_real_amazon_musical_instruments(shared_data: Path) -> None:
    path = shared_data / "amazon" / "musical-instruments-5core-2014" / "Musical_Instruments.json"
    ix = load_amazon(path)
    assert (len(ix), ix.n_users, ix.n_items) == (10_261, 1_429, 900)
    stats = describe(ix)
    assert (stats["timestamp_min"], stats["timestamp_max"]) == (1095465600, 1405987200)


@pytest.mark.realdata
def test_real_diginetica_sample(shared_data: Path) -> None:
    path = shared_data / "sessions" / "diginetica-sample" / "sample_train-item-views.csv"
    ix = load_sessions(path, "diginetica")
    stats = describe(ix)
    assert (stats["rows"], stats["sessions"], stats["items"]) == (12_391, 2_986, 7_139)
    lengths = ix.frame.group_by("session").len()["len"]
    assert (lengths.min(), lengths.max()) == (1, 54)
    # row order is click order: timestamps never decrease inside a session
    f = ix.frame
    assert f.select((pl.col("timestamp").diff().over("session").fill_null(0) >= 0).all()).item()
