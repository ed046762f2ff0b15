"""Session-parallel batching invariants, checked against the raw session lists."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.sessions import iterate_session_parallel, session_arrays


def _interactions(sessions: list[list[int]], starts: list[int] | None = None) -> Interactions:
    rows = []
    for s, items in enumerate(sessions):
        t0 = starts[s] if starts else 100 * s
        rows += [(s, item, t0 + j) for j, item in enumerate(items)]
    frame = pl.DataFrame(rows, schema=["session", "item", "timestamp"], orient="row")
    frame = frame.with_columns(pl.col("session").alias("user"))
    return Interactions.from_raw(
        frame, rating_col=None, timestamp_col="timestamp", session_col="session"
    )


def _replay(data, batch_size):
    """Follow slots through the batches; return per-slot sessions and the pairs seen."""
    slot_owner: list[int] = []  # session id held by each slot
    pairs = []
    starts = set(data.offsets[:-1].tolist())
    for batch in iterate_session_parallel(data, batch_size):
        if batch.keep is not None:
            slot_owner = [slot_owner[i] for i in batch.keep.tolist()]
        events = batch.target_events.numpy()
        inputs, targets = batch.inputs.numpy(), batch.targets.numpy()
        for b in range(batch.size):
            e = int(events[b])
            session = int(np.searchsorted(data.offsets, e, side="right") - 1)
            if batch.reset[b]:
                # a reset slot starts its new session: the input is that session's first event
                assert e - 1 in starts
                if b < len(slot_owner):
                    slot_owner[b] = session
                else:
                    slot_owner.append(session)
            else:
                assert slot_owner[b] == session, "slot changed session without a reset"
            assert e not in starts, "a target never is the first event of a session"
            assert inputs[b] == data.items[e - 1] and targets[b] == data.items[e]
            pairs.append(e)
    return pairs


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=30),
    batch_size=st.integers(1, 8),
)
def test_every_pair_once_targets_follow_inputs_resets_at_boundaries(lengths, batch_size):
    rng = np.random.default_rng(len(lengths) * 31 + batch_size)
    sessions = [rng.integers(0, 20, size=n).tolist() for n in lengths]
    data = session_arrays(_interactions(sessions))
    pairs = _replay(data, batch_size)
    expected = [
        e for s in range(data.n_sessions) for e in range(data.offsets[s] + 1, data.offsets[s + 1])
    ]
    assert sorted(pairs) == expected  # each (event, next event) pair exactly once
    assert len(pairs) == data.n_predictions


def test_sessions_enter_slots_in_start_time_order():
    # session 0 starts last: it must be taken after the others
    ix = _interactions([[1, 2], [3, 4], [5, 6]], starts=[500, 0, 100])
    data = session_arrays(ix)
    order = [ix.item_ids.raw(int(b.inputs[0])) for b in iterate_session_parallel(data, 1)]
    assert order == ["3", "5", "1"]


def test_slots_shrink_at_the_end_and_keep_indexes_the_survivors():
    data = session_arrays(_interactions([[1, 2], [3, 4, 5, 6], [7, 8, 9]]))
    batches = list(iterate_session_parallel(data, 3))
    assert batches[0].size == 3 and batches[0].reset.all()
    shrunk = [b for b in batches if b.keep is not None]
    assert shrunk and shrunk[0].size < 3
    assert sum(b.size for b in batches) == data.n_predictions


def test_min_active_stops_when_too_few_sessions_remain():
    data = session_arrays(_interactions([[1, 2], [3, 4, 5, 6, 7, 8]]))
    full = sum(b.size for b in iterate_session_parallel(data, 2))
    early = sum(b.size for b in iterate_session_parallel(data, 2, min_active=2))
    assert full == data.n_predictions == 6
    assert early == 2  # one step with both sessions, then only one remains


def test_session_arrays_needs_a_session_column():
    ix = Interactions.from_raw(
        pl.DataFrame({"user": [1], "item": [2]}), rating_col=None, timestamp_col=None
    )
    with pytest.raises(ValueError, match="no 'session' column"):
        session_arrays(ix)


def test_batch_size_must_be_positive():
    data = session_arrays(_interactions([[1, 2]]))
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_session_parallel(data, 0))
