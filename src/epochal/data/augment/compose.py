"""Composition of augmentations, with pixel moves fused into one gather.

A run of consecutive pixel-moving augmentations (:class:`~epochal.data.augment.remap.RemapAugmentation`)
is applied as one composed index map, and the leading run can be split off so that loaders apply
it to the uint8 batch before converting to float.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from epochal.data.augment.base import Augmentation, BatchContext, parse_augmentation
from epochal.data.augment.remap import RemapAugmentation, compose_maps, remap

__all__ = ["Compose", "build_augmentations"]


class Compose(Augmentation):
    """Augmentations applied in order, each drawing from the same generator.

    Args:
        augmentations: augmentations or their specs.

    Examples:
        >>> pipeline = Compose(["flip", "translate(pad=2)"])
        >>> [a.name for a in pipeline]
        ['flip', 'translate']
    """

    name = "compose"

    def __init__(self, augmentations: Sequence[str | dict | Augmentation] = ()):
        self.augmentations = [parse_augmentation(a) for a in augmentations]

    def __iter__(self) -> Iterator[Augmentation]:
        return iter(self.augmentations)

    def __len__(self) -> int:
        return len(self.augmentations)

    def __call__(self, images, targets, ctx: BatchContext):
        maps = None
        for augmentation in self.augmentations:
            if isinstance(augmentation, RemapAugmentation):
                height, width = images.shape[2:] if maps is None else (maps[0].shape[1], maps[1].shape[1])
                step = augmentation.index_maps(len(images), height, width, ctx)
                maps = step if maps is None else compose_maps(maps, step)
                continue
            if maps is not None:
                images, maps = remap(images, *maps), None
            images, targets = augmentation(images, targets, ctx)
        if maps is not None:
            images = remap(images, *maps)
        return images, targets

    def split_pixel_moves(self) -> tuple[Compose, Compose]:
        """(the leading pixel-moving augmentations, the rest): the first part is dtype-agnostic."""
        count = 0
        while count < len(self.augmentations) and isinstance(self.augmentations[count], RemapAugmentation):
            count += 1
        return Compose(self.augmentations[:count]), Compose(self.augmentations[count:])

    def to_spec(self) -> list[dict[str, Any]]:
        return [a.to_spec() for a in self.augmentations]

    def set_image_size(self, size) -> bool:
        changed = [a.set_image_size(size) for a in self.augmentations]
        return any(changed)

    def __repr__(self) -> str:
        return f"Compose({self.to_spec()})"


def build_augmentations(spec: None | str | dict | Augmentation | Sequence) -> Compose:
    """A :class:`Compose` from None, one spec, or a list of specs (see
    :func:`~epochal.data.augment.base.parse_augmentation`)."""
    if spec is None:
        return Compose([])
    if isinstance(spec, Compose):
        return spec
    if isinstance(spec, (str, dict, Augmentation)):
        return Compose([spec])
    return Compose(list(spec))
