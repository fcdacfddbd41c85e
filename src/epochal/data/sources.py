"""The sources of :func:`~epochal.data.images.image_folder_loaders`: listed, packed, checked and split.

List the labelled files (:mod:`~epochal.data.folders`), pack them once into a uint8 cache
(:mod:`~epochal.data.packed`; undecodable files are found there), check that the classes can be
trained, and split the rows seeded and stratified (:mod:`~epochal.data.splits`). What was left out
on the way goes into a :class:`~epochal.data.report.DataReport`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from epochal.data.decode import BadImageError
from epochal.data.folders import ImageItems, list_images, unlabelled_items
from epochal.data.packed import PackedImages, pack_image_cache
from epochal.data.report import BROKEN_REASONS, DataReport, undecodable
from epochal.data.splits import exclude_class, stratified_split
from epochal.utils import size_pair

__all__ = ["Sources", "pack_folder", "prepare_sources", "usable_rows"]


def _cache_folder(items: ImageItems, cache_dir: str | os.PathLike | None, size, fit: str) -> Path | None:
    if cache_dir is None:
        return None
    facts = [items.root, size, fit, len(items)] + ([] if items.classes else ["unlabelled"])
    key = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:12]
    tag = "native" if size is None else "x".join(str(s) for s in size_pair(size))
    return Path(cache_dir).expanduser() / f"{Path(items.root).name}-{tag}-{fit}-{key}"


def pack_folder(
    items: ImageItems,
    cache_dir,
    size,
    fit: str = "crop",
    strict: bool = False,
    workers=None,
    progress: bool = True,
    num_shards: int = 1,
) -> PackedImages:
    """Pack ``items`` (cached under ``cache_dir`` when given) and report bad files.

    Raises:
        BadImageError: ``strict`` and some files failed to decode (every bad path is listed).
    """
    packed = pack_image_cache(
        items,
        _cache_folder(items, cache_dir, size, fit),
        size=size,
        fit=fit,
        num_shards=num_shards,
        workers=workers,
        progress=progress,
    )
    if packed.skipped:
        if strict:
            raise BadImageError(packed.skipped)
        lines = "\n".join(f"  {p}: {r}" for p, r in sorted(packed.skipped.items()))
        warnings.warn(
            f"skipped {len(packed.skipped)} image file(s) that could not be decoded:\n{lines}", stacklevel=4
        )
    return packed


def usable_rows(packed: PackedImages, targets: np.ndarray) -> np.ndarray:
    """Rows that decoded and are not excluded (class index -1)."""
    return packed.rows if targets.ndim == 2 else packed.rows[targets[packed.rows] >= 0]


def _split_rows(packed: PackedImages, targets: np.ndarray, valid_pct: float, seed: int):
    usable = usable_rows(packed, targets)
    train, valid = stratified_split(targets[usable], valid_pct, seed)
    return usable[train], usable[valid]


@dataclass
class Sources:
    """Packed training (and validation) images, targets in the model's class space, and the split."""

    items: ImageItems
    packed: PackedImages
    targets: np.ndarray
    classes: list[str]
    neutral_rows: np.ndarray
    train_rows: np.ndarray
    valid_packed: PackedImages
    valid_targets: np.ndarray
    valid_rows: np.ndarray
    valid_items: ImageItems | None = None

    def report(self) -> DataReport:
        """What listing and packing left out (:class:`~epochal.data.report.DataReport`)."""
        parts = [self.items] + ([self.valid_items] if self.valid_items is not None else [])
        skipped = [s for items in parts for s in items.skipped]
        skipped += undecodable({**self.packed.skipped, **self.valid_packed.skipped})
        empty = [c for items in parts for c in items.empty_classes]
        return DataReport.merge([DataReport(skipped_files=skipped, empty_classes=empty)])


