"""Builders: the shapes of one_cycle, sgdr and friends, the registry and recipes from plain data."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import yaml

from epochal.schedules import (
    SCHEDULES,
    PhaseSchedule,
    TrainingPhase,
    build_phases,
    fge,
    flat_cos,
    flat_linear,
    linear_decay,
    one_cycle,
    phases_1cycle,
    phases_from_config,
    phases_sgdr,
    phases_to_config,
    sgdr,
    step_schedule,
    swa_phase,
    warmup_cosine,
)

SAMPLE_ARGS = {
    "one_cycle": {"total_epochs": 4, "lr_max": 0.1},
    "sgdr": {"lr": 0.1, "cycle_len": 1, "cycle_mult": 2, "n_cycles": 3},
    "warmup_cosine": {"epochs": 4, "lr": 0.1, "warmup_epochs": 1},
    "step_schedule": {"epochs": 4, "lr": 0.1, "milestones": [2, 3]},
    "flat_cos": {"epochs": 4, "lr": 0.1},
    "constant": {"epochs": 4, "lr": 0.1},
    "linear_decay": {"epochs": 4, "lr": 0.1},
    "phases_1cycle": {"cycle_len": 4, "lr": 0.1},
    "phases_sgdr": {"lr": 0.1, "opt": "sgd", "n_cycles": 3, "cycle_len": 1, "cycle_mult": 2},
    "flat_linear": {"epochs": 4, "lr": 0.1},
    "swa_phase": {"epochs": 4, "lr": 0.01, "cycle_len": 1, "lr_max": 0.1},
    "fge": {"epochs": 4, "lr": 0.01, "lr_max": 0.1, "cycle_len": 2},
}


def test_every_registered_builder_has_a_sample():
    assert set(SCHEDULES) == set(SAMPLE_ARGS)


@pytest.mark.parametrize("name", sorted(SAMPLE_ARGS))
def test_registered_builders_give_positive_finite_schedules(name):
    phases = build_phases(name, **SAMPLE_ARGS[name])
    schedule = PhaseSchedule(phases, 50)
    lrs = [schedule.values(s)["lr"] for s in range(schedule.total_steps + 1)]
    assert all(0 <= lr <= 0.1 + 1e-12 for lr in lrs)
    assert max(lrs) == pytest.approx(0.1)
    assert sum(p.epochs for p in phases) == pytest.approx(schedule.epoch_at(schedule.total_steps))


def test_linear_decay_goes_from_lr_on_the_first_step_to_zero_on_the_last():
    schedule = PhaseSchedule(linear_decay(8, 0.24), 25)
    assert schedule.total_steps == 200
    lrs = [schedule.values(s)["lr"] for s in range(200)]
    assert lrs == pytest.approx([0.24 * (1 - s / 199) for s in range(200)])
    # airbench94_muon steps 0.24 * (1 - s / 200): at most 0.24 / 200 away, the same line one step longer
    assert max(abs(a - 0.24 * (1 - s / 200)) for s, a in enumerate(lrs)) <= 0.24 / 200 + 1e-12
    assert schedule.values(199)["lr"] == schedule.values(200)["lr"] == 0.0
    assert PhaseSchedule(linear_decay(2, 0.1, lr_end=0.01), 10).values(19)["lr"] == pytest.approx(0.01)


def test_one_cycle_peaks_at_pct_start_and_ends_at_lr_max_over_div_final_div():
    schedule = PhaseSchedule(one_cycle(4, 0.1, div=25, final_div=1e4, pct_start=0.25), 25)
    assert schedule.boundaries == (0, 25, 100)
    lrs = [schedule.values(s)["lr"] for s in range(100)]
    # the warm-up's 25 steps run t = 0 .. 1, so the peak is its last step (24), used once
    assert lrs.index(max(lrs)) == 24 and lrs[24] == pytest.approx(0.1) and lrs[25] < 0.1
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert lrs[99] == pytest.approx(0.1 / (25 * 1e4))  # the last step is at the final value
    assert all(a <= b for a, b in itertools.pairwise(lrs[:25]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[24:]))
    moms = [schedule.values(s)["momentum"] for s in (0, 24, 99)]
    assert moms == pytest.approx([0.95, 0.85, 0.95])
    momenta = [schedule.values(s)["momentum"] for s in range(100)]
    assert momenta.index(min(momenta)) == 24  # momentum mirrors the learning rate


# torch puts the peak at step pct_start * total_steps - 1 even when that is fractional, where epochal
# rounds the phase boundary to a whole step: the two agree when pct_start * total_steps is whole.
@pytest.mark.parametrize(("epochs", "steps_per_epoch", "pct_start", "lr_max"),
                         [(10, 100, 0.25, 0.1), (4, 25, 0.3, 1.0), (6, 7, 0.5, 0.02), (2, 5, 0.2, 3e-3)])
def test_one_cycle_equals_torch_one_cycle_lr_at_every_step(epochs, steps_per_epoch, pct_start, lr_max):
    total = epochs * steps_per_epoch
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr_max, momentum=0.9)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr_max, total_steps=total, pct_start=pct_start, anneal_strategy="cos",
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25, final_div_factor=1e4,
        three_phase=False,
    )
    expected = []
    for _ in range(total):
        expected.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        optimizer.step()
        reference.step()
    schedule = PhaseSchedule(one_cycle(epochs, lr_max, pct_start=pct_start), steps_per_epoch)
    assert schedule.total_steps == total
    values = [schedule.values(s) for s in range(total)]
    assert [v["lr"] for v in values] == pytest.approx([e[0] for e in expected], rel=1e-12, abs=1e-18)
    assert [v["momentum"] for v in values] == pytest.approx([e[1] for e in expected], rel=1e-12)
    assert values[-1]["lr"] == pytest.approx(lr_max / (25 * 1e4), rel=1e-12)  # 4e-7 for lr_max=0.1


@pytest.mark.parametrize("name", sorted(SAMPLE_ARGS))
def test_every_builder_starts_on_its_first_value_and_ends_on_its_final_value(name):
    phases = build_phases(name, **SAMPLE_ARGS[name])
    schedule = PhaseSchedule(phases, 50)
    first, last = schedule.values(0), schedule.values(schedule.total_steps - 1)
    assert first["lr"] == pytest.approx(phases[0].lr_start)
    assert last == pytest.approx(schedule.values(schedule.total_steps))  # the values after training
    final = schedule.phases[-1]
    expected_end = final.lr_end if final.lr_start is not None else 0.0
    assert last["lr"] == pytest.approx(expected_end, abs=1e-15)
    if final.momentum_range is not None:
        assert last["momentum"] == pytest.approx(final.momentum_range[1])


CONTINUATIONS = {
    "one_cycle": [False, True],  # the anneal starts at the peak the warm-up ended on
    "sgdr": [False, False, False, False],  # warm-up at lr/100, then restarts at lr
    "warmup_cosine": [False, True],
    "step_schedule": [False, False, False],
    "flat_cos": [False, True],
    "constant": [False],
    "phases_1cycle": [False, True, True],
    "phases_sgdr": [False, False, False, False],
    "fge": [False, True, True, True],  # each cycle climbs from where the last one ended
    "flat_linear": [False, True, True],
    "swa_phase": [False, False, False, False],  # cyclical SWA: every cycle restarts at lr_max
    "linear_decay": [False],
}


@pytest.mark.parametrize("name", sorted(SAMPLE_ARGS))
def test_which_builder_phases_continue_and_which_start_afresh(name):
    schedule = PhaseSchedule(build_phases(name, **SAMPLE_ARGS[name]), 50)
    assert [schedule.continues(k) for k in range(schedule.num_phases)] == CONTINUATIONS[name]


def test_continuing_needs_equal_lr_momentum_and_group_ratios():
    discriminative = PhaseSchedule(one_cycle(2, slice(1e-4, 1e-2)), 10)
    assert discriminative.continues(1)  # slice(lo/25, hi/25) -> slice(lo, hi): the same ratios
    for second in (
        TrainingPhase(1, lr=(0.5, 0.1), momentum=(0.9, 0.95)),  # momentum jumps from 0.85
        TrainingPhase(1, lr=(slice(1e-3, 0.5), 0.1), momentum=(0.85, 0.95)),  # per-group ratios appear
    ):
        first = TrainingPhase(1, lr=(0.1, 0.5), momentum=(0.95, 0.85))
        schedule = PhaseSchedule([first, second], 10)
        assert not schedule.continues(1)
        assert schedule.values(10)["lr"] == pytest.approx(0.5)  # a fresh phase's first step: its start


def test_one_cycle_options():
    flat = one_cycle(2, 0.1, moms=None, optimizer="adam", weight_decay=0.01, anneal="linear")
    assert all(p.momentum is None and p.optimizer == "adam" and p.weight_decay == 0.01 for p in flat)
    schedule = PhaseSchedule(flat, 10)
    assert schedule.values(2)["lr"] == pytest.approx(0.004 + (0.1 - 0.004) * 2 / 4)  # 5 warm-up steps: t = j/4
    discriminative = one_cycle(2, slice(1e-4, 1e-2))
    assert discriminative[0].lr_scales(3) == pytest.approx((1e-2, 1e-1, 1.0))
    assert discriminative[0].lr_start == pytest.approx(1e-2 / 25)
    for bad, message in (
        ({"pct_start": 1.0}, "pct_start"),
        ({"moms": (0.9, 0.8)}, "moms"),
        ({"div": 0}, "div must be"),
    ):
        with pytest.raises(ValueError, match=message):
            one_cycle(2, 0.1, **bad)


def test_sgdr_warm_restarts_with_growing_cycles():
    phases = sgdr(0.1, cycle_len=1, cycle_mult=2, n_cycles=3)
    assert [p.epochs for p in phases] == pytest.approx([0.05, 0.95, 2, 4])
    schedule = PhaseSchedule(phases, 20)
    assert schedule.boundaries == (0, 1, 20, 60, 140)
    assert schedule.values(0)["lr"] == pytest.approx(1e-3)
    for restart in (1, 20, 60):
        assert schedule.values(restart)["lr"] == pytest.approx(0.1)
        assert schedule.values(restart - 1)["lr"] < 0.02 or restart == 1
    # the second cycle (steps 20-59) starts afresh at lr: t = j / 39, reaching lr_min on step 59
    assert schedule.values(40)["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 20 / 39)))
    assert schedule.values(59)["lr"] == pytest.approx(0.0, abs=1e-15)
    no_warmup = sgdr(0.1, cycle_len=2, n_cycles=2, warmup=0, lr_min=1e-3)
    assert [p.epochs for p in no_warmup] == [2, 2] and no_warmup[0].lr_end == 1e-3
    with pytest.raises(ValueError, match="warmup must be in"):
        sgdr(0.1, cycle_len=1, warmup=1)


def test_phases_sgdr_is_the_notebook_shape():
    phases = phases_sgdr(1e-2, "adam", 2, 1, 2)
    assert [(p.epochs, p.optimizer, p.lr_start, p.lr_end) for p in phases] == [
        (0.05, "adam", 1e-4, 1e-4),
        (0.95, "adam", 1e-2, 0.0),
        (2.0, "adam", 1e-2, 0.0),
    ]


def test_phases_1cycle_is_the_notebook_shape():
    phases = phases_1cycle(3, 1e-2, 10, 10, 0.95, 0.85)
    assert [p.epochs for p in phases] == pytest.approx([1.35, 1.35, 0.3])
    # flat lists: pytest >= 9 refuses nested structures in approx
    assert [r for p in phases for r in (p.lr_start, p.lr_end)] == pytest.approx([1e-3, 1e-2, 1e-2, 1e-3, 1e-3, 1e-5])
    assert [p.momentum_range for p in phases] == [(0.95, 0.85), (0.85, 0.95), (0.95, 0.95)]
    assert {p.optimizer for p in phases} == {"sgd"}
    schedule = PhaseSchedule(phases, 100)
    assert schedule.boundaries == (0, 135, 270, 300)
    assert schedule.values(134)["lr"] == pytest.approx(1e-2)  # the triangle's top: the up phase's last step
    assert schedule.values(269)["lr"] == pytest.approx(1e-3)
    assert schedule.values(299)["lr"] == pytest.approx(1e-5)


def test_warmup_cosine_step_and_flat_cos_shapes():
    # warm-up: 10 steps from 0 to 0.2 (t = j / 9); cosine: continues over 40 steps, t = (j + 1) / 40
    schedule = PhaseSchedule(warmup_cosine(5, 0.2, warmup_epochs=1), 10)
    assert [schedule.values(s)["lr"] for s in (0, 9, 29, 49, 50)] == pytest.approx([0, 0.2, 0.1, 0, 0], abs=1e-15)
    steps = PhaseSchedule(step_schedule(9, 0.1, milestones=[3, 6], gamma=0.1), 10)
    assert [steps.values(s)["lr"] for s in (0, 29, 30, 59, 60, 89)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3]
    )
    # flat for 30 steps, then the cosine continues from 0.1: t = (j + 1) / 10, ending on 1e-6 at step 39
    flat = PhaseSchedule(flat_cos(4, 0.1, pct_flat=0.75), 10)
    assert [flat.values(s)["lr"] for s in (0, 29, 34, 39, 40)] == pytest.approx(
        [0.1, 0.1, 0.05 + 0.5e-6, 1e-6, 1e-6]
    )
    assert flat.values(30)["lr"] < 0.1
    with pytest.raises(ValueError, match="milestones must increase"):
        step_schedule(9, 0.1, milestones=[6, 3])


def test_build_phases_errors_name_builder_and_argument():
    with pytest.raises(ValueError, match=r"unknown schedule 'one_cylce' \(did you mean 'one_cycle'\?\)"):
        build_phases("one_cylce", total_epochs=1, lr_max=0.1)
    with pytest.raises(ValueError, match=r"takes no argument 'lr' \(did you mean 'lr_max'\?\)"):
        build_phases("one_cycle", total_epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="needs 'lr_max'"):
        build_phases("one_cycle", total_epochs=1)


RECIPE = """
training:
  schedule: one_cycle
  total_epochs: 4
  lr_max: 1e-2
  moms: [0.95, 0.85, 0.95]
  weight_decay: 5e-4
  optimizer: sgd
