"""tune(): the Python API behind ``epochal tune``, a hyperparameter search over a recipe with Optuna.

The search is an Optuna study (Akiba et al., *Optuna: A Next-generation Hyperparameter
Optimization Framework*, KDD 2019) whose trials are ordinary epochal runs. ``n_trials`` is the size
of the study in total: running the same command again continues the study up to that many trials
(all states count, failed ones too), and commands on several machines sharing one storage fill the
same total. Workers of one machine take turns through a lock file, so there the total is exact;
machines that ask for a trial at the same instant may each start one more.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from epochal.config.errors import ConfigError
from epochal.tuning.space import SearchSpace, load_space

__all__ = ["SPACES_DIR", "resolve_monitor", "tune"]

#: The folder of the search spaces shipped with epochal (one per recipe it fits, by recipe name).
SPACES_DIR = Path(__file__).resolve().parents[1] / "config" / "spaces"


def _space(space: SearchSpace | Mapping[str, Any] | str | Path | None, recipe_name: str) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace.from_mapping(space)
    if space is None:
        shipped = SPACES_DIR / f"{recipe_name}.yaml"
        if not shipped.is_file():
            names = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
            raise ConfigError(f"recipe {recipe_name!r} has no shipped search space (shipped: {names}); "
                              "give one with --space space.yaml (see docs/tuning.md)")
        return load_space(shipped)
    path = Path(space)
    if not path.is_file() and (SPACES_DIR / f"{space}.yaml").is_file():
        path = SPACES_DIR / f"{space}.yaml"
    return load_space(path)


def resolve_monitor(config, monitor: str | None) -> tuple[str, str]:
    """The monitored key (default: the recipe's checkpoint monitor, else ``valid/loss``) and the study
    direction its metric declares (``higher_is_better``).

    Raises:
        ConfigError: for a key the recipe does not log, with the closest one.
    """
    from epochal.runs.registry import metric_direction
    from epochal.utils import did_you_mean

    checkpoint = config.callbacks.get("model_checkpoint") or {}
    key = monitor or checkpoint.get("monitor") or "valid/loss"
    key = key if "/" in key else f"valid/{key}"
    logged = ["train/loss", "valid/loss", *(f"valid/{m}" for m in _metric_names(config))]
    if key not in logged:
        raise ConfigError(f"monitor {key!r} is not logged by this recipe{did_you_mean(key, logged)}; "
                          f"it logs {logged} (add the metric to the recipe's metrics)")
    return key, "maximize" if metric_direction(key) else "minimize"


def _metric_names(config) -> list[str]:
    """The recipe's metrics; one that leaves them to the data may log any of the data defaults."""
    if config.metrics is not None:
        return list(config.metrics)
    from epochal.metrics import DEFAULT_METRICS

    return list(dict.fromkeys(name for names in DEFAULT_METRICS.values() for name in names))


def _registered_callbacks() -> dict[str, str]:
    from epochal.config import builders

    return {name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in builders._REGISTERED_CALLBACKS.items()}


def _grid_size(space: SearchSpace) -> int:
    return math.prod(len(values) for values in space.grid().values())


def _check_folder(study, spec) -> None:
    """A new study must not reuse a folder whose trials belong to another (e.g. a deleted database)."""
    if study.get_trials(deepcopy=False) or not spec.trials_dir.is_dir():
        return
    if any(spec.trials_dir.iterdir()):
        raise ConfigError(f"{spec.trials_dir} holds trials of a study that is not in the storage; "
                          "choose another --study or --out (nothing there is overwritten)")


def tune(
    recipe: Any = "default",
    space: SearchSpace | Mapping[str, Any] | str | Path | None = None,
    *,
    trials: int = 20,
    storage: str | None = None,
    workers: int = 1,
    study: str | None = None,
    overrides: Iterable[str] = (),
    out: str | Path = "runs",
    monitor: str | None = None,
    sampler: str | Mapping[str, Any] | None = None,
    pruner: str | Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str | None = None,
    heartbeat_interval: int = 60,
    threads: int | None = None,
    nproc: int | None = None,
) -> dict[str, Any]:
    """Search ``space`` over ``recipe`` with Optuna; every trial is a run folder of the study folder.

    Args:
        recipe: a shipped recipe name, a YAML path, a mapping or a :class:`~epochal.config.Config`.
        space: a search-space file, a shipped space name, a mapping or a :class:`SearchSpace`
            (default: the space shipped for the recipe, ``epochal/config/spaces/<recipe>.yaml``).
        trials: the study's size in total (continuing a study runs only the missing trials).
        storage: None (SQLite in the study folder), ``journal``, ``journal:///path``, or a database
            URL such as ``postgresql://user:password@host/db``.
        workers: worker processes on this machine (1: trials run in this process).
        study: the study name (default ``<recipe name>-tune``); the study folder is ``<out>/<study>``.
        overrides: ``--set`` overrides of the recipe, applied before any sampled value.
        out: the folder holding study folders.
        monitor: the logged key to optimise (default: the space's, else the recipe's checkpoint
            monitor, else ``valid/loss``); the direction comes from the metric.
        sampler: ``tpe`` (default), ``cmaes``, ``random``, ``grid``, or ``{"name": ..., **arguments}``.
        pruner: ``median`` (default), ``successive_halving``, ``hyperband``, ``none``, or a mapping.
        seed: the sampler's seed (default: the recipe's ``seed``; worker ``i`` uses ``seed + i``).
        device: the training device (default: the recipe's, else CUDA when available).
        heartbeat_interval: seconds between a running trial's heartbeats; a trial silent for twice
            as long is failed by the next worker that looks.
        threads: torch CPU threads of each worker (default: torch's, shared out among the workers).
        nproc: processes each trial trains on, data-parallel (default: the recipe's
            ``trainer.devices``); above 1 every trial is a ``torchrun`` job of that many processes
            whose rank 0 reports to the study (see :mod:`epochal.tuning.ddp_trial`).

    Returns:
        The study summary of :func:`~epochal.tuning.summary.summarise` (``trials``, ``best_value``,
        ``best_params``, ``best_trial_dir``, ``study_dir``, ``storage`` ...).

    Examples:
        >>> result = tune("default", "space.yaml", trials=20, workers=2, storage="journal")
        >>> result["best_params"], result["best_yaml"]
    """
    from epochal.config import Config, load_config
    from epochal.runs.folder import STUDY_FILE
    from epochal.tuning.samplers import build_pruner, build_sampler
    from epochal.tuning.spec import StudySpec, create_study
    from epochal.tuning.storage import fail_dead_trials, resolve_storage
    from epochal.tuning.summary import summarise, write_study_file
    from epochal.tuning.worker import run_worker, supervise

    if not isinstance(trials, int) or trials < 1 or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"trials and workers must be integers >= 1, got trials={trials!r}, workers={workers!r}")
    from epochal import distributed

    if distributed.launched():  # every rank would run a whole study of its own
        raise ConfigError("epochal tune runs on its own, not under torchrun: it starts a torchrun job per trial "
                          "itself with --nproc N (nproc=N)")
    config = recipe if isinstance(recipe, Config) else load_config(recipe, list(overrides))
    nproc = config.trainer.devices if nproc is None else nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    _check_gpus(nproc, device or config.trainer.device)
    search = _space(space, config.name)
    search.check(config.to_dict())
    key, direction = resolve_monitor(config, monitor or search.monitor)
    sampler_spec = _chosen(sampler, search.sampler, "tpe")
    pruner_spec = _chosen(pruner, search.pruner, "median")
    build_sampler(sampler_spec, search)  # a bad name or argument fails here, before the study exists
    build_pruner(pruner_spec)
    if sampler_spec["name"] == "grid" and trials > _grid_size(search):
        print(f"the grid has {_grid_size(search)} combinations: the study stops there", file=sys.stderr)
        trials = _grid_size(search)
    name = study or f"{config.name}-tune"
    study_dir = Path(out) / name
    spec = StudySpec(
        name=name, study_dir=str(study_dir.resolve()), storage=resolve_storage(storage, study_dir),
        recipe=config.to_dict(), space=search.raw, space_source=search.source, n_trials=trials, monitor=key,
        direction=direction, sampler=sampler_spec, pruner=pruner_spec,
        seed=config.seed if seed is None else seed, device=device, heartbeat_interval=heartbeat_interval,
        grace_period=2 * heartbeat_interval, threads=threads, callbacks=_registered_callbacks(), nproc=nproc,
    )
    study_dir.mkdir(parents=True, exist_ok=True)
    handle, _ = create_study(spec)
    _check_folder(handle, spec)
    if not (study_dir / STUDY_FILE).is_file():  # marks the folder as a study's for `epochal runs` at once
        write_study_file(spec)
    fail_dead_trials(handle, spec.grace_period)  # left RUNNING by a command that was killed here
    if workers == 1:
        with _torch_threads(threads):
            run_worker(spec)
    else:
        supervise(spec, workers)
    result = summarise(handle, spec)
    started = result["trials"] + result["states"]["running"]
    if started < spec.n_trials:
        raise RuntimeError(f"study {name!r} has {started} of its {spec.n_trials} trials: every worker stopped "
                           "early (their errors are above); the outputs so far are in "
                           f"{study_dir}, and running the command again continues the study")
    return result


def _check_gpus(nproc: int, device: str | None) -> None:
    """Trials on several processes of CUDA need that many GPUs (NCCL takes one per rank)."""
    import torch

    from epochal.config.experiment import resolve_device

    if nproc > 1 and resolve_device(device).startswith("cuda") and torch.cuda.device_count() < nproc:
        raise ConfigError(f"nproc={nproc}: each trial trains on {nproc} GPUs, and this machine has "
                          f"{torch.cuda.device_count()}; lower --nproc or train the trials on the CPU (--device cpu)")


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Use ``threads`` torch CPU threads inside the block (in-process trials), then restore the number."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _chosen(given: str | Mapping[str, Any] | None, from_space: dict[str, Any] | None, default: str) -> dict[str, Any]:
    """The sampler or pruner given as an argument (a bare name keeps the space's arguments for the same
    name), else the space's, else the default."""
    if given is None:
        return dict(from_space) if from_space else {"name": default}
    if isinstance(given, str):
        return dict(from_space) if from_space and from_space.get("name") == given else {"name": given}
    return {"name": default, **dict(given)}
