"""The study's data steps: load session data (a file or synthetic), save and load a split.

A saved split is a directory with ``train/``, ``test/`` (:class:`Interactions`) and
``info.json``, marked incomplete until its last file is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gradtracer.durable import atomic_write_json, mark_complete, mark_incomplete, require_complete
from gradtracer.recsys.data.interactions import Interactions
from gradtracer.recsys.sessions.split import SessionSplit

__all__ = ["SYNTHETIC", "load_session_data", "load_split", "save_split"]

#: ``source`` of :func:`load_session_data` for generated sessions.
SYNTHETIC = "synthetic"


def load_session_data(
    source: str,
    *,
    fmt: str = "tsv",
    n_sessions: int = 5000,
    n_items: int = 1000,
    random_state: int = 0,
) -> Interactions:
    """Return session data from a file (``load_sessions(source, fmt)``) or ``"synthetic"``.

    ``n_sessions``, ``n_items`` and ``random_state`` apply to the synthetic generator
    (:func:`gradtracer.recsys.data.synthetic.make_sessions`) only.
    """
    if source == SYNTHETIC:
        from gradtracer.recsys.data.synthetic import make_sessions

        return make_sessions(n_sessions=n_sessions, n_items=n_items, random_state=random_state)
    from gradtracer.recsys.data.sessions import load_sessions

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such session file (or pass 'synthetic')")
    return load_sessions(path, fmt=fmt)


def save_split(split: SessionSplit, directory: str | Path) -> Path:
    """Write ``train/``, ``test/`` and ``info.json`` into ``directory``.

    The directory is marked incomplete until the last file is written, so a split left
    by an interrupted write is refused by :func:`load_split`.
    """
    d = mark_incomplete(directory)
    split.train.save(d / "train")
    split.test.save(d / "test")
    atomic_write_json(d / "info.json", split.info, default=_json_default)
    return mark_complete(d)


def load_split(directory: str | Path) -> SessionSplit:
    """Read a split written by :func:`save_split` (train and test share one id map).

    Raises:
        NotADirectoryError: ``directory`` is a file (a session file instead of a split).
        FileNotFoundError: ``train/`` or ``test/`` is missing.
        IncompleteOutputError: the split's last write did not finish.
    """
    d = Path(directory)
    if d.is_file():
        raise NotADirectoryError(
            f"{d}: is a file; expected a split directory written by `gradtracer sessions "
            f"prepare` (run `gradtracer sessions prepare {d} --out SPLIT_DIR` first)"
        )
    for part in ("train", "test"):
        if not (d / part / "interactions.parquet").exists():
            raise FileNotFoundError(
                f"{d / part}: missing; create the split with `gradtracer sessions prepare`"
            )
    require_complete(d)
    train = Interactions.load(d / "train")
    test = Interactions.load(d / "test")
    test = Interactions(test.frame, train.user_ids, train.item_ids, test.source)
    info = json.loads((d / "info.json").read_text()) if (d / "info.json").exists() else {}
    return SessionSplit(train, test, info)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
