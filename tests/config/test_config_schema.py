"""Every key a recipe may set, walked: a plausible value either trains or is refused when the recipe loads.

The keys are generated from the schema (every field of every closed section) and from the
registries behind the open sections (every model, loss, optimizer, schedule builder, callback,
metric, augmentation and data-loader option, with each of their arguments), so a key added later
is walked automatically. Each key needs an entry in :data:`PLAUSIBLE` (a value a user could
reasonably write): a new key without one fails :func:`test_every_key_has_a_plausible_value`, and
its author adds one. Keys listed in :data:`REFUSED` must raise :class:`ConfigError` naming the
key when the recipe loads; every other key must train one optimizer step (and validate) on tiny
generated data, through the same ``train`` that ``epochal train`` runs.

Every argument of a model family is walked on one model of the family (:func:`_representative`);
the other models by name, some of them large, are walked in the ``slow`` run.

Recipes are strict: every key whose plausible value is a number or a boolean is walked again with
that value quoted (``'0.1'``, ``'true'``: what strict types refuse, and what lax ones converted),
and must be refused when the recipe loads, naming the key (:func:`test_quoted_numbers_and_booleans_are_refused`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel

from epochal.callbacks.base import Callback
from epochal.config import ConfigError, load_config
from epochal.config.builders import _REGISTERED_CALLBACKS, callback_registry, register_callback
from epochal.config.data_builders import _DATA_SUPPLIED, _data_builder
from epochal.config.experiment import train
from epochal.config.overrides import set_dotted
from epochal.config.schema import Config, OpenSection, Section
from epochal.data import AUGMENTATIONS
from epochal.events import CancelFit
from epochal.losses import LOSSES
from epochal.metrics import METRICS
from epochal.models import get_model_info, list_models
from epochal.models._registry import model_arguments
from epochal.models.regnet import RegNet, RegNetParams
from epochal.optim.factory import OPTIMIZERS
from epochal.schedules.builders import SCHEDULES
from epochal.schedules.config import PHASE_KEYS

STOP = "stop_after_first_epoch"


class StopAfterFirstEpoch(Callback):
    """Ends the fit after the first epoch (its training step and its validation)."""

    order = 1000  # after every callback's end-of-epoch work, checkpoints included

    def after_epoch(self) -> None:
        raise CancelFit


# ----------------------------------------------------------------------------------------- the keys
#: Open sections: their keys come from a registry, not from the schema's fields.
OPEN_FIELDS = {"model", "loss", "optimizer", "phases", "callbacks", "data.options"}
#: Fields that pick the registry entry (walked as one key per entry).
SELECTORS = {"model.name", "loss.name", "optimizer.name", "phases.schedule"}
#: Arguments of models whose factory takes ``**kwargs`` (the signature cannot list them).
VAR_KWARGS_ARGUMENTS = {
    "regnet": [f.name for f in dataclasses.fields(RegNetParams)]
    + [p for p in inspect.signature(RegNet.__init__).parameters if p not in ("self", "params")],
}


def _fields(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Dotted keys of a pydantic section, recursing into closed sub-sections and dicts of them."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from _fields(annotation, f"{key}.")
            if issubclass(annotation, OpenSection) and key not in OPEN_FIELDS:
                raise AssertionError(f"open section {key} has no registry walk in this test")
        elif len(args) == 2 and args[0] is str and isinstance(args[1], type) and issubclass(args[1], Section):
            yield from _fields(args[1], f"{key}.*.")  # dict[str, Section]
        elif key not in OPEN_FIELDS:
            yield key


def _arguments(fn: Callable, skip: tuple[str, ...] = ()) -> list[str]:
    params = inspect.signature(fn).parameters
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [n for n, p in params.items() if n not in ("self", *skip) and p.kind not in variadic]


def _model_arguments(name: str) -> list[str]:
    accepted = model_arguments(name)
    if accepted is None:
        family = get_model_info(name).family
        assert family in VAR_KWARGS_ARGUMENTS, f"model {name!r} takes **kwargs: list them in VAR_KWARGS_ARGUMENTS"
        accepted = VAR_KWARGS_ARGUMENTS[family]
    return accepted


def _model_keys() -> Iterator[str]:
    """``model:<name>`` for every model, ``model:<family>.<arg>`` for every argument of a family."""
    yield from (f"model:{name}" for name in list_models())
    seen = set()
    for name in list_models():
        family = get_model_info(name).family
        for arg in _model_arguments(name):
            if (family, arg) not in seen:
                seen.add((family, arg))
                yield f"model:{family}.{arg}"


def schema_keys() -> list[str]:
    """Every key a recipe may set: closed fields, and each registry entry with each of its arguments."""
    keys = [k for k in _fields(Config, "") if k not in SELECTORS]
    keys += list(_model_keys())
    for name, entry in LOSSES.items():
        keys += [f"loss:{name}", *(f"loss:{name}.{a}" for a in _arguments(entry.factory.__init__))]
    for name, entry in OPTIMIZERS.items():
        keys += [f"optimizer:{name}", *(f"optimizer:{name}.{a}" for a in _arguments(entry.cls.__init__, ("params",)))]
    for name, builder in SCHEDULES.items():
        keys += [f"schedule:{name}", *(f"schedule:{name}.{a}" for a in _arguments(builder))]
    keys += [f"phase.{k}" for k in (*PHASE_KEYS, "freeze")]
    for name, cls in callback_registry().items():
        if name != STOP:
            keys += [f"callback:{name}", *(f"callback:{name}.{a}" for a in _arguments(cls.__init__))]
    for kind in ("image_folder", "tabular"):
        keys += [f"option:{kind}.{a}" for a in _arguments(_data_builder(kind)) if a not in _DATA_SUPPLIED[kind]]
    keys += [f"metric:{name}" for name in METRICS]
    keys += [f"augment:{name}" for name in AUGMENTATIONS]
    return keys


# ----------------------------------------------------------------------------------------- the values
@dataclasses.dataclass(frozen=True)
class V:
    """A plausible value, the data it fits (``image``, ``multi_label``, ``table``, ``regression``) and
    other keys it needs (dotted, set after it)."""

    value: Any
    context: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


#: A cyclic schedule, for the callbacks that act at the end of its cycles.
SGDR = {"phases": {"schedule": "sgdr", "cycle_len": 1, "n_cycles": 2}}

#: A plausible value per key. ``*`` stands for any entry of the registry (``optimizer:*.eps``);
#: a callable value is called with the test's workspace (paths of fixtures).
PLAUSIBLE: dict[str, Any] = {
    # top level
    "name": "walked",
    "description": "a recipe of the schema walk",
    "tags": ["walk", "test"],
    "seed": 3,
    "deterministic": True,
    "epochs": 2,
    "metrics": ["accuracy"],
    # data
    "data.kind": V("tabular", "table"),
    "data.path": lambda ws: str(ws.images),
    "data.valid_pct": 0.3,
    "data.batch_size": 8,
    "data.image_size": 12,
    "data.augment": ["flip", "translate(pad=2)"],
    "data.target": V("y", "table"),
    "data.balance": "oversample",
    "data.cache_features": V(True, extra={"data.augment": None, "model.freeze": "backbone",
                                          "data.options.cache_dir": None}),
    "data_variants.*.batch_size": V(6, extra={"phases": [{"epochs": 1, "data": "v"}]}),
    "data_variants.*.image_size": V(12, extra={"phases": [{"epochs": 1, "data": "v"}]}),
    "data_variants.*.augment": V([], extra={"phases": [{"epochs": 1, "data": "v"}]}),
    "data_variants.*.balance": V("undersample", extra={"phases": [{"epochs": 1, "data": "v"}]}),
    # model: declared keys, then per family
    "model.weights": lambda ws: ws.weights(),
    "distillation": lambda ws: {"teacher": ws.weights(), "temperature": 3.0, "alpha": 0.5},
    "model.data_init": 4,  # airbench's whitening from 4 training images
    "model.freeze": "backbone",
    "model.init_bias": V("priors", "table"),  # airbench's head has no bias: refused there (test_config_loading)
    "model:vgg16_bn_cifar": V({}, extra={"data.image_size": 32}),  # five 2x2 poolings
    "model:densenet121": V({}, extra={"data.image_size": 32}),
    "model:vgg.config": [[16], [32, 32]],
    "model:vgg.hidden": [32],
    "model:*.num_classes": 3,
    "model:*.in_chans": 3,
    "model:*.widths": [8, 16, 16],
    "model:*.dropout": 0.1,
    "model:*.pool": "max",
    "model:*.stem": "cifar",
    "model:*.zero_init_last": False,
    "model:*.drop_path_rate": 0.1,
    "model:airbench.whiten_kernel": 2,
    "model:airbench.bn_momentum": 0.5,
    "model:airbench.scale": 0.5,
    "model:airbench.head_std": 1.0,
    "model:airbench.trainable_bn_scale": True,
    "model:conv_autoencoder": V({}, "unlabelled"),
    "model:autoencoder.input_size": V(16, "unlabelled"),
    "model:autoencoder.latent_dim": V(8, "unlabelled"),
    "model:autoencoder.widths": V([8, 16], "unlabelled"),
    "model:autoencoder.n_features": 16,
    "model:autoencoder.hidden": [16],
    "model:encoder_classifier.input_size": 16,
    "model:encoder_classifier.latent_dim": 8,
    "model:encoder_classifier.hidden": [16],
    "option:image_folder.unlabelled": V(True, "unlabelled"),
    "model:densenet.block_depths": [2, 2],
    "model:densenet.growth": 4,
    "model:densenet.compression": 0.5,
    "model:densenet.bottleneck": 2,
    "model:inception.widths": [8, 16, 32],
    "model:inception.depths": [1, 1, 1],
    "model:separable.stem_width": 8,
    "model:separable.final_width": 32,
    "model:regnet.depth": 4,
    "model:regnet.w0": 16,
    "model:regnet.wa": 8.0,
    "model:regnet.wm": 2.0,
    "model:regnet.group_width": 8,
    "model:regnet.bottleneck_ratio": 1.0,
    "model:regnet.se_ratio": 0.25,
    "model:regnet.stem_width": 16,
    "model:regnet.quantum": 8,
    "model:regnet.group_rounding": "pycls",
    "model:tabular.cardinalities": V([4, 3], "table"),
    "model:tabular.n_continuous": V(2, "table"),
    "model:tabular.hidden": V([16, 8], "table"),
    "model:tabular.dropout": V(0.2, "table"),
    "model:tabular.embedding_dropout": V(0.1, "table"),
    "model:tabular.embedding_sizes": V([3], "table", {"data.options.categorical": ["colour"]}),
    "model:tabular.onehot": V(True, "table"),
    "model:tabular.numeric_embedding": V("periodic", "table"),
    "model:tabular.frequencies": V(4, "table", {"model.numeric_embedding": "periodic"}),
    "model:tabular.frequency_scale": V(0.5, "table", {"model.numeric_embedding": "periodic"}),
    "model:tabular.numeric_embedding_size": V(4, "table", {"model.numeric_embedding": "periodic"}),
    # losses
    "loss:bce_with_logits": V({}, "multi_label"),
    "loss:mse": V({}, "regression"),
    "loss:l1": V({}, "regression"),
    "loss:smooth_l1": V({}, "regression"),
    "loss:cross_entropy.weight": [1.0, 2.0, 0.5],
    "loss:cross_entropy.ignore_index": 1,
    "loss:cross_entropy.label_smoothing": 0.1,
    "loss:bce_with_logits.weight": V([1.0, 2.0, 1.0, 1.0], "multi_label"),
    "loss:bce_with_logits.pos_weight": V("balanced", "multi_label"),
    "loss:*.size_average": False,
    "loss:*.reduce": False,
    "loss:*.reduction": "sum",
    "loss:smooth_l1.beta": V(0.5, "regression"),
    "loss:focal.alpha": "balanced",
    "loss:focal.gamma": 1.0,
    "loss:sigmoid_focal": V({}, "multi_label"),
    "loss:sigmoid_focal.alpha": V(0.25, "multi_label"),
    "loss:sigmoid_focal.gamma": V(1.0, "multi_label"),
    # optimizers
    "optimizer.lr": 0.05,
    "optimizer.weight_decay": 1e-4,
    "optimizer.momentum": 0.8,
    "optimizer.lr_scaling": V("linear", extra={"optimizer.reference_batch_size": 16}),
    "optimizer.reference_batch_size": 256,
    "optimizer.groups": [{"params": "head.*", "lr_scale": 0.5, "muon": False}],
    "optimizer:muon.ns_steps": 3,
    "optimizer:muon.ns_coefficients": [3.4445, -4.775, 2.0315],
    "optimizer:muon.adjust_lr_fn": "match_rms_adamw",
    "optimizer:muon.normalize_weights": True,
    "optimizer:muon.ns_dtype": "float32",
    "optimizer:*.lr": 0.02,
    "optimizer:*.momentum": 0.8,
    "optimizer:*.dampening": 0.1,
    "optimizer:*.weight_decay": 1e-4,
    "optimizer:*.nesterov": True,
    "optimizer:*.maximize": False,
    "optimizer:*.foreach": False,
    "optimizer:*.differentiable": False,
    "optimizer:*.fused": False,  # True needs a device with fused kernels
    "optimizer:*.capturable": False,  # True needs CUDA
    "optimizer:*.betas": [0.9, 0.99],
    "optimizer:*.eps": 1e-6,
    "optimizer:*.amsgrad": True,
    "optimizer:*.alpha": 0.9,
    "optimizer:*.centered": True,
    "optimizer:*.trust_coefficient": 0.01,
    "optimizer:*.exclude_norm_and_bias": False,
    # schedules (the epochs and peak-rate arguments are filled from the recipe unless given)
    "schedule:*.total_epochs": 2,
    "schedule:*.epochs": 2,
    "schedule:*.cycle_len": 1,
    "schedule:warmup_cosine": V({}, extra={"epochs": 3}),  # warm-up of 1 epoch, then the cosine
    "schedule:step_schedule": V({}, extra={"epochs": 3}),
    "schedule:*.lr": 0.05,
    "schedule:*.lr_max": 0.05,
    "schedule:*.div": 10.0,
    "schedule:*.final_div": 100.0,
    "schedule:*.pct_start": 0.3,
    "schedule:*.moms": [0.9, 0.8, 0.9],
    "schedule:*.optimizer": "adamw",
    "schedule:*.opt": "adamw",
    "schedule:*.weight_decay": 1e-4,
    "schedule:*.anneal": "linear",
    "schedule:*.cycle_mult": 2.0,
    "schedule:*.n_cycles": 2,
    "schedule:*.warmup": 0.5,
    "schedule:*.lr_min": 1e-4,
    "schedule:*.momentum": 0.9,
    "schedule:*.warmup_epochs": 1,
    "schedule:*.warmup_start_factor": 0.1,
    "schedule:*.lr_end": 1e-4,
    "schedule:*.milestones": [1],
    "schedule:*.gamma": 0.5,
    "schedule:*.pct_flat": 0.5,
    "schedule:*.div_final": 100.0,
    "schedule:*.pct": 20.0,
    "schedule:*.max_mom": 0.95,
    "schedule:*.min_mom": 0.85,
    "schedule:*.final_ratio": 0.05,
    "schedule:swa_phase.anneal_epochs": 0.5,
    "schedule:swa_phase.cycle_len": V(1, extra={"phases.lr_max": 0.2}),  # cyclic SWA: both
    "schedule:swa_phase.lr_max": V(0.2, extra={"phases.cycle_len": 1}),
    # fge's lr (the low rate) comes from optimizer.lr; lr_max must be given
    "schedule:fge": V({"lr_max": 0.2}, extra={"epochs": 2}),
    "schedule:fge.epochs": V(2, extra={"phases.lr_max": 0.2}),
    "schedule:fge.lr": V(0.02, extra={"phases.lr_max": 0.2, "epochs": 2}),
    "schedule:fge.lr_max": V(0.2, extra={"epochs": 2}),
    "schedule:fge.cycle_len": V(1, extra={"phases.lr_max": 0.2}),
    "schedule:fge.optimizer": V("adamw", extra={"phases.lr_max": 0.2, "epochs": 2}),
    "schedule:fge.weight_decay": V(1e-4, extra={"phases.lr_max": 0.2, "epochs": 2}),
    "schedule:fge.momentum": V(0.9, extra={"phases.lr_max": 0.2, "epochs": 2}),
    "schedule:*.pct_decay": 0.3,
    # explicit phases (each in a list of one phase {epochs: 1, lr: 0.01, ...})
    "phase.epochs": 1.5,
    "phase.optimizer": "adamw",
    "phase.lr": [0.01, 0.001],
    "phase.lr_decay": "cosine",
    "phase.momentum": [0.95, 0.85],
    "phase.momentum_decay": V("cosine", extra={"phases.0.momentum": [0.95, 0.85]}),
    "phase.weight_decay": 1e-4,
    "phase.data": {"batch_size": 6, "image_size": 12},
    "phase.image_size": 12,
    "phase.name": "warm-up",
    "phase.optimizer_kwargs": {"nesterov": True},
    "phase.freeze": V(True, extra={"model.weights": lambda ws: ws.weights()}),
    # callbacks
    "callback:csv_logger.path": lambda ws: str(ws.tmp / "csv" / "log.csv"),
    "callback:csv_logger.separator": ";",
    "callback:csv_logger.append": True,
    # weight averaging (SWA's phase arguments act with its lr: they shape the SWA phase)
    # (8 one-step epochs: the default start 0.75 leaves two to average)
    "callback:swa": V({}, extra={"epochs": 8}),
    "callback:swa.start": V("swa", extra={"phases": [{"epochs": 6, "lr": 0.05},
                                                     {"name": "swa", "epochs": 2, "lr": 0.01}]}),
    "callback:swa.update_every": V(1, extra={"epochs": 8}),
    "callback:swa.lr": V(0.01, extra={"epochs": 8}),
    "callback:swa.anneal_epochs": V(1, extra={"epochs": 8, "callbacks.swa.lr": 0.01}),
    "callback:swa.anneal": V("linear", extra={"epochs": 8, "callbacks.swa.lr": 0.01, "callbacks.swa.anneal_epochs": 1}),
    "callback:swa.cycle_len": V(1, extra={"epochs": 8, "callbacks.swa.lr": 0.01, "callbacks.swa.lr_max": 0.05}),
    "callback:swa.lr_max": V(0.05, extra={"epochs": 8, "callbacks.swa.lr": 0.01, "callbacks.swa.cycle_len": 1}),
    "callback:swa.bn_update": V(False, extra={"epochs": 8}),
    "callback:swa.bn_augment": V(False, extra={"epochs": 8}),
    "callback:swa.bn_batches": V(1, extra={"epochs": 8}),
    "callback:swa.final": V(False, extra={"epochs": 8}),
    "callback:*.bn_update": False,
    "callback:*.bn_augment": False,
    "callback:*.bn_batches": 1,
    "callback:*.final": False,
    "callback:ema.bn_update": True,
    "callback:ema.decay": 0.9,
    "callback:ema.warmup": False,
    "callback:ema.update_every": 2,
    "callback:ema.average_buffers": False,
    "callback:snapshot_ensemble": V({}, extra=SGDR),
    "callback:snapshot_ensemble.phases": V(r"cycle\d+", extra=SGDR),
    "callback:snapshot_ensemble.dirpath": V(lambda ws: str(ws.tmp / "snapshots"), extra=SGDR),
    "callback:*.monitor": "valid/accuracy",
    "callback:*.patience": 1,
    "callback:*.min_delta": 0.01,
    "callback:*.mode": "max",
    "callback:*.baseline": 0.1,
    "callback:early_stopping.restore_best_weights": True,
    "callback:early_stopping.start_from_epoch": 1,
    "callback:early_stopping.threshold_mode": "rel",
    "callback:model_checkpoint.threshold_mode": "rel",
    "callback:reduce_lr_on_plateau.threshold_mode": "rel",
    "callback:model_checkpoint.dirpath": lambda ws: str(ws.tmp / "checkpoints"),
    "callback:model_checkpoint.save_best": False,
    "callback:model_checkpoint.save_last": False,
    "callback:model_checkpoint.every_n_epochs": 2,
    "callback:model_checkpoint.every_n_steps": 1,
    "callback:model_checkpoint.keep_epochs": True,
    "callback:progress_bar.quiet": True,
    "callback:progress_bar.console": "stderr",
    "callback:progress_bar.refresh_per_second": 4,
    "callback:reduce_lr_on_plateau.factor": 0.5,
    "callback:reduce_lr_on_plateau.cooldown": 1,
    "callback:reduce_lr_on_plateau.min_lr": 1e-5,
    "callback:tensorboard.log_dir": lambda ws: str(ws.tmp / "tensorboard"),
    "callback:tensorboard.histogram_every": 1,
    "callback:tensorboard.hparams": {"depth": 3},
    "callback:tensorboard.embeddings_freq": 1,
    "callback:tensorboard.embeddings_layer": "stages.0",
    "callback:tensorboard.embeddings_samples": 4,
    # data.options of the image-folder and tabular loader builders
    "option:image_folder.loader": "cpu",
    "option:image_folder.cache_dir": lambda ws: str(ws.tmp / "cache"),
    "option:image_folder.valid_root": lambda ws: str(ws.images),
    "option:image_folder.classes": ["blue", "green", "red"],
    "option:image_folder.pack_size": 20,
    "option:image_folder.fit": "pad",
    "option:image_folder.crop_pct": 0.875,
    "option:image_folder.normalize": "auto",
    "option:image_folder.strict": True,
    "option:image_folder.neutral_class": "green",
    "option:*.rank": 1,
    "option:*.world_size": 2,
    "option:*.drop_last": False,
    "option:*.valid_batch_size": 5,
    "option:image_folder.workers": 1,
    "option:image_folder.progress": False,
    "option:image_folder.num_shards": 2,
    "option:image_folder.channels_last": True,
    "option:tabular.categorical": V(["colour"], "table"),
    "option:tabular.continuous": V(["size", "weight"], "table"),
    "option:tabular.valid_data": V(lambda ws: str(ws.table), "table"),
    "option:tabular.task": V("classification", "table"),
    "option:tabular.scale": V("minmax", "table"),
    "option:tabular.bins": V(4, "table"),
    "option:tabular.encoding": V("onehot", "table"),
    "option:tabular.missing_indicator": V(False, "table"),
    "option:tabular.na_values": V(["?", "NA"], "table"),
    "option:tabular.strict": V(True, "table"),
    "option:tabular.file_encoding": V("latin-1", "table"),  # the ASCII table reads the same
    "option:tabular.drop_last": V(True, "table"),
    "option:tabular.valid_batch_size": V(7, "table"),
    # metrics and augmentations
    "metric:f1": V(None, "multi_label"),
    "metric:f1_macro": V(None, "multi_label"),
    "metric:mAP": V(None, "multi_label"),
    "augment:center_crop": {"name": "center_crop", "size": 12},
    "augment:random_resized_crop": {"name": "random_resized_crop", "size": 16, "scale": [0.5, 1.0]},
    "augment:resize": {"name": "resize", "size": 12},
    "augment:cutout": {"name": "cutout", "size": 4},
    "augment:translate": "translate(pad=2)",
    "augment:mixup": {"name": "mixup", "alpha": "auto"},
    # trainer
    "trainer.device": "cpu",
    "trainer.precision": "bf16",
    "trainer.channels_last": True,
    "trainer.compile": V(True, extra={"trainer.compile": "eager"}),
    "trainer.compile_mode": V("max-autotune", extra={"trainer.compile": "eager"}),  # inductor's alone: unused
    "trainer.grad_accum": 2,
    "trainer.clip_grad_norm": 1.0,
    "trainer.clip_grad_value": 0.5,
    "trainer.log_every": 1,
    "trainer.plots": True,
    "trainer.lr_find": 5,
    "trainer.devices": 2,  # the Python API trains in this process (epochal train starts torchrun for it)
    "trainer.sync_bn": True,  # nothing to synchronise in one process
    "trainer.retain_host_memory": False,  # the allocator as the system left it
    "trainer.decision": V({"metric": "balanced_accuracy"}, "table"),  # two classes; more are refused before training
}

#: Keys whose plausible value is refused when the recipe loads, with a fragment of the reason.
REFUSED: dict[str, str] = {
    "model:mlp_autoencoder": "does not take ['num_classes', 'in_chans']",  # flat vectors, not images
    "model:autoencoder.n_features": "does not take ['num_classes', 'in_chans']",
    "model:autoencoder.hidden": "does not take ['num_classes', 'in_chans']",
    "model:autoencoder.in_chans": "'in_chans' is set from",
    "model:*.num_classes": "'num_classes' is set from",
    "model:*.in_chans": "'in_chans' is set from",
    "model:tabular.cardinalities": "'cardinalities' is set from",
    "model:tabular.n_continuous": "'n_continuous' is set from",
    "model:tabular.onehot": "'onehot' is set from",
    "loss:*.size_average": "deprecated",
    "loss:*.reduce": "deprecated",
    "optimizer:nesterov.dampening": "zero dampening",
    "callback:progress_bar.console": "'console' of callback 'progress_bar' is a Python object",
    "option:*.rank": "'rank' in data.options is set for each process by distributed training",
    "option:*.world_size": "'world_size' in data.options is set for each process by distributed training",
}


def _lookup(table: dict[str, Any], key: str) -> Any:
    """``table[key]``, else its ``*`` entry for any registry name, else ``_MISSING``."""
    if key in table:
        return table[key]
    kind, _, rest = key.partition(":")
    if rest and "." in rest:
        return table.get(f"{kind}:*.{rest.split('.', 1)[1]}", _MISSING)
    return _MISSING


def plausible(key: str) -> Any:
    """The plausible value of ``key``; a registry entry by name defaults to its own defaults."""
    value = _lookup(PLAUSIBLE, key)
    kind, _, rest = key.partition(":")
    if value is _MISSING and rest and "." not in rest:
        return rest if kind == "augment" else V({})
    return value


_MISSING = object()


# ----------------------------------------------------------------------------------------- the recipes
class Workspace:
    """The fixtures' paths, and a weights file made on first use."""

    def __init__(self, tmp: Path, images: Path, multi_label: Path, table: Path, regression: Path):
        self.tmp, self.images, self.multi_label = tmp, images, multi_label
        self.table, self.regression = table, regression
        self._weights: str | None = None

    def weights(self) -> str:
        if self._weights is None:
            recipe = base_recipe(self, "image")
            recipe["callbacks"]["model_checkpoint"] = {}
            result = train(load_config(recipe), out=self.tmp / "weights", progress=False)
            self._weights = result["run_dir"]
        return self._weights


