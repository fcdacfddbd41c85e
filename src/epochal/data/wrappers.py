"""Loaders around users' own iterables of batches and torch DataLoaders (see :mod:`epochal.data.adapters`).

:class:`IterableLoader` reads any iterable as it comes (lists exactly); :class:`TorchLoader`
rebuilds a torch ``DataLoader`` around epochal's seeded sampler where it can, so that a run
resumes exactly mid-epoch, and reads it as it comes otherwise. Under data-parallel training the
rebuilt sampler is rank-aware: each rank reads a disjoint share (training: the seeded permutation
cut to a multiple of ``world_size``; evaluation: every sample exactly once, no padding).
"""

from __future__ import annotations

import inspect
import itertools
import os
import random
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import data as torch_data

from epochal.data.base import Batch, batch_seed
from epochal.data.batches import BatchFormat
from epochal.data.samplers import RandomSampler, SequentialSampler

__all__ = ["IterableLoader", "TorchLoader"]

_EXACT_NOTE = "exact: after a resume, training reads the same batches as an uninterrupted run"

#: DataLoader settings carried over when the sampler is swapped (those this torch version takes).
_KEPT_SETTINGS = ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn",
                  "multiprocessing_context", "prefetch_factor", "persistent_workers", "pin_memory_device",
                  "in_order")


def _warn(message: str, category: type[Warning]) -> None:
    """Warn at the first caller outside epochal: the user's line that built the learner or called fit."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    depth, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        depth, frame = depth + 1, frame.f_back
    warnings.warn(message, category, stacklevel=depth + 1)


# ----------------------------------------------------------------------------- any iterable
class IterableLoader:
    """Any iterable of batches as an :class:`~epochal.data.base.EpochLoader`, read as it comes.

    A list or tuple of batches is positioned exactly; anything else restarts an epoch that a
    resume enters in the middle (see the module docstring).

    Args:
        data: an iterable of batches: a list, a generator, a torch DataLoader, ...
        inputs: for dict batches, the key (or tuple of keys) of the inputs; default: guessed.
        targets: for dict batches, the key of the targets; default: guessed.
        steps_per_epoch: batches per epoch; needed for training when ``data`` has no length.

    Examples:
        >>> loader = IterableLoader([(torch.randn(4, 3), torch.arange(4)) for _ in range(3)])
        >>> len(loader), len(list(loader.iter_epoch(0, start=1)))
        (3, 2)
    """

    def __init__(self, data: Iterable, inputs=None, targets=None, steps_per_epoch: int | None = None):
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
                                            or steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
        self.data = data
        self.format = BatchFormat(inputs, targets)
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = getattr(data, "batch_size", None)
        self.restarted: list[dict[str, int]] = []
        self._stream: Iterator | None = None
        self.reason = self._why_not_exact()

    @property
    def exact_resume(self) -> bool:
        """True when ``iter_epoch(epoch, start)`` reproduces batches ``start..`` of the epoch exactly."""
        return self.reason is None

    def describe(self) -> str:
        """What the data is, in words (for messages)."""
        return f"a {type(self.data).__name__}"

    def _why_not_exact(self) -> str | None:
        if isinstance(self.data, Sequence) and not isinstance(self.data, str | bytes):
            return None
        if isinstance(self.data, Iterator):
            return f"{self.describe()} (a one-shot iterator)"
        return f"{self.describe()}, an iterable that epochal cannot position mid-epoch"

    def _pass_length(self) -> int | None:
        """Batches in one pass over the data, or None when the data do not say."""
        try:
            return len(self.data)
        except TypeError:
            return None

    def _length(self) -> int | None:
        return self.steps_per_epoch if self.steps_per_epoch is not None else self._pass_length()

    def __len__(self) -> int:
        length = self._length()
        if length is None:
            raise TypeError(
                f"the data ({self.describe()}) have no length, and epochal plans a fit in optimizer steps "
                "(phases, one_cycle and the progress bar count batches per epoch): say how many batches make "
                "an epoch with epochal.data.from_loader(data, steps_per_epoch=N) (an epoch is then the next N "
                "batches), or give the dataset a __len__"
            )
        return length

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the ``(inputs, targets)`` batches of ``epoch`` from batch ``start`` on."""
        length = self._length()
        if start < 0 or (length is not None and start > length):
            raise ValueError(f"start={start} is out of range for an epoch of {length} batches")
        raw = self._exact_batches(epoch, start) if self.exact_resume else self._batches_as_they_come(epoch, start)
        stop = None if length is None else length - start
        count = 0
        for batch in itertools.islice(raw, stop):
            count += 1
            yield self.format(batch)
        if count == 0 and stop != 0:
            once = " (a generator can be read only once)" if isinstance(self.data, Iterator) else ""
            raise ValueError(f"the data ({self.describe()}) yielded no batch for epoch {epoch}{once}")

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(0)

    def _pass(self, number: int, offset: int) -> Iterator:
        """The raw batches of pass ``number`` from batch ``offset`` on (exact data only)."""
        return itertools.islice(self.data, offset, None)

    def _exact_batches(self, epoch: int, start: int) -> Iterator:
        if self.steps_per_epoch is None:
            yield from self._pass(epoch, start)
            return
        per_pass = self._pass_length()
        if not per_pass:
            return
        number, offset = divmod(epoch * self.steps_per_epoch + start, per_pass)
        while True:
            yield from self._pass(number, offset)
            number, offset = number + 1, 0

    def _batches_as_they_come(self, epoch: int, start: int) -> Iterator:
        if start > 0:
            self._restart(epoch, start)
        if self.steps_per_epoch is None:
            return iter(self.data)
        if self._stream is None or start > 0:
            self._stream = self._endless()
        return self._stream

    def _endless(self) -> Iterator:
        """Pass after pass over the data (one pass for a one-shot iterator)."""
        while True:
            empty = True
            for batch in self.data:
                empty = False
                yield batch
            if empty:
                return

    def _restart(self, epoch: int, start: int) -> None:
        self.restarted.append({"epoch": epoch, "batch": start})
        _warn(
            f"resuming after batch {start} of epoch {epoch + 1}, but the training data are {self.reason}: the "
            "rest of that epoch is read from a fresh pass over the data, so this run is not bit-identical "
            "to an uninterrupted one (the epoch keeps its number of batches; steps and schedule are unchanged)",
            RuntimeWarning,
        )

    def resume_info(self) -> dict[str, Any]:
        """Whether a mid-epoch resume is exact, in words, and the epochs a resume restarted."""
        if self.exact_resume:
            return {"exact": True, "note": _EXACT_NOTE, "restarted": []}
        note = (f"not exact: the training data are {self.reason}; a resume in the middle of an epoch reads the rest "
                "of that epoch from a fresh pass over the data (the epoch keeps its number of batches, and the "
                "run ends at its planned step count)")
        return {"exact": False, "note": note, "restarted": list(self.restarted)}


