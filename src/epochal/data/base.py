"""The contract between data loaders and the Learner.

A training loader is *epoch-addressable*: ``iter_epoch(epoch, start)`` yields the batches of
epoch ``epoch`` beginning at batch ``start``, and the order and augmentation of every batch are a
pure function of (seed, epoch, batch index). That is what makes mid-epoch resume exact and lets
DDP ranks read disjoint shares without coordination.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from epochal.utils import content_digest

__all__ = ["ArrayLoader", "Batch", "DataLoaders", "EpochLoader", "batch_generator", "batch_seed"]

#: A batch is ``(inputs, targets)``; inputs may be a tensor or a tuple of tensors.
Batch = tuple[Any, Any]


@runtime_checkable
class EpochLoader(Protocol):
    """What the Learner needs from a loader."""

    def __len__(self) -> int:
        """Batches per epoch."""
        ...

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch`` from batch index ``start`` on."""
        ...


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of batch ``index`` of ``epoch``: a pure function of (seed, epoch, batch index)."""
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63 - 1)


def batch_generator(seed: int, epoch: int, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, epoch, batch index), for per-batch random parameters."""
    g = torch.Generator(device=device)
    g.manual_seed(batch_seed(seed, epoch, index))
    return g


@dataclass
class DataLoaders:
    """Training and validation loaders plus what a model needs to know about the data.

    Args:
        train: the epoch-addressable training loader.
        valid: the validation loader (any iterable of batches; order does not matter).
        classes: class names, index order, when the task is classification.
        info: free-form facts the builders may use (input shape, cardinalities, ...).
    """

    train: EpochLoader
    valid: Any = None
    classes: Sequence[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ArrayLoader:
    """In-memory tensors served in seeded, epoch-addressable batches (CPU or any device).

    Args:
        inputs: a tensor, or a tuple of tensors sharing the first dimension.
        targets: a tensor with the same first dimension.
        batch_size: samples per batch.
        shuffle: draw a new permutation per epoch from ``seed`` and the epoch number.
        drop_last: drop the last incomplete batch.
        seed: base seed for the permutation.
        transform: optional ``f(inputs, targets, generator) -> (inputs, targets)`` applied per batch.

    Examples:
        >>> loader = ArrayLoader(torch.randn(10, 3), torch.arange(10), batch_size=4, shuffle=True)
        >>> [len(y) for _, y in loader.iter_epoch(0)]
        [4, 4, 2]
    """

    def __init__(self, inputs, targets, batch_size: int = 64, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, transform=None):
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.transform = transform
        self.n = len(targets)

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def batch_positions(self, epoch: int, index: int) -> torch.Tensor:
        """The sample positions that batch ``index`` of ``epoch`` holds (see ``ImageLoader.batch_positions``)."""
        return self._order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]

    @property
    def augmented(self) -> bool:
        """Whether a per-batch ``transform`` changes the inputs (treated as random augmentation)."""
        return self.transform is not None

    def fingerprint(self) -> str:
        """A hash of the inputs' bytes and the transform's seed."""
        parts = tuple(self.inputs) if isinstance(self.inputs, (tuple, list)) else (self.inputs,)
        return content_digest(*parts, [repr(self.transform), self.seed])

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = self._order(epoch)
        for index in range(start, len(self)):
            idx = order[index * self.batch_size:(index + 1) * self.batch_size]
            if isinstance(self.inputs, (tuple, list)):
                x = tuple(t[idx] for t in self.inputs)
            else:
                x = self.inputs[idx]
            y = self.targets[idx]
            if self.transform is not None:
                x, y = self.transform(x, y, batch_generator(self.seed, epoch, index))
            yield x, y

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(0)