def base_recipe(ws: Workspace, context: str) -> dict[str, Any]:
    """A tiny recipe of one step per epoch for data ``context``."""
    common = {
        "name": "walk",
        "epochs": 1,
        "callbacks": {STOP: {}},
        "trainer": {"device": "cpu", "plots": False},
    }
    if context == "unlabelled":  # the tiny images read without labels, for a model that reconstructs them
        return {
            **common,
            "data": {"path": str(ws.images), "valid_pct": 0.25, "image_size": 16, "batch_size": 32, "augment": ["flip"],
                     "options": {"cache_dir": str(ws.tmp / "cache"), "progress": False, "unlabelled": True}},
            "model": {"name": "conv_autoencoder", "widths": [8, 16], "latent_dim": 8},
            "loss": {"name": "mse"},
            "metrics": [],
            "optimizer": {"name": "sgd", "lr": 0.01},
        }
    if context in ("image", "multi_label"):
        multi = context == "multi_label"
        path = ws.multi_label if multi else ws.images
        return {
            **common,
            "data": {"path": str(path), "valid_pct": 0.25, "image_size": 16, "batch_size": 32, "augment": ["flip"],
                     "options": {"cache_dir": str(ws.tmp / "cache"), "progress": False}},
            "model": {"name": "airbench", "widths": [8, 16, 16]},
            "loss": {"name": "bce_with_logits" if multi else "cross_entropy"},
            "metrics": ["mAP"] if multi else ["accuracy"],
            "optimizer": {"name": "sgd", "lr": 0.01},
        }
    regression = context == "regression"
    return {
        **common,
        "data": {"kind": "tabular", "path": str(ws.regression if regression else ws.table), "target": "y",
                 "valid_pct": 0.25, "batch_size": 128},
        "model": {"name": "tabular_mlp", "hidden": [16]},
        "loss": {"name": "mse" if regression else "cross_entropy"},
        "metrics": [] if regression else ["accuracy"],
        "optimizer": {"name": "adamw", "lr": 0.01},
    }


