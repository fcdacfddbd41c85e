"""Epoch-addressable loaders over packed images and in-memory tensors.

One batch path serves every residency: gather a batch of uint8 images by index, convert to
float on the target device, run the batched augmentations, resize if progressive resizing asks
for it, normalise. Only where the uint8 images live differs:

- ``device``: the whole array on the target device (GPU-resident when it fits, as airbench does;
  on the CPU this is the plain in-RAM loader used by tests); batches are gathered by index there.
- ``stream``: the array stays memory-mapped; a background thread gathers the next batches into
  pinned memory and they are copied to the device without blocking (for data larger than device
  memory).

Order and augmentation are a pure function of (seed, epoch, batch index, rank), so
``iter_epoch(epoch, start=k)`` reproduces batches ``k..`` of an uninterrupted epoch exactly.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from epochal.data.augment import BatchContext, Compose, Normalize, build_augmentations
from epochal.data.base import Batch, batch_generator
from epochal.data.packed_images import PackedImages
from epochal.data.samplers import Sampler, make_sampler
from epochal.utils import content_digest, host_to_device, size_pair

__all__ = ["RESIDENCIES", "ImageLoader", "TensorLoader", "choose_residency"]

#: Where a loader keeps its uint8 images: ``device`` (whole array there) or ``stream``.
RESIDENCIES: tuple[str, ...] = ("auto", "device", "stream")


class _IndexedLoader:
    """Batches of sampler positions; subclasses turn positions into a batch."""

    def __init__(
        self, sampler: Sampler, batch_size: int, drop_last: bool, seed: int, rank: int, world_size: int
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._epoch_order: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def _generator(self, epoch: int, index: int) -> torch.Generator:
        # Ranks draw different parameters for the same batch index; one rank matches batch_generator.
        return batch_generator(self.seed, epoch, index * self.world_size + self.rank)

    def _slices(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor]]:
        if not 0 <= start <= len(self):
            raise ValueError(f"start={start} is out of range for an epoch of {len(self)} batches")
        order = self.sampler.indices(epoch)
        for index in range(start, len(self)):
            yield index, order[index * self.batch_size : (index + 1) * self.batch_size]

    def batch_positions(self, epoch: int, index: int) -> torch.Tensor:
        """The sample positions (CPU ``int64``) that batch ``index`` of ``epoch`` holds, in batch order.

        Positions index the loader's samples (``targets``); a callback that keeps per-sample
        values (cached teacher logits) reads them here without touching the batch.
        """
        if self._epoch_order is None or self._epoch_order[0] != epoch:  # one order per epoch, not per batch
            self._epoch_order = (epoch, self.sampler.indices(epoch))
        return self._epoch_order[1][index * self.batch_size : (index + 1) * self.batch_size]

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(0)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        raise NotImplementedError



def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def choose_residency(nbytes: int, device: torch.device, fraction: float = 0.5) -> str:
    """``device`` when ``nbytes`` fit in ``fraction`` of the device's free memory, else ``stream``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = _memory_bytes()
    return "device" if nbytes <= fraction * free else "stream"


