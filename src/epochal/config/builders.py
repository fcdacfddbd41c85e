"""Builders from a validated :class:`~epochal.config.schema.Config` to the objects of a run.

Each section has one thin builder that calls the area that owns the object (``epochal.data``,
``epochal.models``, ``epochal.schedules``, ``epochal.callbacks``); names are looked up in
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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from epochal.config.errors import check_kwargs
from epochal.utils import unknown_name_error

__all__ = [
    "LOSSES",
    "build_callbacks",
    "build_data",
    "build_loss",
    "build_model",
    "build_optimizer_spec",
    "build_phases",
    "callback_registry",
    "check_callbacks",
    "check_data_options",
    "check_phase_list",
    "check_schedule",
    "class_priors",
    "create_model",
    "load_matching_weights",
    "mixup_alpha_for",
    "register_callback",
    "register_loss",
    "resolve_data_path",
    "training_images",
]

#: Loss name -> constructor; the recipe's other ``loss`` keys are its keyword arguments.
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "bce_with_logits": nn.BCEWithLogitsLoss,
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "smooth_l1": nn.SmoothL1Loss,
}


def register_loss(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``loss: {name: NAME, ...}`` build ``factory(**kwargs)``."""
    LOSSES[name] = factory


# ----------------------------------------------------------------------------------------- callbacks
#: Registry names of callbacks whose class name does not snake-case to the name users know.
_CALLBACK_NAMES = {
    "TerminateOnNaN": "terminate_on_nan",
    "TensorBoard": "tensorboard",
    "CSVLogger": "csv_logger",
    "ReduceLROnPlateau": "reduce_lr_on_plateau",
}
_REGISTERED_CALLBACKS: dict[str, type] = {}
#: Callbacks the Learner or the builders add themselves; not selectable by name.
_INTERNAL_CALLBACKS = {"RunLogger", "PhaseFreezing", "Callback", "MonitorCallback"}


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


def check_callbacks(entries: Mapping[str, Any]) -> None:
    """Raise ValueError for an unknown callback name or an argument its class does not take."""
    registry = callback_registry()
    for name, kwargs in entries.items():
        if name not in registry:
            raise unknown_name_error("callback", name, registry)
        if kwargs:
            check_kwargs(registry[name].__init__, kwargs, f"of callback {name!r}")


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


def check_phase_list(phases: list[Mapping[str, Any]]) -> None:
    """Validate an explicit list of phase mappings (``freeze`` is read here, the rest by the phase)."""
    from epochal.schedules import TrainingPhase

    if not phases:
        raise ValueError("phases is an empty list; give at least one phase or {schedule: NAME}")
    for i, entry in enumerate(phases):
        if not isinstance(entry, Mapping):
            # ValueError, not TypeError: pydantic turns it into a validation error naming the key
            raise ValueError(f"phases.{i} must be a mapping of phase keys, got {entry!r}")  # noqa: TRY004
        _check_freeze(entry.get("freeze"), f"phases.{i}.freeze")
        TrainingPhase.from_dict({k: v for k, v in entry.items() if k != "freeze"}, where=f"phases.{i}")


def _check_freeze(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, bool) and not isinstance(value, int):
        raise ValueError(
            f"{where} must be true (freeze all but the head), false, or a number of layer groups; got {value!r}"
        )


def build_phases(config) -> tuple[list, list]:
    """The training phases, and per phase how many leading layer groups are frozen (None: leave as is).

    ``{schedule: NAME, ...}`` calls the schedule builder with the run's ``epochs`` and
    ``optimizer.lr`` filled in under whatever name the builder uses for them.
    """
    from epochal.schedules import TrainingPhase

    spec = config.phases
    if isinstance(spec, list):
        phases = [
            TrainingPhase.from_dict({k: v for k, v in e.items() if k != "freeze"}, where=f"phases.{i}")
            for i, e in enumerate(spec)
        ]
        freeze = [_freeze_groups(e.get("freeze")) for e in spec]
        return phases, freeze
    builder = _schedule_builder(spec.schedule)
    kwargs = spec.kwargs
    accepted = inspect.signature(builder).parameters
    for group, value in ((_EPOCH_ARGS, config.epochs), (_LR_ARGS, config.optimizer.lr)):
        name = next((a for a in group if a in accepted), None)
        if name is not None and not any(a in kwargs for a in group):
            kwargs[name] = value
    phases = builder(**kwargs)
    return phases, [None] * len(phases)