def _resolve(value: Any, ws: Workspace) -> Any:
    return value(ws) if callable(value) else value


def _of_entry(key: str) -> V | None:
    """The plausible value of the registry entry an argument key belongs to (``loss:mse`` for ``loss:mse.beta``)."""
    kind, _, rest = key.partition(":")
    if "." not in rest:
        return None
    name, arg = rest.split(".", 1)
    entry = plausible(f"{kind}:{_representative(name, arg) if kind == 'model' else name}")
    return entry if isinstance(entry, V) else None


def _context(key: str, given: V) -> str:
    if given.context is not None:
        return given.context
    entry = _of_entry(key)
    if entry is not None and entry.context is not None:
        return entry.context
    tabular = ("model:tabular", "option:tabular")  # the tabular family, its models and the table options
    return "table" if key.startswith(tabular) else "image"


#: The model that stands for its family where the first by name is a large one.
REPRESENTATIVE = {"densenet": "densenet_bc_100_12"}


def _representative(family: str, arg: str | None = None) -> str:
    """The model that walks ``family``'s arguments: :data:`REPRESENTATIVE`, else the first by name."""
    names = [n for n in list_models(family=family) if arg is None or arg in _model_arguments(n)]
    preferred = REPRESENTATIVE.get(family)
    return preferred if preferred in names else names[0]


