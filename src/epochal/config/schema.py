"""The typed recipe schema (pydantic v2).

Two kinds of sections:

* *closed* sections (the top level, ``optimizer``, ``trainer``, ``data``) list every key; an
  unknown key is an error naming the key, the valid keys and the closest one;
* *open* sections (``model``, ``loss``, ``phases``, each entry of ``callbacks``) have a ``name`` (or
  ``schedule``) that picks an entry of a registry, and pass their other keys to it as keyword
  arguments; those keys are checked against the entry's signature when the recipe is loaded.

A key that validates must also train: settings that cannot work together (an image model on a
table, ``loss.reduction: none``, a phase that would change the data's split) are refused here,
when the recipe loads, with the reason.

New capabilities plug in by adding a section here and an entry in :mod:`epochal.config.builders`
(a callback registered by name needs no schema change at all).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from epochal.config.decision import DecisionConfig
from epochal.config.errors import check_kwargs
from epochal.config.phase_data import PhaseDataConfig
from epochal.config.sections import OpenSection, Section
from epochal.utils import check_compile_mode, unknown_name_error

__all__ = [
    "Config",
    "DataConfig",
    "DistillationConfig",
    "LossConfig",
    "ModelConfig",
    "OpenSection",
    "OptimizerConfig",
    "PhaseDataConfig",
    "ScheduleConfig",
    "Section",
    "TrainerConfig",
    "check_loss_arguments",
]


def _check_name(kind: str, name: str, choices: list[str]) -> str:
    if name not in choices:
        raise unknown_name_error(kind, name, choices)
    return name


def _check_phases_with_freeze(phases: list[dict[str, Any]], model: Any, data: Any) -> None:
    """Phases that freeze layer groups or change the data conflict with ``model.freeze`` and cached features."""
    for i, entry in enumerate(phases):
        if model is not None and model.freeze and entry.get("freeze") is not None:
            raise ValueError(f"phases.{i}.freeze conflicts with model.freeze {model.freeze!r}; keep one of them")
        if data is not None and data.cache_features and entry.get("data") is not None:
            raise ValueError(
                f"phases.{i}.data changes the images' batching, but data.cache_features trains on cached "
                "features; remove one of them"
            )


class DataConfig(Section):
    """Where the data comes from and how it is batched.

    ``path`` is a folder of class sub-folders, a CSV file (``kind: tabular``) or the name of a
    bundled data set such as ``cifar10-mini``; ``epochal train --data DIR`` sets it.
    ``cache_features`` (with ``model.freeze: backbone``) trains the head on the frozen backbone's
    pooled features, computed once without augmentation and cached under ``options.cache_dir``
    (:mod:`epochal.config.features`).
    """

    kind: Literal["image_folder", "tabular"] = "image_folder"
    path: str | None = None
    valid_pct: float = Field(0.2, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    image_size: int | None = Field(None, ge=1)
    augment: list[Any] | None = None
    target: str | None = None
    balance: Literal["oversample", "undersample", "weighted"] | None = None
    cache_features: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("augment")
    @classmethod
    def _augmentations(cls, augment: list[Any] | None) -> list[Any] | None:
        if augment:  # checked here, not with the section, so an error names data.augment (and its --set)
            from epochal.config.builders import check_augment

            check_augment(augment)
        return augment

    @model_validator(mode="after")
    def _kind_fields(self) -> DataConfig:
        if self.kind == "tabular" and not self.target:
            raise ValueError("data.kind 'tabular' needs data.target, the name of the label column")
        if self.kind == "image_folder" and self.target is not None:
            raise ValueError("data.target is only for kind 'tabular' (image folders take labels from sub-folders)")
        if self.cache_features and (self.kind != "image_folder" or self.augment):
            raise ValueError(
                "data.cache_features computes each image's features once, without augmentation: it needs "
                f"kind 'image_folder' and no data.augment (got kind {self.kind!r}, augment {self.augment})"
            )
        if self.kind == "tabular":
            for key in ("image_size", "augment"):
                if getattr(self, key) is not None:
                    raise ValueError(f"data.{key} is for image folders; kind 'tabular' has no images (set it to null)")
        from epochal.config.builders import check_data_options

        check_data_options(self)
        return self


#: Model arguments the builders set from the data, and what they come from.
_MODEL_ARGS_FROM_DATA = {
    "num_classes": "the data's classes (1 output for a regression target)",
    "in_chans": "the images' channels",
    "cardinalities": "the table's categorical columns",
    "n_continuous": "the table's continuous columns",
    "onehot": "data.options.encoding",
}


class ModelConfig(OpenSection):
    """``name`` of a registered model; other keys go to ``epochal.models.create``.

    Attributes:
        weights: a run folder, checkpoint or ``.safetensors`` file to start from; layers whose shape
            differs (a new classifier) keep their fresh initialisation.
        init_bias: set the output bias from the training class frequencies (``"priors"``), so the
            first predictions match the label distribution, or leave it (``"default"``).
        data_init: pass this many training images (normalised, not augmented) to the model's
            ``init_from_data`` before training, e.g. airbench's whitening layer (5000); 0: none.
        freeze: ``"backbone"`` trains only the classifier head's hidden layers and ``fc`` (frozen
            BatchNorm statistics included); with ``data.cache_features`` on cached features.
    """

    name: str
    weights: str | None = None
    init_bias: Literal["default", "priors"] = "default"
    data_init: int = Field(0, ge=0)
    freeze: Literal["backbone"] | None = None

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from epochal.models import list_models

        return _check_name("model", name, list_models())

    @model_validator(mode="after")
    def _arguments(self) -> ModelConfig:
        from epochal.config.model_builders import build_on_meta
        from epochal.config.strict import check_argument_types
        from epochal.models import get_model_info, list_models
        from epochal.models._registry import check_model_arguments, model_arguments

        for key, source in _MODEL_ARGS_FROM_DATA.items():
            if key in self.kwargs:
                raise ValueError(f"{key!r} is set from {source}; remove it from the model section")
        accepted = model_arguments(self.name)
        try:
            check_model_arguments(self.name, self.kwargs)
            check_argument_types(get_model_info(self.name).factory, self.kwargs, f"of model {self.name!r}")
            if accepted is None and self.kwargs:  # the factory checks its **kwargs only when called
                build_on_meta(self.name, self.kwargs)
        except ValueError as exc:
            if accepted is None:  # the factory's message names the arguments it does not take
                unknown = [k for k in self.kwargs if repr(k) in str(exc)]
            else:
                unknown = [k for k in self.kwargs if k not in accepted]
            others = {a for m in list_models() if m != self.name for a in model_arguments(m) or ()}
            if not unknown or not set(unknown) <= others:  # a typo or a bad value: the message is the advice
                raise
            raise ValueError(  # left over from the recipe's model after a change of model.name
                f"{exc} ({unknown} belong to another model: to replace the recipe's whole model "
                f"section, set model={{name: {self.name}}})"
            ) from None
        return self


class OptimizerConfig(OpenSection):
    """The optimizer, its base learning rate and decoupled weight decay; other keys (``eps``,
    ``nesterov`` ...) go to its constructor. ``lr`` is the peak rate of schedules built from
    ``phases.schedule``.

    Attributes:
        lr_scaling: ``none`` (the rates as written), ``linear`` or ``sqrt``: every rate of the
            schedule is multiplied by ``global / reference_batch_size`` (or its square root), the
            global batch being ``data.batch_size`` (per rank) x processes x ``trainer.grad_accum``.
            The run prints it at the start and records it in ``summary.json``.
        reference_batch_size: the global batch the rates were tuned for (needed by linear/sqrt).
        groups: parameter-group rules, first match wins: ``{params: GLOB, lr, lr_scale,
            weight_decay, wd_scale, momentum, muon, train_epochs, name}`` (see
            :class:`epochal.optim.GroupRule`; ``lr`` is the group's rate when the schedule is at
            ``optimizer.lr``, ``weight_decay`` its decay in the units of ``optimizer.weight_decay``).
    """

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    reference_batch_size: int | None = Field(None, ge=1)
    groups: list[Any] | None = None

    @model_validator(mode="after")
    def _valid(self) -> OptimizerConfig:
        if self.lr_scaling != "none" and self.reference_batch_size is None:
            raise ValueError(f"optimizer.lr_scaling {self.lr_scaling!r} needs optimizer.reference_batch_size, the "
                             "global batch size optimizer.lr was tuned for")
        from epochal.optim.factory import OPTIMIZERS, OptimizerEntry, resolve_optimizer

        try:
            entry = resolve_optimizer(self.name)
        except ValueError:
            raise unknown_name_error("optimizer", self.name, OPTIMIZERS) from None
        if isinstance(entry, OptimizerEntry):
            check_kwargs(
                entry.cls.__init__,
                self.kwargs,
                f"of optimizer {self.name!r}",
                skip=("params",),
                declared=type(self).model_fields,
            )
            from epochal.config.builders import check_optimizer_values

            declared = self.model_dump(exclude={"name", "groups", "lr_scaling", "reference_batch_size"},
                                       exclude_none=True)
            check_optimizer_values(self.name, {**self.kwargs, **declared})
        if self.groups:
            from epochal.config.groups import build_group_rules

            build_group_rules(self)
        return self


class LossConfig(OpenSection):
    """``name`` in :data:`epochal.losses.LOSSES`; other keys go to its constructor.

    Without a ``name`` the loss is chosen from the data's labels (:data:`epochal.losses.DEFAULT_LOSSES`):
    ``cross_entropy`` for one class per sample, ``bce_with_logits`` (sigmoid + BCE) for multi-label
    data, ``mse`` for a regression target; the run's ``config.yaml`` records the choice. Arguments
    given without a name must fit one of those losses, and are checked against the chosen one.

    Per-class weight arguments take a list (one weight per class, in class order) or ``balanced``
    (computed from the training split): ``weight`` of ``cross_entropy`` (balanced: ``n / (k * n_c)``)
    and ``pos_weight`` of ``bce_with_logits`` (balanced: ``n_neg / n_pos`` per label).
    """

    name: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> LossConfig:
        from epochal.losses import DEFAULT_LOSSES

        if self.name is not None:
            check_loss_arguments(self.name, self.kwargs)
            return self
        candidates = list(dict.fromkeys(DEFAULT_LOSSES.values()))
        reasons = []
        for candidate in candidates:
            try:
                check_loss_arguments(candidate, self.kwargs)
                return self
            except ValueError as exc:
                reasons.append(f"{candidate}: {exc}")
        raise ValueError(
            f"loss arguments {sorted(self.kwargs)} fit none of the losses chosen from the data ({candidates}); "
            f"set loss.name ({'; '.join(reasons)})"
        )


def check_loss_arguments(name: str, kwargs: dict[str, Any], where: str = "") -> None:
    """Raise ValueError unless ``name`` is a registered loss that takes ``kwargs``."""
    from epochal.losses import LOSSES

    _check_name("loss", name, list(LOSSES))
    entry = LOSSES[name]
    check_kwargs(
        entry.factory,
        kwargs,
        f"of loss {name!r}",
        declared=LossConfig.model_fields,
        typed_elsewhere=entry.class_weights,  # a list or 'balanced': checked by entry.check
    )
    entry.check(kwargs, where=where)


class ScheduleConfig(OpenSection):
    """A schedule builder by name (``one_cycle``, ``sgdr`` ...); other keys are its arguments.

    The builder gets ``epochs`` from the top-level ``epochs`` and its peak learning rate from
    ``optimizer.lr`` unless given here.
    """

    schedule: str

    @model_validator(mode="after")
    def _valid(self) -> ScheduleConfig:
        from epochal.config.builders import check_schedule

        check_schedule(self.schedule, self.kwargs)
        return self


class TrainerConfig(Section):
    """How the Learner runs: device, precision and the loop's numeric options.

    Attributes:
        precision: ``auto`` is bf16 on CUDA and fp32 elsewhere.
        compile: wrap the model in ``torch.compile``; a string names its backend (``inductor``,
            ``eager``, ``aot_eager``, ``cudagraphs`` ...; ``true`` is ``inductor``); ``auto``
            compiles on CUDA only (CPU compilation rarely pays for itself).
        compile_mode: inductor's ``torch.compile(mode=...)``: ``default`` (null), ``reduce-overhead``
            (CUDA graphs), ``max-autotune`` (kernel search and CUDA graphs, as airbench compiles),
            ``max-autotune-no-cudagraphs``; with another backend it is not used.
        plots: write the run's plots into ``<run>/plots`` after training.
        lr_find: steps of a learning-rate range test run (and undone) before training, plotted
            into ``plots/lr_find.png`` with its suggestions in the train result; 0 runs none.
        devices: processes on this machine: ``epochal train`` with ``devices: N > 1`` starts itself
            under torchrun (``--nproc_per_node=N``), one process per GPU (or CPU process, gloo).
            Under a torchrun you started, the launcher decides and this key is not used.
        sync_bn: in a data-parallel job, BatchNorm normalises with the statistics of every rank's
            batch (``torch.nn.SyncBatchNorm``, CUDA only); one process needs nothing.
        decision: what a binary classifier's decision optimises (``{metric: accuracy | f1 |
            balanced_accuracy}``): its threshold is chosen on the validation split after training
            and used by ``eval`` and ``predict`` (see :mod:`epochal.config.decision`); None: argmax.
        retain_host_memory: on the CPU, keep freed memory in the process for the next step
            instead of returning it to the system (glibc; see :mod:`epochal.learner.host_memory`).
    """

    device: str | None = None
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    channels_last: bool = False
    compile: bool | str = False
    compile_mode: str | None = None
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0.0)
    clip_grad_value: float | None = Field(None, gt=0.0)
    log_every: int = Field(50, ge=1)
    plots: bool = True
    lr_find: int = Field(0, ge=0)
    devices: int = Field(1, ge=1)
    sync_bn: bool = False
    decision: DecisionConfig | None = None
    retain_host_memory: bool = True


    @field_validator("compile")
    @classmethod
    def _backend(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value != "auto":
            from torch._dynamo import list_backends

            backends = list_backends(exclude_tags=())
            if value not in backends:
                raise unknown_name_error("torch.compile backend", value, backends)
        return value

    @field_validator("compile_mode")
    @classmethod
    def _compile_mode(cls, value: str | None) -> str | None:
        return check_compile_mode(value)


class DistillationConfig(Section):
    """Knowledge distillation (Hinton et al. 2015) from a trained run into this recipe's model.

    Attributes:
        teacher: a run folder (its ``best.pt``, else ``last.pt``) or a checkpoint inside one; its
            model is rebuilt from the run's ``config.yaml`` and must predict the same classes.
        temperature: ``T`` of the soft targets.
        alpha: weight of the soft term ``T^2 * KL``; ``1 - alpha`` weighs the recipe's ``loss``.
        cache_dir: keep the teacher's logits of the training samples there (refused, with a
            warning, when ``data.augment`` is on).
    """

    teacher: str
    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    cache_dir: str | None = None


#: ``phases``: a list of phase mappings, or a schedule builder; the form picks the branch, so an error
#: in one is reported alone instead of next to "not a list" from the other.
_Phases = Annotated[
    Annotated[ScheduleConfig, Tag("<builder>")] | Annotated[list[dict[str, Any]], Tag("<list>")],
    Discriminator(lambda value: "<list>" if isinstance(value, list) else "<builder>"),
]


class Config(Section):
    """A whole recipe after ``extends`` and overrides.

    Attributes:
        name: names the run folder (``<out>/<date>_<time>-<name>``) and filters ``epochal runs``.
        description: one line shown by ``epochal recipes``.
        tags: free labels, filterable in ``epochal runs --tag``.
        seed: seeds Python, NumPy, torch and the data order.
        deterministic: ask torch for deterministic kernels.
        epochs: length of training for ``phases.schedule`` builders.
        data, model, loss, optimizer, trainer: the sections above.
        data_variants: named :class:`PhaseDataConfig` entries that phases refer to by name
            (``phases: [{epochs: 2, data: small}, ...]``).
        metrics: metric names (``accuracy``, ``error_rate``, ``top5_accuracy``, ``auroc`` ...); None
            (the default) chooses them from the data (:data:`epochal.metrics.DEFAULT_METRICS`:
            ``accuracy``; multi-label ``f1``, ``f1_macro``, ``mAP``; regression none).
        phases: a schedule builder (``{schedule: one_cycle, ...}``) or an explicit list of phases;
            a phase's ``data`` (a ``data_variants`` name or a mapping) changes its batching.
        callbacks: callback name -> keyword arguments (``null`` or ``false`` removes an inherited one).
        distillation: a teacher run to distil from (``null``: none).
    """

    name: str = "run"
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    seed: int = Field(0, ge=0, lt=2**32)
    deterministic: bool = False
    epochs: int = Field(1, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
    data_variants: dict[str, PhaseDataConfig] = Field(default_factory=dict)
    model: ModelConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    metrics: list[str] | None = None
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    phases: _Phases = Field(default_factory=lambda: ScheduleConfig(schedule="one_cycle"))
    callbacks: dict[str, dict[str, Any] | None | Literal[False]] = Field(default_factory=dict)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    distillation: DistillationConfig | None = None

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, names: list[str] | None) -> list[str] | None:
        from epochal.metrics import get_metric

        for name in names or []:
            get_metric(name)
        return names

    @field_validator("phases", mode="before")
    @classmethod
    def _phases_form(cls, value: Any) -> Any:
        if isinstance(value, dict) and "schedule" not in value:
            raise ValueError(
                "phases must be {schedule: NAME, ...builder arguments} or a list of phase mappings; "
                f"got a mapping with keys {sorted(value)} and no 'schedule'"
            )
        return value

    @field_validator("data_variants")
    @classmethod
    def _variants(cls, variants: dict[str, PhaseDataConfig], info: ValidationInfo) -> dict[str, PhaseDataConfig]:
        if "data" in info.data:  # else data itself failed and says why
            from epochal.config.phase_data import merged_data

            for name, variant in variants.items():
                merged_data(info.data["data"], variant.overlay(), f"data_variants.{name}")
        return variants

    @field_validator("model")
    @classmethod
    def _model_fits_data(cls, model: ModelConfig, info: ValidationInfo) -> ModelConfig:
        if "data" in info.data:
            from epochal.config.builders import check_model_for_data

            data = info.data["data"]
            unlabelled = bool(data.options.get("unlabelled"))
            check_model_for_data(model.name, data.kind, model.kwargs, model.init_bias, unlabelled)
            if info.data["data"].cache_features and model.freeze != "backbone":
                raise ValueError(
                    "data.cache_features trains the head on a frozen backbone's features: set model.freeze: backbone"
                )
        return model

    @field_validator("phases")
    @classmethod
    def _phase_list(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, list):
            from epochal.config.builders import check_phase_list

            check_phase_list(value, info.data.get("data"), info.data.get("data_variants", {}))
            _check_phases_with_freeze(value, info.data.get("model"), info.data.get("data"))
        elif "epochs" in info.data and "optimizer" in info.data:
            from epochal.config.builders import check_schedule_values

            check_schedule_values(value, info.data["epochs"], info.data["optimizer"].lr)
        return value

    @field_validator("callbacks")
    @classmethod
    def _callbacks(cls, value: dict[str, Any]) -> dict[str, Any]:
        from epochal.config.builders import check_callbacks

        check_callbacks(value)
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what is saved as the run's ``config.yaml``)."""
        return self.model_dump(mode="json")
