"""The packed image cache: images decoded once into a uint8 memory-mapped array.

Decoding JPEGs every epoch is what makes ordinary pipelines slow; airbench and FFCV show that
a pre-decoded uint8 array (resident on the GPU when it fits) removes that cost. The cache is a
folder::

    manifest.json        written last: size, fit, shape, classes, shards (with checksums), source fingerprint
    targets.npy          int64 class indices (n,) or uint8 multi-hot rows (n, classes)
    classes.json         the class list, index order
    shard-00000.u8       rows [start, stop) as raw uint8 (rows, 3, H, W)
    shard-00000.json     that shard's source files (path, size, mtime), bad files, row range, checksum

Every file is written under a temporary name and renamed into place, data before metadata, so
an interrupted pack never leaves a cache that looks complete; finished shards are kept, so a
repeated call resumes, and repacks a shard whose file has the wrong size. The temporary files of
killed packers are removed by the next pack; decoding workers die with their parent
(:mod:`~epochal.data.pool`). A shard's blocks are reserved before it is written through a memory
map, so a full disk is a :class:`~epochal.utils.DiskFullError` instead of a bus error. The
manifest is keyed by the source files' relative paths, sizes and mtimes: a changed source
invalidates the cache. Shards let several processes or machines pack
(``shards=``) or read (:class:`PackedImages` ``shards=``) disjoint parts. This module writes caches;
:mod:`~epochal.data.packed_images` reads them.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import tempfile
import weakref
from collections.abc import Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from epochal.data.decode import FIT_MODES, BadImageError, load_rgb_array
from epochal.data.folders import ImageItems, save_classes
from epochal.data.packed_checks import CHECKSUM_ROWS, block_digest, combine_digests, shard_size_problem
from epochal.data.packed_images import PACK_FORMAT_VERSION, PackedImages
from epochal.data.pool import process_pool
from epochal.utils import (
    DiskFullError,
    atomic_write_bytes,
    format_bytes,
    is_disk_full,
    remove_stale_temps,
    size_pair,
    temp_file_beside,
    write_json_atomic,
)

__all__ = ["PACK_FORMAT_VERSION", "PackedImages", "pack_image_cache", "source_fingerprint"]

_CHUNK = CHECKSUM_ROWS  # rows per worker task, hashed by the worker that wrote them


def _file_entries(items: ImageItems) -> list[list]:
    """``[relative path, size, mtime_ns]`` per file: what decides whether a cache is current."""
    prefix = items.root.rstrip(os.sep) + os.sep
    entries = []
    for path in items.paths:
        stat = os.stat(path)
        rel = path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, items.root)
        entries.append([rel, stat.st_size, stat.st_mtime_ns])
    return entries


def source_fingerprint(
    items: ImageItems, size: tuple[int, int] | None, fit: str, entries: list[list] | None = None
) -> str:
    """A hash of everything a pack depends on: files (path, size, mtime), targets, size, fit."""
    digest = hashlib.sha256()
    digest.update(json.dumps([PACK_FORMAT_VERSION, size, fit, items.classes]).encode())
    digest.update(json.dumps(entries if entries is not None else _file_entries(items)).encode())
    digest.update(np.ascontiguousarray(items.targets).tobytes())
    return digest.hexdigest()


def _native_size(items: ImageItems) -> tuple[int, int]:
    """The (h, w) of the first file that decodes: every image must share it when size=None."""
    for path in items.paths:
        try:
            return tuple(load_rgb_array(path).shape[1:])
        except BadImageError:
            continue
    raise BadImageError({p: "no file in the data set decodes" for p in items.paths[:20]})


def _pack_rows(job: tuple) -> tuple[int, dict[str, str], int, bytes]:
    """Worker: decode ``paths`` into rows ``offset..`` of the shard file; return bad files and the digest."""
    file, shape, offset, paths, size, fit = job
    array = np.memmap(file, dtype=np.uint8, mode="r+", shape=shape)
    bad = {}
    for row, path in enumerate(paths, start=offset):
        try:
            pixels = load_rgb_array(path, size, fit)
            if pixels.shape != shape[1:]:
                raise BadImageError(
                    {
                        path: f"size {pixels.shape[1:]} differs from the native size "
                        f"{shape[2:]} of the data set; pass size= to resize"
                    }
                )
            array[row] = pixels
        except BadImageError as error:
            bad.update(error.bad)
    digest = block_digest(array[offset : offset + len(paths)])
    array.flush()
    del array
    return len(paths), bad, offset // _CHUNK, digest


def _run_jobs(jobs: list[tuple], workers: int, progress: bool, label: str) -> tuple[dict[str, str], str]:
    """Run the decoding jobs of one shard; return its bad files and its checksum."""
    from rich.console import Console
    from rich.progress import Progress

    bad: dict[str, str] = {}
    digests: dict[int, bytes] = {}
    total = sum(len(job[3]) for job in jobs)
    console = Console(stderr=True)  # stdout stays clean for --json; no bar when stderr is no terminal
    with Progress(console=console, disable=not (progress and console.is_terminal), transient=True) as bar:
        task = bar.add_task(label, total=total)
        if workers > 0 and len(jobs) > 1:
            with process_pool(workers) as pool:
                for future in as_completed([pool.submit(_pack_rows, job) for job in jobs]):
                    done, failed, block, digest = future.result()
                    bad.update(failed)
                    digests[block] = digest
                    bar.advance(task, done)
        else:
            for job in jobs:
                done, failed, block, digest = _pack_rows(job)
                bad.update(failed)
                digests[block] = digest
                bar.advance(task, done)
    return bad, combine_digests([digests[i] for i in sorted(digests)])


def _shard_ranges(n: int, num_shards: int) -> list[range]:
    bounds = np.linspace(0, n, num_shards + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def _shard_is_done(folder: Path, index: int, entries: list[list], fingerprint: str, row_shape: tuple) -> bool:
    meta = folder / f"shard-{index:05d}.json"
    if not meta.exists() or shard_size_problem(folder / f"shard-{index:05d}.u8", len(entries), row_shape):
        return False
    data = json.loads(meta.read_text())
    return data.get("fingerprint") == fingerprint and data.get("files") == entries


def _allocate(path: Path, nbytes: int) -> Path:
    """Create the temporary file of shard ``path`` with all its ``nbytes`` reserved on disk.

    Writing through a memory map past the free space kills the writer with SIGBUS (a worker's
    death shows up as BrokenProcessPool); reserving first turns a full disk into an error here.
    """
    fd, tmp = temp_file_beside(path)
    try:
        try:
            if not hasattr(os, "posix_fallocate"):
                raise OSError(errno.EOPNOTSUPP, "no posix_fallocate")
            os.posix_fallocate(fd, 0, max(nbytes, 1))
        except OSError as error:
            if is_disk_full(error):
                raise DiskFullError(path, f" (a shard of {format_bytes(nbytes)})") from None
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            _write_zeros(fd, nbytes, path)  # file systems without fallocate: real zeros reserve the blocks
        os.ftruncate(fd, nbytes)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _write_zeros(fd: int, nbytes: int, path: Path) -> None:
    block = bytes(1 << 20)
    written = 0
    try:
        while written < nbytes:
            written += os.write(fd, block[: min(len(block), nbytes - written)])
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(path, f" (a shard of {format_bytes(nbytes)})") from None
        raise


def _pack_shard(
    items: ImageItems,
    folder: Path,
    index: int,
    rows: range,
    shape: tuple,
    spec: dict,
    fingerprint: str,
    workers: int,
    progress: bool,
    entries: list[list],
) -> None:
    shard_shape = (len(rows), *shape[1:])
    name = f"shard-{index:05d}.u8"
    tmp = _allocate(folder / name, int(np.prod(shard_shape)))
    jobs = [
        (
            str(tmp),
            shard_shape,
            offset - rows.start,
            items.paths[offset : min(offset + _CHUNK, rows.stop)],
            spec["size"],
            spec["fit"],
        )
        for offset in range(rows.start, rows.stop, _CHUNK)
    ]
    try:
        bad, checksum = _run_jobs(jobs, workers, progress, f"packing shard {index} ({len(rows)} images)")
        os.replace(tmp, folder / name)
    except BrokenProcessPool:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"a decoding worker packing {folder / name} died (killed, out of memory, or a bus error); "
            "the partial shard was removed; workers=0 decodes in this process and shows the error"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {
        "index": index,
        "start": rows.start,
        "stop": rows.stop,
        "fingerprint": fingerprint,
        "files": entries,
        "bad": {os.path.relpath(p, items.root): reason for p, reason in sorted(bad.items())},
        "checksum": checksum,
        "checksum_rows": _CHUNK,
    }
    write_json_atomic(folder / f"shard-{index:05d}.json", meta, indent=None)


def _clear_stale(folder: Path, fingerprint: str) -> None:
    """Remove a previous pack of other sources (only files this module writes)."""
    manifest = folder / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("fingerprint") != fingerprint:
        manifest.unlink()
    for meta in folder.glob("shard-*.json"):
        if json.loads(meta.read_text()).get("fingerprint") != fingerprint:
            meta.unlink()
            (folder / meta.name.replace(".json", ".u8")).unlink(missing_ok=True)
    if manifest.exists():  # a complete cache with a truncated or missing shard: repack that shard
        complete = json.loads(manifest.read_text())
        row_shape = tuple(complete["shape"][1:])
        if any(shard_size_problem(folder / e["file"], e["stop"] - e["start"], row_shape) for e in complete["shards"]):
            manifest.unlink()


def pack_image_cache(
    items: ImageItems,
    cache_dir: str | os.PathLike | None,
    size: int | Sequence[int] | None = None,
    fit: str = "crop",
    num_shards: int = 1,
    shards: Sequence[int] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PackedImages | None:
    """Decode ``items`` once into a packed uint8 cache, reusing a valid one.

    Args:
        items: the labelled files (see :func:`~epochal.data.folders.image_folder_items`).
        cache_dir: the cache folder; None packs into a temporary folder removed with the result.
        size: stored ``(height, width)`` or int side; None keeps the native size (all equal).
        fit: ``crop`` (shorter side, centre crop), ``pad`` (longer side, centre pad) or ``stretch``.
        num_shards: number of row ranges the cache is split into.
        shards: which shards this call packs (others are packed by other processes); default all.
        workers: decoding processes; default ``min(8, cpu count)``; 0 decodes in this process.
        progress: show a rich progress bar.

    Returns:
        The opened :class:`PackedImages` when every shard is complete, else None (other
        processes still have shards to pack).
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit={fit!r} is not valid; use one of {FIT_MODES}")
    if num_shards < 1 or num_shards > max(1, len(items)):
        raise ValueError(f"num_shards={num_shards} must be between 1 and the number of images ({len(items)})")
    size = None if size is None else size_pair(size)
    owner = None
    if cache_dir is None:
        cache_dir = owner = tempfile.mkdtemp(prefix="epochal-pack-")
    folder = Path(cache_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)  # shards of killed packers
    entries = _file_entries(items)
    fingerprint = source_fingerprint(items, size, fit, entries)
    _clear_stale(folder, fingerprint)
    if not (folder / "manifest.json").exists():
        shape = (len(items), 3, *(size or _native_size(items)))
        spec = {"size": size, "fit": fit}
        workers = min(8, os.cpu_count() or 1) if workers is None else workers
        ranges = _shard_ranges(len(items), num_shards)
        for index in range(num_shards) if shards is None else shards:
            if not 0 <= index < num_shards:
                raise ValueError(f"shard index {index} is out of range for num_shards={num_shards}")
            shard_entries = entries[ranges[index].start : ranges[index].stop]
            if not _shard_is_done(folder, index, shard_entries, fingerprint, shape[1:]):
                _pack_shard(
                    items,
                    folder,
                    index,
                    ranges[index],
                    shape,
                    spec,
                    fingerprint,
                    workers,
                    progress,
                    shard_entries,
                )
        if not all(
            _shard_is_done(folder, i, entries[r.start : r.stop], fingerprint, shape[1:])
            for i, r in enumerate(ranges)
        ):
            return None
        _write_manifest(items, folder, shape, spec, ranges, fingerprint)
    packed = PackedImages(folder)
    if owner is not None:
        weakref.finalize(packed, _remove_tree, owner)
    return packed


def _write_manifest(
    items: ImageItems, folder: Path, shape: tuple, spec: dict, ranges: list[range], fingerprint: str
) -> None:
    atomic_write_bytes(folder / "targets.npy", lambda handle: np.save(handle, items.targets))
    save_classes(folder / "classes.json", items.classes)
    manifest = {
        "format": "epochal-packed",
        "version": PACK_FORMAT_VERSION,
        "root": items.root,
        "size": spec["size"],
        "fit": spec["fit"],
        "shape": list(shape),
        "classes": items.classes,
        "multi_label": items.multi_label,
        "fingerprint": fingerprint,
        "shards": [_manifest_entry(folder, i, r) for i, r in enumerate(ranges)],
    }
    write_json_atomic(folder / "manifest.json", manifest, indent=1)


def _manifest_entry(folder: Path, index: int, rows: range) -> dict:
    entry = {"file": f"shard-{index:05d}.u8", "start": rows.start, "stop": rows.stop}
    meta = json.loads((folder / f"shard-{index:05d}.json").read_text())
    if "checksum" in meta:  # shards packed by an older epochal have none
        entry.update(checksum=meta["checksum"], checksum_rows=meta["checksum_rows"])
    return entry


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
