"""Schedule builders: functions returning lists of :class:`TrainingPhase`, and their registry.

* :func:`one_cycle`: Smith, *Super-Convergence* (2018) and *A disciplined approach to neural network
  hyper-parameters* (2018), in fastai's cosine form: lr up from ``lr_max/div`` to ``lr_max`` while
  momentum goes down, then lr down to ``lr_max/(div*final_div)`` while momentum comes back. Under
  :class:`~epochal.schedules.PhaseSchedule`'s rule (every phase ends on its end value) it equals
  torch's ``OneCycleLR`` (cosine, ``three_phase=False``) at every step.
* :func:`sgdr`: Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm Restarts* (2017):
  cosine cycles whose length multiplies by ``cycle_mult``, after a short warm-up at ``lr/100``.
* :func:`warmup_cosine`: linear warm-up (Goyal et al., 2017) then cosine decay.
* :func:`step_schedule`: constant rates divided by ``1/gamma`` at milestones (He et al., 2016).
* :func:`flat_cos`: flat then cosine (fastai's ``fit_flat_cos``, for optimizers such as Ranger).
* :func:`phases_1cycle` and :func:`phases_sgdr`: the shapes of Gugger's TrainPhase notebook
  (fastai 0.7): a linear triangle followed by a short annihilation phase, and SGDR with the
  notebook's warm-up.
* :func:`flat_linear`: the SGD schedule of Izmailov et al., *Averaging Weights Leads to Wider
  Optima and Better Generalization* (SWA, 2018): constant for half the budget, linear decay to
  ``final_ratio`` of the rate by 90%, then constant.
* :func:`swa_phase`: SWA's own phase, a constant or cyclic rate, entered from the current rate
  (annealed, as ``torch.optim.swa_utils.SWALR`` does); every phase it returns is named ``swa``.
* :func:`fge`: the triangular cycles of fast geometric ensembling (Garipov et al., *Loss Surfaces,
  Mode Connectivity, and Fast Ensembling of DNNs*, 2018); each cycle ends at its lowest rate, in a
  phase named ``cycle<i>`` where :class:`~epochal.callbacks.snapshot_ensemble.SnapshotEnsemble`
  takes its snapshots (as it does at the end of every SGDR cycle).

Where a phase starts and ends (the last step of a run is at the final value; a warm restart
starts on its ``lr``) is :class:`~epochal.schedules.PhaseSchedule`'s rule, the same for every
builder. Recipes name builders through :func:`build_phases`.
"""

from __future__ import annotations

import inspect
import itertools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from epochal.schedules.phase import TrainingPhase
from epochal.utils import did_you_mean, positive_number, unknown_argument_error

__all__ = [
    "SCHEDULES",
    "build_phases",
    "constant",
    "fge",
    "flat_cos",
    "flat_linear",
    "linear_decay",
    "one_cycle",
    "phases_1cycle",
    "phases_sgdr",
    "register_schedule",
    "sgdr",
    "step_schedule",
    "swa_phase",
    "warmup_cosine",
]

#: Builders by name.
SCHEDULES: dict[str, Callable[..., list[TrainingPhase]]] = {}


def register_schedule(
    name: str,
) -> Callable[[Callable[..., list[TrainingPhase]]], Callable[..., list[TrainingPhase]]]:
    """Decorator registering a builder under ``name`` for :func:`build_phases`."""

    def register(fn: Callable[..., list[TrainingPhase]]) -> Callable[..., list[TrainingPhase]]:
        SCHEDULES[name] = fn
        return fn

    return register


def build_phases(name: str, **kwargs: Any) -> list[TrainingPhase]:
    """Call the builder registered as ``name``; errors name unknown builders and arguments.

    Examples:
        >>> build_phases("one_cycle", total_epochs=5, lr_max=0.1)
    """
    if name not in SCHEDULES:
        hint = did_you_mean(name, SCHEDULES, " (did you mean {}?)")
        raise ValueError(f"unknown schedule {name!r}{hint}; known: {', '.join(sorted(SCHEDULES))}")
    builder = SCHEDULES[name]
    accepted = inspect.signature(builder).parameters
    for key in kwargs:
        if key not in accepted:
            raise unknown_argument_error(f"schedule {name!r}", key, accepted)
    missing = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ValueError(f"schedule {name!r} needs {', '.join(repr(m) for m in missing)}")
    return builder(**kwargs)


