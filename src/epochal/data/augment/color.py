"""Batched photometric augmentations and erasing, on float images in ``[0, 1]``.

- PCA lighting noise: Krizhevsky, Sutskever and Hinton, *ImageNet Classification with Deep
  Convolutional Neural Networks*, 2012 (section 4.1); the ImageNet eigenvalues and eigenvectors
  below are those of fb.resnet.torch, for pixel values in ``[0, 1]``.
- Cutout: DeVries and Taylor, *Improved Regularization of Convolutional Neural Networks with
  Cutout*, 2017.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from epochal.data.augment.base import ImageAugmentation, register_augmentation
from epochal.utils import device_constant, host_to_device

__all__ = ["IMAGENET_EIGVAL", "IMAGENET_EIGVEC", "ColorJitter", "Cutout", "Lighting", "lighting_offset"]

#: Eigenvalues of the ImageNet RGB covariance (pixel values in [0, 1]).
IMAGENET_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
#: Matching eigenvectors, one per column; rows are R, G, B.
IMAGENET_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# ITU-R BT.601 luma weights, as torchvision's grayscale.
_LUMA = (0.299, 0.587, 0.114)


def lighting_offset(alpha: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor) -> torch.Tensor:
    """Per-image RGB offsets ``eigvec @ (alpha * eigval)`` for ``alpha`` of shape ``(N, 3)``."""
    return (alpha * eigval) @ eigvec.T


@register_augmentation
@dataclass
class Lighting(ImageAugmentation):
    """AlexNet PCA lighting: add ``eigvec @ (alpha * eigval)``, ``alpha ~ N(0, alphastd)`` per image.

    No clamping, as in AlexNet: the offset is exactly the computed one.
    """

    alphastd: float = 0.1
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC
    name = "lighting"

    def __post_init__(self):
        if self.alphastd < 0:
            raise ValueError(f"lighting: alphastd={self.alphastd} must be >= 0")
        self.eigval, self.eigvec = tuple(self.eigval), tuple(tuple(r) for r in self.eigvec)

    def apply(self, images, ctx):
        alpha = ctx.normal(len(images), 3) * self.alphastd
        eigval = device_constant(self.eigval, images.dtype, images.device)
        eigvec = device_constant(self.eigvec, images.dtype, images.device)
        offset = lighting_offset(alpha.to(images.dtype), eigval, eigvec)
        return images + offset[:, :, None, None]


def _luma(images: torch.Tensor) -> torch.Tensor:
    weights = device_constant(_LUMA, images.dtype, images.device)
    return torch.einsum("nchw,c->nhw", images, weights)[:, None]


def _hue_matrices(turns: torch.Tensor) -> torch.Tensor:
    """Per-sample 3x3 RGB matrices rotating hue by ``turns`` (fractions of a circle) in YIQ."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=turns.dtype,
        device=turns.device,
    )
    from_yiq = torch.linalg.inv(to_yiq)
    angle = turns * 2 * torch.pi
    rotation = torch.zeros(len(turns), 3, 3, dtype=turns.dtype, device=turns.device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rotation[:, 2, 1], rotation[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    return from_yiq @ rotation @ to_yiq


@register_augmentation
@dataclass
class ColorJitter(ImageAugmentation):
    """Random brightness, contrast, saturation and hue, per image, in that fixed order.

    Args:
        brightness: factor drawn from ``[1 - b, 1 + b]`` multiplying the pixels.
        contrast: factor from ``[1 - c, 1 + c]`` blending with the image's mean gray.
        saturation: factor from ``[1 - s, 1 + s]`` blending with the pixel's gray.
        hue: shift drawn from ``[-hue, hue]`` turns (at most 0.5), a rotation in YIQ space.
        p: probability per image (otherwise unchanged).
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0
    p: float = 1.0
    name = "color_jitter"

    def __post_init__(self):
        for field_name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, field_name) <= 1:
                raise ValueError(f"color_jitter: {field_name}={getattr(self, field_name)} must be in [0, 1]")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"color_jitter: hue={self.hue} must be in [0, 0.5]")

    def apply(self, images, ctx):
        n = len(images)
        dtype = images.dtype
        b = ctx.uniform(n, 1 - self.brightness, 1 + self.brightness).to(dtype)
        c = ctx.uniform(n, 1 - self.contrast, 1 + self.contrast).to(dtype)
        s = ctx.uniform(n, 1 - self.saturation, 1 + self.saturation).to(dtype)
        # Hue angles stay on the CPU: the 3x3 matrices are built there and moved once.
        h = -self.hue + 2 * self.hue * torch.rand(n, generator=ctx.generator)
        active_cpu = torch.rand(n, generator=ctx.generator) < self.p
        active = host_to_device(active_cpu, ctx.device)
        one = torch.ones_like(b)
        b, c, s = (torch.where(active, v, one) for v in (b, c, s))
        h = torch.where(active_cpu, h, torch.zeros_like(h))
        out = (images * b[:, None, None, None]).clamp_(0, 1)
        mean = _luma(out).mean(dim=(2, 3), keepdim=True)
        out = ((out - mean) * c[:, None, None, None] + mean).clamp_(0, 1)
        gray = _luma(out)
        out = ((out - gray) * s[:, None, None, None] + gray).clamp_(0, 1)
        if self.hue > 0:
            matrices = host_to_device(_hue_matrices(h.double()).to(dtype), images.device)
            out = torch.einsum("nij,njhw->nihw", matrices, out).clamp_(0, 1)
        return out


@register_augmentation
@dataclass
class Cutout(ImageAugmentation):
    """Fill one ``size x size`` square per image, centred anywhere (it may be clipped by the border).

    Args:
        size: side of the square in pixels.
        p: probability per image.
        fill: value written (0.5 is mid-gray, near the data mean after normalisation).
    """

    size: int = 8
    p: float = 1.0
    fill: float = 0.5
    name = "cutout"

    def __post_init__(self):
        if self.size < 0:
            raise ValueError(f"cutout: size={self.size} must be >= 0")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"cutout: p={self.p} is not a probability in [0, 1]")

    def apply(self, images, ctx):
        n, _, height, width = images.shape
        top = ctx.randint(n, 0, height) - self.size // 2
        left = ctx.randint(n, 0, width) - self.size // 2
        active = ctx.rand(n) < self.p
        ys = torch.arange(height, device=images.device)
        xs = torch.arange(width, device=images.device)
        inside_y = (ys[None] >= top[:, None]) & (ys[None] < top[:, None] + self.size)
        inside_x = (xs[None] >= left[:, None]) & (xs[None] < left[:, None] + self.size)
        mask = inside_y[:, :, None] & inside_x[:, None, :] & active[:, None, None]
        return torch.where(mask[:, None], torch.full_like(images[:1, :1, :1, :1], self.fill), images)
