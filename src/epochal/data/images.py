"""``image_folder_loaders``: from a folder (or label CSV) of images to training and validation loaders.

The steps, each in its own module: list the labelled files (:mod:`~epochal.data.folders`), pack
them once into a uint8 cache (:mod:`~epochal.data.packed`; corrupt files are found there and
reported), split seeded and stratified (:mod:`~epochal.data.splits`), and serve batches from the
cache on the chosen device (:mod:`~epochal.data.loaders`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from epochal.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    build_augmentations,
    eval_transform,
)
from epochal.data.base import DataLoaders
from epochal.data.decode import BadImageError
from epochal.data.folders import ImageItems, image_folder_items, label_csv_items
from epochal.data.loaders import ImageLoader
from epochal.data.packed import PackedImages, pack_image_cache
from epochal.data.splits import exclude_class, stratified_split
from epochal.utils import size_pair

__all__ = [
    "LOADER_KINDS",
    "channel_stats",
    "image_folder_loaders",
    "image_loader_variant",
    "list_images",
    "pack_folder",
]

#: The ``loader`` choices: ``gpu`` (device-resident), ``stream``, ``cpu`` (in RAM), ``auto``.
LOADER_KINDS: tuple[str, ...] = ("auto", "gpu", "stream", "cpu")


def list_images(root: str | os.PathLike, classes: Sequence[str] | None = None) -> ImageItems:
    """Image-folder root, or a ``.csv`` label file (paths relative to its folder)."""
    if str(root).lower().endswith(".csv"):
        return label_csv_items(root, classes=classes)
    return image_folder_items(root, classes=classes)


def _cache_folder(items: ImageItems, cache_dir: str | os.PathLike | None, size, fit: str) -> Path | None:
    if cache_dir is None:
        return None
    key = hashlib.sha256(json.dumps([items.root, size, fit, len(items)]).encode()).hexdigest()[:12]
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


def channel_stats(
    packed: PackedImages, rows: np.ndarray, max_images: int = 10_000, seed: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``[0, 1]`` pixels over (a seeded sample of) ``rows``."""
    rows = np.asarray(rows)
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, len(rows), 1024):
        batch = packed.gather(torch.as_tensor(rows[start : start + 1024])).double().div_(255)
        total += batch.sum(dim=(0, 2, 3))
        squares += batch.square().sum(dim=(0, 2, 3))
        count += batch.numel() // 3
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _normalizer(normalize, packed: PackedImages, rows: np.ndarray) -> Normalize | None:
    if normalize is None:
        return None
    if isinstance(normalize, Normalize):
        return normalize
    if normalize == "imagenet":
        return Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if normalize == "auto":
        return Normalize(*channel_stats(packed, rows))
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        return Normalize(*normalize)
    raise ValueError(f"normalize={normalize!r} is not valid; use 'imagenet', 'auto', (mean, std) or None")


def _residency(loader: str, device: torch.device) -> str:
    if loader not in LOADER_KINDS:
        raise ValueError(f"loader={loader!r} is not valid; use one of {LOADER_KINDS}")
    if loader == "gpu" and device.type != "cuda":
        raise ValueError(f"loader='gpu' needs a CUDA device, got device={str(device)!r}")
    if loader == "cpu" and device.type != "cpu":
        raise ValueError(
            f"loader='cpu' delivers CPU batches; got device={str(device)!r} (use 'stream' or 'gpu')"
        )
    return {"auto": "auto", "gpu": "device", "cpu": "device", "stream": "stream"}[loader]


def _usable(packed: PackedImages, targets: np.ndarray) -> np.ndarray:
    """Rows that decoded and are not excluded (class index -1)."""
    return packed.rows if targets.ndim == 2 else packed.rows[targets[packed.rows] >= 0]


def _split_rows(packed: PackedImages, targets: np.ndarray, valid_pct: float, seed: int):
    usable = _usable(packed, targets)
    train, valid = stratified_split(targets[usable], valid_pct, seed)
    return usable[train], usable[valid]