# ----------------------------------------------------------------------------- torch DataLoader
def _why_not_positionable(loader: torch_data.DataLoader) -> str | None:
    """Why epochal cannot rebuild ``loader`` around its seeded sampler, or None when it can."""
    if type(loader) is not torch_data.DataLoader:
        return f"a {type(loader).__name__} (a DataLoader subclass, which epochal does not rebuild)"
    if isinstance(loader.dataset, torch_data.IterableDataset):
        return f"a DataLoader over an IterableDataset ({type(loader.dataset).__name__})"
    if loader.batch_size is None:
        if loader.batch_sampler is not None:
            return f"a DataLoader with a custom batch_sampler ({type(loader.batch_sampler).__name__})"
        return "a DataLoader without automatic batching (batch_size=None)"
    sampler = loader.sampler
    if type(sampler) is torch_data.RandomSampler:
        if sampler.replacement or sampler.num_samples != len(loader.dataset):
            return "a DataLoader whose RandomSampler draws with replacement or a different number of samples"
    elif type(sampler) not in (torch_data.SequentialSampler, torch_data.DistributedSampler):
        return f"a DataLoader with a custom sampler ({type(sampler).__name__})"
    return None


def _sampler_split(loader: torch_data.DataLoader, rank: int, world_size: int) -> tuple[int, int]:
    """The ``(rank, world_size)`` share to read: the Learner's, or a DistributedSampler's own (which must agree)."""
    sampler = loader.sampler
    if type(sampler) is not torch_data.DistributedSampler:
        return rank, world_size
    own = (sampler.rank, sampler.num_replicas)
    if world_size > 1 and own != (rank, world_size):
        raise ValueError(f"the DataLoader's DistributedSampler is for rank {own[0]} of {own[1]}, but this process is "
                         f"rank {rank} of {world_size}")
    return own


def _seed_worker_generators(seed: int) -> None:
    """In a DataLoader worker, seed torch's, Python's and NumPy's global generators for one batch.

    In the main process (``num_workers=0``) nothing is seeded: the dataset draws from the global
    generators, which every epochal checkpoint captures, so a resume is exact there as it is.
    """
    if torch_data.get_worker_info() is not None:
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)


class _SeededDataset(torch_data.Dataset):
    """A map-style dataset whose batches, in worker processes, draw from the seed the sampler sends."""

    def __init__(self, dataset: torch_data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, key: tuple[int, list[int]]) -> list:
        seed, positions = key
        _seed_worker_generators(seed)
        getitems = getattr(self.dataset, "__getitems__", None)
        return getitems(positions) if getitems else [self.dataset[i] for i in positions]