def recipe_for(key: str, ws: Workspace, value: Any = None) -> dict[str, Any]:
    """The base recipe of the key's data with the key set to its plausible value (or to ``value``)."""
    given = plausible(key)
    given = given if isinstance(given, V) else V(given)
    recipe = base_recipe(ws, _context(key, given))
    value = _resolve(given.value, ws) if value is None else value
    kind, _, rest = key.partition(":")
    name, _, arg = rest.partition(".")
    if key.startswith("phase."):
        recipe["phases"] = [{"epochs": 1, "lr": 0.01, key[len("phase."):]: value}]
    elif key.startswith("data_variants."):
        set_dotted(recipe, ["data_variants", "v", key.split(".")[-1]], value)
    elif not rest:  # a closed field
        set_dotted(recipe, key.split("."), value)
    elif kind == "model":
        if arg:
            recipe["model"] = {"name": _representative(name, arg), arg: value}
        else:
            recipe["model"] = {"name": name, **value}
    elif kind in ("loss", "optimizer"):
        recipe[kind] = {"name": name, **({arg: value} if arg else value)}
    elif kind == "schedule":
        recipe["phases"] = {"schedule": name, **({arg: value} if arg else value)}
    elif kind == "callback":
        recipe["callbacks"][name] = {arg: value} if arg else value
    elif kind == "option":
        recipe["data"].setdefault("options", {})[arg] = value
    elif kind == "metric":
        recipe["metrics"] = [name]
    elif kind == "augment":
        recipe["data"]["augment"] = [value]
    entry = _of_entry(key)
    for extra_key, extra_value in {**(entry.extra if entry else {}), **given.extra}.items():
        set_dotted(recipe, extra_key.split("."), _resolve(extra_value, ws))
    return recipe


