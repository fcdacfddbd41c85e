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
    device = _device(config, device)
    data = data if data is not None else build_data(config, device)
    model = build_model(config, data)
    phases, freeze = build_phases(config)
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
        loss=build_loss(config),
        optimizer=build_optimizer_spec(config),
        lr=config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
        metrics=config.metrics,
        callbacks=callbacks,
        device=device,
        precision=resolve_auto(trainer.precision, device, "bf16", "fp32"),
        channels_last=trainer.channels_last,
        compile=resolve_auto(trainer.compile, device, True, False),
        grad_accum=trainer.grad_accum,
        clip_grad_norm=trainer.clip_grad_norm,
        clip_grad_value=trainer.clip_grad_value,
        log_every=trainer.log_every,
        run_dir=run_dir,
        config=config.to_dict(),
        seed=config.seed,
    )
    return learner, phases


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


def valid_metrics(record: dict[str, Any]) -> dict[str, float | None]:
    """``valid/<name>`` values of a history record or metrics dict, keyed by name, NaN as None."""
    out = {}
    for key, value in record.items():
        if key.startswith("valid/"):
            out[key[6:]] = json_safe(value)
    return out


def train(
    config,
    out: str | Path = "runs",
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` into a new run folder under ``out`` (or continue the run folder ``resume``).

    Returns:
        ``{"run_dir", "epochs", "metrics", "best", "wall_s", "skipped_files", "plots", "lr_find"}``: metrics
        are the final validation values by name (``accuracy``, ``loss``), ``best`` the best
        value of each.
    """
    from epochal.runs import create_run_dir, read_json
    from epochal.runs.folder import remove_if_empty
    from epochal.runs.plots import write_run_plots

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise ConfigError(f"--resume {run_dir}: not a run folder with checkpoints/last.pt to continue from")
    else:
        run_dir = create_run_dir(out, config.name)
    try:
        learner, phases = build_learner(config, device=device, run_dir=run_dir, progress=progress)
    except BaseException:
        if resume is None:  # bad data or model settings: leave no empty run folder behind
            remove_if_empty(run_dir)
        raise
    write_data_info(run_dir, learner.data)
    probe = None
    if config.trainer.lr_find and resume is None:  # the probe restores every weight and generator
        probe = learner.lr_find(num=config.trainer.lr_find, plot=run_dir / "plots" / "lr_find.png")
    learner.fit(phases, resume=run_dir if resume is not None else None)
    plots = write_run_plots(learner) if config.trainer.plots else {}
    if probe is not None:
        plots["lr_find"] = str(probe.plot)
    summary = read_json(run_dir / "summary.json")
    best = {k[6:]: v.get("value") for k, v in summary.get("best", {}).items() if k.startswith("valid/")}
    info = learner.data.info
    skipped = info.get("skipped_files", info.get("skipped_rows", []))
    return {
        "run_dir": str(run_dir),
        "epochs": summary.get("epochs", len(learner.history)),
        "metrics": valid_metrics(learner.history[-1]) if learner.history else {},
        "best": best,
        "wall_s": summary.get("wall_s"),
        "skipped_files": [str(s) for s in skipped] if isinstance(skipped, (list, tuple)) else skipped,
        "plots": plots,
        "lr_find": {"suggestion": probe.suggestion, "suggestions": probe.suggestions} if probe else None,
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
    """Plot the recipe's learning-rate and momentum schedule; steps per epoch from the data unless given."""
    from epochal.schedules import PhaseSchedule, plot_schedule

    phases, _ = build_phases(config)
    if steps_per_epoch is None:
        data = build_data(config, _device(config, device))
        steps_per_epoch = math.ceil(len(data.train) / config.trainer.grad_accum)
    schedule = PhaseSchedule(phases, steps_per_epoch, default_lr=config.optimizer.lr)
    written = plot_schedule(schedule, path=path)
    return {
        "plot": str(written),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": schedule.total_steps,
        "phases": len(phases),
    }