"""


def test_phases_from_config_by_name_coerces_yaml_strings():
    config = yaml.safe_load(RECIPE)["training"]
    assert config["lr_max"] == "1e-2"  # PyYAML's reading of 1e-2
    phases = phases_from_config(config)
    assert phases == one_cycle(4, 1e-2, weight_decay=5e-4, optimizer="sgd")
    per_group = phases_from_config({"schedule": "flat_cos", "epochs": 2, "lr": {"slice": ["1e-5", "1e-3"]}})
    assert per_group[0].lr == slice(1e-5, 1e-3)


def test_phases_from_config_lists_and_errors():
    phases = phases_from_config({"phases": [{"epochs": 1, "lr": 0.1}, {"epochs": 2, "lr_decay": "cosine"}]})
    assert [p.epochs for p in phases] == [1, 2]
    with pytest.raises(ValueError, match=r"phases.phases\[1\]: unknown key 'epoch'"):
        phases_from_config({"phases": [{"epochs": 1, "lr": 0.1}, {"epoch": 2}]})
    with pytest.raises(ValueError, match="phases: schedule 'sgdr' takes no argument 'cycles'"):
        phases_from_config({"schedule": "sgdr", "lr": 0.1, "cycles": 3})
    with pytest.raises(ValueError, match="expected a list of phases"):
        phases_from_config({"epochs": 1})
    with pytest.raises(ValueError, match="non-empty list"):
        phases_from_config([])


# ----------------------------------------------------------------------------- weight averaging (SWA, FGE)
def test_flat_linear_is_the_swa_papers_sgd_schedule():
    schedule = PhaseSchedule(flat_linear(10, 0.1), 10)  # 100 steps
    assert [p.name for p in schedule.phases] == ["flat", "decay", "final"]
    assert schedule.boundaries == (0, 50, 90, 100)
    lrs = [schedule.values(s)["lr"] for s in range(101)]
    assert lrs[:50] == [pytest.approx(0.1)] * 50
    # the decay continues from the flat part: its j-th of 40 steps is at t = (j + 1) / 40
    assert lrs[50] == pytest.approx(0.1 - 0.099 / 40)
    assert lrs[69] == pytest.approx(0.1 - 0.099 * 0.5)  # halfway down the linear decay
    assert lrs[89:] == [pytest.approx(0.001)] * 12  # 0.01x from 90% of the budget on
    assert [p.name for p in flat_linear(10, 0.1, pct_decay=0.5)] == ["flat", "decay"]
    with pytest.raises(ValueError, match="pct_flat"):
        flat_linear(10, 0.1, pct_flat=0.7, pct_decay=0.4)


def test_an_open_start_anneals_from_the_previous_phase_and_round_trips():
    phases = [TrainingPhase(2, lr=0.002), TrainingPhase(2, lr=(None, 0.05), lr_decay="cosine")]
    schedule = PhaseSchedule(phases, 10)
    # the open start is the previous phase's last value (step 19); the phase's j-th of 20 steps is at
    # t = (j + 1) / 20, so it reaches its end on its last step (39) and is halfway at step 29
    assert schedule.values(19)["lr"] == pytest.approx(0.002) and schedule.values(39)["lr"] == pytest.approx(0.05)
    assert schedule.values(29)["lr"] == pytest.approx((0.002 + 0.05) / 2)
    plain = phases_to_config(phases)
    assert plain[1]["lr"] == [None, 0.05]
    again = phases_from_config(yaml.safe_load(yaml.safe_dump(plain)))
    assert PhaseSchedule(again, 10).values(30)["lr"] == pytest.approx(schedule.values(30)["lr"])


def test_swa_phase_constant_annealed_and_cyclic():
    before = TrainingPhase(3, lr=0.2)
    constant = PhaseSchedule([before, *swa_phase(2, lr=0.05)], 10)
    assert [constant.values(s)["lr"] for s in (29, 30, 49)] == pytest.approx([0.2, 0.05, 0.05])
    annealed = swa_phase(3, lr=0.05, anneal_epochs=1, anneal="linear")
    assert [p.name for p in annealed] == ["swa", "swa"]
    schedule = PhaseSchedule([before, *annealed], 10)
    # the anneal continues from 0.2: its j-th of 10 steps is at t = (j + 1) / 10
    assert [schedule.values(s)["lr"] for s in (29, 30, 34, 39, 59)] == pytest.approx([0.2, 0.185, 0.125, 0.05, 0.05])
    cyclic = PhaseSchedule([before, *swa_phase(3, lr=0.01, cycle_len=1, lr_max=0.05)], 10)
    assert cyclic.boundaries == (0, 30, 40, 50, 60)
    # each cycle restarts at lr_max and reaches the SWA rate on its last step, where the average is taken
    assert [cyclic.values(s)["lr"] for s in (30, 39, 40, 49)] == pytest.approx([0.05, 0.01, 0.05, 0.01])
    assert cyclic.values(60)["lr"] == pytest.approx(0.01)  # every cycle ends at the SWA rate


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cycle_len": 1}, "both cycle_len and lr_max"),
    ({"cycle_len": 2, "lr_max": 0.1}, "whole number"),
    ({"cycle_len": 1, "lr_max": 0.01}, "lr_max=0.01 must be > lr"),
    ({"anneal_epochs": 3}, "anneal_epochs"),
])
def test_swa_phase_errors_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        swa_phase(3, lr=0.05, **kwargs)


def test_fge_cycles_end_at_the_low_rate_in_phases_named_cycle_i():
    phases = fge(6, lr=0.01, lr_max=0.05, cycle_len=2)
    assert [p.name for p in phases] == ["cycle0_up", "cycle0", "cycle1_up", "cycle1", "cycle2_up", "cycle2"]
    schedule = PhaseSchedule(phases, 10)
    lrs = [schedule.values(s)["lr"] for s in range(61)]
    assert max(lrs) == pytest.approx(0.05) and lrs.index(max(lrs)) == 9  # the first climb's last step
    lows = [schedule.boundaries[k + 1] - 1 for k, p in enumerate(phases) if "_" not in p.name]  # cycles' last steps
    assert lows == [19, 39, 59] and all(lrs[s] == pytest.approx(0.01) for s in lows)
    with pytest.raises(ValueError, match="whole number"):
        fge(5, lr=0.01, lr_max=0.05, cycle_len=2)


def test_step_at_inverts_epoch_at_and_hits_phase_starts_exactly():
    phases = [*flat_linear(7.5, 0.1), *swa_phase(2.5, lr=0.05)]
    schedule = PhaseSchedule(phases, 13)
    swa_start = schedule.boundaries[[p.name for p in phases].index("swa")]
    assert schedule.step_at(7.5) == schedule.step_at(0.75 * 10) == swa_start
    assert schedule.step_at(0) == 0 and schedule.step_at(10) == schedule.total_steps
    assert schedule.step_at(6) == 78
