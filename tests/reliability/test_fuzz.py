"""Property-based fuzzing of every loader and of the audit and report readers.

Loaders: any text either loads into a table whose values are exactly the numbers written
(finite, in their dtype) or raises ``DataFormatError`` naming the file; nothing else.
Audit reader: any damage to a log never raises and never drops an intact line's event.
Report reader: any edit of a report either reads back into a report that every renderer
accepts, or raises ``ValueError`` naming the source.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradtracer.audit import read_audit
from gradtracer.errors import DataFormatError
from gradtracer.export.agent_json import to_agent_json
from gradtracer.export.agent_xml import to_agent_xml
from gradtracer.export.json_report import report_from_json, to_json
from gradtracer.export.text import render_text
from gradtracer.findings import FindingType, Report, Severity
from gradtracer.recsys.data import load_amazon, load_movielens, load_sessions
from gradtracer.report.catalog import make_finding

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e39", "1e30", "", " ", "x", "1,5", "0x10",
                     "99999999999999999999", "4.", ".5", "1e-50", '"3"']),
)  # fmt: skip
IDS = st.one_of(st.integers(0, 50).map(str), st.sampled_from(["a", "", "07", "-1", "x y"]))


def _finite_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_load(path: Path, load: Callable[[Path], object]) -> object | None:
    try:
        return load(path)
    except DataFormatError as exc:
        assert path.name in str(exc)
        return None


@FUZZ
@given(rows=st.lists(st.tuples(IDS, IDS, NUMBERS, NUMBERS), min_size=0, max_size=12),
       layout=st.sampled_from(["u.data", "ratings.dat", "ratings.csv"]))  # fmt: skip
def test_movielens_loader(rows: list[tuple[str, str, str, str]], layout: str) -> None:
    sep = {"u.data": "\t", "ratings.dat": "::", "ratings.csv": ","}[layout]
    header = "userId,movieId,rating,timestamp\n" if layout == "ratings.csv" else ""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / layout
        path.write_text(header + "".join(sep.join(r) + "\n" for r in rows))
        ix = _check_load(path, load_movielens)
        if ix is None:
            return
        frame = ix.frame  # type: ignore[attr-defined]
        assert frame.height == len([r for r in rows if sep.join(r).strip()])
        assert frame["rating"].is_finite().all()
        for (_, _, r, _), rating in zip(rows, frame["rating"].to_list(), strict=True):
            assert _finite_number(r) is not None and abs(float(r) - rating) <= 1e-6 * max(
                1.0, abs(float(r))
            )


@FUZZ
@given(rows=st.lists(st.tuples(IDS, IDS, NUMBERS), min_size=0, max_size=12))
def test_session_tsv_loader(rows: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clicks.tsv"
        path.write_text("SessionId\tItemId\tTime\n" + "".join("\t".join(r) + "\n" for r in rows))
        ix = _check_load(path, lambda p: load_sessions(p, "tsv"))
        if ix is not None:
            stamps = ix.frame["timestamp"].to_list()  # type: ignore[attr-defined]
            assert sorted(stamps) == sorted(math.floor(float(r[2])) for r in rows)


RECORD = st.fixed_dictionaries(
    {"reviewerID": IDS, "asin": IDS, "overall": NUMBERS, "unixReviewTime": NUMBERS}
)


@FUZZ
@given(records=st.lists(st.one_of(RECORD, st.integers(), st.just([])), max_size=8),
       as_array=st.booleans())  # fmt: skip
def test_amazon_loader(records: list[object], as_array: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviews.json"
        if as_array:
            path.write_text(json.dumps(records))
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        ix = _check_load(path, load_amazon)
        if ix is not None:
            assert all(isinstance(r, dict) for r in records)
            assert ix.frame["rating"].is_finite().all()  # type: ignore[attr-defined]


# --- audit reader -----------------------------------------------------------------------
def _log_lines(n: int) -> list[str]:
    lines = [json.dumps({"kind": "run_start", "run_id": "r", "layer": "e", "step": 0,
                         "policy": {}})]  # fmt: skip
    for step in range(1, n):
        lines.append(json.dumps({"kind": "damp", "run_id": "r", "layer": "e", "step": step,
                                 "rows": [step, 2], "scales": [0.5, 0.25], "n_agree": [1, 2],
                                 "n_disagree": [3, 4]}))  # fmt: skip
    return lines


@FUZZ
@given(
    n=st.integers(2, 12),
    damage=st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(["cut", "flip", "insert", "glue"]),
                  st.binary(max_size=12), st.integers(0, 10**6)),
        min_size=1, max_size=4,
    ),
)  # fmt: skip
def test_audit_reader_survives_any_damage(
    n: int, damage: list[tuple[int, str, bytes, int]]
) -> None:
    lines = [line.encode() for line in _log_lines(n)]
    touched: set[int] = set()
    for index, how, junk, seed in damage:
        k = index % len(lines)
        rng = random.Random(seed)
        if not lines[k] and how in ("cut", "flip"):
            how = "glue"
        if how == "cut":
            lines[k] = lines[k][: rng.randrange(len(lines[k]))]
        elif how == "flip":
            b = bytearray(lines[k])
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            lines[k] = bytes(b)
        elif how == "insert":
            lines.insert(k, junk.replace(b"\n", b""))
            touched = {t + 1 if t >= k else t for t in touched}
        else:
            lines[k] = lines[k] + junk.replace(b"\n", b"")
        touched.add(k)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        log = read_audit(path, warn=False)
        intact = [json.loads(x) for k, x in enumerate(lines) if k not in touched]
        for event in intact:
            assert event in log.events  # an undamaged line is never lost
        assert {p.line for p in log.problems} <= {k + 1 for k in touched}  # only damage named


# --- report reader ----------------------------------------------------------------------
def _report_text() -> str:
    finding = make_finding(FindingType.DEAD_EMBEDDINGS, subject="item_emb",
                           premise="12 rows never moved.", confidence=0.8,
                           evidence={"rows": 12}, sample_ids=[1, 2])  # fmt: skip
    report = Report(kind="embedding", subject="item_emb", stats={"n_rows": 100, "ratio": 0.5},
                    findings=[finding])  # fmt: skip
    return to_json(report)


TOKENS = st.sampled_from(['NaN', 'Infinity', '-1e400', '1e400', '"x"', 'null', '-1', '7',
                          '[]', '{}', 'true', '"", ', '"WARNING"', '"NOT_A_TYPE"', '}', '{'])  # fmt: skip


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), TOKENS, st.integers(0, 8)),
                      min_size=1, max_size=3))  # fmt: skip
def test_report_reader_either_renders_or_names_the_source(
    edits: list[tuple[int, str, int]],
) -> None:
    text = _report_text()
    for position, token, drop in edits:
        k = position % len(text)
        text = text[:k] + token + text[k + drop :]
    try:
        report = report_from_json(text, source="fuzzed.json")
    except ValueError as exc:
        assert "fuzzed.json" in str(exc)
        return
    assert isinstance(report.findings[0].severity if report.findings else Severity.INFO, Severity)
    render_text(report)
    to_agent_json(report)
    to_agent_xml(report)