class ImageLoader(_IndexedLoader):
    """Batches of packed uint8 images, augmented and normalised on ``device``.

    Args:
        images: a :class:`~epochal.data.packed.PackedImages`, or a uint8 ``(N, C, H, W)`` tensor.
        targets: per image: class indices ``(N,)`` or multi-hot rows ``(N, K)``.
        rows: the image rows this loader draws from (default: every good row).
        batch_size: samples per batch (per rank).
        shuffle: a new seeded order per epoch (training); False gives the exact sequential order.
        balance: ``oversample``, ``undersample`` or ``weighted`` class balancing (training).
        augment: augmentations or their specs (see :func:`~epochal.data.augment.build_augmentations`).
        normalize: a :class:`~epochal.data.augment.Normalize`; None leaves pixels in ``[0, 1]``.
        device: where batches are delivered.
        residency: ``device``, ``stream`` or ``auto`` (device when it fits in half the free memory).
        seed: base seed of order and augmentation.
        rank: this process's rank; ranks read disjoint shares.
        world_size: number of ranks.
        drop_last: drop the last incomplete batch.
        num_classes: classes (for soft targets); default from the targets.
        image_size: output side or ``(h, w)``; None keeps what the augmentations produce.
        prefetch: batches gathered ahead by the streaming thread.
        dtype: float dtype of the delivered images.
        channels_last: deliver images in ``channels_last`` memory format.
        reconstruct: deliver each batch's images as its targets too, ``(images, images)``: the
            loss of a model that reconstructs its input (an autoencoder) gets the inputs, as
            augmented and normalised, instead of labels.

    Examples:
        >>> images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
        >>> loader = ImageLoader(images, torch.arange(10) % 2, batch_size=4, augment=["flip"])
        >>> [tuple(x.shape) for x, _ in loader.iter_epoch(0)]
        [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)]
    """

    def __init__(
        self,
        images: PackedImages | torch.Tensor,
        targets,
        rows: Sequence[int] | None = None,
        batch_size: int = 256,
        shuffle: bool = True,
        balance: str | None = None,
        augment=None,
        normalize: Normalize | None = None,
        device: torch.device | str = "cpu",
        residency: str = "auto",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        num_classes: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        prefetch: int = 2,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        reconstruct: bool = False,
    ):
        if residency not in RESIDENCIES:
            raise ValueError(f"residency={residency!r} is not valid; use one of {RESIDENCIES}")
        self._settings = {
            "batch_size": batch_size,
            "shuffle": shuffle,
            "balance": balance,
            "augment": augment,
            "normalize": normalize,
            "device": device,
            "seed": seed,
            "rank": rank,
            "world_size": world_size,
            "drop_last": drop_last,
            "num_classes": num_classes,
            "prefetch": prefetch,
            "dtype": dtype,
            "channels_last": channels_last,
            "reconstruct": reconstruct,
        }
        self.reconstruct = reconstruct
        self.images, self.device = images, torch.device(device or "cpu")
        self.all_targets = torch.as_tensor(np.asarray(targets))
        if rows is None:
            rows = images.rows if isinstance(images, PackedImages) else np.arange(len(images))
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        targets = self.all_targets[self.rows]
        self.multi_label = targets.ndim == 2
        if self.multi_label:
            self.num_classes = num_classes or targets.shape[1]
        else:
            self.num_classes = num_classes or int(self.all_targets.max()) + 1
            if len(targets) and int(targets.min()) < 0:
                raise ValueError("rows include samples with a negative (excluded) class index")
        sampler = make_sampler(
            len(self.rows), shuffle, None if self.multi_label else targets, balance, seed, rank, world_size
        )
        super().__init__(sampler, batch_size, drop_last, seed, rank, world_size)
        self.augment: Compose = build_augmentations(augment)
        self.normalize, self.dtype, self.channels_last = normalize, dtype, channels_last
        self.prefetch, self.image_size = max(1, prefetch), image_size
        self._targets = (targets.float() if self.multi_label else targets.long()).to(self.device)
        self._pixel_digest: str | None = None
        self.residency = self._place(residency)

    def _place(self, residency: str) -> str:
        nbytes = self.images.nbytes if isinstance(self.images, PackedImages) else self.images.numel()
        if residency == "auto":
            residency = choose_residency(nbytes, self.device)
        if residency == "device":
            if isinstance(self.images, PackedImages):
                self._resident = self.images.resident(self.device)
                self._local = self.images.local_rows(self.rows).to(self.device)
            else:
                self._resident = self.images.to(self.device)
                self._local = self.rows.to(self.device)
        return residency

    def set_image_size(self, size: int | tuple[int, int]) -> None:
        """Progressive resizing: deliver ``size`` images from now on (crops adapt, others resize)."""
        self.augment.set_image_size(size)
        self.image_size = size

    def _pixels_resident(self, positions: torch.Tensor) -> torch.Tensor:
        local = self._local[host_to_device(positions, self.device)]
        return torch.index_select(self._resident, 0, local)

    def _gather_stream(self, positions: torch.Tensor) -> torch.Tensor:
        rows = self.rows[positions]
        pin = self.device.type == "cuda"
        shape = (len(rows), *self.images.shape[1:])
        out = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)
        if isinstance(self.images, PackedImages):
            return self.images.gather(rows, out=out)
        return torch.index_select(self.images, 0, rows, out=out)

    def _target_size(self) -> tuple[int, int] | None:
        if self.image_size is None:
            return None
        return size_pair(self.image_size, "image_size")

    def _finish(self, pixels: torch.Tensor, positions: torch.Tensor, epoch: int, index: int) -> Batch:
        """uint8 pixels on the device -> augmented, resized, normalised float batch and targets.

        Leading pixel moves run on the uint8 batch (a quarter of the bytes, same result); when
        nothing else remains, conversion and normalisation are one fused operation.
        """
        ctx = BatchContext(
            self._generator(epoch, index),
            self.device,
            epoch,
            self.rows[positions],
            self.seed,
            self.num_classes,
        )
        targets = self._targets[host_to_device(positions, self.device)]
        moves, rest = self.augment.split_pixel_moves()
        if len(moves):
            pixels, targets = moves(pixels, targets, ctx)
        size = self._target_size()
        if not len(rest) and size in (None, tuple(pixels.shape[2:])):
            if self.normalize is not None:
                images = self.normalize.from_uint8(pixels, self.dtype)
            else:
                images = pixels.to(self.dtype).mul_(1 / 255)
        else:
            images, targets = rest(pixels.to(self.dtype).mul_(1 / 255), targets, ctx)
            if size is not None and tuple(images.shape[2:]) != size:
                images = F.interpolate(
                    images, size=size, mode="bilinear", antialias=True, align_corners=False
                )
            if self.normalize is not None:
                images = self.normalize(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return (images, images) if self.reconstruct else (images, targets)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch`` from batch ``start`` on (see the module docstring)."""
        if self.residency == "device":
            for index, positions in self._slices(epoch, start):
                yield self._finish(self._pixels_resident(positions), positions, epoch, index)
            return
        yield from self._iter_stream(epoch, start)

    def _iter_stream(self, epoch: int, start: int) -> Iterator[Batch]:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epochal-prefetch")
        pending: deque = deque()
        slices = self._slices(epoch, start)
        try:
            for index, positions in slices:
                pending.append((index, positions, pool.submit(self._gather_stream, positions)))
                if len(pending) <= self.prefetch:
                    continue
                yield self._stream_batch(epoch, *pending.popleft())
            while pending:
                yield self._stream_batch(epoch, *pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _stream_batch(self, epoch: int, index: int, positions: torch.Tensor, future) -> Batch:
        pixels = future.result().to(self.device, non_blocking=True)
        return self._finish(pixels, positions, epoch, index)

    @property
    def targets(self) -> torch.Tensor:
        """Targets of this loader's rows, in row order, on ``device``."""
        return self._targets

    @property
    def augmented(self) -> bool:
        """Whether batches are augmented (random), so that one sample gives other inputs each epoch."""
        return len(self.augment) > 0

    def fingerprint(self) -> str:
        """A hash of everything a delivered input depends on: the images (the cache's source
        fingerprint, or the pixels of a tensor), the rows, size, normalisation, augmentation and seed."""
        if isinstance(self.images, PackedImages):
            source = self.images.manifest["fingerprint"]
        else:  # the pixels' bytes, hashed once per loader (a device-resident tensor is copied for it)
            if self._pixel_digest is None:
                self._pixel_digest = content_digest(self.images)
            source = self._pixel_digest
        norm = None if self.normalize is None else self.normalize.to_spec()
        settings = [self.image_size, norm, str(self.dtype), self.augment.to_spec(), self.seed]
        return content_digest(source, self.rows, settings)

    def output_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of delivered images, found by running the pipeline on two blank images."""
        channels, height, width = self.images.shape[1:]
        probe = torch.zeros(2, channels, height, width, dtype=torch.uint8, device=self.device)
        positions = torch.zeros(2, dtype=torch.long)
        images, _ = self._finish(probe, positions, 0, 0)
        return tuple(images.shape[1:])

    def sample_images(self, count: int, seed: int | None = None) -> torch.Tensor:
        """``count`` of this loader's images, normalised as batches are but not augmented.

        A seeded random choice of rows (in row order), for data-dependent initialisation such
        as airbench's whitening layer; all of them when there are fewer.

        Args:
            count: how many images.
            seed: seed of the choice (default: the loader's).
        """
        if count < 1:
            raise ValueError(f"count={count} must be >= 1")
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        pick = torch.randperm(len(self.rows), generator=generator)[:count].sort().values
        plain = self.with_rows(self.rows[pick], augment=None, shuffle=False, balance=None,
                               batch_size=len(pick), drop_last=False, rank=0, world_size=1)
        images, _ = next(plain.iter_epoch(0))
        return images

    def with_rows(self, rows: Sequence[int], row_targets=None, **changes) -> ImageLoader:
        """A loader like this one over other image ``rows``.

        Args:
            rows: image rows to draw from.
            row_targets: new targets for those rows (aligned with ``rows``), e.g. relabelled
                neutral samples; other rows keep theirs.
            **changes: settings to change (``batch_size``, ``shuffle``, ``augment``, ...).
        """
        settings = {
            **self._settings,
            "augment": self.augment,
            "residency": self.residency,
            "image_size": self.image_size,
            **changes,
        }
        targets = self.all_targets.clone()
        if row_targets is not None:
            row_targets = torch.as_tensor(np.asarray(row_targets)).to(targets.dtype)
            if len(row_targets) != len(rows):
                raise ValueError(f"row_targets has {len(row_targets)} entries for {len(rows)} rows")
            targets[torch.as_tensor(np.asarray(rows), dtype=torch.long)] = row_targets
        return ImageLoader(self.images, targets, rows=rows, **settings)


class TensorLoader(_IndexedLoader):
    """In-memory tensors moved once to ``device`` and served in seeded, epoch-addressable batches.

    Args:
        inputs: a tensor, or a tuple of tensors sharing the first dimension (tabular:
            categorical indices, continuous values).
        targets: a tensor with the same first dimension.
        batch_size: samples per batch (per rank).
        shuffle: a new seeded order per epoch; False gives the exact sequential order.
        balance: class balancing of the training order (see :class:`~epochal.data.samplers.BalancedSampler`).
        device: where the tensors (and so the batches) live.
        seed: as for :class:`ImageLoader`.
        rank: as for ``seed``.
        world_size: as for ``seed``.
        drop_last: as for ``seed``.
        transform: optional ``f(inputs, targets, generator) -> (inputs, targets)`` per batch.
    """

    def __init__(
        self,
        inputs,
        targets: torch.Tensor,
        batch_size: int = 256,
        shuffle: bool = True,
        balance: str | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        transform=None,
    ):
        self.device = torch.device(device or "cpu")
        self.tuple_inputs = isinstance(inputs, (tuple, list))
        parts = tuple(inputs) if self.tuple_inputs else (inputs,)
        if any(len(p) != len(targets) for p in parts):
            raise ValueError(
                f"inputs and targets need the same length; got {[len(p) for p in parts]} and {len(targets)}"
            )
        self.inputs = tuple(p.to(self.device) for p in parts)
        self.targets = targets.to(self.device)
        sampler = make_sampler(
            len(targets), shuffle, targets.cpu() if balance else None, balance, seed, rank, world_size
        )
        super().__init__(sampler, batch_size, drop_last, seed, rank, world_size)
        self.transform = transform
        self._fingerprint: str | None = None

    @property
    def augmented(self) -> bool:
        """Whether a per-batch ``transform`` changes the inputs (treated as random augmentation)."""
        return self.transform is not None

    def fingerprint(self) -> str:
        """A hash of the inputs (their bytes, computed once) and the transform's seed."""
        if self._fingerprint is None:
            self._fingerprint = content_digest(*self.inputs)
        return content_digest(self._fingerprint, [repr(self.transform), self.seed])

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for index, positions in self._slices(epoch, start):
            positions = host_to_device(positions, self.device)
            parts = tuple(p[positions] for p in self.inputs)
            inputs = parts if self.tuple_inputs else parts[0]
            targets = self.targets[positions]
            if self.transform is not None:
                inputs, targets = self.transform(inputs, targets, self._generator(epoch, index))
            yield inputs, targets
