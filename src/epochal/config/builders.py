"""Builders from a validated :class:`~epochal.config.schema.Config` to the objects of a run.

Each section has one thin builder that calls the area that owns the object (``epochal.data``,
``epochal.models``, ``epochal.schedules``, ``epochal.callbacks``, ``epochal.losses``); the data
and model builders live in :mod:`~epochal.config.data_builders` and
:mod:`~epochal.config.model_builders` and are re-exported here. Names are looked up in
registries, so a new loss, callback or schedule is one registry entry, and a new capability
(averaging, distillation, distributed training) is a schema section plus a builder here.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from epochal.config.data_builders import (
    build_data,
    check_augment,
    check_data_options,
    label_counts,
    mixup_alpha_for,
    resolve_data_path,
)
from epochal.config.errors import ConfigError, check_kwargs
from epochal.config.model_builders import (
    build_distillation,
    build_model,
    check_model_for_data,
    class_priors,
    create_model,
    load_matching_weights,
    training_images,
)
from epochal.config.strict import check_phase_types
from epochal.losses import DEFAULT_LOSSES, LOSSES, register_loss
from epochal.utils import unknown_name_error

__all__ = [
    "LOSSES",
    "build_callbacks",
    "build_data",
    "build_distillation",
    "build_loss",
    "build_model",
    "build_optimizer_spec",
    "build_phases",
    "callback_registry",
    "check_augment",
    "check_callbacks",
    "check_data_options",
    "check_model_for_data",
    "check_optimizer_values",
    "check_phase_list",
    "check_schedule",
    "check_schedule_values",
    "class_priors",
    "create_model",
    "load_matching_weights",
    "mixup_alpha_for",
    "register_callback",
    "register_loss",
    "resolve_data_path",
    "training_images",
    "with_data_defaults",
]

# ----------------------------------------------------------------------------------------- callbacks
#: Registry names of callbacks whose class name does not snake-case to the name users know.
_CALLBACK_NAMES = {
    "TerminateOnNaN": "terminate_on_nan",
    "TensorBoard": "tensorboard",
    "CSVLogger": "csv_logger",
    "ReduceLROnPlateau": "reduce_lr_on_plateau",
}
_REGISTERED_CALLBACKS: dict[str, type] = {}
#: Callbacks the Learner or the builders add themselves; not selectable by name (Distillation comes
#: from the top-level ``distillation`` section, which turns a run folder into its teacher model).
_INTERNAL_CALLBACKS = {
    "RunLogger",
    "PhaseFreezing",
    "SaveOnInterrupt",
    "Callback",
    "MonitorCallback",
    "WeightAveraging",
    "Distillation",
}


def _snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def register_callback(name: str, cls: type) -> None:
    """Make ``callbacks: {name: {...}}`` build ``cls(**kwargs)`` (for callbacks outside epochal.callbacks)."""
    _REGISTERED_CALLBACKS[name] = cls


@functools.cache
def _package_callbacks() -> dict[str, type]:
    import epochal.callbacks as package
    from epochal.callbacks.base import Callback

    found: dict[str, type] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Callback)
                and obj.__module__ == module.__name__
                and obj.__name__ not in _INTERNAL_CALLBACKS
                and not obj.__name__.startswith("_")
            ):
                found[_CALLBACK_NAMES.get(obj.__name__, _snake(obj.__name__))] = obj
    return found


def callback_registry() -> dict[str, type]:
    """Callback name -> class: every public callback of ``epochal.callbacks`` plus registered ones."""
    return {**_package_callbacks(), **_REGISTERED_CALLBACKS}


#: Callback arguments a recipe cannot give (Python objects), and what sets them instead.
_NOT_FROM_RECIPES = {"progress_bar": {"console": "the CLI draws the bars on stderr"}}


def check_callbacks(entries: Mapping[str, Any]) -> None:
    """Raise ValueError for an unknown callback name, or arguments its class does not take or refuses.

    Each enabled callback is constructed (callbacks do no work until a fit starts), so a bad value
    is reported when the recipe loads rather than after the data is built.
    """
    registry = callback_registry()
    for name, kwargs in entries.items():
        if name not in registry:
            raise unknown_name_error("callback", name, registry)
        if not kwargs:
            continue
        check_kwargs(registry[name].__init__, kwargs, f"of callback {name!r}")
        for key, reason in _NOT_FROM_RECIPES.get(name, {}).items():
            if key in kwargs:
                raise ValueError(f"{key!r} of callback {name!r} is a Python object, not a recipe value ({reason})")
        try:
            registry[name](**kwargs)
        except (TypeError, ValueError, ImportError) as exc:
            raise ValueError(f"callback {name!r}: {exc}") from None


def build_callbacks(entries: Mapping[str, Any]) -> list:
    """One callback per enabled entry (``null``/``false`` entries are switched off), in recipe order."""
    registry = callback_registry()
    return [
        registry[name](**(kwargs or {}))
        for name, kwargs in entries.items()
        if kwargs is not False and kwargs is not None
    ]


# ----------------------------------------------------------------------------------------- schedules
#: Alternative argument names builders use for the run length and the peak learning rate.
_EPOCH_ARGS = ("epochs", "total_epochs", "cycle_len")
_LR_ARGS = ("lr", "lr_max")


def _schedule_builder(name: str) -> Callable:
    from epochal.schedules.builders import SCHEDULES

    if name not in SCHEDULES:
        raise unknown_name_error("schedule", name, SCHEDULES)
    return SCHEDULES[name]


def check_schedule(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise ValueError for an unknown schedule or argument (``phases.schedule`` and its keys)."""
    check_kwargs(_schedule_builder(name), kwargs, f"of schedule {name!r}", declared=("schedule",))


