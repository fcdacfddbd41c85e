"""PhaseSchedule: boundaries, locate, values, hand-over, resume purity and apply()."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from epochal.optim import build_optimizer, param_groups
from epochal.schedules import PhaseSchedule, TrainingPhase, one_cycle


def test_boundaries_round_cumulative_epochs_without_drift():
    third = [TrainingPhase(1 / 3, lr=0.1) for _ in range(3)]
    assert PhaseSchedule(third, 10).boundaries == (0, 3, 7, 10)
    many = [TrainingPhase(0.1, lr=0.1) for _ in range(30)]
    schedule = PhaseSchedule(many, 7)
    assert schedule.total_steps == 21  # 30 * 0.1 * 7, while rounding each phase alone gives 30
    assert all(b - a in (0, 1) for a, b in zip(schedule.boundaries, schedule.boundaries[1:]))


def test_steps_per_epoch_per_phase():
    phases = [TrainingPhase(1, lr=0.1), TrainingPhase(0.5, lr=0.1), TrainingPhase(2, lr=0.1)]
    schedule = PhaseSchedule(phases, [100, 40, 25])
    assert schedule.boundaries == (0, 100, 120, 170)
    assert [schedule.phase_length(k) for k in range(3)] == [100, 20, 50]
    assert schedule.epoch_at(110) == pytest.approx(1.25)
    assert schedule.epoch_at(170) == pytest.approx(3.5)


@pytest.mark.parametrize(
    ("steps_per_epoch", "message"),
    [(0, "must be an int >= 1"), ([10], "gives 1 values for 2 phases"), (2.5, "must be an int >= 1")],
)
def test_bad_steps_per_epoch(steps_per_epoch, message):
    with pytest.raises(ValueError, match=message):
        PhaseSchedule([TrainingPhase(1, lr=0.1), TrainingPhase(1, lr=0.1)], steps_per_epoch)


def test_schedule_errors():
    with pytest.raises(ValueError, match="phases is empty"):
        PhaseSchedule([], 10)
    with pytest.raises(ValueError, match="need at least one"):
        PhaseSchedule([TrainingPhase(0.01, lr=0.1)], 10)
    with pytest.raises(ValueError, match="phase 0 gives no lr"):
        PhaseSchedule([TrainingPhase(1)], 10)
    with pytest.raises(ValueError, match="exponential decay of lr of phase 1"):
        PhaseSchedule([TrainingPhase(1, lr=0.1), TrainingPhase(1, lr_decay="exp")], 10)


def test_locate_and_zero_length_phases_are_skipped():
    phases = [TrainingPhase(1, lr=0.1), TrainingPhase(0.01, lr=0.5), TrainingPhase(1, lr=0.2)]
    schedule = PhaseSchedule(phases, 10)
    assert schedule.boundaries == (0, 10, 10, 20)
    # phase 0 runs t = 0, 1/9, ..., 1 over its 10 steps; phase 2 (0.2) does not start where phase 0
    # (0.1) ended, so it starts afresh at t = 0
    assert schedule.locate(0) == (0, 0.0)
    assert schedule.locate(9) == (0, 1.0)
    assert schedule.locate(10) == (2, 0.0)
    assert schedule.locate(15) == (2, 5 / 9)
    assert [schedule.continues(k) for k in range(3)] == [False, False, False]
    for bad in (-1, 20):
        with pytest.raises(ValueError, match=r"step must be in \[0, 20\)"):
            schedule.locate(bad)
    assert list(schedule.phase_range(1)) == []


def test_values_follow_each_formula_at_start_middle_and_after_end():
    cases = {
        "linear": (1.0, 0.55),
        "cosine": (1.0, 0.55),
        "exp": (1.0, 0.1**0.5),
        "poly2": (1.0, 0.1 + 0.9 * 0.25),
    }
    for decay, (first, middle) in cases.items():
        # 11 steps: t = j / 10, so step 5 is the middle and step 10, the last, the end value
        schedule = PhaseSchedule([TrainingPhase(1, lr=(1.0, 0.1), lr_decay=decay)], 11)
        assert schedule.values(0)["lr"] == pytest.approx(first, rel=1e-12), decay
        assert schedule.values(5)["lr"] == pytest.approx(middle, rel=1e-12), decay
        assert schedule.values(10)["lr"] == pytest.approx(0.1, rel=1e-12), decay
        assert schedule.values(11)["lr"] == pytest.approx(0.1, rel=1e-12), decay
        assert schedule.values(999)["lr"] == pytest.approx(0.1, rel=1e-12), decay


def test_hand_over_between_phases_and_inheritance():
    phases = [
        TrainingPhase(1, lr=(0.1, 0.5), momentum=(0.95, 0.85), weight_decay=1e-2),
        TrainingPhase(1, lr_decay="cosine"),  # continues from 0.5 down to 0, keeps momentum and decay
        TrainingPhase(1, lr=0.3, momentum=0.9, weight_decay=0.0),
    ]
    schedule = PhaseSchedule(phases, 4)
    # phase 0 starts afresh: t = j / 3, ending on (0.5, 0.85) at step 3
    assert schedule.values(2) == pytest.approx({"lr": 0.1 + 0.4 * 2 / 3, "momentum": 0.95 - 0.1 * 2 / 3,
                                                "weight_decay": 1e-2})
    assert schedule.values(3) == pytest.approx({"lr": 0.5, "momentum": 0.85, "weight_decay": 1e-2})
    # phase 1 continues from (0.5, 0.85): t = (j + 1) / 4, the cosine 0.25 * (1 + cos(pi * t)) to 0
    assert schedule.values(4) == pytest.approx(
        {"lr": 0.25 * (1 + math.cos(math.pi / 4)), "momentum": 0.85, "weight_decay": 1e-2}
    )
    assert schedule.values(5)["lr"] == pytest.approx(0.25)
    assert schedule.values(7)["lr"] == pytest.approx(0.0, abs=1e-15)
    assert schedule.values(8) == {"lr": 0.3, "momentum": 0.9, "weight_decay": 0.0}
    assert [schedule.continues(k) for k in range(3)] == [False, True, False]


def test_values_without_momentum_or_decay_are_none_and_default_lr_is_used():
    schedule = PhaseSchedule([TrainingPhase(1, lr_decay="linear")], 11, default_lr=0.2)
    assert schedule.values(0) == {"lr": 0.2, "momentum": None, "weight_decay": None}
    assert schedule.values(5)["lr"] == pytest.approx(0.1)  # t = 5 / 10


def test_resumed_schedule_reproduces_the_uninterrupted_sequence():
    phases = one_cycle(3.3, 0.1, weight_decay=5e-4) + [TrainingPhase(0.7, lr=(1e-3, 1e-5), lr_decay="exp")]
    spe = [13, 13, 9]
    full = PhaseSchedule(phases, spe)
    reference = [full.values(s) for s in range(full.total_steps)]
    for resume_at in (0, 1, 17, 42, full.total_steps - 1):
        resumed = PhaseSchedule(list(phases), spe)
        assert [resumed.values(s) for s in range(resume_at, full.total_steps)] == reference[resume_at:]


def _optimizer(name="sgd", lr=slice(1e-4, 1e-2)):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 8), nn.Linear(8, 2))
    groups = param_groups(model, weight_decay=0.1, lr=lr, layer_groups=[model[0], model[1:3], model[3]])
    return build_optimizer(name, groups, momentum=0.9)


def test_apply_keeps_discriminative_ratios_from_param_groups():
    optimizer = _optimizer()
    schedule = PhaseSchedule([TrainingPhase(1, lr=0.5, lr_decay="cosine", weight_decay=0.01)], 10)
    for step in (0, 3, 9):
        top = schedule.apply(optimizer, step)
        assert top == pytest.approx(schedule.values(step)["lr"])
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(top * (1e-2, 1e-1, 1.0)[group["layer_group"]])
            assert group["weight_decay"] == pytest.approx(0.01 * group["wd_scale"])
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.01}


def test_apply_uses_the_phase_discriminative_lr_and_inherits_it():
    optimizer = _optimizer(lr=1e-3)
    phases = [
        TrainingPhase(1, lr=1e-3),
        TrainingPhase(1, lr=(slice(1e-5, 1e-3), 1e-5), lr_decay="cosine"),
        TrainingPhase(1, lr=[1e-4, 2e-4, 4e-4]),
        TrainingPhase(1, lr_decay="linear"),
    ]
    schedule = PhaseSchedule(phases, 10)
    schedule.apply(optimizer, 5)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}
    for step, ratios in ((15, (1e-2, 1e-1, 1.0)), (25, (0.25, 0.5, 1.0)), (35, (0.25, 0.5, 1.0))):
        top = schedule.apply(optimizer, step)
        for group in optimizer.param_groups:
            assert group["lr"] / top == pytest.approx(ratios[group["layer_group"]], rel=1e-9)
    # the last phase continues from 4e-4 down to 0: t = (j + 1) / 10, the middle at step 34
    assert schedule.values(34)["lr"] == pytest.approx(2e-4)


def test_apply_sets_momentum_or_beta1():
    schedule = PhaseSchedule([TrainingPhase(1, lr=1e-3, momentum=(0.95, 0.85))], 11)  # step 5: t = 1/2
    sgd, adam = _optimizer("sgd"), _optimizer("adam")
    schedule.apply(sgd, 5)
    schedule.apply(adam, 5)
    assert [g["momentum"] for g in sgd.param_groups] == pytest.approx([0.9] * len(sgd.param_groups))
    assert [g["betas"][0] for g in adam.param_groups] == pytest.approx([0.9] * len(adam.param_groups))
    assert {g["betas"][1] for g in adam.param_groups} == {0.999}


def test_apply_fills_tensor_learning_rates_in_place():
    param = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([param], lr=torch.tensor(0.01))
    tensor = optimizer.param_groups[0]["lr"]
    PhaseSchedule([TrainingPhase(1, lr=(0.1, 0.2))], 5).apply(optimizer, 2)  # t = 2 / 4
    assert optimizer.param_groups[0]["lr"] is tensor
    assert tensor.item() == pytest.approx(0.15)


def test_apply_with_phase_groups_needs_layer_group_keys():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    schedule = PhaseSchedule([TrainingPhase(1, lr=slice(1e-4, 1e-2))], 3)
    with pytest.raises(ValueError, match="have no 'layer_group' key"):
        schedule.apply(optimizer, 0)


def test_optimizer_spec_is_inherited():
    phases = [
        TrainingPhase(1, lr=0.1),
        TrainingPhase(1, optimizer="sgd", optimizer_kwargs={"nesterov": True}),
        TrainingPhase(1),
        TrainingPhase(1, optimizer="adam"),
    ]
    schedule = PhaseSchedule(phases, 2)
    assert [schedule.optimizer_spec(k)[0] for k in range(4)] == [None, "sgd", "sgd", "adam"]
    assert schedule.optimizer_spec(1) == ("sgd", {"nesterov": True})


def test_schedule_accepts_plain_dicts():
    schedule = PhaseSchedule([{"epochs": 1, "lr": [0.1, 0.2]}, {"epochs": "1", "lr": "1e-3"}], 3)
    assert schedule.values(1)["lr"] == pytest.approx(0.15)  # t = 1 / 2
    assert schedule.values(3)["lr"] == pytest.approx(1e-3)


def test_apply_drives_a_real_training_loop_across_an_optimizer_switch():
    from epochal.optim import switch_optimizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    phases = [
        TrainingPhase(2, optimizer="sgd", lr=(0.01, 0.05), momentum=(0.95, 0.85), weight_decay=1e-4),
        TrainingPhase(3, optimizer="adam", lr=(0.01, 1e-4), lr_decay="cosine", momentum=0.9),
    ]
    schedule = PhaseSchedule(phases, 8)
    current, optimizer, losses = None, None, []
    for step in range(schedule.total_steps):
        index, _ = schedule.locate(step)
        spec, kwargs = schedule.optimizer_spec(index)
        if spec != current:
            optimizer = (
                build_optimizer(spec, param_groups(model), **kwargs)
                if optimizer is None
                else switch_optimizer(optimizer, spec, **kwargs)
            )
            current = spec
        schedule.apply(optimizer, step)
        batch = slice(8 * (step % 8), 8 * (step % 8) + 8)
        loss = nn.functional.mse_loss(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert type(optimizer).__name__ == "AdamW"
    assert optimizer.param_groups[0]["betas"][0] == 0.9
    assert math.isfinite(losses[-1]) and sum(losses[-8:]) < 0.25 * sum(losses[:8])


def test_apply_multiplies_by_a_callback_lr_factor():
    optimizer = _optimizer()
    for group in optimizer.param_groups:
        group["lr_factor"] = 0.5 if group["layer_group"] == 2 else 1.0
    top = PhaseSchedule([TrainingPhase(1, lr=0.2)], 4).apply(optimizer, 1)
    assert top == 0.2
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [0.2 * (1e-2, 1e-1, 0.5)[g["layer_group"]] for g in optimizer.param_groups]
    )


def test_group_with_train_epochs_runs_the_schedule_compressed_then_stops():
    # airbench94_muon: 8 epochs of linear decay; the whitening bias decays to 0 at epoch 3
    schedule = PhaseSchedule([TrainingPhase(8, lr=(1.0, 0.0), lr_decay="linear")], 22)
    assert (schedule.step_at(3), schedule.step_at(8), schedule.step_at(20)) == (66, 176, 176)
    model = nn.Linear(2, 2)
    groups = param_groups(model, lr=1.0)
    groups[1]["train_epochs"] = 3
    optimizer = torch.optim.SGD(groups, lr=1.0)
    seen = []
    for step in range(176):
        schedule.apply(optimizer, step)
        seen.append([g["lr"] for g in optimizer.param_groups])
    # every line reaches its end on its last step: the run's at step 175, the bias's at step 65
    assert [s[0] for s in seen] == pytest.approx([1 - s / 175 for s in range(176)])
    assert [s[1] for s in seen] == pytest.approx([max(0.0, 1 - s / 65) for s in range(176)])
    assert seen[65][1] == 0.0 and seen[64][1] > 0.0
    two_phases = PhaseSchedule([TrainingPhase(1, lr=(0.0, 1.0)), TrainingPhase(3, lr=(1.0, 0.0))], [10, 20])
    assert two_phases.step_at(2.5) == 40
    # the compressed schedule keeps the warm-up: train_epochs=2 is 30 of 70 steps, steps 0..29 map onto
    # 0..69, so step 3 reads the warm-up (0 -> 1 over steps 0..9) at 3 * 69 / 29
    assert two_phases.compressed_lr(3, 2) == pytest.approx(3 * 69 / 29 / 9)
    assert two_phases.compressed_lr(29, 2) == pytest.approx(0.0) and two_phases.compressed_lr(30, 2) == 0.0