class _EpochBatches(torch_data.Sampler):
    """Batch sampler of a rebuilt DataLoader: pass ``number`` of the seeded order from batch ``offset``.

    Yields ``(batch seed, positions)``: :class:`_SeededDataset` seeds the generators with the
    first and reads the samples at the second. Ranks seed the same batch index differently.
    """

    def __init__(self, order: RandomSampler | SequentialSampler, batch_size: int, drop_last: bool, seed: int):
        self.order, self.batch_size, self.drop_last, self.seed = order, batch_size, drop_last, seed
        self.rank, self.world_size = order.rank, order.world_size
        self.number, self.offset = 0, 0

    def batches_per_pass(self) -> int:
        full, rest = divmod(len(self.order), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def __len__(self) -> int:
        return self.batches_per_pass() - self.offset

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        positions, size = self.order.indices(self.number).tolist(), self.batch_size
        for index in range(self.offset, self.batches_per_pass()):
            slot = index * self.world_size + self.rank  # one rank: the batch index itself
            yield batch_seed(self.seed, self.number, slot), positions[index * size:(index + 1) * size]


class TorchLoader(IterableLoader):
    """A torch ``DataLoader`` as an epoch-addressable loader, exact where it can be (module docstring).

    Args:
        loader: the ``torch.utils.data.DataLoader``.
        inputs: for dict batches, the key (or tuple of keys) of the inputs; default: guessed.
        targets: for dict batches, the key of the targets; default: guessed.
        steps_per_epoch: batches per epoch; needed for training when the loader has no length.
        seed: the seed of the epoch orders and of the per-batch randomness.
        rank: this process's share under data-parallel training. A DataLoader with
            torch's ``DistributedSampler`` brings its own (which must agree); a loader that cannot
            be rebuilt (see :func:`_why_not_positionable`) is read whole by every rank and says so
            with ``world_size == 1``.
        world_size: the number of processes of that job.
        shuffle: the order: None keeps the DataLoader's (shuffled or not), False reads it in order
            (evaluation: every sample exactly once over the ranks).

    Attributes:
        world_size: the number of shares this loader's data is split into (1: every rank reads all).

    Examples:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> dl = DataLoader(TensorDataset(torch.randn(10, 3), torch.arange(10)), batch_size=4, shuffle=True)
        >>> loader = TorchLoader(dl, seed=0)  # warns once that epochal's seeded sampler was swapped in
        >>> loader.exact_resume, [len(y) for _, y in loader.iter_epoch(1, start=1)]
        (True, [4, 2])
    """

    def __init__(self, loader: torch_data.DataLoader, inputs=None, targets=None, steps_per_epoch: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool | None = None):
        if not isinstance(loader, torch_data.DataLoader):
            raise TypeError(f"TorchLoader takes a torch.utils.data.DataLoader, got {type(loader).__name__}")
        self.seed, self.rank, self.world_size = seed, 0, 1
        super().__init__(loader, inputs, targets, steps_per_epoch)
        if self.exact_resume:
            self.rank, self.world_size = _sampler_split(loader, rank, world_size)
            self._rebuild(shuffle)

    def describe(self) -> str:
        return f"a DataLoader over a {type(self.data.dataset).__name__}"

    def _why_not_exact(self) -> str | None:
        return _why_not_positionable(self.data)

    def _rebuild(self, shuffle: bool | None) -> None:
        old = self.data
        sampler = old.sampler
        if shuffle is None:
            shuffle = type(sampler) is torch_data.RandomSampler or (
                type(sampler) is torch_data.DistributedSampler and sampler.shuffle)
        n = len(old.dataset)
        split = {"rank": self.rank, "world_size": self.world_size}
        order = RandomSampler(n, seed=self.seed, **split) if shuffle else SequentialSampler(n, **split)
        self._batches = _EpochBatches(order, old.batch_size, old.drop_last, self.seed)
        self._generator = torch.Generator()  # worker base seeds: from (seed, pass, rank), never the global RNG
        accepted = inspect.signature(torch_data.DataLoader.__init__).parameters
        kept = {name: getattr(old, name) for name in _KEPT_SETTINGS if name in accepted and hasattr(old, name)}
        self._loader = torch_data.DataLoader(_SeededDataset(old.dataset), batch_sampler=self._batches,
                                             generator=self._generator, **kept)
        self._announce(type(sampler).__name__, shuffle)

    def _announce(self, sampler: str, shuffle: bool) -> None:
        """Say once what replaced the DataLoader's sampler, when the order or the split changes."""
        share = (f"; rank {self.rank} of {self.world_size} reads its disjoint share" if self.world_size > 1 else "")
        if sampler == "DistributedSampler":
            _warn(f"the DataLoader's DistributedSampler was replaced by epochal's {'seeded ' if shuffle else ''}"
                  f"rank-aware sampler (seed={self.seed}{share}): no padding with repeated samples, and an order "
                  "that is a function of (seed, epoch), so a run resumes exactly mid-epoch", UserWarning)
        elif shuffle:
            _warn(
                f"the training DataLoader shuffles with torch's {sampler}; epochal swapped in its seeded sampler "
                f"(seed={self.seed}; batch_size={self.data.batch_size}, drop_last={self.data.drop_last}, "
                f"num_workers={self.data.num_workers} and the other settings kept{share}) so that the order of "
                "every epoch is a function of (seed, epoch) and a run resumes exactly mid-epoch",
                UserWarning,
            )

    def _pass_length(self) -> int | None:
        return self._batches.batches_per_pass() if self.exact_resume else super()._pass_length()

    def _pass(self, number: int, offset: int) -> Iterator:
        self._batches.number, self._batches.offset = number, offset
        self._generator.manual_seed(batch_seed(self.seed, number, -1 - self.rank))
        return iter(self._loader)
