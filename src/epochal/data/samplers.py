"""Epoch-addressable samplers: which data set positions a rank visits in an epoch, in what order.

Every sampler is a pure function of (seed, epoch, rank, world_size): ranks compute the same
global order without talking to each other and take disjoint shares of it. Ranks and world size
are explicit arguments; only ``epochal.distributed`` reads them from the environment.

- :class:`SequentialSampler`: exact, for validation: every sample exactly once over all ranks,
  no padding duplicates.
- :class:`RandomSampler`: a fresh permutation per epoch.
- :class:`BalancedSampler`: class-balanced epochs by oversampling minority classes,
  undersampling majority classes, or weighted sampling with replacement; under DDP each rank
  gets a disjoint share with the same number of samples per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = [
    "BALANCE_MODES",
    "BalancedSampler",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "epoch_generator",
    "make_sampler",
]

#: Class-balancing strategies of :class:`BalancedSampler`.
BALANCE_MODES: tuple[str, ...] = ("oversample", "undersample", "weighted")


@runtime_checkable
class Sampler(Protocol):
    """Positions (into a data set of ``n`` samples) a rank visits in one epoch."""

    def __len__(self) -> int:
        """Samples this rank visits per epoch."""
        ...

    def indices(self, epoch: int) -> torch.Tensor:
        """The positions for ``epoch``, a CPU ``int64`` tensor of length ``len(self)``."""
        ...


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch, salt), for per-epoch orders."""
    return torch.Generator().manual_seed(
        (seed * 6_364_136_223 + epoch * 1_442_695 + salt * 7_919 + 17) % (2**63)
    )


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size} is not valid; need 0 <= rank < world_size")


class SequentialSampler:
    """Positions ``rank, rank + world_size, ...``: each sample exactly once over all ranks.

    Ranks may get counts differing by one; nothing is padded or dropped.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.n, self.rank, self.world_size = n, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def indices(self, epoch: int = 0) -> torch.Tensor:
        return torch.arange(self.rank, self.n, self.world_size, dtype=torch.long)


class RandomSampler:
    """A seeded permutation per epoch, split into disjoint rank shares.

    With several ranks, the permutation is cut to a multiple of ``world_size`` (at most
    ``world_size - 1`` samples skipped per epoch, different ones each epoch) so shares are equal.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size

    def __len__(self) -> int:
        return self.n // self.world_size

    def indices(self, epoch: int) -> torch.Tensor:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, epoch))
        return order[: len(self) * self.world_size][self.rank :: self.world_size].clone()


class BalancedSampler:
    """Class-balanced epochs, also under DDP.

    Args:
        labels: class index per data set position (``-1`` marks samples never drawn).
        mode: ``oversample`` (every class repeated up to the largest class), ``undersample``
            (every class cut to the smallest) or ``weighted`` (draw with replacement, weight
            ``1 / class count``).
        seed: base seed.
        rank: this process's rank.
        world_size: number of ranks.
        num_samples: samples per epoch over all ranks (default: classes x target class size
            for over/undersampling, the data set size for weighted).

    Examples:
        >>> sampler = BalancedSampler([0, 0, 0, 1], mode="oversample")
        >>> sorted(torch.tensor([0, 0, 0, 1])[sampler.indices(0)].tolist())
        [0, 0, 0, 1, 1, 1]
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        mode: str = "oversample",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_samples: int | None = None,
    ):
        _check_rank(rank, world_size)
        if mode not in BALANCE_MODES:
            raise ValueError(f"mode={mode!r} is not valid; use one of {BALANCE_MODES}")
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if labels.ndim != 1:
            raise ValueError(
                "class-balanced sampling needs one class index per sample (not multi-label targets)"
            )
        self.labels, self.mode, self.seed = labels, mode, seed
        self.rank, self.world_size = rank, world_size
        present = labels[labels >= 0]
        counts = torch.bincount(present) if len(present) else torch.zeros(0, dtype=torch.long)
        self.classes = torch.nonzero(counts).flatten()
        if len(self.classes) == 0:
            raise ValueError("labels has no samples to draw (all negative or empty)")
        self.members = [torch.nonzero(labels == c).flatten() for c in self.classes.tolist()]
        sizes = counts[self.classes]
        if mode == "weighted":
            self.per_class = 0
            total = len(present) if num_samples is None else num_samples
            self.total = total - total % world_size
        else:
            target = int(sizes.max() if mode == "oversample" else sizes.min())
            if num_samples is not None:
                target = max(1, num_samples // len(self.classes))
            self.per_class = target - target % world_size
            self.total = self.per_class * len(self.classes)
        if self.total < world_size:
            raise ValueError(
                f"mode={mode!r} gives {self.total} samples per epoch, fewer than world_size={world_size}"
            )

    def __len__(self) -> int:
        return self.total // self.world_size

    def _class_draw(self, members: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``per_class`` members: whole shuffled copies, then a shuffled partial copy."""
        repeats = -(-self.per_class // len(members))
        copies = [members[torch.randperm(len(members), generator=generator)] for _ in range(repeats)]
        return torch.cat(copies)[: self.per_class]

    def indices(self, epoch: int) -> torch.Tensor:
        generator = epoch_generator(self.seed, epoch)
        if self.mode == "weighted":
            counts = torch.bincount(self.labels[self.labels >= 0])
            weights = torch.where(self.labels >= 0, 1.0 / counts[self.labels.clamp(min=0)].double(), 0.0)
            draw = torch.multinomial(weights, self.total, replacement=True, generator=generator)
            return draw[self.rank :: self.world_size].clone()
        shares = [self._class_draw(m, generator)[self.rank :: self.world_size] for m in self.members]
        mine = torch.cat(shares)
        # Interleave classes within the rank's share with a rank-specific seeded shuffle.
        order = torch.randperm(len(mine), generator=epoch_generator(self.seed, epoch, salt=self.rank + 1))
        return mine[order]


def make_sampler(
    n: int,
    shuffle: bool = True,
    labels=None,
    balance: str | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Sampler:
    """The sampler a loader needs: balanced (``balance`` set), random (``shuffle``) or sequential."""
    if balance is not None:
        if labels is None:
            raise ValueError(f"balance={balance!r} needs labels")
        return BalancedSampler(labels, balance, seed=seed, rank=rank, world_size=world_size)
    if shuffle:
        return RandomSampler(n, seed=seed, rank=rank, world_size=world_size)
    return SequentialSampler(n, rank=rank, world_size=world_size)