@register_schedule("one_cycle")
def one_cycle(
    total_epochs: float,
    lr_max: Any,
    div: float = 25.0,
    final_div: float = 1e4,
    pct_start: float = 0.25,
    moms: Sequence[float] | None = (0.95, 0.85, 0.95),
    optimizer: Any = None,
    weight_decay: float | None = None,
    anneal: Any = "cosine",
) -> list[TrainingPhase]:
    """The 1cycle policy: warm-up to ``lr_max`` for ``pct_start`` of training, then anneal.

    Args:
        total_epochs: length of the whole cycle.
        lr_max: peak rate (a value, ``slice(lo, hi)`` or per-group list).
        div: the cycle starts at ``lr_max / div``.
        final_div: it ends at ``lr_max / (div * final_div)``.
        pct_start: fraction of the cycle spent warming up.
        moms: momentum at start, peak lr and end; None leaves momentum alone.
        optimizer: optimizer for both phases (None: keep the current one).
        weight_decay: decoupled weight decay for both phases.
        anneal: the annealer of both phases (cosine as in fastai; ``"linear"`` for Smith's triangle).
    """
    positive_number(total_epochs, "total_epochs")
    positive_number(div, "div")
    positive_number(final_div, "final_div")
    if not 0 < pct_start < 1:
        raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
    if moms is not None and len(moms) != 3:
        raise ValueError(f"moms must be (start, middle, end), got {moms!r}")
    mom_up = None if moms is None else (moms[0], moms[1])
    mom_down = None if moms is None else (moms[1], moms[2])
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "lr_decay": anneal}
    return [
        TrainingPhase(
            total_epochs * pct_start,
            lr=(_scale(lr_max, 1 / div), _scale(lr_max, 1)),
            momentum=mom_up,
            momentum_decay=anneal if moms else None,
            name="warmup",
            **common,
        ),
        TrainingPhase(
            total_epochs * (1 - pct_start),
            lr=(_scale(lr_max, 1), _scale(lr_max, 1 / (div * final_div))),
            momentum=mom_down,
            momentum_decay=anneal if moms else None,
            name="anneal",
            **common,
        ),
    ]


@register_schedule("sgdr")
def sgdr(
    lr: Any,
    cycle_len: float = 1.0,
    cycle_mult: float = 1.0,
    n_cycles: int = 3,
    warmup: float | None = None,
    lr_min: float = 0.0,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """Cosine annealing with warm restarts, cycle ``i`` lasting ``cycle_len * cycle_mult**i`` epochs.

    Args:
        lr: rate at the start of every cycle.
        cycle_len: length of the first cycle, warm-up included.
        cycle_mult: factor between consecutive cycle lengths.
        n_cycles: number of cycles.
        warmup: epochs at ``lr / 100`` taken from the first cycle; None means ``cycle_len / 20``
            (as in the TrainPhase notebook), 0 means no warm-up.
        lr_min: rate at the end of every cycle.
        optimizer: as in :class:`TrainingPhase`, for every phase.
        weight_decay: as for ``optimizer``.
        momentum: as for ``optimizer``.
    """
    positive_number(cycle_len, "cycle_len")
    positive_number(cycle_mult, "cycle_mult")
    if not isinstance(n_cycles, numbers.Integral) or n_cycles < 1:
        raise ValueError(f"n_cycles must be an int >= 1, got {n_cycles!r}")
    warmup = cycle_len / 20 if warmup is None else float(warmup)
    if not 0 <= warmup < cycle_len:
        raise ValueError(f"warmup must be in [0, cycle_len={cycle_len}), got {warmup}")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    phases = []
    if warmup > 0:
        phases.append(TrainingPhase(warmup, lr=_scale(lr, 1 / 100), name="warmup", **common))
    for i in range(n_cycles):
        length = cycle_len * cycle_mult**i - (warmup if i == 0 else 0.0)
        phases.append(
            TrainingPhase(length, lr=(_scale(lr, 1), lr_min), lr_decay="cosine", name=f"cycle{i}", **common)
        )
    return phases


@register_schedule("warmup_cosine")
def warmup_cosine(
    epochs: float,
    lr: Any,
    warmup_epochs: float = 1.0,
    warmup_start_factor: float = 0.0,
    lr_end: float = 0.0,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """Linear warm-up from ``lr * warmup_start_factor`` to ``lr``, then cosine to ``lr_end``.

    ``epochs`` is the total, warm-up included; ``warmup_epochs=0`` gives a single cosine phase.
    """
    positive_number(epochs, "epochs")
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}), got {warmup_epochs}")
    if not 0 <= warmup_start_factor <= 1:
        raise ValueError(f"warmup_start_factor must be in [0, 1], got {warmup_start_factor}")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    phases = []
    if warmup_epochs > 0:
        start = _scale(lr, warmup_start_factor) if warmup_start_factor > 0 else 0.0
        phases.append(
            TrainingPhase(
                warmup_epochs, lr=(start, _scale(lr, 1)), lr_decay="linear", name="warmup", **common
            )
        )
    phases.append(
        TrainingPhase(
            epochs - warmup_epochs, lr=(_scale(lr, 1), lr_end), lr_decay="cosine", name="cosine", **common
        )
    )
    return phases


