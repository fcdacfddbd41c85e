"""What ``epochal train`` says before and after a run: what is about to run, then what happened.

The start block is printed by :class:`RunHeader` when the fit starts (the learner then knows its
data sizes, steps and schedule, and on ``--resume`` where it continues); the end block by
:func:`print_end` from the result of :func:`epochal.config.experiment.train`. Both are aligned
``label  value`` lines without markup, readable in a terminal and in a log file alike.
"""

from __future__ import annotations

import datetime
import shlex
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from epochal.callbacks.base import Callback
from epochal.utils import compile_options

__all__ = ["RunHeader", "interrupted_lines", "print_end", "start_lines"]


def _lines(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s ({datetime.timedelta(seconds=round(seconds))})"


# ----------------------------------------------------------------------------------------- start
def _model_line(learner, config) -> str:
    params = sum(p.numel() for p in learner.model.parameters())
    trainable = sum(p.numel() for p in learner.model.parameters() if p.requires_grad)
    kind = type(learner.model).__name__
    name = config.model.name if config.model.name.lower() == kind.lower() else f"{config.model.name} ({kind})"
    extra = f", {trainable:,} trainable" if trainable != params else ""
    weights = f", weights from {config.model.weights}" if config.model.weights else ""
    return f"{name}, {params:,} parameters{extra}{weights}"


def _device_line(learner) -> str:
    parts = [str(learner.device), learner.precision]
    if learner.channels_last:
        parts.append("channels-last")
    options = compile_options(learner.compile, learner.compile_mode)
    if options:
        parts.append(f"compiled ({', '.join(options.values())})")
    return ", ".join(parts)


def _data_line(learner, config) -> str:
    info, classes = learner.data.info, learner.data.classes
    sizes = [f"{info['train_size']:,} train" if "train_size" in info else None,
             f"{info['valid_size']:,} valid" if "valid_size" in info else None]
    text = " / ".join(s for s in sizes if s) or "sizes not known"
    if classes:
        shown = ", ".join(map(str, classes[:5])) + (", ..." if len(classes) > 5 else "")
        text += f", {len(classes)} classes ({shown})"
    elif info.get("task") == "regression":
        text += ", regression"
    return f"{text} from {config.data.path}" if config.data.path else text


def _schedule_line(learner, config) -> str:
    """``one_cycle, 15 epochs (2 phases), peak lr 0.2`` or, for explicit phases, each phase's epochs and rates."""
    schedule, phases = learner.schedule, learner.phases
    epochs = sum(p.epochs for p in phases)
    lrs = [schedule.values(step)["lr"] for k in range(len(phases)) if schedule.phase_length(k)
           for step in (schedule.boundaries[k], schedule.boundaries[k + 1] - 1)]
    peak = f", peak lr {max(lrs):.3g}" if lrs else ""
    builder = getattr(config.phases, "schedule", None)
    if builder is not None:
        return f"{builder}, {_number(epochs)} epochs ({len(phases)} phase{'s' * (len(phases) != 1)}){peak}"
    parts = []
    for k, phase in enumerate(phases):
        rates = [schedule.values(s)["lr"] for s in (schedule.boundaries[k], schedule.boundaries[k + 1] - 1)]
        lr = f"lr {rates[0]:.3g}" if rates[0] == rates[1] else f"lr {rates[0]:.3g}->{rates[1]:.3g}"
        parts.append(f"{phase.name or k + 1} {_number(phase.epochs)} ep {lr}")
    return f"{len(phases)} phases, {_number(epochs)} epochs{peak}: " + "; ".join(parts)


def start_lines(learner, config) -> list[tuple[str, str]]:
    """The start block's ``(label, value)`` rows for a learner whose fit is starting."""
    state = learner.state
    steps = learner.steps_per_epoch(learner.phases[0])
    batch = f"{config.data.batch_size}"
    if learner.grad_accum > 1:
        batch += f" x {learner.grad_accum} accumulated ({config.data.batch_size * learner.grad_accum} per step)"
    rows = [
        ("recipe", config.name),
        ("model", _model_line(learner, config)),
        ("device", _device_line(learner)),
        ("data", _data_line(learner, config)),
        ("batches", f"batch size {batch}, {steps:,} steps per epoch, {state.total_steps:,} steps in all"),
        ("schedule", _schedule_line(learner, config)),
        ("run folder", str(learner.run_dir)),
    ]
    if state.step > 0:
        rows.append(("resuming", f"epoch {state.epoch_number}, batch {state.batch} (step {state.step:,} of "
                                 f"{state.total_steps:,})"))
    return rows


class RunHeader(Callback):
    """Print the start block when the fit starts (first, before the progress bars appear).

    Args:
        config: the run's recipe.
        stream: where to print (stderr under ``--json``, so stdout ends with the JSON line).
    """

    order = -100

    def __init__(self, config, stream: TextIO | None = None):
        self.config, self.stream = config, stream

    def before_fit(self) -> None:
        print(_lines(start_lines(self.learner, self.config)), file=self.stream or sys.stdout, flush=True)


# ----------------------------------------------------------------------------------------- end
def _metrics(values: dict[str, Any]) -> str:
    return "  ".join(f"{k} {_number(v)}" for k, v in values.items() if k != "epoch") or "-"


def _stopped_line(result: dict[str, Any]) -> str:
    status, epochs = result.get("status"), result.get("epochs")
    if status == "stopped":
        return f"stopped early after epoch {epochs}: {result.get('stop_reason') or 'a callback cancelled the fit'}"
    return f"{status or 'finished'}: {epochs} epoch{'s' * (epochs != 1)}"


def end_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The end block's rows for the result of :func:`epochal.config.experiment.train`."""
    rows = [("result", _stopped_line(result)), ("wall time", _duration(result.get("wall_s")))]
    final = result.get("final") or {}
    rows.append((f"final (epoch {final.get('epoch', result.get('epochs'))})", _metrics(result.get("metrics", {}))))
    best = result.get("best_epochs") or {}
    if best:
        rows.append(("best", "  ".join(f"{k} {_number(v['value'])} (epoch {v['epoch']})" for k, v in best.items())))
    weights = result.get("final_weights")
    if weights:
        rows.append(("weights", weights.get("description", weights.get("source", "?"))))
    for name, entry in (result.get("checkpoints") or {}).items():
        where = f"epoch {entry['epoch']}" if entry.get("batch") == 0 else (
            f"step {entry['step']}, batch {entry['batch']} of epoch {entry['epoch'] + 1}")
        rows.append((f"{name}.pt", f"{entry['path']} ({where}{entry.get('note', '')})"))
    rows.append(("run folder", result["run_dir"]))
    return rows


def print_end(result: dict[str, Any], stream: TextIO | None = None) -> None:
    """Print the end block of a run."""
    print(_lines(end_lines(result)), file=stream or sys.stdout, flush=True)


def interrupted_lines(stop) -> list[str]:
    """What to say when a run was interrupted (``stop`` is an :class:`~epochal.callbacks.Interrupted`)."""
    import signal

    name = signal.Signals(stop.signum).name
    run = getattr(stop, "run_dir", None)
    where = stop.position
    if not where:
        lines = [f"interrupted ({name}) before training started; nothing was trained"]
        if run is not None:
            lines.append(f"start it again with: epochal train {shlex.quote(str(run / 'config.yaml'))} "
                         f"--out {shlex.quote(str(run.parent))}" if (run / "config.yaml").is_file()
                         else f"the run folder {run} holds no run yet")
        return lines
    at = (f"epoch {where['epoch']}, after batch {where['batch']}" if where["batch"]
          else f"the end of epoch {where['epoch']}")
    lines = [f"interrupted ({name}) at {at} (step {where['step']:,} of {where['total_steps']:,})"]
    if stop.checkpoint is not None:
        lines.append(f"saved the exact position to {stop.checkpoint}")
    else:
        lines.append("no checkpoint was written at that point; resuming continues from the last one saved")
    if run is not None:
        lines.append(f"continue with: epochal train --resume {shlex.quote(str(run))}")
    return lines
