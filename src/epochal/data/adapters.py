"""Your own data as epoch-addressable loaders: torch DataLoaders, iterables of batches, arrays.

The Learner reads training data through :class:`~epochal.data.base.EpochLoader` (``len`` and
``iter_epoch(epoch, start)``); :func:`as_data_loaders` is the one place where whatever a user
gives becomes that. epochal's own loaders pass through unchanged. For the rest:

- A ``torch.utils.data.DataLoader`` over a map-style dataset with torch's default samplers
  (``shuffle=True`` or ``False``) is rebuilt around epochal's seeded sampler, keeping every other
  setting (batch_size, drop_last, num_workers, collate_fn, pin_memory, worker_init_fn,
  persistent_workers, ...): the order of epoch ``e`` is a function of (seed, e), so a run resumes
  exactly mid-epoch. Random augmentation in ``__getitem__`` resumes exactly too: with
  ``num_workers=0`` it draws from the global generators, which every checkpoint captures; in worker
  processes, torch's, Python's and NumPy's global generators are seeded for each batch from
  (seed, epoch, batch index), so a batch does not depend on which worker made it or when.
- Anything else (an ``IterableDataset``, a custom sampler or batch sampler, a DataLoader
  subclass, a generator, any iterable of batches) is read as it comes and cannot be positioned
  mid-epoch: a resume in the middle of an epoch starts that epoch's data over with a fresh pass,
  keeping the epoch's number of batches, so the schedule and the planned step count are
  unchanged; a warning and the run summary (``mid_epoch_resume``) say so. Lists of batches are exact.
- A loader without a length (an ``IterableDataset`` without ``__len__``, a generator) needs
  ``steps_per_epoch`` for training: an epoch is then the next ``steps_per_epoch`` batches, and a
  new pass over the data starts whenever one ends.
- ``(inputs, targets)`` tensors or NumPy arrays become a :class:`~epochal.data.loaders.TensorLoader`.
- Batches may be pairs, longer tuples or dicts (:class:`~epochal.data.batches.BatchFormat`).

Under data-parallel training (``rank``/``world_size`` given, as the Learner does from its
strategy) the rebuilt DataLoaders and the tensor loaders give each rank a disjoint share: the
training order is cut to a multiple of ``world_size`` (equal shares: every step waits for every
rank), evaluation reads every sample exactly once over the ranks (no padding duplicates; shares
differ by at most one sample). A DataLoader with torch's ``DistributedSampler`` is rebuilt the same
way. Anything that cannot be rebuilt is read whole by every rank (``world_size == 1`` on the
loader), which the Learner warns about for training; its validation results need no combining.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.utils import data as torch_data

from epochal.data.base import DataLoaders
from epochal.data.batches import as_tensor
from epochal.data.loaders import TensorLoader
from epochal.data.wrappers import IterableLoader, TorchLoader

__all__ = [
    "as_data_loaders",
    "as_epoch_loader",
    "as_evaluation_loader",
    "from_loader",
    "from_tensors",
]

# ----------------------------------------------------------------------------- arrays
def _is_array(obj: Any) -> bool:
    return isinstance(obj, torch.Tensor | np.ndarray) or hasattr(obj, "__array__")


def _is_arrays_pair(data: Any) -> bool:
    """``(inputs, targets)`` of tensors or arrays; the inputs may be a tuple of them."""
    if not isinstance(data, tuple | list) or len(data) != 2 or not _is_array(data[1]):
        return False
    inputs = data[0]
    return _is_array(inputs) or (isinstance(inputs, tuple | list) and bool(inputs) and all(map(_is_array, inputs)))


def _tensor(obj: Any, what: str) -> torch.Tensor:
    return obj if isinstance(obj, torch.Tensor) else as_tensor(np.asarray(obj), what)


def from_tensors(inputs, targets, batch_size: int = 64, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 device: torch.device | str = "cpu", balance: str | None = None, rank: int = 0,
                 world_size: int = 1) -> TensorLoader:
    """Tensors or NumPy arrays (or anything ``numpy.asarray`` reads) as an epoch-addressable loader.

    NumPy float64 becomes the default float dtype and integer arrays int64 (what a model and
    ``CrossEntropyLoss`` expect); tensors are used as they are.

    Args:
        inputs: one array, or a tuple of arrays passed to the model as separate arguments.
        targets: an array with the same first dimension.
        batch_size: samples per batch.
        shuffle: a new seeded order per epoch (training); False for validation.
        seed: the seed of the epoch orders.
        drop_last: drop the last incomplete batch.
        device: where the tensors are kept (``"cuda"`` serves batches from GPU memory).
        balance: class balancing, as for :class:`~epochal.data.loaders.TensorLoader`.
        rank: this process's share under data-parallel training.
        world_size: the number of processes of that job.

    Examples:
        >>> loader = from_tensors(np.random.rand(10, 3), np.arange(10) % 2, batch_size=4)
        >>> [(x.dtype, y.dtype, len(y)) for x, y in loader.iter_epoch(0)][-1]
        (torch.float32, torch.int64, 2)
    """
    if isinstance(inputs, tuple | list):
        x = tuple(_tensor(part, f"inputs[{i}]") for i, part in enumerate(inputs))
    else:
        x = _tensor(inputs, "inputs")
    return TensorLoader(x, _tensor(targets, "targets"), batch_size=batch_size, shuffle=shuffle,
                        balance=balance, device=device, seed=seed, drop_last=drop_last, rank=rank,
                        world_size=world_size)


# ----------------------------------------------------------------------------- entry points
def _is_epoch_loader(obj: Any) -> bool:
    return callable(getattr(obj, "iter_epoch", None))


def _reject_samples(data: Any) -> None:
    """A data set yields samples, not batches: say how to batch it."""
    hugging_face = type(data).__module__.split(".")[0] == "datasets"
    if isinstance(data, torch_data.Dataset) or hugging_face:
        torch_format = ' (after .with_format("torch"))' if hugging_face else ""
        raise TypeError(
            f"a {type(data).__name__} yields single samples, not batches: wrap it{torch_format} in "
            "torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True) for training "
            "(shuffle=False for validation)"
        )


def _unreadable(data: Any) -> TypeError:
    return TypeError(f"cannot read batches from a {type(data).__name__}: give a DataLoader, an iterable of "
                     "(inputs, targets) batches, or (inputs, targets) tensors or arrays")


def from_loader(loader, *, inputs=None, targets=None, steps_per_epoch: int | None = None, seed: int = 0,
                rank: int = 0, world_size: int = 1):
    """Your own loader as an epoch-addressable loader for the Learner.

    Args:
        loader: a ``torch.utils.data.DataLoader`` or any iterable of batches (a list, a generator).
        inputs: for dict batches, the key (or tuple of keys) of the inputs; default: guessed.
        targets: for dict batches, the key of the targets; default: guessed.
        steps_per_epoch: batches per epoch; needed for training when the loader has no length.
        seed: the seed of the epoch orders (torch DataLoaders with torch's default samplers).
        rank: this process's share of a torch DataLoader under data-parallel training.
        world_size: the number of processes of that job.

    Returns:
        ``loader`` itself when it is already an epochal loader; a :class:`TorchLoader` for a torch
        DataLoader; an :class:`IterableLoader` for any other iterable.

    Examples:
        >>> batches = [{"features": torch.randn(4, 3), "category": torch.arange(4)}] * 2
        >>> loader = from_loader(batches, inputs="features", targets="category")
        >>> [tuple(x.shape) for x, _ in loader.iter_epoch(0)]
        [(4, 3), (4, 3)]
    """
    if _is_epoch_loader(loader):
        if inputs is not None or targets is not None or steps_per_epoch is not None:
            raise ValueError(f"{type(loader).__name__} is already an epochal loader; inputs=, targets= and "
                             "steps_per_epoch= are for loaders of your own")
        return loader
    if isinstance(loader, torch_data.DataLoader):
        return TorchLoader(loader, inputs, targets, steps_per_epoch, seed, rank=rank, world_size=world_size)
    _reject_samples(loader)
    if not isinstance(loader, Iterable):
        raise _unreadable(loader)
    return IterableLoader(loader, inputs, targets, steps_per_epoch)


def as_epoch_loader(data, seed: int = 0, rank: int = 0, world_size: int = 1):
    """Training data of any supported kind as an epoch-addressable loader (None stays None)."""
    if data is None:
        return None
    split = {"rank": rank, "world_size": world_size}
    if _is_arrays_pair(data):
        return from_tensors(*data, seed=seed, **split)
    return from_loader(data, seed=seed, **split)


def as_evaluation_loader(data, rank: int = 0, world_size: int = 1):
    """Validation or prediction data of any supported kind as a loader, in its own order.

    With ``world_size > 1``, arrays and torch DataLoaders over map-style datasets are split so that
    every sample is read exactly once over the ranks; everything else is read whole by every rank.
    """
    if data is None or _is_epoch_loader(data):
        return data
    split = {"rank": rank, "world_size": world_size}
    if _is_arrays_pair(data):
        return from_tensors(*data, batch_size=256, shuffle=False, **split)
    if world_size > 1 and isinstance(data, torch_data.DataLoader):
        return TorchLoader(data, shuffle=False, **split)
    _reject_samples(data)
    if not isinstance(data, Iterable):
        raise _unreadable(data)
    return IterableLoader(data)


def as_data_loaders(data, valid=None, seed: int = 0, rank: int = 0, world_size: int = 1) -> DataLoaders:
    """The :class:`~epochal.data.base.DataLoaders` of whatever the Learner was given.

    Args:
        data: a ``DataLoaders`` (returned unchanged when it holds epochal loaders), a
            ``(train, valid)`` pair of loaders, one training loader, or ``(inputs, targets)`` arrays.
        valid: validation data, when ``data`` holds none: a loader or ``(inputs, targets)`` arrays.
        seed: the seed of adapted training loaders.
        rank: this process's share of adapted loaders under data-parallel training.
        world_size: the number of processes of that job.

    Raises:
        ValueError: when validation data are given twice.
    """
    classes, info = None, {}
    if isinstance(data, DataLoaders):
        train, given_valid, classes, info = data.train, data.valid, data.classes, data.info
    elif isinstance(data, tuple | list) and not _is_arrays_pair(data):
        if len(data) not in (1, 2):
            raise ValueError(f"data must be (train, valid) or (inputs, targets); got a {type(data).__name__} "
                             f"of {len(data)} items")
        train, given_valid = data[0], data[1] if len(data) == 2 else None
    else:
        train, given_valid = data, None
    if valid is not None and given_valid is not None:
        raise ValueError("validation data given twice: in data and as valid=; give them once")
    train_loader = as_epoch_loader(train, seed, rank, world_size)
    valid_loader = as_evaluation_loader(valid if valid is not None else given_valid, rank, world_size)
    if isinstance(data, DataLoaders) and train_loader is data.train and valid_loader is data.valid:
        return data
    return DataLoaders(train_loader, valid_loader, classes, info)