def image_folder_loaders(
    root: str | os.PathLike,
    valid_pct: float = 0.1,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    batch_size: int = 256,
    augment=("flip",),
    loader: str = "auto",
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    *,
    valid_root=None,
    classes=None,
    pack_size=None,
    fit: str = "crop",
    crop_pct: float = 1.0,
    normalize="imagenet",
    strict: bool = False,
    balance: str | None = None,
    neutral_class: str | None = None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
    valid_batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    num_shards: int = 1,
    channels_last: bool = False,
) -> DataLoaders:
    """Training and validation loaders for ``root/<class>/<image>`` (or a ``path,label(s)`` CSV).

    Args:
        root: image-folder root, or a ``.csv`` label file.
        valid_pct: stratified, seeded validation share (ignored with ``valid_root``).
        seed: seed of the split, the epoch orders and the augmentations.
        image_size: delivered side or ``(h, w)``; None keeps the packed size.
        batch_size: training batch size per rank.
        augment: training augmentations (list of specs or objects); crops follow ``image_size``.
        loader: ``gpu`` (whole cache on the device), ``stream`` (memory map + pinned prefetch),
            ``cpu`` (in RAM, CPU batches) or ``auto``.
        device: where batches are delivered.
        cache_dir: keep the packed cache there (reused while the sources are unchanged);
            None packs into a temporary folder.
        valid_root: a separate image folder for validation (then ``valid_pct`` is unused).
        classes: pin class names and order.
        pack_size: stored size; default ``image_size / crop_pct`` (native size without image_size).
        fit: how images are fitted to ``pack_size``: ``crop``, ``pad`` or ``stretch``.
        crop_pct: validation keeps this centre fraction (0.875 is the usual ImageNet value).
        normalize: ``imagenet``, ``auto`` (channel statistics of the training images),
            ``(mean, std)``, a :class:`~epochal.data.augment.Normalize` or None.
        strict: raise :class:`~epochal.data.decode.BadImageError` listing every undecodable file
            instead of skipping them with a warning.
        balance: ``oversample``, ``undersample`` or ``weighted`` class balancing of training.
        neutral_class: a class kept out of training and validation; its images are served by
            ``info["neutral_loader"]`` for relabelling (:func:`~epochal.data.splits.relabel_neutral`).
        rank, world_size: this process's share under DDP (explicit; never read from the environment).
        drop_last: drop the last incomplete training batch (ignored, with a warning, when there
            is not one full batch).
        valid_batch_size: default twice ``batch_size``.
        workers: decoding processes for packing.
        progress: show the packing progress bar.
        num_shards: shards of the packed cache.
        channels_last: deliver ``channels_last`` tensors.

    Returns:
        :class:`~epochal.data.base.DataLoaders` with ``classes`` and ``info`` keys
        ``num_classes``, ``input_shape``, ``skipped_files``, ``class_counts`` (training images
        per class of ``classes``), ``all_class_counts`` (every decodable image), ``normalize``,
        ``residency``, ``multi_label``, ``cache_dir``, ``augment`` (and neutral-class keys).
    """
    device = torch.device(device or "cpu")
    residency = _residency(loader, device)
    packing = {
        "size": _pack_size(pack_size, image_size, crop_pct),
        "fit": fit,
        "strict": strict,
        "workers": workers,
        "progress": progress,
    }
    src = _prepare_sources(
        root, valid_root, classes, cache_dir, packing, num_shards, neutral_class, valid_pct, seed
    )
    norm = _normalizer(normalize, src.packed, src.train_rows)
    common = {
        "normalize": norm,
        "device": device,
        "residency": residency,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "num_classes": len(src.classes),
        "channels_last": channels_last,
    }
    train = _train_loader(src, batch_size, augment, image_size, balance, drop_last, valid_pct, common)
    exact = {
        "batch_size": valid_batch_size or 2 * batch_size,
        "shuffle": False,
        "augment": eval_transform(image_size, crop_pct),
        **common,
    }
    valid = None
    if len(src.valid_rows):
        valid = ImageLoader(src.valid_packed, src.valid_targets, rows=src.valid_rows, **exact)
    info = _info(src, train, norm, cache_dir)
    if neutral_class is not None:
        info.update(_neutral_info(src, neutral_class, exact))
    return DataLoaders(train=train, valid=valid, classes=src.classes, info=info)


def _pack_size(pack_size, image_size, crop_pct: float):
    """The stored size: as given, else ``image_size / crop_pct`` (None: native size)."""
    if pack_size is None and image_size is not None:
        return round((image_size if isinstance(image_size, int) else max(image_size)) / crop_pct)
    return pack_size


