"""Progress bars for long work (tqdm on stderr; silent when stderr is not a terminal)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool | None = None
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar.

    Args:
        enabled: ``True`` always shows, ``False`` never, ``None`` (default) shows only
            when stderr is a TTY, so logs and CI stay clean.
    """
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled
    yield from tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)
