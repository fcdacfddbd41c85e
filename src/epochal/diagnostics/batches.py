"""Batches for the sanity check: the training data with augmentation off, gathered to a size.

The checks must see what the model sees minus the randomness: an augmented batch is another
input every step, which no network can fit exactly. :func:`unaugmented` makes a view of a
training loader with its augmentations (and class balancing) removed; :func:`collect` gathers its
first samples into one batch.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from epochal.utils import to_device

__all__ = ["batch_count", "collect", "parts", "unaugmented"]


def parts(inputs: Any) -> tuple[torch.Tensor, ...]:
    """The input tensors of a batch (tabular batches carry a tuple: categorical, continuous)."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def batch_count(targets: Any) -> int:
    """Samples in a batch, counted on its targets."""
    return int(parts(targets)[0].shape[0])


def unaugmented(loader) -> tuple[Any, str | None]:
    """``(view, note)``: the loader with augmentation and balancing off, or the loader itself.

    ``note`` says when augmentation could not be switched off (a loader type this module does not
    know that reports ``augmented``).
    """
    if hasattr(loader, "with_rows") and hasattr(loader, "rows"):  # ImageLoader
        return loader.with_rows(loader.rows, augment=None, balance=None), None
    if getattr(loader, "transform", None) is not None:  # TensorLoader, ArrayLoader
        view = copy.copy(loader)
        view.transform = None
        return view, None
    if getattr(loader, "augmented", False):
        return loader, f"could not switch the augmentation of {type(loader).__name__} off"
    return loader, None


def _concat(chunks: list[Any]) -> Any:
    if isinstance(chunks[0], (tuple, list)):
        return tuple(torch.cat(column) for column in zip(*chunks))
    return torch.cat(chunks)


def _head(inputs: Any, n: int) -> Any:
    return tuple(t[:n] for t in inputs) if isinstance(inputs, tuple) else inputs[:n]


def collect(loader, n: int, device: torch.device | None = None, memory_format=None) -> tuple[Any, Any]:
    """The first ``n`` samples of epoch 0 of ``loader`` as one ``(inputs, targets)`` batch.

    Fewer come back when the loader holds fewer samples.
    """
    batches = loader.iter_epoch(0) if hasattr(loader, "iter_epoch") else iter(loader)
    inputs, targets, count = [], [], 0
    for x, y in batches:
        inputs.append(x)
        targets.append(y)
        count += batch_count(y)
        if count >= n:
            break
    if not targets:
        raise ValueError(f"the training loader {type(loader).__name__} yields no batches")
    x, y = _head(_concat(inputs), n), _concat(targets)[:n]
    if device is not None:
        x, y = to_device((x, y), device, memory_format=memory_format)
    return x, y
