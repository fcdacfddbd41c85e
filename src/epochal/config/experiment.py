"""Recipe to finished run: the Python API behind ``epochal train``, ``lr-find`` and ``plot-schedule``.

:func:`train` seeds everything, builds data, model, loss, phases and callbacks from a
:class:`~epochal.config.schema.Config`, creates the run folder, fits (or resumes a crashed run
exactly), writes the plots and returns the run's key numbers. The run folder gets, besides what
the Learner writes (``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/``),
``data.json``: the class names and input facts that evaluation and prediction need later, and
``data_report.json``: every file or row the data pipeline skipped and every value it
reinterpreted, with the reason (:mod:`epochal.data.report`).

Under torchrun every process runs :func:`train`: rank 0 creates the run folder (and holds its lock)
and sends its path to the others, every rank builds the same recipe on its own share of the data,
rank 0 alone writes files, and every rank returns rank 0's result. An error that rank 0 meets
while preparing the folder is raised on every rank.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from epochal import distributed
from epochal.config.builders import (
    build_callbacks,
    build_data,
    build_distillation,
    build_loss,
    build_model,
    build_optimizer_spec,
    build_phases,
    with_data_defaults,
)
from epochal.config.data_files import write_data_files
from epochal.config.errors import ConfigError
from epochal.config.features import apply_freeze, feature_data
from epochal.config.resuming import check_not_finished, check_resumable
from epochal.utils import json_safe

__all__ = [
    "build_learner",
    "data_facts",
    "lr_find",
    "read_data_info",
    "run_result",
    "sanity",
    "scale_phases",
    "schedule_plot",
    "train",
    "valid_metrics",
    "write_data_info",
    "write_data_report",
]


def resolve_device(chosen: str | None) -> str:
    """``chosen``, or CUDA when available; a clear error when CUDA is asked for but missing."""
    import torch

    if chosen is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(chosen).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {chosen!r} was asked for but CUDA is not available; use --device cpu")
    return str(chosen)


def _device(config, device: str | None) -> str:
    return resolve_device(device or config.trainer.device)


def resolve_auto(value, device: str, on_cuda, elsewhere):
    """A trainer setting of ``auto`` (precision, compile) resolved for the device."""
    if value != "auto":
        return value
    return on_cuda if str(device).startswith("cuda") else elsewhere


#: Callbacks that write into the run folder unless given a path of their own (name -> path argument).
_RUN_FOLDER_CALLBACKS = {"model_checkpoint": "dirpath", "csv_logger": "path", "tensorboard": "log_dir"}


def _callbacks(config, progress: bool, has_run_dir: bool) -> list:
    entries = dict(config.callbacks)
    if not progress:
        entries.pop("progress_bar", None)
    if not has_run_dir:  # e.g. the LR finder: nothing to write into
        entries = {
            k: v
            for k, v in entries.items()
            if k not in _RUN_FOLDER_CALLBACKS or (v and v.get(_RUN_FOLDER_CALLBACKS[k]))
        }
    callbacks = build_callbacks({k: v for k, v in entries.items() if k != "progress_bar"})
    if entries.get("progress_bar") not in (None, False):
        from rich.console import Console

        registry_entry = build_callbacks({"progress_bar": entries["progress_bar"]})[0]
        if registry_entry.console is None:
            registry_entry.console = Console(stderr=True)  # stdout stays clean for --json
        callbacks.append(registry_entry)
    return callbacks


def build_learner(
    config, *, device: str | None = None, run_dir: str | Path | None = None, progress: bool = True, data=None
):
    """Seed, then build the Learner and the phases of ``config``.

    Args:
        config: a validated :class:`~epochal.config.schema.Config`.
        device: overrides ``trainer.device``.
        run_dir: the run folder (None: nothing is written; callbacks that would write into it are left out).
        progress: keep the ``progress_bar`` callback of the recipe (drawn on stderr).
        data: ready :class:`~epochal.data.DataLoaders` (default: built from ``config.data``).

    Returns:
        ``(learner, phases)``.
    """
    from epochal.callbacks.phase_freezing import PhaseFreezing
    from epochal.learner import Learner
    from epochal.state import seed_everything

    seed_everything(config.seed, config.deterministic)
    trainer = config.trainer
    strategy = distributed.auto_strategy(_device(config, device), sync_bn=trainer.sync_bn)
    device = str(strategy.set_device(_device(config, device)))  # in a job: cuda:<LOCAL_RANK>
    if data is None:
        world = strategy.world
        # a shared packed cache is written by the first rank of each machine, then read by the others
        first = distributed.main_process_first() if config.data.options.get("cache_dir") else contextlib.nullcontext()
        with first:
            data = build_data(config, device, rank=world.rank, world_size=world.world_size)
    config, _ = with_data_defaults(config, data_facts(data))
    model = build_model(config, data)
    apply_freeze(config, model)
    if config.data.cache_features:
        data = feature_data(config, model, data, device, strategy.world)
    phases, freeze = build_phases(config, data)
    callbacks = _callbacks(config, progress, run_dir is not None)
    if any(n is not None for n in freeze):
        if not config.model.weights:
            warnings.warn(
                "the phases freeze layer groups but model.weights is not set: the frozen layers keep "
                "their random initialisation; set model.weights to a run folder or checkpoint",
                stacklevel=2,
            )
        callbacks.append(PhaseFreezing(freeze))
    distillation = build_distillation(config, data)
    if distillation is not None:
        callbacks.append(distillation)
    learner = Learner(
        model,
        data,
        loss=build_loss(config, data_facts(data), targets=getattr(data.train, "targets", None)),
        optimizer=build_optimizer_spec(config),
        lr=config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
        metrics=config.metrics,
        callbacks=callbacks,
        device=device,
        precision=resolve_auto(trainer.precision, device, "bf16", "fp32"),
        channels_last=trainer.channels_last,
        compile=resolve_auto(trainer.compile, device, True, False),
        compile_mode=trainer.compile_mode,
        grad_accum=trainer.grad_accum,
        clip_grad_norm=trainer.clip_grad_norm,
        clip_grad_value=trainer.clip_grad_value,
        log_every=trainer.log_every,
        retain_host_memory=trainer.retain_host_memory,
        run_dir=run_dir,
        config=config.to_dict(),
        seed=config.seed,
        strategy=strategy,
        lr_scaling=_lr_scaling(config),
    )
    return learner, phases


def _lr_scaling(config) -> distributed.LRScaling | None:
    """``optimizer.lr_scaling`` with its reference batch size (None: the rates as written)."""
    opt = config.optimizer
    if opt.lr_scaling == "none":
        return None
    return distributed.LRScaling(opt.lr_scaling, opt.reference_batch_size)


def data_facts(data) -> dict[str, Any]:
    """``data.info`` with the class names: what builders size the model and the loss from."""
    return {"classes": list(data.classes) if data.classes is not None else None, **data.info}


def write_data_info(run_dir: str | Path, data) -> Path:
    """Save what inference needs to know about the training data in ``<run>/data.json``."""
    from epochal.runs import write_json_atomic

    info = data.info
    record = {"classes": list(data.classes) if data.classes is not None else None}
    for key in (
        "num_classes",
        "input_shape",
        "normalize",
        "multi_label",
        "task",
        "cardinalities",
        "n_continuous",
        "categorical",
        "continuous",
        "class_counts",
        "train_size",
        "encoding",
    ):
        if key in info:
            value = info[key]
            record[key] = list(value) if isinstance(value, tuple) else value
    if info.get("preprocessor") is not None and hasattr(info["preprocessor"], "state_dict"):
        record["preprocessor"] = info["preprocessor"].state_dict()
    return write_json_atomic(Path(run_dir) / "data.json", record)


def write_data_report(run_dir: str | Path, data) -> Path | None:
    """Save ``data.info["data_report"]`` as ``<run>/data_report.json`` (None: the data has no report)."""
    report = data.info.get("data_report")
    if report is None:
        return None
    path = Path(run_dir) / "data_report.json"
    report.write(path)
    return path


def read_data_info(run_dir: str | Path) -> dict[str, Any]:
    """What :func:`write_data_info` saved (an empty dict for runs without it)."""
    from epochal.runs import read_json

    path = Path(run_dir) / "data.json"
    return read_json(path) if path.is_file() else {}


def scale_phases(config, epochs: int) -> tuple[Any, str | None]:
    """``config`` with its explicit list of phases stretched or shrunk to ``epochs`` in all.

    The top-level ``epochs`` sizes ``{schedule: ...}`` builders only; a recipe that lists its
    phases gives each its own length. ``--epochs N`` scales every listed phase by the same factor,
    so the phases keep their proportions (``finetune``'s 2 + 6 epochs become 0.25 + 0.75 for
    ``--epochs 1``): a shorter or longer run of the same recipe.

    Returns:
        ``(config, note)``: the config (the same object when there is nothing to scale) and a
        sentence that gives the new phase lengths, or None.
    """
    if not isinstance(config.phases, list):
        return config, None
    lengths = [float(entry["epochs"]) for entry in config.phases]
    total = math.fsum(lengths)
    if math.isclose(total, epochs):
        return config, None
    factor = epochs / total
    phases = [{**entry, "epochs": round(n * factor, 6)} for entry, n in zip(config.phases, lengths)]
    scaled = type(config).model_validate({**config.to_dict(), "epochs": epochs, "phases": phases})

    def names(entries) -> str:
        return ", ".join(f"{e.get('name') or i + 1} {e['epochs']:g}" for i, e in enumerate(entries))

    note = (f"--epochs {epochs}: the recipe lists {len(phases)} phases of {total:g} epochs in all "
            f"({names(config.phases)}); each is scaled by {factor:.4g} to make {epochs}: {names(phases)}")
    return scaled, note


def valid_metrics(record: dict[str, Any], prefix: str = "valid") -> dict[str, float | None]:
    """``<prefix>/<name>`` values of a history record or metrics dict, keyed by name, NaN as None."""
    out = {}
    for key, value in record.items():
        if key.startswith(f"{prefix}/"):
            out[key[len(prefix) + 1:]] = json_safe(value)
    return out


def train(
    config,
    out: str | Path = "runs",
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
    callbacks: Sequence = (),
) -> dict[str, Any]:
    """Train ``config`` into a new run folder under ``out`` (or continue the run folder ``resume``).

    Args:
        run_dir: train into exactly this new folder instead of a dated one under ``out`` (a search
            names its trials ``trial_0003``); it may exist but must not hold a run yet.
        callbacks: extra callbacks added to the recipe's own (e.g. a search's pruning callback).

    Returns:
        ``{"run_dir", "status", "stop_reason", "epochs", "metrics", "final", "best", "best_epochs",
        "final_weights", "checkpoints", "wall_s", "skipped_files", "plots", "lr_find"}``: ``metrics``
        are the validation values of the last epoch by name (``accuracy``, ``loss``), ``final`` the
        same with that epoch's number, ``best`` the best value of each and ``best_epochs`` the best
        values with their epochs; ``final_weights`` says which weights the run ends with (see
        :class:`~epochal.callbacks.run_logger.RunLogger`), ``checkpoints`` what ``best.pt`` and
        ``last.pt`` hold (``{"path", "step", "epoch", "batch"}``). Epochs are numbered from 1. Plus
        ``chosen_from_data`` (the loss and metrics a recipe left to the data) and, for a multi-label
        run, ``thresholds`` (``thresholds.json`` and the validation F1 at 0.5 and at them). A run that
        ends with SWA or EMA weights reports their ``valid_swa``/``valid_ema`` values as ``metrics``;
        ``decision`` (the record of :func:`epochal.config.decision.fit_decision`) when the recipe
        sets ``trainer.decision``.

    Raises:
        Interrupted: Ctrl-C or SIGTERM stopped the fit (at a batch boundary, with the position
            saved in ``last.pt``; ``run_dir`` set); ``KeyboardInterrupt`` before the fit started.
    """
    _check_devices(config)
    with distributed.process_group(_device(config, device)):  # under torchrun: join the job (no-op alone)
        folder = distributed.run_on_main(lambda: _prepare_folder(config, out, resume, run_dir))
        with contextlib.ExitStack() as lock:
            # rank 0 alone holds the lock (a second `epochal train --resume` fails at once); its errors,
            # like a resume without checkpoint, are raised on every rank
            distributed.run_on_main(lambda: _lock_and_check(lock, folder, resume is not None))
            return _train_in(folder, config, resume is not None, device, progress, callbacks)


def _prepare_folder(config, out, resume, run_dir) -> Path:
    """The run folder: the one to resume, the given new one, or a new dated one under ``out`` (rank 0)."""
    from epochal.runs import create_run_dir

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {run_dir}: not a run folder (no config.yaml, no checkpoints/last.pt)")
        return run_dir
    if run_dir is not None:
        run_dir = Path(run_dir)
        if (run_dir / "summary.json").exists() or (run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(f"run folder {run_dir} already holds a run; give a new folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    return create_run_dir(out, config.name)


def _lock_and_check(lock: contextlib.ExitStack, run_dir: Path, resuming: bool) -> None:
    from epochal.runs import run_lock

    lock.enter_context(run_lock(run_dir))
    if resuming:  # checked under the lock: a live run may not have its first checkpoint yet
        check_resumable(run_dir)
        check_not_finished(run_dir)


def _check_devices(config) -> None:
    """Say when ``trainer.devices`` cannot be what this process does (only ``epochal train`` starts torchrun)."""
    devices, here = config.trainer.devices, distributed.world()
    if devices > 1 and not distributed.launched():
        warnings.warn(f"trainer.devices={devices}: `epochal train` starts torchrun with {devices} processes for this; "
                      "called from Python, the recipe trains in this one process (run it under torchrun "
                      "to train on several)", stacklevel=3)
    elif distributed.launched() and devices not in (1, here.local_world_size) and here.is_main:
        warnings.warn(f"trainer.devices={devices} is not used: the launcher started {here.local_world_size} "
                      "process(es) on this machine", stacklevel=3)


def _train_in(
    run_dir: Path, config, resuming: bool, device: str | None, progress: bool, callbacks: Sequence = ()
) -> dict[str, Any]:
    """The body of :func:`train`, run while rank 0 holds the run folder's lock."""
    from epochal.callbacks.save_on_interrupt import Interrupted, SaveOnInterrupt
    from epochal.runs.folder import remove_if_empty

    try:
        learner, phases = build_learner(config, device=device, run_dir=run_dir, progress=progress)
        for callback in [*callbacks, SaveOnInterrupt()]:  # Ctrl-C: stop at a batch boundary, save it
            learner.add_callback(callback)
        if config.trainer.decision is not None:  # refused before training, not after it
            from epochal.config.decision import check_decision

            check_decision(config, learner.data)
    except BaseException:
        if not resuming and distributed.is_main():  # bad data or model settings: leave no empty run folder
            remove_if_empty(run_dir)
        raise
    if learner.is_main:
        write_data_info(run_dir, learner.data)
        write_data_report(run_dir, learner.data)
        write_data_files(run_dir, learner.data)
        if progress:  # the global batch and any lr scaling, before the first step
            print(f"{learner.describe_batch()}", file=sys.stderr, flush=True)
    probe = None
    try:
        if config.trainer.lr_find and not resuming:  # the probe restores every weight and generator
            probe = learner.lr_find(num=config.trainer.lr_find, plot=run_dir / "plots" / "lr_find.png")
        learner.fit(phases, resume=run_dir if resuming else None)
    except Interrupted:
        raise
    except KeyboardInterrupt:  # before the fit installed its handler: nothing trained, nothing to save
        raise Interrupted(signal.SIGINT, run_dir=run_dir) from None
    return learner.strategy.run_on_main(lambda: _result(learner, run_dir, config, probe))