def _freeze_groups(value: Any) -> int | None:
    if value is None:
        return None
    if value is True:
        return -1
    if value is False:
        return 0
    return int(value)


# ----------------------------------------------------------------------------------------- optimizer, loss
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


def build_loss(config) -> nn.Module:
    """The loss module of ``config.loss``."""
    return LOSSES[config.loss.name](**config.loss.kwargs)


# ----------------------------------------------------------------------------------------- data
_DATA_SUPPLIED = {
    "image_folder": ("root", "valid_pct", "seed", "image_size", "batch_size", "augment", "device", "balance"),
    "tabular": ("data", "target", "valid_pct", "seed", "batch_size", "device", "balance"),
}


def _data_builder(kind: str) -> Callable:
    from epochal import data

    return data.image_folder_loaders if kind == "image_folder" else data.tabular_loaders


def check_data_options(data) -> None:
    """Raise ValueError for a ``data.options`` key the loader builder does not take."""
    check_kwargs(
        _data_builder(data.kind),
        data.options,
        f"in data.options (for kind {data.kind!r})",
        skip=_DATA_SUPPLIED[data.kind],
    )
    if data.augment:
        from epochal.data.augment import build_augmentations

        build_augmentations(_resolve_augment(data.augment, None))


def resolve_data_path(path: str | None) -> str:
    """A bundled data set name (``cifar10-mini``) or an existing file or folder."""
    from epochal.data import DATASETS, get_dataset

    if path is None:
        raise ValueError("no data: set data.path in the recipe or pass --data DIR")
    if Path(path).exists():
        return str(path)
    if path in DATASETS:
        return str(get_dataset(path))
    raise FileNotFoundError(f"data path {path!r} does not exist (and is not a registered data set: {sorted(DATASETS)})")


def mixup_alpha_for(macs: int) -> float:
    """MixUp strength (Zhang et al., *mixup: Beyond Empirical Risk Minimization*, 2018) for a model
    of ``macs`` multiply-accumulates per image at its default input size.

    Small models underfit and gain little from mixing; large ones overfit and gain more, so
    alpha grows with size: 0.1 below 1 GMAC, 0.2 below 4, 0.3 below 12, 0.4 above.
    """
    gmacs = macs / 1e9
    return 0.1 if gmacs < 1 else 0.2 if gmacs < 4 else 0.3 if gmacs < 12 else 0.4


def _model_macs(name: str) -> int:
    """Multiply-accumulates per sample of the registered model ``name`` at its default input size."""
    from epochal.models import model_summaries

    return next(row["macs"] for row in model_summaries(name) if row["name"] == name)


def _resolve_augment(spec: list[Any], model_name: str | None) -> list[Any]:
    """Replace ``alpha: auto`` of a mixing entry by :func:`mixup_alpha_for` the model's size.

    Without a model (validating the recipe alone) ``auto`` becomes 1.0, only to check the rest of
    the entry.
    """
    resolved = []
    for entry in spec:
        if isinstance(entry, Mapping) and entry.get("alpha") == "auto":
            alpha = mixup_alpha_for(_model_macs(model_name)) if model_name is not None else 1.0
            entry = {**entry, "alpha": alpha}
        resolved.append(entry)
    return resolved


def build_data(config, device: torch.device | str | None = None):
    """The :class:`~epochal.data.DataLoaders` of ``config.data`` (validation split seeded by ``seed``)."""
    data = config.data
    kwargs: dict[str, Any] = {
        "valid_pct": data.valid_pct,
        "seed": config.seed,
        "batch_size": data.batch_size,
        "device": device,
    }
    if data.balance is not None:
        kwargs["balance"] = data.balance
    path = resolve_data_path(data.path)
    if data.kind == "image_folder":
        kwargs.update(
            root=path,
            image_size=data.image_size,
            augment=_resolve_augment(data.augment, config.model.name) if data.augment else None,
        )
    else:
        kwargs.update(data=path, target=data.target)
    return _data_builder(data.kind)(**kwargs, **data.options)


