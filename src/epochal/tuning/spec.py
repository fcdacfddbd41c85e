"""StudySpec: everything a worker needs to run trials of a study, as plain JSON data.

The command that starts a search builds one spec and hands it to every worker process (and, through
the study's user attributes, to commands on other machines that join the same study), so workers
never re-read recipe or space files that may not exist where they run.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from epochal.config.errors import ConfigError
from epochal.tuning._optuna import require_optuna

__all__ = ["StudySpec", "create_study", "load_study"]

#: Study user attributes that pin what a study searches (checked when a study is continued).
_PINNED = ("space", "monitor", "direction")


@dataclass
class StudySpec:
    """One study's settings.

    Attributes:
        name: the Optuna study name.
        study_dir: the study folder (trial run folders go to ``<study_dir>/trials``).
        storage: the storage URL (see :func:`~epochal.tuning.storage.resolve_storage`).
        recipe: the resolved recipe every trial starts from (``Config.to_dict()``).
        space: the search-space mapping.
        space_source: where the space came from (named in errors).
        n_trials: trials in the study in total, over every command and worker.
        monitor: the logged key optimised and reported for pruning.
        direction: ``"maximize"`` or ``"minimize"`` (from the metric's ``higher_is_better``).
        sampler, pruner: ``{"name": ..., **arguments}``.
        seed: the sampler's seed (worker ``i`` uses ``seed + i``).
        device: the training device (None: the recipe's, else CUDA when available).
        heartbeat_interval, grace_period: seconds (see :mod:`epochal.tuning.storage`).
        threads: torch CPU threads per worker (None: torch's default); a worker whose trials train on
            several processes shares them out among its ranks.
        nproc: processes each trial trains on (1: in the worker's own process; more: a torchrun job
            per trial, see :mod:`epochal.tuning.ddp_trial`).
        visible_devices: the GPUs of this worker's trial jobs (``CUDA_VISIBLE_DEVICES``), None for all.
        callbacks: callbacks registered from Python, ``name -> "module:qualname"``, re-registered in
            worker processes so recipes that name them work there too.
    """

    name: str
    study_dir: str
    storage: str
    recipe: dict[str, Any]
    space: dict[str, Any]
    space_source: str
    n_trials: int
    monitor: str
    direction: str
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    seed: int = 0
    device: str | None = None
    heartbeat_interval: int = 60
    grace_period: int = 120
    threads: int | None = None
    callbacks: dict[str, str] = field(default_factory=dict)
    nproc: int = 1
    visible_devices: str | None = None

    def to_json(self) -> str:
        """The spec as one JSON text."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        """The spec :meth:`to_json` wrote."""
        return cls(**json.loads(text))

    @property
    def trials_dir(self) -> Path:
        """``<study_dir>/trials``."""
        return Path(self.study_dir) / "trials"

    def space_object(self):
        """The parsed :class:`~epochal.tuning.space.SearchSpace`."""
        from epochal.tuning.space import SearchSpace

        return SearchSpace.from_mapping(self.space, self.space_source)


def _storage(spec: StudySpec):
    from epochal.tuning.storage import open_storage

    return open_storage(spec.storage, spec.heartbeat_interval, spec.grace_period)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def create_study(spec: StudySpec):
    """Create the study, or continue it after checking it searches the same space for the same metric.

    Returns:
        ``(study, storage)``.

    Raises:
        ConfigError: when an existing study of that name has another space, monitor or direction.
    """
    optuna = require_optuna()
    storage = _storage(spec)
    study = optuna.create_study(
        study_name=spec.name, storage=storage, direction=spec.direction, load_if_exists=True
    )
    pinned = {"space": _plain(spec.space), "monitor": spec.monitor, "direction": spec.direction}
    saved = {key: study.user_attrs.get(f"epochal_{key}") for key in _PINNED}
    if all(v is None for v in saved.values()):
        for key, value in pinned.items():
            study.set_user_attr(f"epochal_{key}", value)
        study.set_user_attr("epochal_recipe", _plain(spec.recipe))
        return study, storage
    for key in _PINNED:
        if saved[key] != pinned[key]:
            raise ConfigError(
                f"study {spec.name!r} in {_redacted(spec)} was started with another {key} "
                f"({_short(saved[key])}, now {_short(pinned[key])}); continue it with the same one "
                "or start a new study with --study NAME"
            )
    _warn_recipe_change(spec, study.user_attrs.get("epochal_recipe") or {})
    return study, storage


def _redacted(spec: StudySpec) -> str:
    from epochal.tuning.storage import redact

    return redact(spec.storage)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _warn_recipe_change(spec: StudySpec, saved: dict[str, Any]) -> None:
    from epochal.runs.registry import flatten

    old, new = flatten(saved), flatten(_plain(spec.recipe))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        warnings.warn(
            f"study {spec.name!r} continues with a recipe that differs from its first one in {changed}; "
            "trials before and after are not comparable unless that is intended (e.g. another data path)",
            stacklevel=3,
        )


def load_study(spec: StudySpec, worker_index: int = 0):
    """Open an existing study with the spec's sampler (seeded ``seed + worker_index``) and pruner.

    Returns:
        ``(study, storage)``.
    """
    from epochal.tuning.samplers import build_pruner, build_sampler

    optuna = require_optuna()
    storage = _storage(spec)
    sampler = build_sampler(spec.sampler, spec.space_object(), seed=spec.seed + worker_index)
    study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler,
                              pruner=build_pruner(spec.pruner))
    return study, storage