def _result(learner, run_dir: Path, config, probe) -> dict[str, Any]:
    """The train result, from the run folder rank 0 wrote (its thresholds and plots made first)."""
    from epochal.runs.plots import write_run_plots

    thresholds = _tuned_thresholds(run_dir, learner)
    decision = None
    if config.trainer.decision is not None:  # with the final weights, as eval and predict load them
        from epochal.config.decision import fit_decision

        decision = fit_decision(run_dir, config, learner.data, str(learner.device), learner.model)
    plots = write_run_plots(learner) if config.trainer.plots else {}
    if probe is not None:
        plots["lr_find"] = str(probe.plot)
    _, chosen = with_data_defaults(config, data_facts(learner.data))
    result = run_result(run_dir, learner)
    result.update(plots=plots, lr_find={"suggestion": probe.suggestion, "suggestions": probe.suggestions}
                  if probe else None)
    result.update({"chosen_from_data": chosen} if chosen else {})
    result.update({"thresholds": thresholds} if thresholds else {})
    result.update({"decision": decision} if decision else {})
    return result


def run_result(run_dir: Path, learner=None) -> dict[str, Any]:
    """The key numbers of a trained run folder (see :func:`train`), from its summary and checkpoints."""
    from epochal.runs import read_json
    from epochal.runs.folder import checkpoint_position

    summary = read_json(run_dir / "summary.json")
    best_epochs = {k[6:]: v for k, v in summary.get("best", {}).items() if k.startswith("valid/")}
    final = summary.get("final", {})
    source = (summary.get("final_weights") or {}).get("source")
    # a run that ends with averaged weights (SWA/EMA) reports their metrics, logged as valid_<source>/...
    prefix = f"valid_{source}" if any(k.startswith(f"valid_{source}/") for k in final) else "valid"
    info = learner.data.info if learner is not None else {}
    skipped = info.get("skipped_files", info.get("skipped_rows", []))
    checkpoints = {}
    for name in ("best", "last"):
        path = run_dir / "checkpoints" / f"{name}.pt"
        position = checkpoint_position(path) if path.is_file() else None
        if position is not None:
            checkpoints[name] = {"path": str(path), **position}
    monitor = _checkpoint_monitor(learner)
    if "best" in checkpoints and monitor:
        checkpoints["best"]["note"] = f", the best {monitor}"
    return {
        "run_dir": str(run_dir),
        "status": summary.get("status"),
        "stop_reason": summary.get("stop_reason"),
        "epochs": summary.get("epochs"),
        "metrics": valid_metrics(final, prefix),
        "final": {"epoch": final.get("epoch"), **valid_metrics(final, prefix)},
        "best": {k: v.get("value") for k, v in best_epochs.items()},
        "best_epochs": best_epochs,
        "final_weights": summary.get("final_weights"),
        "checkpoints": checkpoints,
        "wall_s": summary.get("wall_s"),
        "skipped_files": [str(s) for s in skipped] if isinstance(skipped, (list, tuple)) else skipped,
    }


