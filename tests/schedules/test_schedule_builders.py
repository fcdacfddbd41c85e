"""Builders: the shapes of one_cycle, sgdr and friends, the registry and recipes from plain data."""

from __future__ import annotations

import itertools

import pytest
import yaml

from epochal.schedules import (
    SCHEDULES,
    PhaseSchedule,
    build_phases,
    flat_cos,
    linear_decay,
    one_cycle,
    phases_1cycle,
    phases_from_config,
    phases_sgdr,
    sgdr,
    step_schedule,
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


def test_linear_decay_is_airbench_schedule_from_the_first_step_to_zero_after_the_last():
    schedule = PhaseSchedule(linear_decay(8, 0.24), 25)
    assert schedule.total_steps == 200
    lrs = [schedule.values(s)["lr"] for s in range(200)]
    assert lrs == pytest.approx([0.24 * (1 - s / 200) for s in range(200)])  # airbench94_muon's rule
    assert schedule.values(200)["lr"] == 0.0
    assert PhaseSchedule(linear_decay(2, 0.1, lr_end=0.01), 10).values(10)["lr"] == pytest.approx(0.055)


def test_one_cycle_peaks_at_pct_start_and_ends_at_lr_max_over_div_final_div():
    schedule = PhaseSchedule(one_cycle(4, 0.1, div=25, final_div=1e4, pct_start=0.25), 25)
    assert schedule.boundaries == (0, 25, 100)
    lrs = [schedule.values(s)["lr"] for s in range(101)]
    assert lrs.index(max(lrs)) == 25 and lrs[25] == pytest.approx(0.1)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert lrs[100] == pytest.approx(0.1 / (25 * 1e4))
    assert all(a <= b for a, b in itertools.pairwise(lrs[:26]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[25:]))
    moms = [schedule.values(s)["momentum"] for s in (0, 25, 100)]
    assert moms == pytest.approx([0.95, 0.85, 0.95])
    momenta = [schedule.values(s)["momentum"] for s in range(101)]
    assert momenta.index(min(momenta)) == 25  # momentum mirrors the learning rate


def test_one_cycle_options():
    flat = one_cycle(2, 0.1, moms=None, optimizer="adam", weight_decay=0.01, anneal="linear")
    assert all(p.momentum is None and p.optimizer == "adam" and p.weight_decay == 0.01 for p in flat)
    schedule = PhaseSchedule(flat, 10)
    assert schedule.values(2)["lr"] == pytest.approx(0.004 + (0.1 - 0.004) * 2 / 5)
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
    assert schedule.values(40)["lr"] == pytest.approx(0.05)  # middle of the second cycle
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
    assert schedule.values(135)["lr"] == pytest.approx(1e-2)
    assert schedule.values(300)["lr"] == pytest.approx(1e-5)


def test_warmup_cosine_step_and_flat_cos_shapes():
    schedule = PhaseSchedule(warmup_cosine(5, 0.2, warmup_epochs=1), 10)
    assert [schedule.values(s)["lr"] for s in (0, 5, 10, 30, 50)] == pytest.approx([0, 0.1, 0.2, 0.1, 0])
    steps = PhaseSchedule(step_schedule(9, 0.1, milestones=[3, 6], gamma=0.1), 10)
    assert [steps.values(s)["lr"] for s in (0, 29, 30, 59, 60, 89)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3]
    )
    flat = PhaseSchedule(flat_cos(4, 0.1, pct_flat=0.75), 10)
    assert [flat.values(s)["lr"] for s in (0, 29, 30, 35, 40)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.05 + 0.5e-6, 1e-6]
    )
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
