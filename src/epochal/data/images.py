"""``image_folder_loaders``: from a folder (or label CSV) of images to training and validation loaders.

The steps, each in its own module: list the labelled files (:mod:`~epochal.data.folders`), pack
them once into a uint8 cache (:mod:`~epochal.data.packed`; corrupt files are found there and
reported), check the classes and split seeded and stratified (:mod:`~epochal.data.sources`), and
serve batches from the cache on the chosen device (:mod:`~epochal.data.loaders`). Everything left
out on the way is in ``info["data_report"]`` (:mod:`~epochal.data.report`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

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
from epochal.data.folders import list_images
from epochal.data.loaders import ImageLoader
from epochal.data.packed import PackedImages
from epochal.data.sources import Sources, pack_folder, prepare_sources

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
    valid_root: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    pack_size: int | tuple[int, int] | None = None,
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
    unlabelled: bool = False,
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
            (and every dangling symlink, symlink loop or unreadable file found while listing)
            instead of skipping them with a warning.
        balance: ``oversample``, ``undersample`` or ``weighted`` class balancing of training.
        neutral_class: a class kept out of training and validation; its images are served by
            ``info["neutral_loader"]`` for relabelling (:func:`~epochal.data.splits.relabel_neutral`).
        rank: this process's share under DDP (explicit; never read from the environment).
        world_size: the number of processes of that job.
        drop_last: drop the last incomplete training batch (ignored, with a warning, when there
            is not one full batch).
        valid_batch_size: default twice ``batch_size``.
        workers: decoding processes for packing.
        progress: show the packing progress bar.
        num_shards: shards of the packed cache.
        channels_last: deliver ``channels_last`` tensors.
        unlabelled: every image below ``root`` at any depth, without labels (sub-folders are
            not classes), delivered as ``(images, images)`` batches: the data of a model that
            reconstructs its input (an autoencoder). ``info["task"]`` is ``"reconstruction"``,
            ``classes`` None; ``classes``, ``balance`` and ``neutral_class`` do not apply.

    Returns:
        :class:`~epochal.data.base.DataLoaders` with ``classes`` and ``info`` keys
        ``num_classes``, ``input_shape``, ``skipped_files`` (the undecodable files),
        ``data_report`` (a :class:`~epochal.data.report.DataReport`: every path skipped while
        listing or packing, with its reason), ``class_counts`` (training images
        per class of ``classes``), ``all_class_counts`` (every decodable image), ``normalize``,
        ``residency``, ``multi_label``, ``cache_dir``, ``augment`` (and neutral-class keys).
    """
    device = torch.device(device or "cpu")
    residency = _residency(loader, device)
    if unlabelled:
        _check_unlabelled(classes=classes, balance=balance, neutral_class=neutral_class)
    packing = {
        "size": _pack_size(pack_size, image_size, crop_pct),
        "fit": fit,
        "strict": strict,
        "workers": workers,
        "progress": progress,
    }
    src = prepare_sources(
        root, valid_root, classes, cache_dir, packing, num_shards, neutral_class, valid_pct, seed, unlabelled
    )
    norm = _normalizer(normalize, src.packed, src.train_rows)
    common = {
        "normalize": norm,
        "device": device,
        "residency": residency,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "num_classes": len(src.classes) or None,
        "channels_last": channels_last,
        "reconstruct": unlabelled,
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
    if unlabelled:
        info["task"] = "reconstruction"
        return DataLoaders(train=train, valid=valid, classes=None, info=info)
    return DataLoaders(train=train, valid=valid, classes=src.classes, info=info)


def _check_unlabelled(**settings) -> None:
    """Refuse the settings that need labels when ``unlabelled`` is set."""
    for name, value in settings.items():
        if value is not None:
            raise ValueError(
                f"{name}={value!r} needs labels, and unlabelled=True reads images without them; "
                f"leave {name} unset (data.options.{name}, or data.{name} for balance)"
            )


def _pack_size(pack_size, image_size, crop_pct: float):
    """The stored size: as given, else ``image_size / crop_pct`` (None: native size)."""
    if pack_size is None and image_size is not None:
        return round((image_size if isinstance(image_size, int) else max(image_size)) / crop_pct)
    return pack_size


def _train_loader(
    src: Sources, batch_size: int, augment, image_size, balance, drop_last: bool, valid_pct: float, common: dict
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


def _info(src: Sources, train: ImageLoader, norm: Normalize | None, cache_dir) -> dict:
    """The facts of :func:`image_folder_loaders`'s ``info`` (see its docstring)."""
    return {
        "num_classes": len(src.classes),
        "input_shape": train.output_shape(),
        "skipped_files": sorted({**src.packed.skipped, **src.valid_packed.skipped}),
        "data_report": src.report(),
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


def _neutral_info(src: Sources, neutral_class: str, exact: dict) -> dict:
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

    Examples:
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