def _tuned_thresholds(run_dir: Path, learner) -> dict[str, Any] | None:
    """Per-class thresholds of a multi-label run with a checkpoint, tuned on its validation split."""
    from epochal.config.thresholds import write_thresholds

    if not learner.data.info.get("multi_label") or not any((run_dir / "checkpoints").glob("*.pt")):
        return None
    record = write_thresholds(run_dir, learner.data.valid, str(learner.device))
    return {"path": str(run_dir / "thresholds.json"), **record["valid"]}


def _checkpoint_monitor(learner) -> str | None:
    from epochal.callbacks.model_checkpoint import ModelCheckpoint

    found = learner.get_callback(ModelCheckpoint) if learner is not None else None
    return found.monitor if found is not None and found.save_best else None


def lr_find(config, plot: str | Path, device: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run the learning-rate range test on the recipe's data and model; returns the suggestions and plot."""
    learner, _ = build_learner(config, device=device, progress=False)
    result = learner.lr_find(plot=plot, **kwargs)
    return {
        "suggestion": json_safe(result.suggestion),
        "suggestions": json_safe(result.suggestions),
        "plot": str(result.plot) if result.plot is not None else None,
        "steps": len(result.lrs),
    }


def sanity(config, device: str | None = None, **kwargs: Any):
    """The sanity check (:meth:`~epochal.learner.Learner.overfit_batch`) on the recipe's data, model,
    loss and optimizer; returns the :class:`~epochal.diagnostics.SanityReport` (``to_dict()`` is
    what ``epochal sanity --json`` prints).

    Args:
        kwargs: ``batch_size``, ``max_steps``, ``lr``, ``loss_target``, ``skip``, ``sweep_steps``,
            ``sample_size``.
    """
    learner, _ = build_learner(config, device=device, progress=False)
    return learner.overfit_batch(**kwargs)


def schedule_plot(
    config, path: str | Path, steps_per_epoch: int | None = None, device: str | None = None
) -> dict[str, Any]:
    """Plot the recipe's learning-rate and momentum schedule; steps per epoch from the data unless given.

    Phases with their own ``data`` settings count their own loader's steps. A given
    ``steps_per_epoch`` is the main data's; it is refused when a phase changes the number of
    batches (its ``batch_size`` or ``balance``), which only the data can tell.

    Returns:
        ``{"plot", "steps_per_epoch", "total_steps", "phases", "phase_steps"}``: steps per epoch
        of the main data (one per phase when phases change the data), and optimizer steps per phase.
    """
    from epochal.schedules import PhaseSchedule, plot_schedule

    if steps_per_epoch is None:
        data = build_data(config, _device(config, device))
        phases, _ = build_phases(config, data)
        per_phase = [math.ceil(len(p.data or data.train) / config.trainer.grad_accum) for p in phases]
    else:
        _check_given_steps(config)
        phases, _ = build_phases(config)
        per_phase = [steps_per_epoch] * len(phases)
    schedule = PhaseSchedule(phases, per_phase, default_lr=config.optimizer.lr)
    written = plot_schedule(schedule, path=path)
    return {
        "plot": str(written),
        "steps_per_epoch": per_phase[0] if len(set(per_phase)) == 1 else per_phase,
        "total_steps": schedule.total_steps,
        "phases": len(phases),
        "phase_steps": [schedule.phase_length(k) for k in range(len(phases))],
    }


def _check_given_steps(config) -> None:
    from epochal.config.phase_data import phase_overlay

    if not isinstance(config.phases, list):
        return
    for i, entry in enumerate(config.phases):
        overlay = phase_overlay(entry.get("data"), config.data_variants, f"phases.{i}.data") or {}
        changed = sorted({"batch_size", "balance"} & set(overlay))
        if changed:
            raise ConfigError(
                f"phases.{i}.data sets {changed}, so its steps per epoch differ from --steps-per-epoch; "
                "leave --steps-per-epoch out to count them from the data"
            )
