"""Session-based recommendation: session-parallel batching, next-item evaluation, the study.

>>> from gradtracer.recsys.sessions import split_sessions, session_arrays, evaluate_next_item
"""

from gradtracer.recsys.sessions.batching import (
    SessionArrays,
    SessionBatch,
    iterate_session_parallel,
    session_arrays,
)
from gradtracer.recsys.sessions.evaluate import (
    DEFAULT_KS,
    NextItemResult,
    compare_next_item,
    evaluate_next_item,
)
from gradtracer.recsys.sessions.recommend import recommend_next
from gradtracer.recsys.sessions.split import (
    SessionSplit,
    drop_short_sessions,
    split_pair,
    split_sessions,
)

__all__ = [
    "DEFAULT_KS",
    "NextItemResult",
    "SessionArrays",
    "SessionBatch",
    "SessionSplit",
    "compare_next_item",
    "drop_short_sessions",
    "evaluate_next_item",
    "iterate_session_parallel",
    "recommend_next",
    "session_arrays",
    "split_pair",
    "split_sessions",
]
