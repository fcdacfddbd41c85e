"""Batched, pure augmentations on float image batches, usable on the CPU and the GPU alike."""

from epochal.data.augment.base import (
    AUGMENTATIONS,
    Augmentation,
    BatchContext,
    ImageAugmentation,
    parse_augmentation,
    register_augmentation,
)
from epochal.data.augment.color import IMAGENET_EIGVAL, IMAGENET_EIGVEC, ColorJitter, Cutout, Lighting
from epochal.data.augment.compose import Compose, build_augmentations
from epochal.data.augment.evaluation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    eval_transform,
    predict_tta,
    tta_views,
)
from epochal.data.augment.geometric import RandomResizedCrop, Resize, RotateScale
from epochal.data.augment.mix import CutMix, MixUp, soft_targets
from epochal.data.augment.remap import (
    AlternatingFlip,
    CenterCrop,
    Flip,
    RemapAugmentation,
    Translate,
    remap,
    shift_images,
)

__all__ = [
    "AUGMENTATIONS",
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AlternatingFlip",
    "Augmentation",
    "BatchContext",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "CutMix",
    "Cutout",
    "Flip",
    "ImageAugmentation",
    "Lighting",
    "MixUp",
    "Normalize",
    "RandomResizedCrop",
    "RemapAugmentation",
    "Resize",
    "RotateScale",
    "Translate",
    "build_augmentations",
    "eval_transform",
    "parse_augmentation",
    "predict_tta",
    "register_augmentation",
    "remap",
    "shift_images",
    "soft_targets",
    "tta_views",
]
