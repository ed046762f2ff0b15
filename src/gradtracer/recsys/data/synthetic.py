"""Seeded synthetic data with planted structure: the built-in default when no file is given.

* :func:`make_implicit`: users and items with low-rank latent taste plus Zipf-like item
  popularity; a user's items are drawn without replacement from
  ``softmax(taste_strength * <u, v> / sqrt(rank) + popularity_exponent * log(1 / pop_rank))``.
  A low-rank model can recover the taste, so matrix factorisation beats popularity on it.
* :func:`make_sessions`: sessions over Zipf-popular items where each item has a few
  preferred successors; a first-order Markov model beats popularity on it.

Both are fully vectorised (well under a second for the defaults) and deterministic for a
given ``random_state``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from gradtracer.recsys.data.interactions import IdMap, Interactions

if TYPE_CHECKING:  # _random imports torch: loaded only where a seed is drawn
    from gradtracer._random import RandomState

__all__ = ["make_implicit", "make_sessions"]

#: First synthetic timestamp: 2001-09-09T01:46:40Z (Unix seconds).
BASE_TIMESTAMP = 1_000_000_000

#: Users are sampled in blocks of about this many (user, item) logits (bounds memory).
_BLOCK_CELLS = 2_000_000


def _zipf_log_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Return log popularity weights ``-exponent * log(rank)`` over a random permutation."""
    ranks = rng.permutation(n) + 1
    return -exponent * np.log(ranks)


