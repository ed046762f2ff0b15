"""Download public datasets into a local cache, verified by sha256 before extraction.

The pinned archives are the official GroupLens zips. Their sizes and sha256 digests are
the ones TensorFlow Datasets records in ``tensorflow_datasets/url_checksums/movielens.txt``:

========== ========================================================= ========= ==================
name       url                                                       bytes     sha256
========== ========================================================= ========= ==================
``ml-100k`` https://files.grouplens.org/datasets/movielens/ml-100k.zip 4,924,029 ``50d2a982...6a3229``
``ml-1m``   https://files.grouplens.org/datasets/movielens/ml-1m.zip   5,917,549 ``a6898adb...54e20``
========== ========================================================= ========= ==================

Cache directory: ``cache_dir`` argument, else ``$GRADTRACER_CACHE``, else
``~/.cache/gradtracer``. Each dataset is extracted to ``<cache>/<name>/``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gradtracer.durable import atomic_write_text

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DatasetSpec",
    "DownloadError",
    "default_cache_dir",
    "download_dataset",
    "sha256_file",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20  # 1 MiB
_DONE_MARKER = ".gradtracer-complete"


class DownloadError(ConnectionError):
    """The download failed (network, HTTP or a short read); the cache was left unchanged."""


class ChecksumError(ValueError):
    """A downloaded file's sha256 differs from the pinned one (the file has been removed)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable archive.

    Attributes:
        url: where to fetch it.
        sha256: expected hex digest of the archive.
        size: expected size in bytes (for the progress bar; not trusted for verification).
        ratings: path of the ratings file inside the extracted directory.
    """

    url: str
    sha256: str
    size: int | None = None
    ratings: str = ""


#: Pinned archives (see the module docstring for the source of the digests).
DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4_924_029,
        ratings="u.data",
    ),
    "ml-1m": DatasetSpec(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        size=5_917_549,
        ratings="ratings.dat",
    ),
}


def default_cache_dir() -> Path:
    """Return ``$GRADTRACER_CACHE`` if set, else ``~/.cache/gradtracer``."""
    env = os.environ.get("GRADTRACER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gradtracer"


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 digest of a file (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, size_hint: int | None, show_progress: bool | None) -> str:
    """Stream ``url`` into ``dest``; return the sha256 of the bytes written."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    disable = (not sys.stderr.isatty()) if show_progress is None else not show_progress
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else size_hint
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=disable, leave=False
        ) as bar:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip into ``target``, refusing absolute paths and ``..`` components."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            parts = PurePosixPath(member).parts
            if member.startswith(("/", "\\")) or ".." in parts or ":" in member:
                raise ValueError(f"{archive}: refusing unsafe member path {member!r}")
        zf.extractall(target)


def download_dataset(
    name: str,
    cache_dir: str | Path | None = None,
    url: str | None = None,
    *,
    checksums: Mapping[str, str] | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> Path:
    """Return the directory of dataset ``name``, downloading and extracting it if needed.

    The archive is streamed to a temporary file in the cache, its sha256 is checked, and
    only then is it renamed to ``<cache>/<name>.zip`` and extracted (to a temporary
    directory renamed into place, so an interrupted run never leaves a half dataset).

    Args:
        name: a key of :data:`DATASETS` (``"ml-100k"``, ``"ml-1m"``).
        cache_dir: cache root (default :func:`default_cache_dir`).
        url: fetch from here instead of the pinned URL (a mirror); the checksum still applies.
        checksums: ``{name: sha256}`` overriding the pinned digests.
        force: download again even if the dataset is already in the cache.
        progress: show a download progress bar (``None``: only on a terminal).

    Raises:
        ChecksumError: the digest differs (message names expected and actual; the
            download is deleted).
        ValueError: unknown ``name`` or an archive with unsafe member paths.
        DownloadError: the network or server failed (the cache is unchanged).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    expected = (checksums or {}).get(name, spec.sha256).lower()
    source = url or spec.url
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if (target / _DONE_MARKER).exists() and not force:
        logger.info("%s: already in %s", name, target)
        return target

    archive = root / f"{name}.zip"
    if force or not archive.exists() or sha256_file(archive) != expected:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}-", suffix=".part", dir=root)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            logger.info("downloading %s from %s", name, source)
            try:
                actual = _fetch(source, tmp, spec.size, progress)
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                TimeoutError,
                ConnectionError,
            ) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DownloadError(
                    f"{source}: download of {name} failed ({reason}); nothing was changed in {root}"
                ) from exc
            if actual != expected:
                raise ChecksumError(
                    f"{source}: sha256 mismatch for {name}: expected {expected}, got {actual}; "
                    "the download was deleted"
                )
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".{name}-extract-", dir=root))
    try:
        _safe_extract(archive, staging)
        entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        atomic_write_text(content / _DONE_MARKER, expected + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(content, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s: extracted to %s", name, target)
    return target
