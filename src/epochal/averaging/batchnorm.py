"""BatchNorm recalibration: running statistics recomputed for weights the data never saw.

Averaged weights (SWA, EMA) are not weights the network was trained at, so the BatchNorm running
statistics collected during training do not describe their activations. Izmailov et al. (*Averaging
Weights Leads to Wider Optima and Better Generalization*, UAI 2018) recompute them with one extra
pass over the training data: every BatchNorm layer's running mean and variance are reset, its
``momentum`` is set to None (a cumulative average over the pass instead of an exponential one),
and the model runs in train mode without gradients. This is ``torch.optim.swa_utils.update_bn``;
here every temporary change (momentum, train/eval modes, the loader's augmentation) is undone by a
context manager, also when the pass fails, and a failed pass puts the old statistics back.

The pass uses the loader as it is (with its augmentation, as ``update_bn`` does) or, with
``augment=False``, with the loader's own augmentation switched off for the pass (loaders with an
``augment`` pipeline or a per-batch ``transform``; other loaders cannot be changed and raise).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from epochal.utils import to_device

__all__ = ["augmentation", "batch_norms", "cumulative_statistics", "recalibrate_bn"]


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None]


@contextlib.contextmanager
def cumulative_statistics(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Reset every BatchNorm's running statistics and accumulate them cumulatively inside the block.

    Inside: ``momentum=None`` and the whole model in train mode. After: each layer's momentum and
    each module's train/eval mode as they were; when the block raised, the previous running
    statistics too.
    """
    norms = batch_norms(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in norms]
    with torch.no_grad():
        previous = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        yield norms
    except BaseException:
        with torch.no_grad():
            for m, mean, var, count in previous:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        raise
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def augmentation(loader: Any, enabled: bool) -> Iterator[Any]:
    """The loader with its own augmentation on (unchanged) or off for the block, restored afterwards.

    Raises:
        ValueError: ``enabled=False`` for a loader that has neither an ``augment`` pipeline nor a
            ``transform`` (a plain ``DataLoader`` keeps its transforms in its dataset).
    """
    if enabled:
        yield loader
        return
    if hasattr(loader, "augment"):
        from epochal.data.augment import Compose

        attribute, off = "augment", Compose([])
    elif hasattr(loader, "transform"):
        attribute, off = "transform", None
    else:
        raise ValueError(
            f"BatchNorm recalibration with augment=False needs a loader with an 'augment' pipeline or a "
            f"'transform' (epochal's ImageLoader, TensorLoader, ArrayLoader); {type(loader).__name__} has "
            "neither: use augment=True or give a loader without augmentation"
        )
    saved = getattr(loader, attribute)
    setattr(loader, attribute, off)
    try:
        yield loader
    finally:
        setattr(loader, attribute, saved)


def _batches(loader: Any) -> Iterable:
    return loader.iter_epoch(0) if hasattr(loader, "iter_epoch") else iter(loader)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Any, *, augment: bool = True, max_batches: int | None = None,
                   device: torch.device | str | None = None, memory_format: torch.memory_format | None = None,
                   autocast: Any = None) -> int:
    """Recompute the BatchNorm running statistics of ``model`` with one cumulative pass over ``loader``.

    Args:
        model: the model (its BatchNorm buffers are overwritten; nothing else changes).
        loader: an epochal loader (its epoch-0 batches) or any iterable of ``(inputs, targets)``
            or of inputs; a tuple of input tensors is spread over the model's arguments.
        augment: keep the loader's augmentation on for the pass (False: off, restored afterwards).
        max_batches: stop after this many batches (None: the whole pass).
        device: where batches go (default: the model's parameters' device).
        memory_format: e.g. ``torch.channels_last`` for 4-D inputs.
        autocast: a zero-argument callable returning the autocast context to run the model in
            (e.g. ``learner.autocast``); None runs in the model's own precision.

    Returns:
        The number of samples seen (0 when the model has no BatchNorm: nothing is run).

    Examples:
        >>> recalibrate_bn(model, train_loader)      # equals torch.optim.swa_utils.update_bn(train_loader, model)
    """
    if not batch_norms(model):
        return 0
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be None or >= 1, got {max_batches}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    seen = 0
    with augmentation(loader, augment) as source, cumulative_statistics(model):
        for index, batch in enumerate(_batches(source)):
            if max_batches is not None and index >= max_batches:
                break
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            inputs = to_device(inputs, device, memory_format=memory_format)
            with autocast() if autocast is not None else contextlib.nullcontext():
                model(*inputs) if isinstance(inputs, tuple) else model(inputs)
            first = inputs[0] if isinstance(inputs, tuple) else inputs
            seen += int(first.shape[0])
    return seen
