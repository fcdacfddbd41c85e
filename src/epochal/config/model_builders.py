"""Builders of a run's model from the recipe's ``model`` section and the data's facts."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "build_distillation",
    "build_model",
    "build_on_meta",
    "check_model_for_data",
    "class_priors",
    "create_model",
    "load_matching_weights",
    "training_images",
]


def check_model_for_data(
    name: str,
    kind: str,
    kwargs: Mapping[str, Any] | None = None,
    init_bias: str = "default",
    unlabelled: bool = False,
) -> None:
    """Raise ValueError when registered model ``name`` cannot be built for ``data.kind`` ``kind``.

    Recipes size a model's outputs from the data (``num_classes``) and its inputs from the images
    (``in_chans``) or the table (``cardinalities``, ``n_continuous``). Unlabelled images
    (``data.options.unlabelled``) train a model that reconstructs its input (an autoencoder): it
    takes ``in_chans`` and no ``num_classes``, and a classifier cannot train on them. An image
    model given arguments is built on the meta device (no memory), so a bad value is reported when
    the recipe loads; so is ``init_bias: priors`` for a model whose output layer has no bias.
    """
    from epochal.models import get_model_info
    from epochal.models._registry import model_arguments

    kwargs = dict(kwargs or {})
    accepted = model_arguments(name)
    if unlabelled:
        _check_reconstruction_model(name, accepted, init_bias)
    else:
        needed = ("cardinalities", "n_continuous") if kind == "tabular" else ("in_chans",)
        missing = [a for a in ("num_classes", *needed) if accepted is not None and a not in accepted]
        if missing or (accepted is None and kind == "tabular"):
            family = get_model_info(name).family
            suggestion = "tabular_mlp" if kind == "tabular" else "an image classifier such as resnet18"
            raise ValueError(
                f"model {name!r} ({family} family) does not take {missing or list(needed)}, which a recipe with "
                f"data.kind {kind!r} sets from the data; use {suggestion}. A model that reconstructs its input "
                "(an autoencoder) trains on unlabelled images: data.options.unlabelled: true"
            )
    if kind == "tabular":  # table models are sized from the data's columns: nothing to build yet
        return
    if (kwargs and accepted is not None) or init_bias == "priors":  # ModelConfig built **kwargs models
        _check_on_meta(name, kwargs, init_bias)


def _check_reconstruction_model(name: str, accepted, init_bias: str) -> None:
    from epochal.models import get_model_info

    family = get_model_info(name).family
    if accepted is not None and "num_classes" not in accepted and "in_chans" not in accepted:
        raise ValueError(
            f"model {name!r} ({family} family) reconstructs flat feature vectors (it takes no in_chans), and "
            "data.options.unlabelled gives images; use conv_autoencoder"
        )
    if accepted is not None and ("num_classes" in accepted or "in_chans" not in accepted):
        raise ValueError(
            f"model {name!r} ({family} family) is not a model that reconstructs its input, and "
            "data.options.unlabelled gives images without labels; use conv_autoencoder (its encoder can "
            "then feed a classifier: model.name conv_encoder_classifier with model.weights set to the run)"
        )
    if init_bias == "priors":
        raise ValueError("model.init_bias 'priors' needs class frequencies; unlabelled images have none")


def build_on_meta(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Model ``name`` built with ``kwargs`` on the meta device (no memory, no initialisation).

    Raises:
        ValueError: naming the model and the arguments its constructor rejects.
    """
    from epochal.models import create

    try:
        with torch.device("meta"):
            return create(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model {name!r} cannot be built with {dict(kwargs)}: {exc}") from None


def _check_on_meta(name: str, kwargs: dict[str, Any], init_bias: str) -> None:
    from epochal.models.init import output_layer

    model = build_on_meta(name, kwargs)
    if init_bias == "priors" and output_layer(model).bias is None:
        raise ValueError(
            f"model.init_bias 'priors' sets the output bias, but model {name!r} has an output layer "
            "without one; use init_bias: default"
        )


def create_model(config, info: Mapping[str, Any]) -> nn.Module:
    """The model of ``config.model`` sized from the data facts ``info`` (classes, channels, cardinalities).

    A regression target (no classes) gets one output; one-hot tabular data (``encoding: onehot``)
    a model that reads its one input tensor.
    """
    from epochal.models import create

    kwargs = config.model.kwargs
    if info.get("task") == "reconstruction":  # an autoencoder: sized from the images, no classes
        return create(config.model.name, **_image_size_kwargs(config.model.name, kwargs, info))
    num_classes = int(info["num_classes"]) if info.get("num_classes") else 1
    if config.data.kind == "tabular":
        kwargs.setdefault("cardinalities", list(info["cardinalities"]))
        kwargs.setdefault("n_continuous", int(info["n_continuous"]))
        if info.get("encoding") == "onehot":
            kwargs.setdefault("onehot", True)
    elif info.get("input_shape"):
        kwargs = _image_size_kwargs(config.model.name, kwargs, info)
    else:  # no image shape (e.g. features): the model sizes its input itself
        kwargs.setdefault("in_chans", None)
    return create(config.model.name, num_classes=num_classes, **kwargs)


def _image_size_kwargs(name: str, kwargs: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``in_chans`` from the images, and ``input_size`` when the model takes it (the
    autoencoder family, whose linear code is sized by it) and the images are square."""
    from epochal.models._registry import model_arguments

    kwargs = dict(kwargs)
    shape = info.get("input_shape")
    if shape:
        kwargs["in_chans"] = int(shape[0])
        if "input_size" in (model_arguments(name) or ()) and "input_size" not in kwargs and shape[1] == shape[2]:
            kwargs["input_size"] = int(shape[1])
    return kwargs


def build_model(config, data) -> nn.Module:
    """:func:`create_model`, then ``model.weights`` loaded, ``model.init_bias`` and ``model.data_init`` applied."""
    from epochal.models import init_output_bias

    model = create_model(config, data.info)
    if config.model.weights:
        _warn_unmatched(model, config.model.weights, load_matching_weights(model, config.model.weights))
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


def _warn_unmatched(model: nn.Module, source: str, report: dict[str, list[str]]) -> None:
    """Warn about tensors outside the output layer that ``model.weights`` had none for.

    A new output layer (another number of classes) is expected to start fresh; a body tensor that
    does not match (an autoencoder's encoder of another ``latent_dim``) means the recipe's model is
    not the one the weights came from.
    """
    from epochal.models.init import output_layer

    try:
        head = {id(t) for t in (*output_layer(model).parameters(), *output_layer(model).buffers())}
    except ValueError:  # a model without a linear output layer
        head = set()
    tensors = dict(model.state_dict(keep_vars=True))
    lost = [name for name in report["skipped"] if id(tensors[name]) not in head]
    if lost:
        shown = ", ".join(lost[:8]) + (f" and {len(lost) - 8} more" if len(lost) > 8 else "")
        warnings.warn(
            f"model.weights {source}: {len(lost)} tensor(s) of {type(model).__name__} have no match by name and shape "
            f"there and keep their fresh initialisation: {shown}; check that the model's settings are the ones "
            "the weights were trained with",
            stacklevel=3,
        )


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

    A run folder gives its final weights (``swa.pt``/``ema.pt`` when ``summary.json`` names one),
    else ``best.pt``, else ``last.pt``.

    Tensors that are missing or differ in shape (a classifier for another number of classes)
    keep the model's own initialisation; their names are returned.
    """
    from epochal.learner import resolve_checkpoint
    from epochal.runs.folder import final_checkpoint
    from epochal.state import load_checkpoint

    source = Path(source)
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(source))
    else:
        final = final_checkpoint(source) if source.is_dir() else None  # a run that ended with SWA/EMA weights
        path = final or (
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


# ----------------------------------------------------------------------------------------- distillation
def build_distillation(config, data):
    """The :class:`~epochal.callbacks.Distillation` of ``config.distillation`` (None without one).

    The teacher run's model is rebuilt with :func:`~epochal.config.inference.restore_model`; its
    classes must be the data's, and a different normalisation or input shape is warned about (the
    teacher would see inputs unlike those it was trained on).
    """
    spec = config.distillation
    if spec is None:
        return None
    from epochal.callbacks.distillation import Distillation
    from epochal.config.errors import ConfigError
    from epochal.config.inference import restore_model
    from epochal.state import CheckpointError

    try:
        teacher, _, info, _ = restore_model(spec.teacher)
    except (FileNotFoundError, CheckpointError) as exc:
        raise ConfigError(f"distillation.teacher {spec.teacher!r}: {exc}") from None
    classes = list(data.classes) if data.classes is not None else None
    if info.get("classes") is not None and classes is not None and list(info["classes"]) != classes:
        raise ConfigError(
            f"distillation.teacher {spec.teacher!r} predicts the classes {info['classes']}, "
            f"but this recipe's data has {classes}; distil from a run trained on the same classes"
        )
    for key in ("normalize", "input_shape"):
        theirs, ours = info.get(key), data.info.get(key)
        ours = json.loads(json.dumps(ours))  # as data.json holds it: tuples become lists
        if theirs is not None and ours is not None and theirs != ours:
            warnings.warn(
                f"distillation.teacher {spec.teacher!r} was trained with {key} {theirs}, this recipe's data "
                f"has {ours}: the teacher sees inputs unlike its training data",
                stacklevel=2,
            )
    return Distillation(teacher, spec.temperature, spec.alpha, cache_dir=spec.cache_dir)
