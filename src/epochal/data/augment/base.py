"""Batched augmentation: the base classes, composition, registry and the spec form.

Augmentations work on whole batches of float images in ``[0, 1]``, shape ``(N, C, H, W)``, on
whatever device the batch lives on; there is no per-image Python work. Per-sample random
parameters are drawn on the CPU from the batch's seeded generator (a pure function of seed,
epoch and batch index, see :func:`epochal.data.base.batch_generator`) and then moved to the
batch's device, so a CPU run and a GPU run draw the same parameters, and a resumed epoch
reproduces every batch.

The spec form lets recipes list augmentations::

    ["flip", "translate(pad=4)", {"name": "cutout", "size": 8}]
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from epochal.utils import did_you_mean, host_to_device

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "BatchContext",
    "ImageAugmentation",
    "parse_augmentation",
    "register_augmentation",
]

#: Registry name -> augmentation class; filled by :func:`register_augmentation`.
AUGMENTATIONS: dict[str, type[Augmentation]] = {}


@dataclass
class BatchContext:
    """What an augmentation may know about the batch besides its pixels.

    Attributes:
        generator: CPU generator seeded from (seed, epoch, batch index); draw every random
            parameter from it, in a fixed order.
        device: the batch's device; parameters are moved there.
        epoch: the epoch number (alternating flip uses it).
        indices: data set indices of the batch's samples (CPU ``int64``).
        seed: the loader's base seed.
        num_classes: classes, for turning class indices into soft targets.
    """

    generator: torch.Generator
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    epoch: int = 0
    indices: torch.Tensor | None = None
    seed: int = 0
    num_classes: int | None = None

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform ``[0, 1)`` values of ``shape``, drawn on the CPU, returned on ``device``."""
        return host_to_device(torch.rand(shape, generator=self.generator), self.device)

    def uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        """``n`` uniform values in ``[low, high)`` on ``device``."""
        return low + (high - low) * self.rand(n)

    def randint(self, n: int, low: int, high: int) -> torch.Tensor:
        """``n`` integers in ``[low, high)`` on ``device``."""
        return host_to_device(torch.randint(low, high, (n,), generator=self.generator), self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal values of ``shape`` on ``device``."""
        return host_to_device(torch.randn(shape, generator=self.generator), self.device)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so specs dump to JSON and YAML alike."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class Augmentation:
    """A pure, batched transform of ``(images, targets)``.

    Subclasses are dataclasses whose fields are their parameters; ``name`` is the registry name
    used in the spec form. ``images`` are float ``(N, C, H, W)`` in ``[0, 1]``; ``targets`` are
    class indices ``(N,)`` or float soft/multi-hot targets ``(N, K)``.
    """

    name: ClassVar[str] = ""

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor | None, ctx: BatchContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        """The dict spec that rebuilds this augmentation."""
        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}
        return {"name": self.name, **values}

    def set_image_size(self, size: int | tuple[int, int]) -> bool:
        """Change the output size, if this augmentation decides it; True when it did."""
        return False


class ImageAugmentation(Augmentation):
    """An augmentation that only changes pixels: implement :meth:`apply`."""

    def apply(self, images: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images, targets, ctx):
        return self.apply(images, ctx), targets


def register_augmentation(cls: type[Augmentation]) -> type[Augmentation]:
    """Class decorator: make ``cls`` available by its ``name`` in specs."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name' to be registered")
    AUGMENTATIONS[cls.name] = cls
    return cls


def _lookup(name: str) -> type[Augmentation]:
    if name not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}{did_you_mean(name, AUGMENTATIONS)}"
        )
    return AUGMENTATIONS[name]


def _build(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Augmentation:
    cls = _lookup(name)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    if len(args) > len(fields):
        raise ValueError(
            f"augmentation {name!r} takes at most {len(fields)} positional values {fields}, got {list(args)}"
        )
    params = dict(zip(fields, args))
    for key, value in kwargs.items():
        if key not in fields:
            hint = did_you_mean(key, fields, " (did you mean {}?)")
            raise ValueError(f"augmentation {name!r} has no parameter {key!r}{hint}; valid: {fields}")
        params[key] = tuple(value) if isinstance(value, list) else value
    return cls(**params)


def parse_augmentation(spec: str | dict | Augmentation) -> Augmentation:
    """Build one augmentation from its spec.

    Args:
        spec: an :class:`Augmentation` (returned as is); a name such as ``"flip"``; a call
            such as ``"random_resized_crop(224, scale=(0.35, 1.0))"`` (literal values only);
            or a dict ``{"name": "cutout", "size": 8}``.

    Returns:
        The augmentation.
    """
    if isinstance(spec, Augmentation):
        return spec
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"augmentation spec {spec!r} needs a 'name' key")
        params = {k: v for k, v in spec.items() if k != "name"}
        return _build(str(spec["name"]), (), params)
    if not isinstance(spec, str):
        raise TypeError(f"augmentation spec must be a str, dict or Augmentation, got {type(spec).__name__}")
    text = spec.strip()
    if "(" not in text:
        return _build(text, (), {})
    form = f"augmentation spec {spec!r} is not of the form name(value, key=value)"
    try:
        call = ast.parse(text, mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ValueError(form)  # noqa: TRY004 - a bad spec is a bad value, like the other spec errors
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise ValueError(f"{form}: {error}") from None
    return _build(call.func.id, args, kwargs)
