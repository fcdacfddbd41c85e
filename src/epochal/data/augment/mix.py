"""Mixing augmentations that return soft targets.

- MixUp: Zhang et al., *mixup: Beyond Empirical Risk Minimization*, 2018.
- CutMix: Yun et al., *CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features*, 2019.

Both draw one mixing weight per batch (as the papers do) and pair each sample with another from
a seeded permutation of the batch. Targets always come out as float ``(N, K)`` rows, also on
batches where the mix is skipped (``p < 1``), so the loss sees one target type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from epochal.data.augment.base import Augmentation, BatchContext, register_augmentation
from epochal.utils import host_to_device

__all__ = ["CutMix", "MixUp", "soft_targets"]


def soft_targets(targets: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Class indices -> one-hot float rows; float targets are returned as they are."""
    if targets.is_floating_point():
        return targets
    if num_classes is None:
        raise ValueError(
            "mixing class-index targets needs num_classes (set it on the augmentation or loader)"
        )
    return F.one_hot(targets.long(), num_classes).float()


def _beta(generator: torch.Generator, alpha: float) -> float:
    """One Beta(alpha, alpha) draw, reproducible from the torch generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


@dataclass
class _Mix(Augmentation):
    alpha: float = 1.0
    p: float = 1.0
    num_classes: int | None = None

    def __post_init__(self):
        if self.alpha <= 0:
            raise ValueError(f"{self.name}: alpha={self.alpha} must be > 0")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self.name}: p={self.p} is not a probability in [0, 1]")

    def _draw(self, n: int, ctx: BatchContext) -> tuple[bool, float, torch.Tensor]:
        apply = bool(torch.rand(1, generator=ctx.generator) < self.p)
        lam = _beta(ctx.generator, self.alpha)
        perm = host_to_device(torch.randperm(n, generator=ctx.generator), ctx.device)
        return apply, lam, perm


@register_augmentation
@dataclass
class MixUp(_Mix):
    """Blend each image and its target with another sample's: ``lam * a + (1 - lam) * b``.

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)``; 0.2 to 0.4 is usual on ImageNet.
        p: probability per batch.
        num_classes: classes for one-hot targets (default: the loader's).
    """

    alpha: float = 0.2
    name = "mixup"

    def __call__(self, images, targets, ctx):
        soft = soft_targets(targets, self.num_classes or ctx.num_classes)
        apply, lam, perm = self._draw(len(images), ctx)
        if not apply:
            return images, soft
        return images * lam + images[perm] * (1 - lam), soft * lam + soft[perm] * (1 - lam)


def cutmix_box(lam: float, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A box ``(top, bottom, left, right)`` of area about ``(1 - lam)`` centred at a random pixel."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, (1,), generator=generator))
    cx = int(torch.randint(0, width, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


@register_augmentation
@dataclass
class CutMix(_Mix):
    """Paste a box from another sample; targets mix by the pasted area.

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)``; 1.0 in the paper.
        p: probability per batch.
        num_classes: classes for one-hot targets (default: the loader's).
    """

    alpha: float = 1.0
    name = "cutmix"

    def __call__(self, images, targets, ctx):
        soft = soft_targets(targets, self.num_classes or ctx.num_classes)
        apply, lam, perm = self._draw(len(images), ctx)
        height, width = images.shape[2:]
        top, bottom, left, right = cutmix_box(lam, height, width, ctx.generator)
        if not apply or bottom <= top or right <= left:
            return images, soft
        out = images.clone()
        out[:, :, top:bottom, left:right] = images[perm][:, :, top:bottom, left:right]
        kept = 1.0 - (bottom - top) * (right - left) / (height * width)
        return out, soft * kept + soft[perm] * (1 - kept)
