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

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from epochal.config.decision import DecisionConfig
from epochal.config.errors import check_kwargs
from epochal.config.phase_data import PhaseDataConfig
from epochal.config.sections import OpenSection, Section
from epochal.utils import unknown_name_error

__all__ = [
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OpenSection",
    "OptimizerConfig",
    "PhaseDataConfig",
    "ScheduleConfig",
    "Section",
    "TrainerConfig",
]


def _check_name(kind: str, name: str, choices: list[str]) -> str:
    if name not in choices:
        raise unknown_name_error(kind, name, choices)
    return name


class DataConfig(Section):
    """Where the data comes from and how it is batched.

    ``path`` is a folder of class sub-folders, a CSV file (``kind: tabular``) or the name of a
    bundled data set such as ``cifar10-mini``; ``epochal train --data DIR`` sets it.
    """

    kind: Literal["image_folder", "tabular"] = "image_folder"
    path: str | None = None
    valid_pct: float = Field(0.2, gt=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    image_size: int | None = Field(None, ge=1)
    augment: list[Any] | None = None
    target: str | None = None
    balance: Literal["oversample", "undersample", "weighted"] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_fields(self) -> DataConfig:
        if self.kind == "tabular" and not self.target:
            raise ValueError("data.kind 'tabular' needs data.target, the name of the label column")
        if self.kind == "image_folder" and self.target is not None:
            raise ValueError("data.target is only for kind 'tabular' (image folders take labels from sub-folders)")
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
    """

    name: str
    weights: str | None = None
    init_bias: Literal["default", "priors"] = "default"

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from epochal.models import list_models

        return _check_name("model", name, list_models())

    @model_validator(mode="after")
    def _arguments(self) -> ModelConfig:
        from epochal.config.model_builders import build_on_meta
        from epochal.models import list_models
        from epochal.models._registry import check_model_arguments, model_arguments

        for key, source in _MODEL_ARGS_FROM_DATA.items():
            if key in self.kwargs:
                raise ValueError(f"{key!r} is set from {source}; remove it from the model section")
        accepted = model_arguments(self.name)
        try:
            check_model_arguments(self.name, self.kwargs)
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
    ``phases.schedule``."""

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _valid(self) -> OptimizerConfig:
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

            check_optimizer_values(self.name, {**self.kwargs, **self.model_dump(exclude={"name"}, exclude_none=True)})
        return self


class LossConfig(OpenSection):
    """``name`` in :data:`epochal.losses.LOSSES`; other keys go to its constructor.

    Per-class weight arguments take a list (one weight per class, in class order) or ``balanced``
    (computed from the training split): ``weight`` of ``cross_entropy`` (balanced: ``n / (k * n_c)``)
    and ``pos_weight`` of ``bce_with_logits`` (balanced: ``n_neg / n_pos`` per label).
    """

    name: str = "cross_entropy"

    @model_validator(mode="after")
    def _valid(self) -> LossConfig:
        from epochal.losses import LOSSES

        _check_name("loss", self.name, list(LOSSES))
        entry = LOSSES[self.name]
        check_kwargs(entry.factory, self.kwargs, f"of loss {self.name!r}", declared=type(self).model_fields)
        entry.check(self.kwargs, where="")
        return self


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
        compile: wrap the model in ``torch.compile``; a string names its backend (``inductor``,
            ``eager``, ``aot_eager``, ``cudagraphs`` ...; ``true`` is ``inductor``).
        plots: write the run's plots into ``<run>/plots`` after training.
        lr_find: steps of a learning-rate range test run (and undone) before training, plotted
            into ``plots/lr_find.png`` with its suggestions in the train result; 0 runs none.
        decision: what a binary classifier's decision optimises (``{metric: accuracy | f1 |
            balanced_accuracy}``): its threshold is chosen on the validation split after training
            and used by ``eval`` and ``predict`` (see :mod:`epochal.config.decision`); None: argmax.
    """

    device: str | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool | str = False
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0.0)
    clip_grad_value: float | None = Field(None, gt=0.0)
    log_every: int = Field(50, ge=1)
    plots: bool = True
    lr_find: int = Field(0, ge=0)
    decision: DecisionConfig | None = None


    @field_validator("compile")
    @classmethod
    def _backend(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            from torch._dynamo import list_backends

            backends = list_backends(exclude_tags=())
            if value not in backends:
                raise unknown_name_error("torch.compile backend", value, backends)
        return value


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
        metrics: metric names (``accuracy``, ``error_rate``, ``top5_accuracy``, ``auroc`` ...).
        phases: a schedule builder (``{schedule: one_cycle, ...}``) or an explicit list of phases;
            a phase's ``data`` (a ``data_variants`` name or a mapping) changes its batching.
        callbacks: callback name -> keyword arguments (``null`` or ``false`` removes an inherited one).
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
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"])
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    phases: ScheduleConfig | list[dict[str, Any]] = Field(default_factory=lambda: ScheduleConfig(schedule="one_cycle"))
    callbacks: dict[str, dict[str, Any] | None | Literal[False]] = Field(default_factory=dict)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, names: list[str]) -> list[str]:
        from epochal.metrics import get_metric

        for name in names:
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

            check_model_for_data(model.name, info.data["data"].kind, model.kwargs, model.init_bias)
        return model

    @field_validator("phases")
    @classmethod
    def _phase_list(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, list):
            from epochal.config.builders import check_phase_list

            check_phase_list(value, info.data.get("data"), info.data.get("data_variants", {}))
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
