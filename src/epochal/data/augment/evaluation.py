"""Evaluation-time transforms: normalisation, resize + centre crop, and test-time augmentation views.

TTA with flipped and translated views follows airbench (Jordan, 2024): averaging the logits of
an image, its mirror and one-pixel shifts of both buys accuracy at a fixed, known cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from epochal.data.augment.compose import Compose
from epochal.data.augment.geometric import Resize
from epochal.data.augment.remap import CenterCrop, shift_images
from epochal.utils import device_constant

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalize", "eval_transform", "predict_tta", "tta_views"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Normalize:
    """``(x - mean) / std`` per channel, folded into one multiply-add on the batch's device.

    Args:
        mean: per-channel mean of ``[0, 1]`` pixels.
        std: per-channel standard deviation (all > 0).
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean={tuple(mean)} and std={tuple(std)} need equal lengths and std > 0")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def _constants(
        self, dtype: torch.dtype, device: torch.device, unit: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale = device_constant(tuple(1 / (s * unit) for s in self.std), dtype, device)
        shift = device_constant(tuple(-m / s for m, s in zip(self.mean, self.std)), dtype, device)
        return scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        scale, shift = self._constants(images.dtype, images.device, 1.0)
        return torch.addcmul(shift, images, scale)

    def from_uint8(self, pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Normalise uint8 pixels (0..255) straight to ``dtype`` in one fused pass."""
        scale, shift = self._constants(dtype, pixels.device, 255.0)
        return torch.addcmul(shift, pixels, scale)

    def inverse(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation (for showing batches)."""
        scale, shift = self._constants(images.dtype, images.device, 1.0)
        return (images - shift) / scale

    def to_spec(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


def eval_transform(size: int | tuple[int, int] | None = None, crop_pct: float = 1.0) -> Compose:
    """Validation transform: resize the shorter side to ``size / crop_pct``, centre crop ``size``.

    Args:
        size: output side (or ``(h, w)``); None leaves images as stored.
        crop_pct: fraction of the resized image kept (0.875 is the usual ImageNet value).
    """
    if size is None:
        return Compose([])
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct={crop_pct} must be in (0, 1]")
    side = size if isinstance(size, int) else min(size)
    steps = []
    if crop_pct < 1:
        steps.append(Resize(round(side / crop_pct), shorter_side=True))
    else:
        steps.append(Resize(side, shorter_side=True))
    steps.append(CenterCrop(size))
    return Compose(steps)


def tta_views(images: torch.Tensor, flip: bool = True, translate: int = 0) -> list[torch.Tensor]:
    """Deterministic test-time views of a (normalised) batch.

    Args:
        images: ``(N, C, H, W)``.
        flip: add the mirrored view.
        translate: when > 0, add views shifted by ``(+t, +t)`` and ``(-t, -t)`` (reflect padding),
            of the mirrored image as well when ``flip``.

    Returns:
        The views, the unchanged batch first.
    """
    views = [images]
    if flip:
        views.append(images.flip(3))
    if translate > 0:
        n = len(images)
        base = list(views)  # the image (and its mirror): never a shifted view, which would shift twice
        for sign in (1, -1):
            shift = torch.full((n,), sign * translate, dtype=torch.long)
            views.extend(shift_images(v, shift, shift, "reflect") for v in base)
    return views


def predict_tta(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    flip: bool = True,
    translate: int = 0,
    translate_weight: float | None = None,
) -> torch.Tensor:
    """Average of the model's outputs over :func:`tta_views` (pass logits; average before softmax).

    Args:
        model: called on each view.
        images: the (normalised) batch.
        flip: add the mirrored view.
        translate: add views shifted by ``+-translate`` pixels (see :func:`tta_views`).
        translate_weight: the share of the shifted views in the average, the unshifted ones
            sharing the rest; None weighs every view alike. airbench uses 0.5: the image and its
            mirror count 1/4 each, the four shifted views 1/8 each.

    Returns:
        The averaged outputs, in float32 (or the outputs' dtype when wider).
    """
    views = tta_views(images, flip=flip, translate=translate)
    if translate_weight is None or translate <= 0:
        weights = [1 / len(views)] * len(views)
    elif not 0.0 <= translate_weight <= 1.0:
        raise ValueError(f"translate_weight={translate_weight} must be in [0, 1]")
    else:
        plain = 2 if flip else 1
        shifted = len(views) - plain
        weights = [(1 - translate_weight) / plain] * plain + [translate_weight / shifted] * shifted
    # each output is weighed as it comes (in float32 at least, so bf16 outputs lose nothing in the
    # sum): a model compiled with CUDA graphs reuses its output buffer on the next call
    total = None
    for view, weight in zip(views, weights, strict=True):
        out = model(view)
        term = out.to(torch.promote_types(out.dtype, torch.float32)) * weight
        total = term if total is None else total + term
    return total
