"""The model registry: ``create``, ``list_models`` and ``model_summaries``.

Families register thin factories with ``@register_model``; the registry validates names and
keyword arguments (suggesting the closest valid one) and counts parameters and multiply-accumulates
with ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device, so summarising even the
32-GFLOP RegNets allocates no memory and takes milliseconds per model.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from epochal.models.layers import pad_input_channels as _pad_input_channels
from epochal.utils import did_you_mean

__all__ = [
    "ModelInfo",
    "check_arguments",
    "check_model_arguments",
    "count_macs",
    "count_params",
    "create",
    "example_input",
    "get_model_info",
    "list_families",
    "list_models",
    "model_arguments",
    "model_summaries",
    "register_model",
]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name.

    Attributes:
        name: registry name, e.g. "regnety_004".
        family: family name, e.g. "regnet".
        factory: builds the model from keyword arguments.
        description: one line for listings.
        example_kwargs: arguments a model needs that have no sensible default (the category
            cardinalities of a tabular model); used only by summaries and tests.
    """

    name: str
    family: str
    factory: Callable[..., nn.Module]
    description: str = ""
    example_kwargs: Mapping[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, family: str, description: str = "", example_kwargs: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model factory under ``name``.

    Examples:
        >>> @register_model("tiny_net", family="demo")
        ... def tiny_net(num_classes: int = 10, in_chans: int = 3) -> nn.Module: ...
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _MODELS[name] = ModelInfo(name, family, factory, doc, dict(example_kwargs or {}))
        return factory

    return decorator


def _load_families() -> None:
    # Families register themselves on import; importing the package imports every family module.
    importlib.import_module("epochal.models")


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; unknown names raise with the closest valid names."""
    _load_families()
    if name not in _MODELS:
        hint = did_you_mean(name, _MODELS, " Did you mean {}?", n=3, cutoff=0.5)
        raise ValueError(f"unknown model {name!r}.{hint} See epochal.models.list_models().")
    return _MODELS[name]


def model_arguments(name: str) -> list[str] | None:
    """The keyword arguments registered model ``name`` takes (None: any, it checks them itself)."""
    params = inspect.signature(get_model_info(name).factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_model_arguments(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first of ``kwargs`` that model ``name`` does not take."""
    valid = model_arguments(name)
    if valid is not None:
        check_arguments(f"model {name!r}", kwargs, valid)


def check_arguments(owner: str, kwargs: Iterable[str], valid: Sequence[str]) -> None:
    """Raise ValueError for the first of ``kwargs`` not in ``valid``, suggesting the closest one."""
    for key in kwargs:
        if key not in valid:
            hint = did_you_mean(key, valid, " Did you mean {}?")
            raise ValueError(f"{owner} takes no argument {key!r}.{hint} Valid arguments: {', '.join(valid)}")


def create(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    *,
    pad_input_channels: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see ``list_models``).
        num_classes: outputs of the classifier; None keeps the model's default.
        in_chans: input channels; None keeps the model's default.
        pad_input_channels: widen the first convolution to a multiple of this many input channels
            (4 suits channels-last GPU kernels); the outputs are unchanged.
        **overrides: family options, e.g. ``stem="cifar"``, ``drop_path_rate=0.1`` or, for a RegNet,
            design-space parameters such as ``wa=30.0``.

    Returns:
        The model, with ``layer_groups()``, ``head``, ``reset_classifier`` and ``default_input_size``.

    Examples:
        >>> model = create("regnety_004", num_classes=10, stem="cifar")
    """
    info = get_model_info(name)
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    check_model_arguments(name, kwargs)
    model = info.factory(**kwargs)
    if pad_input_channels is not None:
        _pad_input_channels(model, pad_input_channels)
    return model


def list_families() -> list[str]:
    """The family names, sorted."""
    _load_families()
    return sorted({info.family for info in _MODELS.values()})


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Registered model names, sorted.

    Args:
        pattern: a shell-style pattern (``"regnety_*"``); a pattern without wildcards matches as a
            substring (``"resnet"`` finds every ResNet).
        family: keep only this family.
    """
    _load_families()
    if family is not None and family not in list_families():
        raise ValueError(f"unknown family {family!r}; valid families: {', '.join(list_families())}")
    names = sorted(_MODELS)
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatchcase(n, glob)]
    if family is not None:
        names = [n for n in names if _MODELS[n].family == family]
    return names


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def example_input(
    model: nn.Module,
    batch_size: int = 2,
    input_size: tuple[int, ...] | None = None,
    device: torch.device | str | None = None,
) -> Any:
    """A random input batch the model accepts (a tensor, or a tuple for tabular models).

    Args:
        model: the model; models with non-image inputs provide their own ``example_input``.
        batch_size: rows in the batch.
        input_size: per-sample size; defaults to ``model.default_input_size``.
        device: defaults to the device of the model's first parameter.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    if hasattr(model, "example_input"):
        return model.example_input(batch_size, device=device)
    size = tuple(input_size or model.default_input_size)
    return torch.randn(batch_size, *size, device=device)


def count_macs(model: nn.Module, inputs: Any = None, input_size: tuple[int, ...] | None = None) -> int:
    """Multiply-accumulates of one forward pass of one sample (FLOPs / 2, as counted by PyTorch).

    ``FlopCounterMode`` counts matrix multiplies and convolutions; element-wise work is ignored,
    as in the papers' FLOP counts. A model on the ``meta`` device is counted without computing.

    Args:
        model: the model.
        inputs: a batch to run (its MACs are divided by the batch size); by default one random
            sample of ``input_size`` (or ``model.default_input_size``).
        input_size: per-sample size when ``inputs`` is None.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if inputs is None:
        inputs = example_input(model, batch_size=1, input_size=input_size)
    first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    batch = first.shape[0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2 // batch


def model_summaries(pattern: str | None = None, family: str | None = None) -> list[dict[str, Any]]:
    """Name, family, parameters and MACs of each registered model at its default size.

    Models are built on the ``meta`` device (no memory, no initialisation cost) with their default
    number of classes, so this is fast enough for a CLI listing of every model.

    Args:
        pattern: as in ``list_models``.
        family: as in ``list_models``.

    Returns:
        One dict per model, sorted by name, with keys ``name``, ``family``, ``params`` (int),
        ``macs`` (int, one sample), ``input_size`` (tuple) and ``description``.
    """
    rows = []
    for name in list_models(pattern, family):
        info = _MODELS[name]
        with torch.device("meta"):
            model = create(name, **info.example_kwargs)
        size = tuple(model.default_input_size)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params": count_params(model),
                "macs": count_macs(model),
                "input_size": size,
                "description": info.description,
            }
        )
    return rows
