"""Downloads against a local HTTP server: verify-then-extract, mismatch cleanup, caching."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from gradtracer.cli import main
from gradtracer.recsys.data import (
    DATASETS,
    ChecksumError,
    DatasetSpec,
    default_cache_dir,
    download_dataset,
    load_movielens,
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """Serve a small ml-100k-like zip on 127.0.0.1:<free port>; yield (url, sha256, log)."""
    root = tmp_path / "www"
    root.mkdir()
    archive = root / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t100\n2\t1\t3\t200\n2\t2\t4\t300\n")
        zf.writestr("ml-100k/README", "tiny test archive\n")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = type("Handler", (_QuietHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ml-100k.zip", digest, handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_verifies_extracts_and_caches(served, tmp_path: Path) -> None:
    url, digest, requests = served
    cache = tmp_path / "cache"
    path = download_dataset("ml-100k", cache, url=url, checksums={"ml-100k": digest})
    assert path == cache / "ml-100k"
    assert len(load_movielens(path)) == 3
    assert not list(cache.glob(".*part")) and not list(cache.glob(".*extract*"))
    again = download_dataset("ml-100k", cache, url=url, checksums={"ml-100k": digest})
    assert again == path and len(requests) == 1  # served from the cache


def test_checksum_mismatch_names_both_digests_and_removes_file(served, tmp_path: Path) -> None:
    url, digest, _ = served
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download_dataset("ml-100k", cache, url=url, checksums={"ml-100k": wrong})
    assert wrong in str(err.value) and digest in str(err.value)
    assert list(cache.iterdir()) == []  # neither the download nor an extraction is left


def test_pinned_url_and_checksum_table() -> None:
    spec = DATASETS["ml-100k"]
    assert spec.url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert spec.sha256 == "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
    assert DATASETS["ml-1m"].sha256 == (
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    )
    with pytest.raises(ValueError, match="unknown dataset"):
        download_dataset("ml-999k")


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADTRACER_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.delenv("GRADTRACER_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "gradtracer"


def test_cli_download_uses_environment_cache(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, digest, _ = served
    monkeypatch.setitem(DATASETS, "ml-100k", DatasetSpec(url=url, sha256=digest))
    monkeypatch.setenv("GRADTRACER_CACHE", str(tmp_path / "c"))
    assert main(["data", "download", "ml-100k"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c" / "ml-100k")
    monkeypatch.setitem(DATASETS, "ml-100k", DatasetSpec(url=url, sha256="f" * 64))
    assert main(["data", "download", "ml-100k", "--cache-dir", str(tmp_path / "d")]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err


def test_archive_with_unsafe_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="unsafe member path"):
        download_dataset(
            "ml-1m", tmp_path / "cache", url=archive.as_uri(), checksums={"ml-1m": digest}
        )
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "cache" / "ml-1m").exists()
