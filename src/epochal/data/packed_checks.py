"""Integrity of a packed image cache: shard sizes checked on open, checksums verified on demand.

A shard is raw rows, so a truncated file would be read past its end and a row overwritten in place
would be read as if nothing happened. The packer records one checksum per shard in the manifest,
computed while packing from the digest of every block of :data:`CHECKSUM_ROWS` rows (each worker
hashes the rows it has just written, so it costs one pass over data already in memory);
:func:`verify_image_cache` recomputes it. Sizes are checked every time a cache is opened (one
``stat`` per shard).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "CHECKSUM_ROWS",
    "CacheCheck",
    "CorruptCacheError",
    "ShardCheck",
    "block_digest",
    "combine_digests",
    "corrupt_shard_error",
    "shard_size_problem",
    "verify_image_cache",
]

#: Rows per hashed block: the packer's unit of work, so each worker hashes what it wrote.
CHECKSUM_ROWS = 128
_ALGORITHM = "sha256"


class CorruptCacheError(ValueError):
    """A packed cache whose files do not match its manifest (truncated, replaced or changed)."""


def block_digest(rows: np.ndarray) -> bytes:
    """The digest of one block of rows (their raw bytes, in order)."""
    return hashlib.new(_ALGORITHM, memoryview(np.ascontiguousarray(rows)).cast("B")).digest()


def combine_digests(digests: list[bytes]) -> str:
    """The shard checksum ``'sha256:<hex>'`` from its block digests in row order."""
    return f"{_ALGORITHM}:{hashlib.new(_ALGORITHM, b''.join(digests)).hexdigest()}"


def shard_size_problem(path: Path, rows: int, row_shape: tuple[int, ...]) -> str | None:
    """Why the shard file at ``path`` cannot hold ``rows`` rows of ``row_shape``, or None when it can."""
    expected = rows * math.prod(row_shape)
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "is missing"
    if actual != expected:
        kind = "truncated" if actual < expected else "longer than its rows"
        return f"has {actual:,} bytes instead of {expected:,} ({rows} rows of {'x'.join(map(str, row_shape))}): {kind}"
    return None


def corrupt_shard_error(path: Path, problem: str) -> CorruptCacheError:
    """The error for a bad shard, with the way out."""
    return CorruptCacheError(
        f"packed cache shard {path} {problem}; repack it: run the same pack_image_cache call (or training) "
        f"again, which repacks bad shards, or delete {path.parent}"
    )


@dataclass
class ShardCheck:
    """One shard's verdict: ``status`` is ``ok``, ``bad`` or ``unverified`` (no checksum recorded)."""

    file: str
    rows: int
    status: str
    detail: str = ""


@dataclass
class CacheCheck:
    """What :func:`verify_image_cache` found.

    Attributes:
        cache: the cache folder.
        shards: one :class:`ShardCheck` per shard, in order.
    """

    cache: str
    shards: list[ShardCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No shard is bad (shards packed without a checksum are only size-checked)."""
        return not self.bad

    @property
    def bad(self) -> list[ShardCheck]:
        return [s for s in self.shards if s.status == "bad"]

    def to_dict(self) -> dict:
        return {"cache": self.cache, "ok": self.ok, "bad": [s.file for s in self.bad],
                "shards": [vars(s) for s in self.shards]}


def _recompute(path: Path, rows: int, row_shape: tuple[int, ...], block_rows: int) -> str:
    array = np.memmap(path, dtype=np.uint8, mode="r", shape=(rows, *row_shape))
    try:
        return combine_digests([block_digest(array[i : i + block_rows]) for i in range(0, rows, block_rows)])
    finally:
        del array


def verify_image_cache(cache_dir: str | os.PathLike) -> CacheCheck:
    """Check every shard of a packed cache against its manifest: size, then checksum.

    Args:
        cache_dir: a folder written by :func:`~epochal.data.packed.pack_image_cache`.

    Returns:
        A :class:`CacheCheck`; ``check.ok`` is False when a shard is missing, has the wrong size
        or its bytes changed since packing.

    Raises:
        FileNotFoundError: the folder holds no complete cache (no ``manifest.json``).

    Examples:
        >>> check = verify_image_cache("~/.cache/epochal/packed/cifar10-32")   # doctest: +SKIP
        >>> check.ok, [s.file for s in check.bad]                              # doctest: +SKIP
        (True, [])
    """
    folder = Path(cache_dir).expanduser()
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} holds no complete packed cache (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    row_shape = tuple(manifest["shape"][1:])
    check = CacheCheck(str(folder))
    for entry in manifest["shards"]:
        path, rows = folder / entry["file"], entry["stop"] - entry["start"]
        problem = shard_size_problem(path, rows, row_shape)
        if problem is not None:
            check.shards.append(ShardCheck(entry["file"], rows, "bad", problem))
        elif "checksum" not in entry:
            check.shards.append(ShardCheck(entry["file"], rows, "unverified", "packed without a checksum"))
        elif _recompute(path, rows, row_shape, entry.get("checksum_rows", CHECKSUM_ROWS)) != entry["checksum"]:
            check.shards.append(ShardCheck(entry["file"], rows, "bad", "its bytes changed since it was packed"))
        else:
            check.shards.append(ShardCheck(entry["file"], rows, "ok"))
    return check
