"""Durable writes: a file is either its previous content or its complete new content.

Every writer in GradTracer goes through these helpers. A write lands in a temporary file in
the destination's own directory, is flushed and ``fsync``-ed, then renamed over the target
(``os.replace`` is atomic on POSIX within one file system), and the directory is
``fsync``-ed so the rename itself survives a power loss. A crash, ``kill -9`` or a full disk
therefore leaves either the old file or the new one, never a truncated mix; the temporary
file is removed when the write fails.

Multi-file outputs (a model directory, a split, a run directory) add a completeness marker:
:func:`mark_incomplete` before the first file is written, :func:`mark_complete` after the
last, and readers call :func:`require_complete`, which names the directory when a previous
write never finished.

Examples:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = atomic_write_text(d / "a.json", '{"x": 1}\\n')
    >>> p.read_text()
    '{"x": 1}\\n'
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "COMPLETE_MARKER",
    "CorruptFileError",
    "IncompleteOutputError",
    "atomic_open",
    "atomic_savez",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_directory",
    "is_complete",
    "load_json",
    "load_npz",
    "mark_complete",
    "recover_directory",
    "replace_directory",
    "staging_directory",
    "mark_incomplete",
    "remove_orphaned_temporaries",
    "require_complete",
]

#: Name of the marker file whose presence means "this directory was written completely".
COMPLETE_MARKER = ".complete"
_INCOMPLETE_MARKER = ".incomplete"


class IncompleteOutputError(RuntimeError):
    """A multi-file output directory whose last write did not finish (names the directory)."""


class CorruptFileError(ValueError):
    """A saved file that cannot be read back as what it should be (names the file and why)."""


def fsync_directory(directory: str | Path) -> None:
    """``fsync`` a directory so that renames and new entries in it are durable (no-op on Windows)."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(str(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file path to write")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"{parent}: exists and is not a directory")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphaned_temporaries(target: str | Path) -> list[Path]:
    """Delete temporaries of ``target`` left by writers that died mid-write; return them.

    :func:`atomic_open` names its temporary ``.<name>.<pid>.<random>.tmp``; a ``kill -9``
    leaves it behind. A temporary whose process no longer runs is removed; those of live
    processes (a concurrent writer) are kept.
    """
    t = Path(target)
    removed: list[Path] = []
    if not t.parent.is_dir():
        return removed
    for tmp in t.parent.glob(f".{glob.escape(t.name)}.*.tmp"):
        pid_part = tmp.name[len(t.name) + 2 :].split(".", 1)[0]
        if not pid_part.isdigit() or _pid_alive(int(pid_part)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` atomically when the block exits cleanly.

    Args:
        path: destination; its parent directory is created when missing.
        mode: ``"wb"`` (default) or ``"w"`` (text; ``kwargs`` such as ``encoding`` pass on).

    On any exception the temporary file is removed and ``path`` keeps its previous content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(target)  # "disk full" names the file it was writing
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and durably (UTF-8 by default); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(
    path: str | Path,
    document: Any,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write ``document`` as JSON (sorted keys, no NaN/Infinity: invalid JSON is refused).

    Raises:
        ValueError: when the document holds a non-finite float (named by ``json``).
    """
    text = json.dumps(document, indent=indent, sort_keys=True, allow_nan=False, default=default)
    return atomic_write_text(path, text + "\n")


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` into ``path`` atomically (object arrays are refused: never pickle)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {key!r} has dtype object; only numeric arrays are saved")
    with atomic_open(path, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)
    return Path(path)


def mark_incomplete(directory: str | Path) -> Path:
    """Start a multi-file write: create ``directory`` and drop its completeness marker."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d}: exists and is not a directory")
    d.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (d / COMPLETE_MARKER).unlink()
    atomic_write_text(d / _INCOMPLETE_MARKER, "writing\n")
    return d


def mark_complete(directory: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Finish a multi-file write: write the completeness marker (with optional ``info``)."""
    d = Path(directory)
    atomic_write_json(d / COMPLETE_MARKER, info or {})
    with contextlib.suppress(FileNotFoundError):
        (d / _INCOMPLETE_MARKER).unlink()
    fsync_directory(d)
    return d


def is_complete(directory: str | Path) -> bool:
    """True unless ``directory`` carries the marker of a write that never finished.

    Directories written before markers existed (neither marker present) count as complete.
    """
    d = Path(directory)
    return not (d / _INCOMPLETE_MARKER).exists()


def require_complete(directory: str | Path) -> Path:
    """Return ``directory``; raise :class:`IncompleteOutputError` if its last write did not finish."""
    d = Path(directory)
    if not is_complete(d):
        raise IncompleteOutputError(
            f"{d}: the last write to this directory did not finish (found {_INCOMPLETE_MARKER}); "
            "write it again"
        )
    return d


def _check_readable(path: Path, what: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")


def load_npz(
    path: str | Path, *, required: tuple[str, ...] | list[str] = ()
) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` archive (never unpickling); check ``required`` keys.

    Args:
        path: the archive.
        required: array names that must be present.

    Returns:
        ``{name: array}``, fully read (the file is closed on return).

    Raises:
        FileNotFoundError / IsADirectoryError: ``path`` is missing or a directory.
        CorruptFileError: not a readable archive (truncated, not a zip, a bad member, an
            object array that would need unpickling) or a ``required`` array is absent;
            the message names the file and the array.

    Examples:
        >>> import tempfile, pathlib
        >>> p = atomic_savez(pathlib.Path(tempfile.mkdtemp()) / "w.npz", w=np.ones(2))
        >>> load_npz(p, required=["w"])["w"].tolist()
        [1.0, 1.0]
    """
    import zipfile

    p = Path(path)
    _check_readable(p, "an .npz archive")
    with open(p, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise CorruptFileError(f"{p}: a single .npy array, expected an .npz archive")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = "empty" if not magic else "does not start with the zip signature"
        raise CorruptFileError(f"{p}: not an .npz archive ({what}); write it again")
    out: dict[str, np.ndarray] = {}
    key = None
    try:
        with np.load(p, allow_pickle=False) as archive:
            for key in archive.files:
                out[key] = archive[key]
    except ValueError as exc:
        where = f"array {key!r} of " if key is not None else ""
        if "pickle" in str(exc):
            reason = "holds an object array, which is never unpickled"
        else:
            reason = f"unreadable ({exc})"
        raise CorruptFileError(f"{where}{p}: {reason}; write it again") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        where = f" (array {key!r})" if key is not None else ""
        raise CorruptFileError(
            f"{p}: not a readable .npz archive{where}: {exc or type(exc).__name__} "
            "(truncated or corrupt?); write it again"
        ) from None
    missing = [k for k in required if k not in out]
    if missing:
        raise CorruptFileError(f"{p}: missing array(s) {missing}; found {sorted(out)}")
    return out


def load_json(path: str | Path, *, required: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """Read a JSON object file; errors name the file (and line) instead of a bare traceback.

    Args:
        path: the file.
        required: keys the object must hold.

    Raises:
        FileNotFoundError / IsADirectoryError: ``path`` is missing or a directory.
        CorruptFileError: not UTF-8, not JSON, not an object, NaN/Infinity, or a
            ``required`` key missing.
    """
    p = Path(path)
    _check_readable(p, "a JSON file")

    def reject(name: str) -> Any:
        raise CorruptFileError(f"{p}: non-finite number {name} (not JSON)")

    try:
        document = json.loads(p.read_text(encoding="utf-8"), parse_constant=reject)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(document, dict):
        raise CorruptFileError(f"{p}: expected a JSON object, got {type(document).__name__}")
    missing = [k for k in required if k not in document]
    if missing:
        raise CorruptFileError(f"{p}: missing key(s) {missing}; found {sorted(document)}")
    return document


def _old_copies(directory: Path) -> list[Path]:
    parent = directory.parent
    if not parent.is_dir():
        return []
    return sorted(parent.glob(f".{directory.name}.old-*"))


def staging_directory(directory: str | Path) -> Path:
    """Create an empty sibling of ``directory`` to write a new version of it into.

    Fill it, then call :func:`replace_directory`; remove it (``shutil.rmtree``) on failure.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d}: exists and is not a directory")
    d.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".tmp", dir=d.parent))


def replace_directory(staging: str | Path, directory: str | Path) -> Path:
    """Put the fully written ``staging`` directory in place of ``directory``.

    The previous ``directory`` is renamed aside, ``staging`` renamed in, the parent
    fsync-ed and the previous copy deleted. A crash leaves the previous version complete:
    either still in place, or (between the two renames) at ``.<name>.old-<pid>``, from
    where :func:`recover_directory` puts it back.
    """
    src, dst = Path(staging), Path(directory)
    for path in src.rglob("*"):
        if path.is_file():
            fd = os.open(str(path), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_directory(src)
    old: Path | None = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(src, dst)
    fsync_directory(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dst


def recover_directory(directory: str | Path) -> Path:
    """Return ``directory``, first restoring the previous version if a swap was interrupted.

    When ``directory`` is missing but a ``.<name>.old-*`` copy left by an interrupted
    :func:`replace_directory` exists, that copy is renamed back.
    """
    d = Path(directory)
    if not d.exists():
        copies = _old_copies(d)
        if copies:
            os.replace(copies[-1], d)
            fsync_directory(d.parent)
    return d