def prepare_sources(
    root,
    valid_root,
    classes,
    cache_dir,
    packing: dict,
    num_shards: int,
    neutral_class: str | None,
    valid_pct: float,
    seed: int,
    unlabelled: bool = False,
) -> Sources:
    items = _listed(root, classes, packing["strict"], unlabelled)
    packed = pack_folder(items, cache_dir, num_shards=num_shards, **packing)
    targets, model_classes, neutral_rows = _targets_for_model(items, packed, neutral_class)
    if not unlabelled:
        _check_trainable_classes(
            root, model_classes, targets[usable_rows(packed, targets)], pinned=classes is not None
        )
    if valid_root is None:
        train_rows, valid_rows = _split_rows(packed, targets, valid_pct, seed)
        return Sources(
            items, packed, targets, model_classes, neutral_rows, train_rows, packed, targets, valid_rows
        )
    valid_items = _listed(valid_root, items.classes, packing["strict"], unlabelled)
    valid_packed = pack_folder(valid_items, cache_dir, **packing)
    valid_targets, _, _ = _targets_for_model(valid_items, valid_packed, neutral_class)
    return Sources(
        items,
        packed,
        targets,
        model_classes,
        neutral_rows,
        usable_rows(packed, targets),
        valid_packed,
        valid_targets,
        usable_rows(valid_packed, valid_targets),
        valid_items,
    )


def _listed(root, classes, strict: bool, unlabelled: bool = False) -> ImageItems:
    """:func:`list_images` (:func:`unlabelled_items` for ``unlabelled``); with ``strict``, broken
    entries (dangling symlinks ...) are an error."""
    if unlabelled and str(root).lower().endswith(".csv"):
        raise ValueError(
            f"data.options.unlabelled lists the images below a folder; {str(root)!r} is a label CSV "
            "(set data.path to the image folder)"
        )
    items = unlabelled_items(root) if unlabelled else list_images(root, classes)
    broken = {s.path: f"{s.reason.replace('_', ' ')}: {s.detail}" for s in items.skipped if s.reason in BROKEN_REASONS}
    if strict and broken:
        raise BadImageError(broken)
    return items


def _check_trainable_classes(root, classes: list[str], targets: np.ndarray, pinned: bool) -> None:
    """Refuse single-label training data with fewer than two classes, or (classes found) a class without images.

    One class trains to accuracy 1.0 without learning anything; a class that no decodable image
    carries gets an output the model never sees a positive of.
    """
    if targets.ndim == 2:
        return  # multi-label: each label is its own yes/no question, one label is a valid task
    if len(classes) < 2:
        raise ValueError(
            f"{str(root)!r} has {len(classes)} class(es) {classes}: classification needs at least two "
            "(a single class trains to accuracy 1.0 without learning anything); add a folder (or labels) per class"
        )
    counts = np.bincount(targets, minlength=len(classes))
    empty = [name for name, n in zip(classes, counts) if n == 0]
    if empty and not pinned:
        raise ValueError(
            f"{str(root)!r}: class(es) {empty} have no decodable images (see the warning about skipped files); "
            "fix or remove them"
        )


def _targets_for_model(items: ImageItems, packed: PackedImages, neutral_class: str | None):
    """Targets in the model's class space: the neutral class removed (its samples get -1)."""
    targets = np.asarray(packed.targets)
    if neutral_class is None:
        return targets, list(items.classes), np.zeros(0, dtype=np.int64)
    if items.multi_label:
        raise ValueError("neutral_class is for single-label data; multi-label data has no neutral class")
    if neutral_class not in items.classes:
        raise ValueError(f"neutral_class={neutral_class!r} is not one of the classes {items.classes}")
    neutral = items.classes.index(neutral_class)
    _, neutral_positions, remapped = exclude_class(targets, neutral, len(items.classes))
    neutral_rows = np.intersect1d(neutral_positions, packed.rows)
    return remapped, [c for c in items.classes if c != neutral_class], neutral_rows
