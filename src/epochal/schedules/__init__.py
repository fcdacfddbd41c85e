"""Training schedules as data: annealers, ``TrainingPhase``, builders (one_cycle, sgdr, ...), the
step-pure ``PhaseSchedule``, schedule plots and the learning-rate finder's math."""

from epochal.schedules.annealers import (
    ANNEALERS,
    Annealer,
    Cosine,
    Exponential,
    FunctionAnnealer,
    Linear,
    NoDecay,
    Polynomial,
    parse_decay,
)
from epochal.schedules.builders import (
    SCHEDULES,
    build_phases,
    constant,
    fge,
    flat_cos,
    flat_linear,
    linear_decay,
    one_cycle,
    phases_1cycle,
    phases_sgdr,
    register_schedule,
    sgdr,
    step_schedule,
    swa_phase,
    warmup_cosine,
)
from epochal.schedules.config import (
    PHASE_KEYS,
    phase_from_dict,
    phase_to_dict,
    phases_from_config,
    phases_to_config,
)
from epochal.schedules.lr_finder import lr_finder_schedule, plot_lr_find, smooth_losses, suggest_lr
from epochal.schedules.phase import TrainingPhase
from epochal.schedules.plots import plot_schedule
from epochal.schedules.scheduler import PhaseSchedule

__all__ = [
    "ANNEALERS",
    "PHASE_KEYS",
    "SCHEDULES",
    "Annealer",
    "Cosine",
    "Exponential",
    "FunctionAnnealer",
    "Linear",
    "NoDecay",
    "PhaseSchedule",
    "Polynomial",
    "TrainingPhase",
    "build_phases",
    "constant",
    "fge",
    "flat_cos",
    "flat_linear",
    "linear_decay",
    "lr_finder_schedule",
    "one_cycle",
    "parse_decay",
    "phase_from_dict",
    "phase_to_dict",
    "phases_1cycle",
    "phases_from_config",
    "phases_sgdr",
    "phases_to_config",
    "plot_lr_find",
    "plot_schedule",
    "register_schedule",
    "sgdr",
    "smooth_losses",
    "step_schedule",
    "suggest_lr",
    "swa_phase",
    "warmup_cosine",
]
