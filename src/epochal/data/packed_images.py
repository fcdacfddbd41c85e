"""Reading a packed image cache written by :func:`~epochal.data.packed.pack_image_cache`.

:class:`PackedImages` memory-maps the shards (copy-on-write, so nothing is loaded eagerly and the
files are never changed), skips the rows of files that failed to decode, and gathers rows into
uint8 batches or one tensor resident on a device. Every shard's size is checked on open
(:mod:`~epochal.data.packed_checks` verifies the contents against the recorded checksums).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from epochal.data.packed_checks import corrupt_shard_error, shard_size_problem

__all__ = ["PACK_FORMAT_VERSION", "PackedImages"]

#: The layout version of a packed cache; a cache of another version must be repacked.
PACK_FORMAT_VERSION = 1


class PackedImages:
    """A complete packed cache opened for reading (memory-mapped; nothing is loaded eagerly).

    Args:
        cache_dir: a folder written by :func:`pack_image_cache`.
        shards: open only these shards (a disjoint part per rank or machine); default all.

    Attributes:
        shape: ``(rows, 3, H, W)`` of the whole cache.
        targets: all targets (numpy), see :class:`~epochal.data.folders.ImageItems`.
        classes: class names.
        rows: global row indices that are readable here (opened shards, good files only).
        skipped: ``{absolute path: reason}`` for files that failed to decode.

    Examples:
        >>> packed = PackedImages("~/.cache/epochal/packed/cifar10-32")   # doctest: +SKIP
        >>> packed.gather(torch.tensor([0, 5])).shape                      # doctest: +SKIP
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, cache_dir: str | os.PathLike, shards: Sequence[int] | None = None):
        self.folder = Path(cache_dir).expanduser()
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{str(self.folder)!r} holds no complete packed cache (no manifest.json)")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("version") != PACK_FORMAT_VERSION:
            raise ValueError(
                f"cache {str(self.folder)!r} has format version {self.manifest.get('version')}, "
                f"this epochal reads version {PACK_FORMAT_VERSION}; repack it"
            )
        self.shape = tuple(self.manifest["shape"])
        self.classes = list(self.manifest["classes"])
        self.targets = np.load(self.folder / "targets.npy", allow_pickle=False)
        all_shards = self.manifest["shards"]
        self.shard_ids = list(range(len(all_shards))) if shards is None else sorted(set(shards))
        if not self.shard_ids or not all(0 <= i < len(all_shards) for i in self.shard_ids):
            raise ValueError(f"shards={shards!r} is not valid; this cache has {len(all_shards)} shard(s)")
        self._starts, self._arrays, self.skipped = [], [], {}
        good = np.zeros(self.shape[0], dtype=bool)
        for index in self.shard_ids:
            entry = all_shards[index]
            rows = entry["stop"] - entry["start"]
            problem = shard_size_problem(self.folder / entry["file"], rows, self.shape[1:])
            if problem is not None:  # a short file would be read past its end
                raise corrupt_shard_error(self.folder / entry["file"], problem)
            # Copy-on-write maps are writable views (torch needs that) that never touch the file.
            array = np.memmap(
                self.folder / entry["file"], dtype=np.uint8, mode="c", shape=(rows, *self.shape[1:])
            )
            self._arrays.append(torch.from_numpy(array))
            self._starts.append(entry["start"])
            meta = json.loads((self.folder / f"shard-{index:05d}.json").read_text())
            good[entry["start"] : entry["stop"]] = True
            for rel, reason in meta["bad"].items():
                self.skipped[os.path.normpath(os.path.join(self.manifest["root"], rel))] = reason
            for row, (rel, _, _) in enumerate(meta["files"], start=entry["start"]):
                if rel in meta["bad"]:
                    good[row] = False
        self.rows = np.flatnonzero(good)
        self._bounds = torch.tensor(self._starts[1:], dtype=torch.long)
        self._resident: dict[str, torch.Tensor] = {}

    @property
    def root(self) -> str:
        """The folder the images were packed from (as it was when they were packed)."""
        return str(self.manifest["root"])

    def source_files(self, rows: Sequence[int] | np.ndarray) -> list[tuple[str, int]]:
        """``(path relative to :attr:`root`, size in bytes)`` of the source file of each global row."""
        by_row: dict[int, list] = {}
        for index in self.shard_ids:  # each shard's record lists its files in row order
            files = json.loads((self.folder / f"shard-{index:05d}.json").read_text())["files"]
            by_row.update(enumerate(files, self.manifest["shards"][index]["start"]))
        return [(by_row[int(r)][0], int(by_row[int(r)][1])) for r in rows]

    @property
    def nbytes(self) -> int:
        """Bytes of image data in the opened shards."""
        return sum(t.numel() for t in self._arrays)

    @property
    def multi_label(self) -> bool:
        return bool(self.manifest["multi_label"])

    def gather(self, rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Copy the images at global ``rows`` (a CPU long tensor) into a new (or ``out``) tensor."""
        rows = rows.to(torch.long)
        if out is None:
            out = torch.empty((len(rows), *self.shape[1:]), dtype=torch.uint8)
        if len(self._arrays) == 1:
            return torch.index_select(self._arrays[0], 0, rows - self._starts[0], out=out)
        which = torch.bucketize(rows, self._bounds, right=True)
        for shard in torch.unique(which).tolist():
            mask = which == shard
            out[mask] = torch.index_select(self._arrays[shard], 0, rows[mask] - self._starts[shard])
        return out

    def local_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Positions of global ``rows`` in :meth:`to_tensor`'s concatenation of opened shards."""
        offsets = torch.tensor(self._starts, dtype=torch.long)
        sizes = torch.tensor([len(a) for a in self._arrays], dtype=torch.long)
        before = torch.cumsum(sizes, 0) - sizes
        which = torch.bucketize(rows.to(torch.long), self._bounds, right=True)
        return rows - offsets[which] + before[which]

    def resident(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """:meth:`to_tensor` on ``device``, made once and shared by every loader of this cache."""
        key = str(torch.device(device))
        if key not in self._resident:
            self._resident[key] = self.to_tensor(device)
        return self._resident[key]

    def to_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All opened shards as one tensor on ``device`` (one copy; the way to GPU residency)."""
        if len(self._arrays) == 1:
            return self._arrays[0].to(device, copy=True)
        return torch.cat([a.to(device) for a in self._arrays])
