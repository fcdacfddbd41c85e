"""SWA: stochastic weight averaging.

Izmailov, Podoprikhin, Garipov, Vetrov and Wilson, *Averaging Weights Leads to Wider Optima and
Better Generalization* (UAI 2018): train as usual until ``start``, then keep a high constant (or
cyclic) learning rate and average the weights SGD visits, with equal weights, at the end of every
epoch (or cycle). The average lies in a wider, flatter region of the loss than any of the points
it averages, and generalises better at no inference cost. BatchNorm statistics are recomputed for
the averaged weights with one pass over the training data before every evaluation of them.

The rule here: from the optimizer step at which ``start`` is reached, the model's weights are
folded into an equal-weight running mean (:class:`~epochal.averaging.EqualMean`) at the end of
every epoch, every ``update_every`` steps, or at the end of every decreasing phase (``"cycle"``:
each cycle of a cyclic or SGDR schedule ends at its lowest rate). The learning rate of the SWA
part is a phase of the schedule (:func:`~epochal.schedules.swa_phase`), not a swap of the
optimizer's rate behind the schedule's back; with ``lr`` given, the callback checks that the
schedule has it. After every validation the averaged model is validated too and logged as
``valid_swa/<metric>``; ``ModelCheckpoint`` and ``EarlyStopping`` can monitor either.

Saved in every checkpoint (and resumed bit for bit): the averaged parameters and buffers and the
number of snapshots averaged. At the end of the fit the model holds the averaged weights and the
run folder gets ``checkpoints/swa.pt`` (``summary.json``: ``final_weights``).

Example (Python)::

    phases = [*flat_linear(7.5, 0.1, final_ratio=0.5), *swa_phase(2.5, lr=0.05)]
    learner = Learner(model, data, optimizer="sgd", metrics=["accuracy"], callbacks=[SWA(start="swa")])
    learner.fit(phases)      # history rows: valid/accuracy and valid_swa/accuracy

Example (recipe): ``callbacks: {swa: {start: 0.75, lr: 0.05}}`` trains the recipe's schedule over
the first 75% of the epochs and appends ``swa_phase`` at 0.05 for the rest (visible in
``epochal plot-schedule``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from epochal.averaging import EqualMean
from epochal.callbacks.weight_averaging import WeightAveraging
from epochal.schedules.builders import swa_phase
from epochal.schedules.config import phases_to_config

__all__ = ["SWA", "resolve_start"]


def resolve_start(start: Any, schedule, where: str = "SWA") -> int:
    """The optimizer step at which ``start`` (an epoch, a fraction of training or a phase name) is reached.

    Raises:
        ValueError: for an unknown phase name or a start at or after the end of training.
    """
    if isinstance(start, str):
        names = [p.name for p in schedule.phases]
        if start not in names:
            raise ValueError(f"{where}: start={start!r} is not the name of a phase; the phases are named {names}")
        return schedule.boundaries[names.index(start)]
    total = schedule.epoch_at(schedule.total_steps)
    epoch = start * total if isinstance(start, float) and start < 1 else float(start)
    step = schedule.step_at(epoch)
    if step >= schedule.total_steps:
        raise ValueError(f"{where}: start={start!r} is at or after the end of training ({total:g} epochs): "
                         "nothing would be averaged")
    return step


def _check_start(start: Any) -> Any:
    if isinstance(start, str):
        return start
    if isinstance(start, bool) or not isinstance(start, numbers.Real) or not math.isfinite(start) or start < 0:
        raise ValueError(f"SWA: start must be an epoch (int >= 0 or float >= 1), a fraction of training in (0, 1) "
                         f"or a phase name, got {start!r}")
    return start


class SWA(WeightAveraging):
    """Stochastic weight averaging: an equal-weight average of the weights from ``start`` on.

    Args:
        start: where averaging starts: a number of epochs elapsed (``6``: a schedule position,
            the start of epoch 7 as the history numbers epochs from 1, and what Lightning's
            ``swa_epoch_start=6`` means; a float >= 1 may be fractional), a fraction of training
            (a float in ``(0, 1)``, e.g. ``0.75``), or the name of the phase it starts with
            (``"swa"``, the name of every phase :func:`~epochal.schedules.swa_phase` returns).
        update_every: ``"epoch"`` (the end of every epoch, as in the paper), ``"cycle"`` (the end
            of every phase whose rate decreases, i.e. of every cycle of a cyclic schedule) or a
            number of optimizer steps.
        lr: the SWA learning rate. The callback never changes the rate: the schedule must hold
            a ``swa`` phase (from :func:`~epochal.schedules.swa_phase`) ending at this rate, which
            is checked when the fit starts. A recipe's ``callbacks.swa.lr`` makes the recipe's
            phases end at ``start`` and appends that phase.
        anneal_epochs: the other arguments of that
            :func:`~epochal.schedules.swa_phase`: a recipe builds the phase with them, and with
            ``lr`` given the fit checks that the schedule's ``swa`` phases are that call's.
        anneal: as for ``anneal_epochs``.
        cycle_len: as for ``anneal_epochs``.
        lr_max: as for ``anneal_epochs``.
        bn_update: recompute BatchNorm statistics for the averaged weights before each evaluation
            and at the end (a cumulative pass over the training data in train mode).
        bn_augment: keep the training loader's augmentation on for that pass (``update_bn``
            uses the loader as it is); False switches it off for the pass.
        bn_batches: batches of that pass (None: the whole training loader).
        final: leave the averaged weights in the model (and ``checkpoints/swa.pt``) at the end.

    Attributes:
        start_step: the optimizer step at which averaging starts (resolved when the fit starts).
        averaged: the :class:`~epochal.averaging.AveragedWeights`; ``averaged.n_averaged`` counts snapshots.

    Examples:
        >>> swa = SWA(start=0.75, lr=0.05)
        >>> learner = Learner(model, data, callbacks=[swa, ModelCheckpoint(monitor="valid_swa/accuracy")])
        >>> learner.fit([*one_cycle(7.5, 0.1), *swa_phase(2.5, lr=0.05)])
        >>> swa.averaged.n_averaged, learner.history[-1]["valid_swa/accuracy"]
    """

    kind = "swa"

    def __init__(self, start: float | int | str = 0.75, update_every: str | int = "epoch", lr: float | None = None,
                 anneal_epochs: float = 0.0, anneal: Any = "cosine", cycle_len: float | None = None,
                 lr_max: float | None = None, bn_update: bool = True, bn_augment: bool = True,
                 bn_batches: int | None = None, final: bool = True):
        super().__init__(EqualMean(), average_buffers=False, bn_update=bn_update, bn_augment=bn_augment,
                         bn_batches=bn_batches, final=final)
        self.start = _check_start(start)
        if update_every not in ("epoch", "cycle") and not (
                isinstance(update_every, int) and not isinstance(update_every, bool) and update_every >= 1):
            raise ValueError(
                f"SWA: update_every must be 'epoch', 'cycle' or a number of steps >= 1, got {update_every!r}")
        self.update_every = update_every
        self.lr = None if lr is None else float(lr)
        self.phase_arguments = {"anneal_epochs": anneal_epochs, "anneal": anneal, "cycle_len": cycle_len,
                                "lr_max": lr_max}
        self.start_step = 0
        self._cycle_ends: set[int] = set()

    def before_fit(self) -> None:
        schedule = self.learner.schedule
        self.start_step = resolve_start(self.start, schedule)
        if self.lr is not None:
            self._check_schedule(schedule)
        self._cycle_ends = {
            schedule.boundaries[k + 1] for k in range(schedule.num_phases)
            if schedule.phase_length(k) > 1 and schedule.boundaries[k + 1] > self.start_step
            and schedule.values(schedule.boundaries[k + 1] - 1)["lr"] < schedule.values(schedule.boundaries[k])["lr"]
        }
        if self.update_every == "cycle" and not self._cycle_ends:
            raise ValueError("SWA(update_every='cycle'): no phase after the start has a decreasing rate; "
                             "give a cyclic schedule (swa_phase(..., cycle_len=..., lr_max=...), sgdr) or "
                             "update_every='epoch'")
        super().before_fit()

    def _check_schedule(self, schedule) -> None:
        swa = [k for k, p in enumerate(schedule.phases)
               if p.name == "swa" and schedule.boundaries[k] >= self.start_step]
        if not swa:
            raise ValueError(
                f"SWA(lr={self.lr}): the phases have no 'swa' phase after the start (step {self.start_step}); "
                f"the callback never changes the rate itself: append epochal.schedules.swa_phase(epochs, lr={self.lr}) "
                "to the phases (recipes with callbacks.swa.lr do it for you), or drop lr")
        phases = [schedule.phases[k] for k in swa]
        epochs = math.fsum(p.epochs for p in phases)
        expected = swa_phase(epochs, self.lr, **self.phase_arguments)

        def shape(items):
            return [(round(p.epochs, 9), p.lr, p.lr_annealer) for p in items]

        if shape(phases) != shape(expected):
            arguments = ", ".join(f"{k}={v!r}" for k, v in self.phase_arguments.items())
            raise ValueError(
                f"SWA(lr={self.lr}, {arguments}): the schedule's 'swa' phases {phases_to_config(phases, strict=False)} "
                f"are not swa_phase({epochs:g}, lr={self.lr}, {arguments}); build them with that call")

    def update_due(self, step: int) -> bool:
        if step <= self.start_step or self.update_every == "epoch":
            return False  # "epoch" updates at after_train
        if self.update_every == "cycle":
            return step in self._cycle_ends
        return (step - self.start_step) % self.update_every == 0

    def after_train(self) -> None:
        if self.update_every == "epoch" and self.learner.state.step > self.start_step:
            self.update()

    def description(self) -> dict[str, Any]:
        return {**super().description(), "start": self.start, "start_step": self.start_step,
                "update_every": self.update_every}