@register_schedule("linear_decay")
def linear_decay(
    epochs: float,
    lr: Any,
    lr_end: float = 0.0,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """A straight line from ``lr`` at the first step to ``lr_end`` on the last (airbench94_muon's shape).

    airbench steps ``lr * (1 - s / T)`` and never reaches 0 while training; here, as every phase
    does, the line reaches ``lr_end`` on its last step: step ``s`` of ``T`` is at ``s / (T - 1)``.
    """
    positive_number(epochs, "epochs")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    return [TrainingPhase(epochs, lr=(_scale(lr, 1), lr_end), lr_decay="linear", name="linear_decay", **common)]


@register_schedule("step_schedule")
def step_schedule(
    epochs: float,
    lr: Any,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """Constant rate, multiplied by ``gamma`` at every milestone (in epochs, may be fractional)."""
    positive_number(epochs, "epochs")
    positive_number(gamma, "gamma")
    edges = [0.0, *(float(m) for m in milestones), float(epochs)]
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(
            f"milestones must increase strictly inside (0, epochs={epochs}), got {list(milestones)}"
        )
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    return [
        TrainingPhase(b - a, lr=_scale(lr, gamma**i), name=f"step{i}", **common)
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]


@register_schedule("flat_cos")
def flat_cos(
    epochs: float,
    lr: Any,
    pct_flat: float = 0.75,
    div_final: float = 1e5,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """Flat at ``lr`` for ``pct_flat`` of training, then cosine down to ``lr / div_final``."""
    positive_number(epochs, "epochs")
    positive_number(div_final, "div_final")
    if not 0 < pct_flat < 1:
        raise ValueError(f"pct_flat must be in (0, 1), got {pct_flat}")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    return [
        TrainingPhase(epochs * pct_flat, lr=_scale(lr, 1), name="flat", **common),
        TrainingPhase(
            epochs * (1 - pct_flat),
            lr=(_scale(lr, 1), _scale(lr, 1 / div_final)),
            lr_decay="cosine",
            name="cosine",
            **common,
        ),
    ]


@register_schedule("constant")
def constant(
    epochs: float,
    lr: Any,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """One phase at a constant rate."""
    return [
        TrainingPhase(
            epochs,
            lr=_scale(lr, 1),
            optimizer=optimizer,
            weight_decay=weight_decay,
            momentum=momentum,
            name="constant",
        )
    ]


@register_schedule("phases_1cycle")
def phases_1cycle(
    cycle_len: float,
    lr: float,
    div: float = 10.0,
    pct: float = 10.0,
    max_mom: float = 0.95,
    min_mom: float = 0.85,
) -> list[TrainingPhase]:
    """The TrainPhase notebook's 1cycle: linear triangle with SGD, then a short annihilation.

    ``pct`` percent of ``cycle_len`` is left for the last phase, where the rate goes linearly from
    ``lr/div`` to ``lr/(100*div)`` at momentum ``max_mom``.
    """
    positive_number(cycle_len, "cycle_len")
    positive_number(div, "div")
    if not 0 < pct < 100:
        raise ValueError(f"pct is a percentage in (0, 100), got {pct}")
    half = (1 - pct / 100) * cycle_len / 2
    return [
        TrainingPhase(
            half,
            optimizer="sgd",
            lr=(lr / div, lr),
            lr_decay="linear",
            momentum=(max_mom, min_mom),
            momentum_decay="linear",
            name="up",
        ),
        TrainingPhase(
            half,
            optimizer="sgd",
            lr=(lr, lr / div),
            lr_decay="linear",
            momentum=(min_mom, max_mom),
            momentum_decay="linear",
            name="down",
        ),
        TrainingPhase(
            cycle_len - 2 * half,
            optimizer="sgd",
            lr=(lr / div, lr / (100 * div)),
            lr_decay="linear",
            momentum=max_mom,
            name="annihilate",
        ),
    ]


@register_schedule("phases_sgdr")
def phases_sgdr(
    lr: float, opt: Any = None, n_cycles: int = 3, cycle_len: float = 1.0, cycle_mult: float = 2.0
) -> list[TrainingPhase]:
    """The TrainPhase notebook's SGDR: ``cycle_len/20`` at ``lr/100``, then cosine cycles to zero."""
    return sgdr(
        lr,
        cycle_len=cycle_len,
        cycle_mult=cycle_mult,
        n_cycles=n_cycles,
        warmup=cycle_len / 20,
        optimizer=opt,
    )


@register_schedule("flat_linear")
def flat_linear(
    epochs: float,
    lr: Any,
    final_ratio: float = 0.01,
    pct_flat: float = 0.5,
    pct_decay: float = 0.4,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """SWA paper's SGD schedule: ``lr`` for ``pct_flat``, linear to ``lr * final_ratio`` over ``pct_decay``, then flat.

    With ``final_ratio = swa_lr / lr`` over the epochs before SWA starts, it is also the paper's
    schedule of the SWA runs up to the averaging (see :func:`swa_phase` for the rest).
    """
    positive_number(epochs, "epochs")
    positive_number(final_ratio, "final_ratio")
    if not (0 < pct_flat and 0 < pct_decay and pct_flat + pct_decay <= 1):
        raise ValueError(f"pct_flat and pct_decay must be > 0 with a sum <= 1, got {pct_flat} and {pct_decay}")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    low = _scale(lr, final_ratio)
    phases = [
        TrainingPhase(epochs * pct_flat, lr=_scale(lr, 1), name="flat", **common),
        TrainingPhase(epochs * pct_decay, lr=(_scale(lr, 1), low), lr_decay="linear", name="decay", **common),
    ]
    rest = epochs * (1 - pct_flat - pct_decay)
    if rest > 1e-9 * epochs:
        phases.append(TrainingPhase(rest, lr=low, name="final", **common))
    return phases


def _cycles(epochs: float, cycle_len: float, what: str) -> int:
    count = epochs / cycle_len
    if count < 1 - 1e-9 or abs(count - round(count)) > 1e-6:
        raise ValueError(f"{what}: epochs={epochs} must be a whole number (>= 1) of cycles of cycle_len={cycle_len}")
    return round(count)


@register_schedule("swa_phase")
def swa_phase(
    epochs: float,
    lr: float,
    anneal_epochs: float = 0.0,
    anneal: Any = "cosine",
    cycle_len: float | None = None,
    lr_max: float | None = None,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """The SWA learning-rate phase: constant at ``lr`` or cyclic down to ``lr``, named ``swa``.

    Append it to the phases that train up to the start of averaging, so the hand-over is part of
    the schedule (plotted, checkpointed, resumable) instead of a swap of the optimizer's rate.

    Args:
        epochs: the length of the SWA part, annealing included.
        lr: the SWA rate: the constant rate, or the low end of every cycle (where SWA averages).
        anneal_epochs: epochs at the start spent moving from the previous phase's final rate to
            the SWA rate (``lr``; ``lr_max`` when cyclic), as ``torch.optim.swa_utils.SWALR`` does;
            0 jumps straight to it.
        anneal: how that move goes (``cosine``, ``linear`` ...).
        cycle_len: cyclic SWA (the paper's section 3.1): cycles of this many epochs, each linear
            from ``lr_max`` down to ``lr``; the epochs after annealing must be whole cycles.
        lr_max: the rate at the start of each cycle (cyclic only).
        optimizer: as in :class:`TrainingPhase`, for every phase.
        weight_decay: as for ``optimizer``.
        momentum: as for ``optimizer``.

    Examples:
        >>> learner.fit([*flat_linear(30, 0.1, final_ratio=0.5), *swa_phase(10, lr=0.05)])
    """
    positive_number(epochs, "epochs")
    positive_number(lr, "lr")
    if not 0 <= anneal_epochs < epochs:
        raise ValueError(f"anneal_epochs must be in [0, epochs={epochs}), got {anneal_epochs}")
    if (cycle_len is None) != (lr_max is None):
        raise ValueError("cyclic SWA takes both cycle_len and lr_max (constant SWA: neither)")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum, "name": "swa"}
    top = lr if lr_max is None else positive_number(lr_max, "lr_max")
    phases = []
    if anneal_epochs > 0:
        phases.append(TrainingPhase(anneal_epochs, lr=(None, top), lr_decay=anneal, **common))
    rest = epochs - anneal_epochs
    if cycle_len is None:
        return [*phases, TrainingPhase(rest, lr=lr, **common)]
    if lr_max <= lr:
        raise ValueError(f"cyclic SWA goes from lr_max down to lr: lr_max={lr_max} must be > lr={lr}")
    count = _cycles(rest, positive_number(cycle_len, "cycle_len"), "swa_phase")
    return phases + [TrainingPhase(cycle_len, lr=(lr_max, lr), lr_decay="linear", **common) for _ in range(count)]


@register_schedule("fge")
def fge(
    epochs: float,
    lr: float,
    lr_max: float,
    cycle_len: float = 2.0,
    optimizer: Any = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
) -> list[TrainingPhase]:
    """Fast geometric ensembling's triangular cycles between ``lr`` and ``lr_max``.

    Each cycle of ``cycle_len`` epochs climbs linearly from ``lr`` to ``lr_max`` (phase
    ``cycle<i>_up``) and comes back down to ``lr`` (phase ``cycle<i>``); Garipov et al. collect a
    model at every low point, which here is the end of every ``cycle<i>``. The paper's cycle runs
    down first; starting from the low rate instead (the same wave, half a cycle later) lets a
    run that continues a trained model start where that model ended and end on a snapshot.

    Args:
        epochs: total length; a whole number of cycles.
        lr: the low rate (alpha_2 in the paper), where snapshots are taken.
        lr_max: the high rate (alpha_1).
        cycle_len: epochs per cycle (the paper uses 2 to 4).
        optimizer: as in :class:`TrainingPhase`, for every phase.
        weight_decay: as for ``optimizer``.
        momentum: as for ``optimizer``.
    """
    positive_number(lr, "lr")
    if positive_number(lr_max, "lr_max") <= lr:
        raise ValueError(f"fge cycles between lr and lr_max: lr_max={lr_max} must be > lr={lr}")
    count = _cycles(positive_number(epochs, "epochs"), positive_number(cycle_len, "cycle_len"), "fge")
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "momentum": momentum}
    phases = []
    for i in range(count):
        phases.append(TrainingPhase(cycle_len / 2, lr=(lr, lr_max), lr_decay="linear", name=f"cycle{i}_up", **common))
        phases.append(TrainingPhase(cycle_len / 2, lr=(lr_max, lr), lr_decay="linear", name=f"cycle{i}", **common))
    return phases


def _scale(lr: Any, factor: float) -> Any:
    """Multiply a rate specification (value, slice or per-group list) by ``factor``."""
    if isinstance(lr, slice):
        return slice(None if lr.start is None else lr.start * factor, lr.stop * factor)
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        return float(lr) * factor
    if isinstance(lr, (tuple, str)) or not hasattr(lr, "__iter__"):
        raise ValueError(f"a builder's lr must be a value, slice(lo, hi) or a per-group list, got {lr!r}")
    return [float(v) * factor for v in lr]
