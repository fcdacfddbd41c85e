"""The typed recipe schema (pydantic v2).

Two kinds of sections:

* *closed* sections (the top level, ``optimizer``, ``trainer``, ``data``) list every key; an
  unknown key is an error naming the key, the valid keys and the closest one;
* *open* sections (``model``, ``loss``, ``phases``, each entry of ``callbacks``) have a ``name`` (or
  ``schedule``) that picks an entry of a registry, and pass their other keys to it as keyword
  arguments; those keys are checked against the entry's signature when the recipe is loaded.

New capabilities plug in by adding a section here and an entry in :mod:`epochal.config.builders`
(a callback registered by name needs no schema change at all).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from epochal.config.errors import check_kwargs, unknown_key_message
from epochal.utils import unknown_name_error

__all__ = [
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OpenSection",
    "OptimizerConfig",
    "ScheduleConfig",
    "Section",
    "TrainerConfig",
]


class Section(BaseModel):
    """A closed section: unknown keys are errors with a suggestion."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(unknown_key_message(str(key), cls.model_fields))
        return data


class OpenSection(Section):
    """A section whose keys beyond the declared ones are keyword arguments of a registry entry."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The extra keys: keyword arguments for the registry entry."""
        return dict(self.model_extra or {})


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
        from epochal.config.builders import check_data_options

        check_data_options(self)
        return self


class ModelConfig(OpenSection):
    """``name`` of a registered model; other keys go to ``epochal.models.create``.

    Attributes:
        weights: a run folder, checkpoint or ``.safetensors`` file to start from; layers whose shape
            differs (a new classifier) keep their fresh initialisation.
        init_bias: set the output bias from the training class frequencies (``"priors"``), so the
            first predictions match the label distribution, or leave it (``"default"``).
        data_init: pass this many training images (normalised, not augmented) to the model's
            ``init_from_data`` before training, e.g. airbench's whitening layer (5000); 0: none.
    """

    name: str
    weights: str | None = None
    init_bias: Literal["default", "priors"] = "default"
    data_init: int = Field(0, ge=0)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from epochal.models import list_models

        return _check_name("model", name, list_models())

    @model_validator(mode="after")
    def _arguments(self) -> ModelConfig:
        from epochal.models import list_models
        from epochal.models._registry import check_model_arguments, model_arguments

        try:
            check_model_arguments(self.name, self.kwargs)
        except ValueError as exc:
            unknown = [k for k in self.kwargs if k not in (model_arguments(self.name) or ())]
            others = {a for m in list_models() if m != self.name for a in model_arguments(m) or ()}
            if not set(unknown) <= others:  # a typo: the message's suggestion is the advice
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
        groups: parameter-group rules, first match wins: ``{params: GLOB, lr, lr_scale,
            weight_decay, wd_scale, momentum, muon, train_epochs, name}`` (see
            :class:`epochal.optim.GroupRule`; ``lr`` is the group's rate when the schedule is at
            ``optimizer.lr``, ``weight_decay`` its decay in the units of ``optimizer.weight_decay``).
    """

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    groups: list[Any] | None = None

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
        if self.groups:
            from epochal.config.groups import build_group_rules

            build_group_rules(self)
        return self


class LossConfig(OpenSection):
    """``name`` in :data:`epochal.config.builders.LOSSES`; other keys go to its constructor."""

    name: str = "cross_entropy"

    @model_validator(mode="after")
    def _valid(self) -> LossConfig:
        from epochal.config.builders import LOSSES

        _check_name("loss", self.name, list(LOSSES))
        check_kwargs(LOSSES[self.name], self.kwargs, f"of loss {self.name!r}", declared=type(self).model_fields)
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
        precision: ``auto`` is bf16 on CUDA and fp32 elsewhere.
        compile: ``auto`` compiles on CUDA only (CPU compilation rarely pays for itself).
        plots: write the run's plots into ``<run>/plots`` after training.
        lr_find: steps of a learning-rate range test run (and undone) before training, plotted
            into ``plots/lr_find.png`` with its suggestions in the train result; 0 runs none.
    """

    device: str | None = None
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    channels_last: bool = False
    compile: bool | Literal["auto"] = False
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0.0)
    clip_grad_value: float | None = Field(None, gt=0.0)
    log_every: int = Field(50, ge=1)
    plots: bool = True
    lr_find: int = Field(0, ge=0)


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
        metrics: metric names (``accuracy``, ``error_rate``, ``top5_accuracy``, ``auroc`` ...).
        phases: a schedule builder (``{schedule: one_cycle, ...}``) or an explicit list of phases.
        callbacks: callback name -> keyword arguments (``null`` or ``false`` removes an inherited one).
    """

    name: str = "run"
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    seed: int = Field(0, ge=0, lt=2**32)
    deterministic: bool = False
    epochs: int = Field(1, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
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

    @field_validator("phases")
    @classmethod
    def _phase_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            from epochal.config.builders import check_phase_list

            check_phase_list(value)
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