def _train_loader(
    src: _Sources, batch_size: int, augment, image_size, balance, drop_last: bool, valid_pct: float, common: dict
) -> ImageLoader:
    """The shuffled, augmented training loader over the training rows."""
    train_augment = build_augmentations(augment)
    if image_size is not None:
        train_augment.set_image_size(image_size)
    drop_last = _checked_drop_last(drop_last, len(src.train_rows) // common["world_size"], batch_size, 4)
    train = ImageLoader(
        src.packed,
        src.targets,
        rows=src.train_rows,
        batch_size=batch_size,
        shuffle=True,
        balance=balance,
        augment=train_augment,
        drop_last=drop_last,
        image_size=image_size,
        **common,
    )
    if len(train) == 0:
        raise ValueError(
            f"no training images left (valid_pct={valid_pct}, {len(src.train_rows)} training rows)"
        )
    return train


def _info(src: _Sources, train: ImageLoader, norm: Normalize | None, cache_dir) -> dict:
    """The facts of :func:`image_folder_loaders`'s ``info`` (see its docstring)."""
    return {
        "num_classes": len(src.classes),
        "input_shape": train.output_shape(),
        "skipped_files": sorted({**src.packed.skipped, **src.valid_packed.skipped}),
        "class_counts": _counts(src.classes, src.targets[src.train_rows]),
        "all_class_counts": src.items.select(np.asarray(src.packed.rows)).class_counts(),
        "normalize": None if norm is None else norm.to_spec(),
        "residency": train.residency,
        "multi_label": src.items.multi_label,
        "cache_dir": str(src.packed.folder) if cache_dir else None,
        "augment": train.augment.to_spec(),
        "train_size": len(src.train_rows),
        "valid_size": len(src.valid_rows),
    }


def _neutral_info(src: _Sources, neutral_class: str, exact: dict) -> dict:
    """The neutral class's rows and a loader over them (blank targets) for relabelling."""
    blank = np.zeros(src.packed.shape[0], dtype=np.int64)
    return {
        "neutral_class": neutral_class,
        "neutral_rows": src.neutral_rows,
        "neutral_loader": ImageLoader(src.packed, blank, rows=src.neutral_rows, **exact),
    }


def image_loader_variant(
    train: ImageLoader, batch_size: int, image_size=None, augment=None, balance: str | None = None
) -> ImageLoader:
    """A training loader over the same packed rows with other batching, size or augmentation.

    Nothing is packed again: the variant shares ``train``'s packed images (and their copy on the
    device), rows, targets, normalisation and seed. It is what a training phase with its own data
    settings trains on (progressive resizing: smaller images in larger batches first).

    Args:
        train: the training loader built by :func:`image_folder_loaders`.
        batch_size: samples per batch (per rank).
        image_size: delivered side or ``(h, w)``; None keeps what the augmentations produce.
        augment: training augmentation specs (or a ``Compose``, copied from its specs); crops
            follow ``image_size``.
        balance: class balancing (``oversample``, ``undersample``, ``weighted``) or None.

    Example:
        >>> small = image_loader_variant(data.train, batch_size=512, image_size=16, augment=["flip"])
    """
    # a pipeline of its own: setting its image size must not change ``train``'s crops
    pipeline = build_augmentations(augment.to_spec() if isinstance(augment, Compose) else augment)
    if image_size is not None:
        pipeline.set_image_size(image_size)
    drop_last = _checked_drop_last(train.drop_last, len(train.rows) // train.world_size, batch_size)
    return train.with_rows(
        train.rows,
        batch_size=batch_size,
        image_size=image_size,
        augment=pipeline,
        balance=balance,
        drop_last=drop_last,
    )


@dataclass
class _Sources:
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


def _prepare_sources(
    root,
    valid_root,
    classes,
    cache_dir,
    packing: dict,
    num_shards: int,
    neutral_class: str | None,
    valid_pct: float,
    seed: int,
) -> _Sources:
    items = list_images(root, classes)
    packed = pack_folder(items, cache_dir, num_shards=num_shards, **packing)
    targets, model_classes, neutral_rows = _targets_for_model(items, packed, neutral_class)
    if valid_root is None:
        train_rows, valid_rows = _split_rows(packed, targets, valid_pct, seed)
        return _Sources(
            items, packed, targets, model_classes, neutral_rows, train_rows, packed, targets, valid_rows
        )
    valid_items = list_images(valid_root, items.classes)
    valid_packed = pack_folder(valid_items, cache_dir, **packing)
    valid_targets, _, _ = _targets_for_model(valid_items, valid_packed, neutral_class)
    return _Sources(
        items,
        packed,
        targets,
        model_classes,
        neutral_rows,
        _usable(packed, targets),
        valid_packed,
        valid_targets,
        _usable(valid_packed, valid_targets),
    )


def _checked_drop_last(drop_last: bool, per_rank: int, batch_size: int, stacklevel: int = 3) -> bool:
    """``drop_last``, unless there is not one full batch: then the incomplete one is kept, with a warning."""
    if drop_last and per_rank < batch_size:
        warnings.warn(
            f"only {per_rank} training samples per rank, fewer than batch_size={batch_size}: "
            "keeping the one incomplete batch (drop_last is ignored)",
            stacklevel=stacklevel + 1,
        )
        return False
    return drop_last


def _counts(classes: list[str], targets: np.ndarray) -> dict[str, int]:
    """Training images per model class (multi-label: images carrying each label)."""
    counts = targets.sum(axis=0) if targets.ndim == 2 else np.bincount(targets, minlength=len(classes))
    return {name: int(c) for name, c in zip(classes, counts)}


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
