"""Recipes with SWA: the SWA learning-rate phase appended to the recipe's schedule, visibly.

``callbacks: {swa: {start: 0.75, lr: 0.05}}`` on a recipe whose ``phases`` name a schedule builder
means: the builder schedules the epochs before ``start`` (75% of ``epochs`` here, or the epoch
``start`` names), and :func:`~epochal.schedules.swa_phase` with the entry's ``lr``,
``anneal_epochs``, ``anneal``, ``cycle_len`` and ``lr_max`` fills the rest. The run is still
``epochs`` long, ``start`` is still where averaging begins, and the phases, their plot
(``epochal plot-schedule``) and the run's ``plots/schedule.png`` show the SWA part as phases named
``swa``. Without ``lr`` the schedule is left alone (SWA averages along the recipe's own rates).
An explicit list of phases is never rewritten: write the SWA phases into it (``name: swa``) and
drop ``lr`` from the entry.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["swa_schedule_split"]


def _start_epochs(start: Any, epochs: int) -> float:
    if isinstance(start, bool) or not isinstance(start, numbers.Real):
        raise ValueError(f"callbacks.swa.start={start!r}: with callbacks.swa.lr the start must be an epoch or a "
                         "fraction of training, which is where the recipe's schedule hands over to the SWA phase")
    value = start * epochs if isinstance(start, float) and 0 < start < 1 else float(start)
    if not 0 < value < epochs:
        raise ValueError(f"callbacks.swa.start={start!r} is epoch {value:g}; with callbacks.swa.lr it must fall "
                         f"inside the {epochs} epochs of training (0 < start < epochs)")
    return value


def swa_schedule_split(config) -> tuple[float | None, list]:
    """``(epochs left to the recipe's schedule builder, SWA phases to append)``; ``(None, [])`` without ``swa.lr``.

    Raises:
        ValueError: for ``swa.lr`` with an explicit list of phases, or a start outside training.
    """
    from epochal.callbacks.swa import SWA
    from epochal.schedules.builders import swa_phase

    entry = config.callbacks.get("swa")
    if not entry or entry.get("lr") is None:
        return None, []
    if isinstance(config.phases, list):
        raise ValueError(
            "callbacks.swa.lr appends the SWA phase to a schedule builder's phases, but phases is an explicit list: "
            "add the SWA phases to the list yourself (e.g. {name: swa, epochs: 5, lr: 0.05}), set "
            "callbacks.swa.start: swa and drop callbacks.swa.lr")
    from epochal.config.builders import _EPOCH_ARGS

    given = [k for k in _EPOCH_ARGS if k in config.phases.kwargs]
    if given:
        raise ValueError(f"callbacks.swa.lr fits phases.schedule into the epochs before callbacks.swa.start, but "
                         f"phases.{given[0]} fixes its length; drop phases.{given[0]} (the length comes from epochs)")
    defaults = SWA()
    start = _start_epochs(entry.get("start", defaults.start), config.epochs)
    arguments = {**defaults.phase_arguments, **{k: entry[k] for k in defaults.phase_arguments if k in entry}}
    try:
        phases = swa_phase(config.epochs - start, float(entry["lr"]), **arguments)
    except (TypeError, ValueError) as error:
        raise ValueError(f"callbacks.swa: {error}") from None
    return start, phases
