"""Tie policies: how items with exactly equal scores are ordered.

- ``"conservative"`` (default): a relevant item tied with other items is placed *below*
  all of them (the pessimistic rank; a model that scores everything equal gets no credit).
- ``"optimistic"``: a relevant item is placed *above* every item it ties with (an upper
  bound; reported only for comparison).
- ``"random"``: tied items are put in a uniformly random order drawn from ``random_state``
  (the expected value of an arbitrary but fair tie break).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["TIES", "Ties", "check_ties"]

Ties = Literal["conservative", "optimistic", "random"]
TIES: tuple[str, ...] = ("conservative", "optimistic", "random")


def check_ties(ties: str) -> Ties:
    """Return ``ties`` if it is a known policy, else ``ValueError`` naming the value."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    return ties  # type: ignore[return-value]