def check_schedule_values(spec, epochs: int, lr: float) -> None:
    """Raise ValueError when the schedule builder rejects its arguments for this run's ``epochs`` and ``lr``.

    Builders are pure functions of their arguments, so calling one here costs nothing and reports a
    bad value (``warmup_epochs`` past the run's end) when the recipe loads.
    """
    try:
        _call_schedule(spec, epochs, lr)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"schedule {spec.schedule!r} with epochs={epochs}: {exc}") from None


#: Keys of a phase mapping that the recipe layer reads (the rest are ``TrainingPhase`` keys).
_RECIPE_PHASE_KEYS = ("freeze", "data")


def _phase_keys(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in _RECIPE_PHASE_KEYS}


def check_phase_list(phases: list[Mapping[str, Any]], data=None, variants: Mapping[str, Any] | None = None) -> None:
    """Validate an explicit list of phase mappings (``freeze`` and ``data`` are read here, the rest by the phase).

    Args:
        phases: the recipe's phase mappings.
        data: the recipe's validated ``data`` section (phase ``data`` is checked laid over it).
        variants: the recipe's ``data_variants``.
    """
    from epochal.config.phase_data import merged_data, phase_overlay
    from epochal.schedules import TrainingPhase

    if not phases:
        raise ValueError("phases is an empty list; give at least one phase or {schedule: NAME}")
    for i, entry in enumerate(phases):
        if not isinstance(entry, Mapping):
            # ValueError, not TypeError: pydantic turns it into a validation error naming the key
            raise ValueError(f"phases.{i} must be a mapping of phase keys, got {entry!r}")  # noqa: TRY004
        _check_freeze(entry.get("freeze"), f"phases.{i}.freeze")
        check_phase_types(entry, f"phases.{i}")
        TrainingPhase.from_dict(_phase_keys(entry), where=f"phases.{i}")
        overlay = phase_overlay(entry.get("data"), variants or {}, f"phases.{i}.data")
        if data is not None:
            merged_data(data, overlay, f"phases.{i}.data")


def _check_freeze(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, bool) and not isinstance(value, int):
        raise ValueError(
            f"{where} must be true (freeze all but the head), false, or a number of layer groups; got {value!r}"
        )


def build_phases(config, data=None) -> tuple[list, list]:
    """The training phases, and per phase how many leading layer groups are frozen (None: leave as is).

    ``{schedule: NAME, ...}`` calls the schedule builder with the run's ``epochs`` and
    ``optimizer.lr`` filled in under whatever name the builder uses for them. With
    ``callbacks.swa.lr`` the builder gets the epochs before SWA starts and the SWA phase is
    appended (:mod:`epochal.config.averaging`).

    Args:
        config: the recipe.
        data: the run's :class:`~epochal.data.DataLoaders`; phases with ``data`` settings get a
            training loader built from it. None leaves every phase's ``data`` unset (the schedule
            alone, e.g. to plot it for a given number of steps per epoch).
    """
    from epochal.config.averaging import swa_schedule_split
    from epochal.schedules import TrainingPhase

    spec = config.phases
    swa_epochs, swa_phases = swa_schedule_split(config)
    if isinstance(spec, list):
        from epochal.config.phase_data import phase_loaders

        loaders = phase_loaders(config, data) if data is not None else [None] * len(spec)
        phases = [
            TrainingPhase.from_dict({**_phase_keys(e), "data": loader}, where=f"phases.{i}")
            for i, (e, loader) in enumerate(zip(spec, loaders))
        ]
        freeze = [_freeze_groups(e.get("freeze")) for e in spec]
        return phases, freeze
    epochs = config.epochs if swa_epochs is None else swa_epochs
    phases = _call_schedule(spec, epochs, config.optimizer.lr) + swa_phases
    return phases, [None] * len(phases)


