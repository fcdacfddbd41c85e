"""Which files a run trained and validated on, so that evaluating on them again can be noticed.

At train time an image-folder run records the source files of its training and validation splits
in ``<run>/data_files.json.gz``: the folder they came from and, per split, ``[relative path, size
in bytes]`` of every image (gzip-compressed JSON: about 10 bytes per image). ``epochal eval RUN
--data DIR`` compares the images of ``DIR`` with it: an image that has the same path relative to
its folder and the same size as a training image, or is the very same file, is counted as seen
in training, and the command warns, since metrics on training images overstate what the model
does on new ones. Tabular runs and runs on one's own loaders record nothing.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DATA_FILES", "data_files", "overlap_with_run", "read_data_files", "write_data_files"]

#: The file, inside a run folder, that lists the source files of its splits.
DATA_FILES = "data_files.json.gz"


def _split_files(loader) -> tuple[str, list[tuple[str, int]]] | None:
    """``(root, [(relative path, size)])`` of the images a loader serves, or None for other loaders."""
    from epochal.data.packed_images import PackedImages

    images = getattr(loader, "images", None)
    if not isinstance(images, PackedImages):
        return None
    return images.root, images.source_files(loader.rows.tolist())


def data_files(data) -> dict[str, Any] | None:
    """``{"train": {"root", "files"}, "valid": {...}}`` of image-folder loaders, else None."""
    record = {}
    for split in ("train", "valid"):
        found = _split_files(getattr(data, split, None))
        if found is not None:
            record[split] = {"root": found[0], "files": [list(f) for f in found[1]]}
    return record or None


def write_data_files(run_dir: str | Path, data) -> Path | None:
    """Write ``<run>/data_files.json.gz`` for image-folder data (see the module docstring); None otherwise."""
    from epochal.utils import atomic_write_bytes

    record = data_files(data)
    if record is None:
        return None
    blob = gzip.compress(json.dumps(record, separators=(",", ":")).encode(), mtime=0)
    return atomic_write_bytes(Path(run_dir) / DATA_FILES, lambda handle: handle.write(blob))


def read_data_files(run_dir: str | Path) -> dict[str, Any] | None:
    """What :func:`write_data_files` wrote, or None (runs from before it, tabular runs, an unreadable file)."""
    path = Path(run_dir) / DATA_FILES
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError):
        return None


def _keys(root: str, files: list) -> tuple[set[tuple[str, int]], set[str]]:
    by_name = {(rel, int(size)) for rel, size in files}
    by_path = {os.path.normpath(os.path.join(root, rel)) for rel, _ in files}
    return by_name, by_path


def overlap_with_run(run_dir: str | Path, data) -> dict[str, int] | None:
    """How many images that ``data`` evaluates (its validation loader) the run trained or validated on.

    Returns:
        ``{"train": n, "valid": m, "of": total}`` (an image counts when it is the same file, or has
        the same relative path and size), or None when the run recorded no file lists or ``data``
        is not image-folder data.
    """
    recorded = read_data_files(run_dir)
    found = _split_files(getattr(data, "valid", None))
    if recorded is None or found is None:
        return None
    root, files = found
    names = [(rel, size) for rel, size in files]
    paths = [os.path.normpath(os.path.join(root, rel)) for rel, _ in files]
    counts: dict[str, int] = {"of": len(files)}
    for split in ("train", "valid"):
        if split not in recorded:
            continue
        by_name, by_path = _keys(recorded[split]["root"], recorded[split]["files"])
        counts[split] = sum(1 for n, p in zip(names, paths) if n in by_name or p in by_path)
    return counts
