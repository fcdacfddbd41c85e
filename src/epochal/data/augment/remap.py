"""Pixel-moving augmentations as separable index maps: fused into one gather, run on uint8.

Flips, translations and crops only move pixels. Each is described by per-sample source row and
column indices (``-1`` where the output is filled), drawn on the CPU; consecutive ones compose
by indexing one map with the next, and a single ``gather`` then applies them all. Because no
value is computed, the loaders run these on the uint8 batch before converting it to float,
which moves a quarter of the bytes, and the result is bit-identical to applying them one by one.

- Random translation by padding and cropping: the standard CIFAR recipe since ResNet (He et al.,
  *Deep Residual Learning for Image Recognition*, 2016).
- Alternating flip: Keller Jordan, *94% on CIFAR-10 in 3.29 Seconds on a Single GPU* (airbench),
  2024: each image is flipped in every other epoch instead of at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from epochal.data.augment.base import BatchContext, ImageAugmentation, register_augmentation
from epochal.utils import host_to_device, size_pair

__all__ = [
    "PAD_MODES",
    "AlternatingFlip",
    "CenterCrop",
    "Flip",
    "RemapAugmentation",
    "Translate",
    "compose_maps",
    "remap",
    "shift_images",
    "shift_maps",
]

#: Border handling of translations: mirror without repeating the edge, repeat the edge, or zero.
PAD_MODES: tuple[str, ...] = ("reflect", "replicate", "zeros")

Maps = tuple[torch.Tensor, torch.Tensor]


def _check_probability(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p={p} is not a probability in [0, 1]")


def remap(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, fill: float = 0) -> torch.Tensor:
    """``out[n, c, y, x] = images[n, c, rows[n, y], cols[n, x]]``; index -1 gives ``fill``.

    Args:
        images: ``(N, C, H, W)`` of any dtype, on any device.
        rows: ``(N, H')`` CPU int64 source rows.
        cols: ``(N, W')`` CPU int64 source columns.
        fill: value where an index is -1.
    """
    n, c, _, width = images.shape
    out_h, out_w = rows.shape[1], cols.shape[1]
    holes = bool((rows < 0).any() or (cols < 0).any())  # CPU maps: no device sync
    # Only the (N, H') and (N, W') maps travel; the (N, H'*W') flat index is built where the
    # images are (at 224 px it is 100 MB per batch of 256: too much to build on the host).
    rows, cols = host_to_device(rows, images.device), host_to_device(cols, images.device)
    index = (rows.clamp(min=0)[:, :, None] * width + cols.clamp(min=0)[:, None, :]).flatten(1)
    out = images.flatten(2).gather(2, index[:, None, :].expand(n, c, -1)).view(n, c, out_h, out_w)
    if holes:
        valid = (rows >= 0)[:, :, None] & (cols >= 0)[:, None, :]
        out = torch.where(valid[:, None], out, torch.full_like(out[:1, :1, :1, :1], fill))
    return out


def _take(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    picked = first.gather(1, second.clamp(min=0))
    return torch.where(second >= 0, picked, torch.full_like(picked, -1))


def compose_maps(first: Maps, second: Maps) -> Maps:
    """The maps of applying ``first`` and then ``second``."""
    return _take(first[0], second[0]), _take(first[1], second[1])


def _identity(n: int, size: int) -> torch.Tensor:
    return torch.arange(size).expand(n, size)


def _border(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Bring out-of-range indices back according to ``mode`` (-1 for zeros)."""
    if mode == "replicate":
        return index.clamp(0, size - 1)
    if mode == "zeros":
        return torch.where((index >= 0) & (index < size), index, torch.full_like(index, -1))
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    folded = index.abs() % period
    return torch.where(folded >= size, period - folded, folded)


def shift_maps(
    n: int, height: int, width: int, dy: torch.Tensor, dx: torch.Tensor, mode: str = "reflect"
) -> Maps:
    """Maps translating image ``i`` so that output ``(y, x)`` shows input ``(y + dy[i], x + dx[i])``."""
    if mode not in PAD_MODES:
        raise ValueError(f"mode={mode!r} is not valid; use one of {PAD_MODES}")
    rows = _border(_identity(n, height) + dy.cpu()[:, None], height, mode)
    cols = _border(_identity(n, width) + dx.cpu()[:, None], width, mode)
    return rows, cols


def shift_images(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, mode: str = "reflect"
) -> torch.Tensor:
    """Translate each image by its own ``(dy, dx)`` pixels (see :func:`shift_maps`)."""
    n, _, height, width = images.shape
    return remap(images, *shift_maps(n, height, width, dy, dx, mode))


class RemapAugmentation(ImageAugmentation):
    """An augmentation that only moves pixels; implement :meth:`index_maps`."""

    def index_maps(self, n: int, height: int, width: int, ctx: BatchContext) -> Maps:
        """Source ``(rows (n, H'), cols (n, W'))`` on the CPU, drawing parameters from ``ctx``."""
        raise NotImplementedError

    def apply(self, images, ctx):
        n, _, height, width = images.shape
        return remap(images, *self.index_maps(n, height, width, ctx))


def _flip_cols(mask: torch.Tensor, n: int, width: int) -> torch.Tensor:
    cols = _identity(n, width)
    return torch.where(mask[:, None], width - 1 - cols, cols)


@register_augmentation
@dataclass
class Flip(RemapAugmentation):
    """Horizontal flip of each image with probability ``p``."""

    p: float = 0.5
    name = "flip"

    def __post_init__(self):
        _check_probability(self.p, self.name)

    def index_maps(self, n, height, width, ctx):
        mask = torch.rand(n, generator=ctx.generator) < self.p
        return _identity(n, height), _flip_cols(mask, n, width)


def _mix_hash(values: torch.Tensor) -> torch.Tensor:
    """A cheap 32-bit integer hash (no overflow in int64)."""
    values = values & 0xFFFFFFFF
    values = (((values >> 16) ^ values) * 0x45D9F3B) & 0xFFFFFFFF
    values = (((values >> 16) ^ values) * 0x45D9F3B) & 0xFFFFFFFF
    return (values >> 16) ^ values


@register_augmentation
@dataclass
class AlternatingFlip(RemapAugmentation):
    """airbench's flip: image ``i`` is flipped in epoch ``e`` iff ``bit(seed, i) xor (e % 2)``.

    Needs the batch's data set indices (the loaders provide them in ``ctx.indices``).
    """

    name = "alternating_flip"

    def index_maps(self, n, height, width, ctx):
        if ctx.indices is None:
            raise ValueError("alternating_flip needs the data set indices of the batch (ctx.indices)")
        salt = (ctx.seed * 0x9E3779B1) & 0xFFFFFFFF
        base = _mix_hash(ctx.indices.cpu().to(torch.int64) * 2 + 1 + salt) & 1
        return _identity(n, height), _flip_cols((base ^ (ctx.epoch % 2)).bool(), n, width)


@register_augmentation
@dataclass
class Translate(RemapAugmentation):
    """Random translation by up to ``pad`` pixels per axis (the pad-and-random-crop recipe).

    Args:
        pad: largest shift in pixels (CIFAR recipes use 2 to 4).
        mode: border fill: ``reflect`` (mirror), ``replicate`` (edge) or ``zeros``.
    """

    pad: int = 4
    mode: str = "reflect"
    name = "translate"

    def __post_init__(self):
        if self.pad < 0:
            raise ValueError(f"translate: pad={self.pad} must be >= 0")
        if self.mode not in PAD_MODES:
            raise ValueError(f"translate: mode={self.mode!r} is not valid; use one of {PAD_MODES}")

    def index_maps(self, n, height, width, ctx):
        dy = torch.randint(-self.pad, self.pad + 1, (n,), generator=ctx.generator)
        dx = torch.randint(-self.pad, self.pad + 1, (n,), generator=ctx.generator)
        return shift_maps(n, height, width, dy, dx, self.mode)


@register_augmentation
@dataclass
class CenterCrop(RemapAugmentation):
    """Crop the centre ``size`` of every image (zero-padded where the image is smaller)."""

    size: int | tuple[int, int] = 224
    name = "center_crop"

    def __post_init__(self):
        self.size = size_pair(self.size)

    def set_image_size(self, size) -> bool:
        self.size = size_pair(size)
        return True

    def index_maps(self, n, height, width, ctx):
        out_h, out_w = self.size
        rows = _identity(n, out_h) + (height - out_h) // 2
        cols = _identity(n, out_w) + (width - out_w) // 2
        return _border(rows, height, "zeros"), _border(cols, width, "zeros")
