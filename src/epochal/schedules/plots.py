"""Plot a phase schedule: learning rate and momentum per optimizer step.

The figure follows the TrainPhase notebook's ``sched.plot_lr``: two panels (learning rate, momentum),
a dashed vertical line at every phase change, and each phase's name or optimizer written at its
start. Matplotlib is imported inside the function and drives an Agg canvas directly, so nothing
global (pyplot state, the user's backend) is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from epochal.schedules.phase import TrainingPhase
from epochal.schedules.scheduler import PhaseSchedule

__all__ = ["new_figure", "plot_schedule", "save_figure"]


def new_figure(rows: int = 1, figsize: tuple[float, float] = (8.0, 4.0)) -> tuple[Any, list[Any]]:
    """A matplotlib Figure on an Agg canvas and its axes, without pyplot.

    Raises:
        ImportError: when matplotlib is missing, naming the package to install.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from error
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, list(axes)


def plot_schedule(
    phases: Sequence[TrainingPhase] | PhaseSchedule,
    steps_per_epoch: int | Sequence[int] = 100,
    path: str | Path | None = None,
    annotate: bool = True,
    default_lr: float | None = None,
) -> Any:
    """Plot learning rate and momentum per optimizer step.

    Args:
        phases: the phases, or a ready :class:`PhaseSchedule` (then ``steps_per_epoch`` is ignored).
        steps_per_epoch: optimizer steps per epoch, one int or one per phase.
        path: where to save a PNG; the parent folder is created.
        annotate: write each phase's name (else its optimizer) at its start.
        default_lr: passed to :class:`PhaseSchedule` for a first phase without ``lr``.

    Returns:
        ``path`` as a :class:`~pathlib.Path` when given, else the matplotlib ``Figure``.

    Examples:
        >>> plot_schedule(one_cycle(5, 0.1), 100, "one_cycle.png")
    """
    schedule = (
        phases if isinstance(phases, PhaseSchedule) else PhaseSchedule(phases, steps_per_epoch, default_lr)
    )
    steps = range(schedule.total_steps)  # the steps that run; the last one is at the final values
    values = [schedule.values(s) for s in steps]
    figure, (lr_axis, mom_axis) = new_figure(2, (9.0, 5.5))
    lr_axis.plot(steps, [v["lr"] for v in values], color="tab:blue")
    lr_axis.set_ylabel("learning rate")
    momenta = [v["momentum"] for v in values]
    if any(m is not None for m in momenta):
        mom_axis.plot(steps, [float("nan") if m is None else m for m in momenta], color="tab:orange")
    else:
        mom_axis.text(
            0.5, 0.5, "momentum not scheduled", ha="center", va="center", transform=mom_axis.transAxes
        )
    mom_axis.set_ylabel("momentum")
    mom_axis.set_xlabel("optimizer step")
    for index in range(schedule.num_phases):
        start = schedule.boundaries[index]
        for axis in (lr_axis, mom_axis):
            if index > 0:
                axis.axvline(start, color="tab:red", linestyle="--", linewidth=0.8)
        if annotate:
            label = _label(schedule, index)
            if label:
                lr_axis.annotate(
                    label,
                    (start, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -12 - 10 * (index % 2)),
                    textcoords="offset points",
                    fontsize=8,
                    color="tab:red",
                )
    lr_axis.set_xlim(0, schedule.total_steps)
    return save_figure(figure, path)


def save_figure(figure: Any, path: str | Path | None) -> Any:
    """Save ``figure`` as a PNG at ``path`` (parents created) and return the path; no path: the figure."""
    if path is None:
        return figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _label(schedule: PhaseSchedule, index: int) -> str:
    phase = schedule.phases[index]
    optimizer, _ = schedule.optimizer_spec(index)
    changed = phase.optimizer is not None and (
        index == 0 or schedule.optimizer_spec(index - 1)[0] != optimizer
    )
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", None)
    parts = [phase.name or ""]
    if changed and name:
        parts.append(f"[{name}]")
    return " ".join(p for p in parts if p)