# ----------------------------------------------------------------------------------------- model
def create_model(config, info: Mapping[str, Any]) -> nn.Module:
    """The model of ``config.model`` sized from the data facts ``info`` (classes, channels, cardinalities)."""
    from epochal.models import create

    kwargs = config.model.kwargs
    if config.data.kind == "tabular":
        kwargs.setdefault("cardinalities", list(info["cardinalities"]))
        kwargs.setdefault("n_continuous", int(info["n_continuous"]))
        return create(config.model.name, num_classes=int(info["num_classes"]), **kwargs)
    shape = info.get("input_shape")
    return create(
        config.model.name,
        num_classes=int(info["num_classes"]),
        in_chans=int(shape[0]) if shape else None,
        **kwargs,
    )


def build_model(config, data) -> nn.Module:
    """:func:`create_model`, then ``model.weights`` loaded, ``model.init_bias`` and ``model.data_init`` applied."""
    from epochal.models import init_output_bias

    model = create_model(config, data.info)
    if config.model.weights:
        load_matching_weights(model, config.model.weights)
    if config.model.init_bias == "priors":
        init_output_bias(model, class_priors(data), multilabel=bool(data.info.get("multi_label", False)))
    if config.model.data_init:
        init = getattr(model, "init_from_data", None)
        if not callable(init):
            raise ValueError(
                f"model.data_init={config.model.data_init}: model {config.model.name!r} has no "
                "init_from_data(images) method; set model.data_init to 0"
            )
        init(training_images(data.train, config.model.data_init, config.seed))
    return model


def training_images(loader, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` training inputs for a data-dependent initialisation, as the model will see them.

    An :class:`~epochal.data.ImageLoader` gives a seeded random choice of its images, normalised
    but not augmented; any other loader the inputs of its first batches of epoch 0.
    """
    if hasattr(loader, "sample_images"):
        return loader.sample_images(count, seed)
    parts, total = [], 0
    for inputs, _ in loader.iter_epoch(0):
        parts.append(inputs)
        total += len(inputs)
        if total >= count:
            break
    return torch.cat(parts)[:count]


def class_priors(data) -> torch.Tensor:
    """Class frequencies of the training split (from ``info["class_counts"]`` or the loader's targets)."""
    from epochal.models import class_priors_from_targets

    counts = data.info.get("class_counts")
    if counts:
        values = torch.tensor(list(counts.values()) if isinstance(counts, Mapping) else list(counts), dtype=torch.float)
        if data.info.get("multi_label"):  # counts of images carrying each label
            return values / float(data.info.get("train_size") or values.max())
        return values / values.sum()
    targets = getattr(data.train, "targets", None)
    if targets is None:
        raise ValueError(
            "model.init_bias 'priors' needs class counts: the data gives neither info['class_counts'] "
            "nor training targets"
        )
    return class_priors_from_targets(targets.cpu(), int(data.info["num_classes"]))


def load_matching_weights(model: nn.Module, source: str | Path) -> dict[str, list[str]]:
    """Load the weights of a run folder, checkpoint or safetensors file whose names and shapes match.

    Tensors that are missing or differ in shape (a classifier for another number of classes)
    keep the model's own initialisation; their names are returned.
    """
    from epochal.learner import resolve_checkpoint
    from epochal.state import load_checkpoint

    source = Path(source)
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(source))
    else:
        path = (
            resolve_checkpoint(source, "best")
            if source.is_dir() and (source / "checkpoints/best.pt").is_file()
            else resolve_checkpoint(source)
        )
        state = load_checkpoint(path)["model"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"model.weights {source}: no tensor matches model {type(model).__name__} by name and shape")
    model.load_state_dict(matched, strict=False)
    return {"skipped": sorted(set(own) - set(matched)), "unused": sorted(set(state) - set(matched))}