def _call_schedule(spec, epochs: int, lr: float) -> list:
    """The phases of ``{schedule: NAME, ...}``, the run's ``epochs`` and ``lr`` filled in where not given.

    A builder's first missing required length or rate argument is filled (``swa_phase``'s
    ``epochs`` and ``lr`` next to a given ``cycle_len`` and ``lr_max``); one value never fills two
    arguments (``fge(lr, lr_max)`` gets ``lr`` and asks for ``lr_max``). A builder with only
    optional ones (``sgdr``'s ``cycle_len``) gets its first unless the recipe gives one of the group.
    """
    builder = _schedule_builder(spec.schedule)
    kwargs = spec.kwargs
    accepted = inspect.signature(builder).parameters
    for group, value in ((_EPOCH_ARGS, epochs), (_LR_ARGS, lr)):
        names = [a for a in group if a in accepted]
        required = [a for a in names if accepted[a].default is inspect.Parameter.empty]
        missing = [a for a in required if a not in kwargs]
        if missing:
            kwargs[missing[0]] = value
        elif not required and names and not any(a in kwargs for a in group):
            kwargs[names[0]] = value
    return builder(**kwargs)


def _freeze_groups(value: Any) -> int | None:
    if value is None:
        return None
    if value is True:
        return -1
    if value is False:
        return 0
    return int(value)


# ----------------------------------------------------------------------------------------- optimizer, loss
def check_optimizer_values(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise ValueError when optimizer ``name`` rejects ``kwargs`` (built on one dummy parameter).

    The constructor checks values together (Nesterov momentum needs zero dampening), so the
    recipe's optimizer section is checked when it loads.
    """
    from epochal.optim import build_optimizer

    try:
        build_optimizer(name, [torch.zeros(1, requires_grad=True)], **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer {name!r} rejects {dict(kwargs)}: {exc}") from None


def build_optimizer_spec(config) -> Any:
    """The Learner's ``optimizer`` argument: the registry name, or a factory carrying extra arguments."""
    opt = config.optimizer
    extra = opt.kwargs
    if opt.momentum is not None:
        extra["momentum"] = opt.momentum
    if opt.groups:
        from epochal.config.groups import build_group_rules

        extra["rules"] = build_group_rules(opt)
    if not extra:
        return opt.name
    from epochal.optim import build_optimizer

    return functools.partial(build_optimizer, opt.name, **extra)


def build_loss(config, info: Mapping[str, Any] | None = None, targets: torch.Tensor | None = None) -> nn.Module:
    """The loss module of ``config.loss``, its class weights sized and computed for the data.

    Args:
        config: the recipe.
        info: the data facts (``DataLoaders.info``, or a run's ``data.json``): classes and the
            training label counts that ``balanced`` weights come from.
        targets: training targets, to count labels when ``info`` has no ``class_counts``.
    """
    info = info or {}
    counts, n_samples = label_counts(info, targets)
    classes = info.get("classes")
    name = config.loss.name or DEFAULT_LOSSES[_label_kind(info)]
    if config.loss.name is None:  # the recipe's arguments were checked against some default loss, not this one
        from epochal.config.schema import check_loss_arguments

        check_loss_arguments(name, config.loss.kwargs, where="loss")
    return LOSSES[name].build(
        config.loss.kwargs,
        classes=list(classes) if classes else None,
        num_classes=info.get("num_classes"),
        counts=counts,
        n_samples=n_samples,
        targets=_label_kind(info) if info else None,
    )


def with_data_defaults(config, info: Mapping[str, Any]):
    """``config`` with the loss and metrics it leaves to the data filled in from ``info``.

    A recipe without ``loss.name`` gets :data:`~epochal.losses.DEFAULT_LOSSES` of the data's
    labels, one without ``metrics`` :data:`~epochal.metrics.DEFAULT_METRICS` (multi-label data:
    sigmoid + BCE, ``f1``, ``f1_macro`` and ``mAP``). The run's ``config.yaml`` is this config, so
    evaluation and prediction rebuild the same loss and metrics.

    Returns:
        ``(config, chosen)``: ``chosen`` maps ``loss``/``metrics`` to what was filled in (empty
        when the recipe named both).
    """
    from epochal.metrics import DEFAULT_METRICS

    kind = _label_kind(info)
    chosen: dict[str, Any] = {}
    if config.loss.name is None:
        chosen["loss"] = DEFAULT_LOSSES[kind]
    if config.metrics is None:
        chosen["metrics"] = list(DEFAULT_METRICS[kind])
    if not chosen:
        return config, chosen
    update: dict[str, Any] = {"metrics": chosen.get("metrics", config.metrics)}
    if "loss" in chosen:
        from epochal.config.schema import check_loss_arguments

        try:
            check_loss_arguments(chosen["loss"], config.loss.kwargs)
        except ValueError as exc:
            raise ConfigError(
                f"{exc}: the recipe sets no loss.name, and the data's labels ({kind}) chose {chosen['loss']!r}; "
                "set loss.name or drop the argument"
            ) from None
        update["loss"] = type(config.loss)(**{"name": chosen["loss"], **config.loss.kwargs})
    return config.model_copy(update=update), chosen


def _label_kind(info: Mapping[str, Any]) -> str:
    """The data's kind of labels, as :data:`epochal.losses.TARGETS` names them."""
    if info.get("multi_label"):
        return "multi_hot"
    return {"regression": "values", "reconstruction": "inputs"}.get(info.get("task"), "class_indices")