# ----------------------------------------------------------------------------------------- the tests
KEYS = schema_keys()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_images, tiny_multi_label, tiny_table, tiny_regression_table):
    register_callback(STOP, StopAfterFirstEpoch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads would only wait on each other
    try:
        yield Workspace(
            tmp_path_factory.mktemp("walk"), tiny_images, tiny_multi_label, tiny_table, tiny_regression_table
        )
    finally:
        torch.set_num_threads(threads)
        _REGISTERED_CALLBACKS.pop(STOP, None)


def test_every_key_has_a_plausible_value():
    missing = [k for k in KEYS if plausible(k) is _MISSING]
    assert not missing, f"add a plausible value to PLAUSIBLE (or a refusal to REFUSED) for {missing}"
    known = set(KEYS) | {f"{k.partition(':')[0]}:*.{k.split('.', 1)[1]}" for k in KEYS if ":" in k and "." in k}
    stale = sorted(set(PLAUSIBLE) - known) + sorted(set(REFUSED) - known)
    assert not stale, f"PLAUSIBLE / REFUSED name keys the schema no longer has: {stale}"
    assert len(KEYS) == len(set(KEYS))
    expected = {"trainer.precision", "data_variants.*.batch_size", "model:resnet18", "loss:cross_entropy.weight"}
    assert expected <= set(KEYS)


def _walked(key: str):
    """A model by name other than its family's representative is walked in the slow run only."""
    name = key.removeprefix("model:")
    if key.startswith("model:") and name in list_models() and name != _representative(get_model_info(name).family):
        return pytest.param(key, marks=pytest.mark.slow)
    return key


@pytest.mark.parametrize("key", [_walked(k) for k in KEYS])
def test_key_trains_one_step_or_is_refused(key, workspace):
    recipe = recipe_for(key, workspace)
    refusal = _lookup(REFUSED, key)
    try:
        config = load_config(recipe)
    except ConfigError as exc:
        assert refusal is not _MISSING, f"{key}: refused when loading, but should train: {exc}"
        assert refusal in str(exc), f"{key}: refused for another reason than {refusal!r}: {exc}"
        return
    assert refusal is _MISSING, f"{key}: loads, but should be refused ({refusal!r})"
    result = train(config, out=workspace.tmp / "runs", progress=False)
    first = json.loads((Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] >= 1 and math.isfinite(first["train/loss"]), first


# ----------------------------------------------------------------------------------------- strict types
def _quoted(value: Any) -> Any:
    """The plausible value as a user who quotes it writes it: ``'0.1'``, ``'true'``, ``['8', 16, 16]`` (None: no
    number or boolean to quote)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return [str(value[0]), *value[1:]]
    return None


def _quoted_case(key: str) -> Any:
    given = plausible(key)
    given = given if isinstance(given, V) else V(given)
    own_path = key.replace("phase.", "phases.0.") if key.startswith("phase.") else key
    if callable(given.value) or own_path in given.extra or _lookup(REFUSED, key) is not _MISSING:
        return None
    return _quoted(given.value)


QUOTED_KEYS = [k for k in KEYS if _quoted_case(k) is not None]


def test_the_strict_walk_covers_every_number_and_boolean_key():
    assert {"optimizer.lr", "epochs", "deterministic", "trainer.grad_accum", "callback:*.patience"} - set(QUOTED_KEYS) \
        == {"callback:*.patience"}  # registry keys are walked per entry
    assert "callback:early_stopping.patience" in QUOTED_KEYS and "schedule:one_cycle.pct_start" in QUOTED_KEYS
    assert {"model:regnet.zero_init_last", "phase.lr", "option:tabular.drop_last"} <= set(QUOTED_KEYS)


@pytest.mark.parametrize("key", [_walked(k) for k in QUOTED_KEYS])
def test_quoted_numbers_and_booleans_are_refused(key, workspace):
    recipe = recipe_for(key, workspace, value=_quoted_case(key))
    leaf = key.replace(":", ".").split(".")[-1]
    with pytest.raises(ConfigError) as info:
        load_config(recipe)
    assert leaf in str(info.value), f"{key}: refused without naming {leaf!r}: {info.value}"
