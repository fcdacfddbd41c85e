"""Checksum-verified, resumable downloads and archive extraction that cannot escape its folder.

A download goes to ``<file>.part``; an interrupted one is resumed with an HTTP ``Range`` request
(restarted when the server ignores it), and only a file whose checksum matches is renamed to its
final name. Archives are extracted by :func:`~epochal.data.archives.safe_extract`, which no
member can escape.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from epochal.data.archives import UnsafeArchiveError, safe_extract

__all__ = ["ChecksumError", "UnsafeArchiveError", "download_file", "file_checksum", "safe_extract"]

CHECKSUM_ALGORITHMS: tuple[str, ...] = ("md5", "sha1", "sha256")


class ChecksumError(ValueError):
    """A downloaded file's checksum differs from the expected one."""


def _split_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in CHECKSUM_ALGORITHMS or not digest:
        raise ValueError(
            f"checksum={checksum!r} is not valid; use '<algorithm>:<hex>' with one of {CHECKSUM_ALGORITHMS}"
        )
    return algorithm, digest.lower()


def file_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """``'<algorithm>:<hex digest>'`` of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm}:{digest.hexdigest()}"


def _matches(path: Path, checksum: str) -> bool:
    algorithm, digest = _split_checksum(checksum)
    return path.exists() and file_checksum(path, algorithm) == f"{algorithm}:{digest}"


def _fetch(url: str, part: Path, opener: Callable, timeout: float, chunk: int) -> None:
    """Append to ``part`` from its current size (or rewrite it when the server sends everything)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    with opener(request, timeout=timeout) as response:
        status = getattr(response, "status", None) or response.getcode()
        resumed = offset > 0 and status == 206 and _range_start(response) == offset
        with open(part, "ab" if resumed else "wb") as handle:
            handle.writelines(iter(lambda: response.read(chunk), b""))


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range", "") if response.headers is not None else ""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def download_file(
    url: str,
    dest: str | os.PathLike,
    checksum: str | None,
    opener: Callable | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    Args:
        url: an ``http(s)://`` or ``file://`` address.
        dest: the final file path.
        checksum: ``'md5:<hex>'`` or ``'sha256:<hex>'``; None skips verification (tests only).
        opener: ``f(request, timeout=...) -> response`` (default :func:`urllib.request.urlopen`).
        retries: further attempts after a network error, each resuming the partial file.
        retry_wait: seconds between attempts.
        timeout: socket timeout per attempt.
        chunk: bytes per read.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the complete download does not match ``checksum`` (it is deleted).
    """
    dest = Path(dest)
    if checksum is not None:
        _split_checksum(checksum)
        if _matches(dest, checksum):
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = opener or urllib.request.urlopen
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, opener, timeout, chunk)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if attempt == retries:
                raise ConnectionError(
                    f"downloading {url} failed after {retries + 1} attempt(s): {error}"
                ) from error
            time.sleep(retry_wait)
    if checksum is not None and not _matches(part, checksum):
        actual = file_checksum(part, _split_checksum(checksum)[0])
        part.unlink()
        raise ChecksumError(
            f"{url}: checksum {actual} does not match the expected {checksum}; the file was deleted"
        )
    os.replace(part, dest)
    return dest
