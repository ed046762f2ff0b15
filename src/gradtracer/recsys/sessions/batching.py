"""Session-parallel mini-batches (Hidasi et al., 2016, section 3.1.1).

Sessions are laid out as one flat array of item indices, sorted by session and, within a
session, by time (:class:`SessionArrays`). ``B`` slots each hold one active session; at
every step slot ``b`` feeds the current event of its session as input and the next event
of the same session as target. When a session runs out of events its slot takes the next
session in start-time order and its hidden state is reset; once no session is left the
slot is dropped, so the last steps run with fewer than ``B`` rows.

The hidden-state contract of every step (:class:`SessionBatch`):

1. ``hidden = hidden[batch.keep]`` when ``batch.keep`` is not ``None`` (slots dropped),
2. ``hidden[batch.reset] = 0`` (slots that start a new session),
3. feed ``batch.inputs``; score against ``batch.targets``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from gradtracer.recsys.data.interactions import Interactions

__all__ = ["SessionArrays", "SessionBatch", "iterate_session_parallel", "session_arrays"]


@dataclass(frozen=True)
class SessionArrays:
    """Flat, sorted view of session data used by batching, models and evaluation.

    Attributes:
        items: ``(n_events,)`` int64 item indices, grouped by session, time-ordered inside.
        offsets: ``(n_sessions + 1,)`` int64; session ``s`` spans ``items[offsets[s]:offsets[s+1]]``.
        start_order: ``(n_sessions,)`` int64 session positions ordered by first timestamp
            (ties broken by session id), the order in which slots take sessions.
        session_ids: ``(n_sessions,)`` int64 dense session ids of the source frame.
        n_items: size of the item index space (scores are ``(B, n_items)``).
    """

    items: np.ndarray
    offsets: np.ndarray
    start_order: np.ndarray
    session_ids: np.ndarray
    n_items: int

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        """``(n_sessions,)`` number of events per session."""
        return np.diff(self.offsets)

    @property
    def n_predictions(self) -> int:
        """Number of next-item predictions (every event but the first of each session)."""
        return int(np.maximum(self.lengths - 1, 0).sum())


def session_arrays(ix: Interactions) -> SessionArrays:
    """Return the :class:`SessionArrays` of session data ``ix`` (needs a ``session`` column).

    Events are sorted by (session, timestamp) with a stable sort, so events with equal
    timestamps keep their file order.
    """
    if not ix.has_sessions:
        raise ValueError(
            f"{ix.source}: interactions have no 'session' column; load them with "
            "load_sessions(...) or make_sessions(...)"
        )
    frame = ix.frame.select("session", "item", "timestamp").with_row_index("_row")
    frame = frame.sort(["session", "timestamp", "_row"])
    sessions = frame["session"].to_numpy()
    items = frame["item"].to_numpy().astype(np.int64)
    if len(items) == 0:
        return SessionArrays(
            items=items,
            offsets=np.zeros(1, np.int64),
            start_order=np.zeros(0, np.int64),
            session_ids=np.zeros(0, np.int64),
            n_items=ix.n_items,
        )
    boundaries = np.flatnonzero(sessions[1:] != sessions[:-1]) + 1
    offsets = np.concatenate([[0], boundaries, [len(items)]]).astype(np.int64)
    starts = frame["timestamp"].to_numpy()[offsets[:-1]]
    session_ids = sessions[offsets[:-1]].astype(np.int64)
    start_order = np.lexsort((session_ids, starts)).astype(np.int64)
    return SessionArrays(items, offsets, start_order, session_ids, ix.n_items)


@dataclass(frozen=True)
class SessionBatch:
    """One step of session-parallel batching (all tensors on CPU; move them as needed).

    Attributes:
        inputs: ``(B,)`` int64 item index fed at this step.
        targets: ``(B,)`` int64 next item of the same session (the label).
        target_events: ``(B,)`` int64 position of each target in ``SessionArrays.items``,
            a stable key to align per-prediction results across models.
        reset: ``(B,)`` bool, slots whose session starts at this step (zero their state).
        keep: ``(B,)`` int64 indices of the previous step's slots that remain, or ``None``
            when the slot set did not shrink.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    target_events: torch.Tensor
    reset: torch.Tensor
    keep: torch.Tensor | None

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


def iterate_session_parallel(
    data: SessionArrays, batch_size: int, *, min_active: int = 1
) -> Iterator[SessionBatch]:
    """Yield :class:`SessionBatch` steps covering every (event, next event) pair once.

    Sessions with fewer than two events yield nothing and are skipped. Iteration stops
    when fewer than ``min_active`` slots hold a session (the reference implementation
    stops training at fewer than 2 active sessions when it samples no negatives, since
    in-batch negatives need a second row); the default 1 covers every pair.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = data.lengths[data.start_order]
    queue = data.start_order[lengths >= 2]  # sessions in start-time order
    if len(queue) == 0:
        return
    n_slots = min(batch_size, len(queue))
    slot_session = queue[:n_slots].copy()
    next_in_queue = n_slots
    pos = data.offsets[slot_session].copy()  # current input event per slot
    end = data.offsets[slot_session + 1].copy()
    reset = np.ones(n_slots, dtype=bool)
    keep: np.ndarray | None = None
    items = data.items
    while len(pos) >= min_active:
        # every slot can advance `run` steps before some session runs out
        run = int((end - pos).min()) - 1
        for i in range(run):
            p = pos + i
            yield SessionBatch(
                inputs=torch.from_numpy(items[p]),
                targets=torch.from_numpy(items[p + 1]),
                target_events=torch.from_numpy(p + 1),
                reset=torch.from_numpy(reset if i == 0 else np.zeros(len(p), dtype=bool)),
                keep=None if (i > 0 or keep is None) else torch.from_numpy(keep),
            )
        pos = pos + run
        finished = (end - pos) <= 1
        n_finished = int(finished.sum())
        n_new = min(n_finished, len(queue) - next_in_queue)
        # finished slots take new sessions in slot order; the rest are dropped
        finished_idx = np.flatnonzero(finished)
        refill, drop = finished_idx[:n_new], finished_idx[n_new:]
        new_sessions = queue[next_in_queue : next_in_queue + n_new]
        next_in_queue += n_new
        pos[refill] = data.offsets[new_sessions]
        end[refill] = data.offsets[new_sessions + 1]
        reset = np.zeros(len(pos), dtype=bool)
        reset[refill] = True
        if len(drop):
            alive = np.ones(len(pos), dtype=bool)
            alive[drop] = False
            keep = np.flatnonzero(alive).astype(np.int64)
            pos, end, reset = pos[alive], end[alive], reset[alive]
        else:
            keep = None
        if len(pos) == 0:
            return
