"""Recipe to finished run: the Python API behind ``epochal train``, ``lr-find`` and ``plot-schedule``.

:func:`train` seeds everything, builds data, model, loss, phases and callbacks from a
:class:`~epochal.config.schema.Config`, creates the run folder, fits (or resumes a crashed run
exactly), writes the plots and returns the run's key numbers. The run folder gets, besides what
the Learner writes (``config.yaml``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/``),
``data.json``: the class names and input facts that evaluation and prediction need later.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from epochal.config.builders import (
    build_callbacks,
    build_data,
    build_loss,
    build_model,
    build_optimizer_spec,
    build_phases,
)
from epochal.config.errors import ConfigError
from epochal.utils import json_safe

__all__ = [
    "build_learner",
    "data_facts",
    "lr_find",
    "read_data_info",
    "schedule_plot",
    "train",
    "valid_metrics",
    "write_data_info",
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
    device = _device(config, device)
    data = data if data is not None else build_data(config, device)
    model = build_model(config, data)
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
    trainer = config.trainer
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
        precision=trainer.precision,
        channels_last=trainer.channels_last,
        compile=trainer.compile,
        grad_accum=trainer.grad_accum,
        clip_grad_norm=trainer.clip_grad_norm,
        clip_grad_value=trainer.clip_grad_value,
        log_every=trainer.log_every,
        run_dir=run_dir,
        config=config.to_dict(),
        seed=config.seed,
    )
    return learner, phases


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


def read_data_info(run_dir: str | Path) -> dict[str, Any]:
    """What :func:`write_data_info` saved (an empty dict for runs without it)."""
    from epochal.runs import read_json

    path = Path(run_dir) / "data.json"
    return read_json(path) if path.is_file() else {}


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
        ``{"run_dir", "epochs", "metrics", "best", "wall_s", "skipped_files", "plots", "lr_find"}``
        (and ``decision``, the record of :func:`epochal.config.decision.fit_decision`, when the
        recipe sets ``trainer.decision``): metrics
        are the final validation values by name (``accuracy``, ``loss``) of the weights the run
        ends with (a run that ends with SWA or EMA weights: their ``valid_swa``/``valid_ema``
        values, and then ``final_weights`` names them), ``best`` the best value of each.
    """
    from epochal.runs import create_run_dir, run_lock

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {run_dir}: not a run folder (no config.yaml, no checkpoints/last.pt)")
    elif run_dir is not None:
        run_dir = Path(run_dir)
        if (run_dir / "summary.json").exists() or (run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(f"run folder {run_dir} already holds a run; give a new folder")
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = create_run_dir(out, config.name)
    with run_lock(run_dir):  # a second `epochal train --resume` of this folder fails at once
        if resume is not None:  # checked under the lock: a live run may not have its first checkpoint yet
            _check_resumable(run_dir)
        return _train_in(run_dir, config, resume is not None, device, progress, callbacks)


def _check_resumable(run_dir: Path) -> None:
    """Raise, saying what to do, unless ``run_dir`` has a checkpoint to continue from."""
    import shlex

    if (run_dir / "checkpoints" / "last.pt").is_file():
        return
    others = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    if others:
        problem = (f"no checkpoints/last.pt to continue from (it has {', '.join(others)}; resume needs last.pt, "
                   "which model_checkpoint writes unless save_last is false)")
    else:
        problem = ("no checkpoint yet (the run stopped before its first checkpoint was written), so there is "
                   "nothing to continue")
    command = f"epochal train {shlex.quote(str(run_dir / 'config.yaml'))} --out {shlex.quote(str(run_dir.parent))}"
    raise ConfigError(
        f"--resume {run_dir}: {problem}; start the run again from its config, in a new run folder: {command}"
    )


def _train_in(
    run_dir: Path, config, resuming: bool, device: str | None, progress: bool, callbacks: Sequence = ()
) -> dict[str, Any]:
    """The body of :func:`train`, run while holding the run folder's lock."""
    from epochal.runs import read_json
    from epochal.runs.folder import remove_if_empty
    from epochal.runs.plots import write_run_plots

    try:
        learner, phases = build_learner(config, device=device, run_dir=run_dir, progress=progress)
        for callback in callbacks:
            learner.add_callback(callback)
        if config.trainer.decision is not None:  # refused before training, not after it
            from epochal.config.decision import check_decision

            check_decision(config, learner.data)
    except BaseException:
        if not resuming:  # bad data or model settings: leave no empty run folder behind
            remove_if_empty(run_dir)
        raise
    write_data_info(run_dir, learner.data)
    probe = None
    if config.trainer.lr_find and not resuming:  # the probe restores every weight and generator
        probe = learner.lr_find(num=config.trainer.lr_find, plot=run_dir / "plots" / "lr_find.png")
    learner.fit(phases, resume=run_dir if resuming else None)
    decision = None
    if config.trainer.decision is not None:  # with the final weights, as eval and predict load them
        from epochal.config.decision import fit_decision

        decision = fit_decision(run_dir, config, learner.data, str(learner.device), learner.model)
    plots = write_run_plots(learner) if config.trainer.plots else {}
    if probe is not None:
        plots["lr_find"] = str(probe.plot)
    summary = read_json(run_dir / "summary.json")
    best = {k[6:]: v.get("value") for k, v in summary.get("best", {}).items() if k.startswith("valid/")}
    info = learner.data.info
    skipped = info.get("skipped_files", info.get("skipped_rows", []))
    final = summary.get("final_weights")
    prefix = f"valid_{final['source']}" if final else "valid"
    return {
        **({"final_weights": final} if final else {}),
        "run_dir": str(run_dir),
        "epochs": summary.get("epochs", len(learner.history)),
        "metrics": valid_metrics(learner.history[-1], prefix) if learner.history else {},
        "best": best,
        "wall_s": summary.get("wall_s"),
        "skipped_files": [str(s) for s in skipped] if isinstance(skipped, (list, tuple)) else skipped,
        "plots": plots,
        "lr_find": {"suggestion": probe.suggestion, "suggestions": probe.suggestions} if probe else None,
        **({"decision": decision} if decision else {}),
    }


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