def _gumbel_top(logits: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample ``counts[r]`` distinct columns of row ``r`` from ``softmax(logits[r])``.

    Gumbel-top-k trick: the k largest ``logits + Gumbel noise`` are a sample without
    replacement. Returns the column indices row by row, concatenated.
    """
    keys = logits + rng.gumbel(size=logits.shape)  # (rows, cols)
    order = np.argsort(-keys, axis=1)
    take = np.arange(logits.shape[1])[None, :] < counts[:, None]
    return order[take]


def make_implicit(
    n_users: int = 943,
    n_items: int = 1682,
    n_interactions: int = 55_000,
    rank: int = 8,
    popularity_exponent: float = 1.0,
    *,
    taste_strength: float = 2.0,
    min_per_user: int = 5,
    random_state: RandomState = 0,
) -> Interactions:
    """Return a synthetic implicit-feedback table (ratings 1.0) with planted low-rank taste.

    Defaults mimic MovieLens-100K's shape after ``to_implicit``: 943 users, 1,682 items,
    about 55,000 interactions.

    Args:
        n_users: number of users (all present).
        n_items: number of items in the id map (rarely chosen ones may have no rows).
        n_interactions: exact total; per-user counts follow log-normal activity, at least
            ``min_per_user`` and at most half the catalogue.
        rank: dimension of the planted user/item factors (default 8).
        popularity_exponent: Zipf exponent of item popularity (default 1.0; 0 = uniform).
        taste_strength: scale of the taste logits relative to popularity (default 2.0;
            0 = popularity only).
        min_per_user: minimum interactions per user (default 5, so leave-one-out and
            5-core filtering keep every user).
        random_state: seed or numpy Generator (default 0).

    Timestamps (seconds) strictly increase within each user, in random item order, so
    leave-one-out holds out a random draw from the same taste distribution.
    """
    for name, value in (("n_users", n_users), ("n_items", n_items), ("rank", rank)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 1 <= min_per_user <= n_items:
        raise ValueError(f"min_per_user must be in [1, n_items={n_items}], got {min_per_user}")
    if n_interactions < n_users * min_per_user:
        raise ValueError(
            f"n_interactions={n_interactions} is below n_users * min_per_user = "
            f"{n_users * min_per_user}"
        )
    if n_interactions > n_users * max(min_per_user, n_items // 2):
        raise ValueError(
            f"n_interactions={n_interactions} exceeds n_users * max(min_per_user, n_items // 2)"
            f" = {n_users * max(min_per_user, n_items // 2)}"
        )
    from gradtracer._random import check_random_state

    rng = check_random_state(random_state)
    user_f = rng.standard_normal((n_users, rank))  # (n_users, rank)
    item_f = rng.standard_normal((n_items, rank))  # (n_items, rank)
    log_pop = _zipf_log_weights(n_items, popularity_exponent, rng)  # (n_items,)

    activity = rng.lognormal(mean=0.0, sigma=0.8, size=n_users)
    extra = n_interactions - n_users * min_per_user
    share = extra * activity / activity.sum()
    counts = min_per_user + np.floor(share).astype(np.int64)
    remainder = n_interactions - int(counts.sum())  # largest-remainder rounding
    counts[np.argsort(np.floor(share) - share)[:remainder]] += 1
    cap = max(min_per_user, n_items // 2)
    counts = np.minimum(counts, cap)
    by_activity = np.argsort(-activity, kind="stable")
    while (deficit := n_interactions - int(counts.sum())) > 0:  # give clipped rows to others
        open_users = by_activity[counts[by_activity] < cap]
        counts[open_users[:deficit]] += 1

    # blocks of users keep memory at ~_BLOCK_CELLS floats whatever the table size
    block = max(1, _BLOCK_CELLS // n_items)
    items = np.concatenate(
        [
            _gumbel_top(
                taste_strength * (user_f[lo : lo + block] @ item_f.T) / np.sqrt(rank)
                + log_pop[None, :],  # (block, n_items) logits
                counts[lo : lo + block],
                rng,
            )
            for lo in range(0, n_users, block)
        ]
    )
    users = np.repeat(np.arange(n_users), counts)
    # random order inside each user, then increasing timestamps in that order
    order = np.lexsort((rng.random(len(users)), users))
    items = items[order]
    gaps = 1 + rng.exponential(3600.0, size=len(users)).astype(np.int64)  # >= 1 s apart
    starts = BASE_TIMESTAMP + rng.integers(0, 180 * 86_400, size=n_users)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    csum = np.cumsum(gaps)
    stamps = starts[users] + csum - csum[first][users]
    frame = pl.DataFrame(
        {
            "user": users.astype(np.int64),
            "item": items.astype(np.int64),
            "rating": np.ones(len(users), np.float32),
            "timestamp": stamps.astype(np.int64),
        }
    )
    return Interactions(
        frame,
        IdMap([str(u) for u in range(n_users)], "user"),
        IdMap([str(i) for i in range(n_items)], "item"),
        source=f"make_implicit(random_state={random_state!r})"
        if not isinstance(random_state, np.random.Generator)
        else "make_implicit",
    )


def make_sessions(
    n_sessions: int = 5000,
    n_items: int = 1000,
    mean_length: float = 5.0,
    *,
    n_successors: int = 3,
    follow_prob: float = 0.7,
    popularity_exponent: float = 1.0,
    max_length: int = 50,
    random_state: RandomState = 0,
) -> Interactions:
    """Return synthetic click sessions with a planted item-to-item transition structure.

    Each item has ``n_successors`` preferred next items (drawn by popularity). A session's
    first item is drawn by popularity; each next click is one of the current item's
    successors with probability ``follow_prob``, else a popularity draw.

    Args:
        n_sessions: number of sessions (each its own user).
        n_items: catalogue size (all in the id map).
        mean_length: mean clicks per session, ``>= 2``; lengths are
            ``2 + Poisson(mean_length - 2)`` clipped to ``max_length``.
        n_successors: preferred successors per item (default 3).
        follow_prob: probability of following a preferred successor (default 0.7).
        popularity_exponent: Zipf exponent of item popularity (default 1.0).
        max_length: longest session (default 50).
        random_state: seed or numpy Generator (default 0).

    Session start times strictly increase with the session index (mean gap 60 s); clicks
    inside a session are 1 s or more apart (mean 30 s).
    """
    if n_sessions < 1 or n_items < 2:
        raise ValueError(f"need n_sessions >= 1 and n_items >= 2, got {n_sessions}, {n_items}")
    if not 2.0 <= mean_length <= max_length:
        raise ValueError(f"mean_length must be in [2, max_length={max_length}], got {mean_length}")
    if not 0.0 <= follow_prob <= 1.0:
        raise ValueError(f"follow_prob must be in [0, 1], got {follow_prob}")
    if n_successors < 1:
        raise ValueError(f"n_successors must be >= 1, got {n_successors}")
    from gradtracer._random import check_random_state

    rng = check_random_state(random_state)
    log_pop = _zipf_log_weights(n_items, popularity_exponent, rng)
    pop = np.exp(log_pop - log_pop.max())
    pop /= pop.sum()
    successors = rng.choice(n_items, size=(n_items, n_successors), p=pop)  # (n_items, S)

    lengths = np.minimum(2 + rng.poisson(mean_length - 2.0, size=n_sessions), max_length)
    steps = int(lengths.max())
    clicks = np.empty((n_sessions, steps), dtype=np.int64)  # (n_sessions, steps)
    clicks[:, 0] = rng.choice(n_items, size=n_sessions, p=pop)
    for t in range(1, steps):
        follow = rng.random(n_sessions) < follow_prob
        succ = successors[clicks[:, t - 1], rng.integers(0, n_successors, size=n_sessions)]
        random_next = rng.choice(n_items, size=n_sessions, p=pop)
        clicks[:, t] = np.where(follow, succ, random_next)
    mask = np.arange(steps)[None, :] < lengths[:, None]
    sessions = np.repeat(np.arange(n_sessions), lengths)
    items = clicks[mask]

    starts = BASE_TIMESTAMP + np.cumsum(1 + rng.exponential(60.0, size=n_sessions).astype(np.int64))
    gaps = np.where(mask, 1 + rng.exponential(30.0, size=mask.shape).astype(np.int64), 0)
    gaps[:, 0] = 0
    offsets = np.cumsum(gaps, axis=1)[mask]
    stamps = starts[sessions] + offsets
    frame = pl.DataFrame(
        {
            "user": sessions.astype(np.int64),
            "item": items,
            "rating": np.ones(len(items), np.float32),
            "timestamp": stamps.astype(np.int64),
            "session": sessions.astype(np.int64),
        }
    )
    return Interactions(
        frame,
        IdMap([str(s) for s in range(n_sessions)], "user"),
        IdMap([str(i) for i in range(n_items)], "item"),
        source=f"make_sessions(random_state={random_state!r})"
        if not isinstance(random_state, np.random.Generator)
        else "make_sessions",
    )
