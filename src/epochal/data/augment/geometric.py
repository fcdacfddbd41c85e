"""Batched geometric augmentations that resample: resized crops, rotation and scale, resizing.

- Random-resized ("inception") crop: Szegedy et al., *Going Deeper with Convolutions*, 2015, with
  torchvision's box rule (centred fallback included); done for the whole batch at once with
  per-sample affine grids (``affine_grid``/``grid_sample``).

Augmentations that only move pixels (flips, translations, centre crops) live in
:mod:`~epochal.data.augment.remap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from epochal.data.augment.base import ImageAugmentation, register_augmentation
from epochal.data.augment.remap import _check_probability
from epochal.utils import host_to_device, size_pair

__all__ = ["RandomResizedCrop", "Resize", "RotateScale", "crop_resize"]

_GRID_PADDING = ("zeros", "border", "reflection")


def _crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    tries: int = 10,
) -> torch.Tensor:
    """Per-sample crop boxes ``(x0, y0, w, h)`` in pixels: torchvision's ``get_params``, in a batch.

    Ten candidate boxes per sample; the first that fits wins and is placed uniformly at random.
    When none fits (likely for images far from the allowed aspect ratios), the fallback is
    torchvision's: the largest box at the closest allowed aspect ratio (the whole image when its
    own ratio is allowed), centred at ``((width - w) // 2, (height - h) // 2)``.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=generator))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, tries, generator=generator))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w <= width) & (h <= height) & (w > 0) & (h > 0)
    first = torch.argmax(fits.int(), dim=1)
    pick = torch.arange(n)
    w, h, found = w[pick, first], h[pick, first], fits.any(dim=1)
    corner = torch.rand(n, 2, generator=generator)
    x0 = torch.floor(corner[:, 0] * (width - w + 1))
    y0 = torch.floor(corner[:, 1] * (height - h + 1))
    fallback = torch.tensor(_fallback_box(height, width, ratio), dtype=w.dtype)
    box = torch.stack([x0, y0, w, h], dim=1)
    return torch.where(found.unsqueeze(1), box, fallback)


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's central crop ``(x0, y0, w, h)`` for when no random box fits."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def crop_resize(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    padding_mode: str = "reflection",
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resample each image's box ``(x0, y0, w, h)`` (pixels) to ``size`` with one ``grid_sample``."""
    n, c, height, width = images.shape
    x0, y0, w, h = boxes.double().unbind(1)
    # The (n, 2, 3) matrices are built where the boxes are (the CPU) and moved in one copy.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=boxes.device)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    theta = host_to_device(theta.to(images.dtype), images.device)
    grid = F.affine_grid(theta, [n, c, *size], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


@register_augmentation
@dataclass
class RandomResizedCrop(ImageAugmentation):
    """Inception-style crop: a random area fraction and aspect ratio, resized to ``size``.

    Args:
        size: output side or ``(height, width)``; changed by progressive resizing.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.

    Boxes follow torchvision's ``RandomResizedCrop.get_params``: ten tries, the first box that
    fits placed at random, else a centred box at the closest allowed aspect ratio. Bilinear
    resampling without antialiasing: pack images near the training size so the down-scaling
    factor stays small.

    Examples:
        >>> crop = RandomResizedCrop(size=160, scale=(0.35, 1.0))
    """

    size: int | tuple[int, int] = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    name = "random_resized_crop"

    def __post_init__(self):
        self.size = size_pair(self.size)
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"random_resized_crop: scale={self.scale} must satisfy 0 < low <= high <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"random_resized_crop: ratio={self.ratio} must satisfy 0 < low <= high")
        self.scale, self.ratio = tuple(self.scale), tuple(self.ratio)

    def set_image_size(self, size) -> bool:
        self.size = size_pair(size)
        return True

    def apply(self, images, ctx):
        n, _, height, width = images.shape
        boxes = _crop_boxes(n, height, width, self.scale, self.ratio, ctx.generator)
        return crop_resize(images, boxes, self.size)


@register_augmentation
@dataclass
class RotateScale(ImageAugmentation):
    """Random rotation (uniform in ``±degrees``) and zoom (uniform in ``scale``) about the centre.

    Args:
        degrees: largest rotation angle.
        scale: zoom range; above 1 zooms in.
        p: probability per image (otherwise the identity).
        padding: fill outside the image: ``zeros``, ``border`` or ``reflection``.
    """

    degrees: float = 10.0
    scale: tuple[float, float] = (1.0, 1.0)
    p: float = 1.0
    padding: str = "reflection"
    name = "rotate_scale"

    def __post_init__(self):
        _check_probability(self.p, self.name)
        if self.padding not in _GRID_PADDING:
            raise ValueError(
                f"rotate_scale: padding={self.padding!r} is not valid; use one of {_GRID_PADDING}"
            )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"rotate_scale: scale={self.scale} must satisfy 0 < low <= high")
        self.scale = tuple(self.scale)

    def apply(self, images, ctx):
        n, c, height, width = images.shape
        angle = ctx.uniform(n, -self.degrees, self.degrees) * (math.pi / 180)
        zoom = ctx.uniform(n, self.scale[0], self.scale[1])
        active = ctx.rand(n) < self.p
        angle = torch.where(active, angle, torch.zeros_like(angle))
        zoom = torch.where(active, zoom, torch.ones_like(zoom))
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
        # Rotation in pixel units, expressed in normalised coordinates (non-square images).
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
        theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
        grid = F.affine_grid(theta, [n, c, height, width], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)


@register_augmentation
@dataclass
class Resize(ImageAugmentation):
    """Resize the batch (antialiased bilinear): to ``size`` (h, w), or the shorter side to an int.

    Args:
        size: ``(height, width)``, or an int.
        shorter_side: with an int ``size``, scale the shorter side to it and keep the aspect
            ratio; otherwise produce ``size x size``.
    """

    size: int | tuple[int, int] = 224
    shorter_side: bool = False
    name = "resize"

    def set_image_size(self, size) -> bool:
        self.size = size
        return True

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an input of (height, width) is resized to."""
        if isinstance(self.size, int) and self.shorter_side:
            scale = self.size / min(height, width)
            return max(1, round(height * scale)), max(1, round(width * scale))
        return size_pair(self.size)

    def apply(self, images, ctx):
        size = self.output_size(*images.shape[2:])
        if tuple(images.shape[2:]) == size:
            return images
        return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
