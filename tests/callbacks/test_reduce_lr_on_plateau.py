"""ReduceLROnPlateau: every group's rate drops at the right epoch; cooldown, min_lr and resume."""

from __future__ import annotations

import functools

import pytest
from torch import nn

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from epochal.schedules import TrainingPhase


class Scripted(Callback):
    """Overwrites valid/loss from a list and records the rate of every group at every step."""

    order = -10

    def __init__(self, values):
        self.values = values
        self.lrs: dict[int, set[tuple[float, ...]]] = {}

    def after_validate(self):
        self.learner.epoch_metrics["valid/loss"] = self.values[self.learner.state.epoch]

    def after_step(self):  # test only: reads host floats, not device values
        lrs = tuple(round(g["lr"], 12) for g in self.learner.optimizer.param_groups)
        self.lrs.setdefault(self.learner.state.epoch, set()).add(lrs)

    def epoch_lrs(self):
        assert all(len(v) == 1 for v in self.lrs.values()), "the rate changed inside an epoch"
        return [next(iter(self.lrs[e])) for e in sorted(self.lrs)]


@pytest.fixture
def make_learner(make_learner):
    """Batches of 32 (2 steps per epoch) and an MLP: 2 layer groups, 4 param groups."""
    return functools.partial(
        make_learner, batch_size=32, model=lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    )


PLATEAU = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]


@pytest.mark.parametrize(("cooldown", "reductions"), [(0, [3, 5, 7]), (1, [3, 6])])
def test_every_group_is_reduced_at_the_right_epoch(make_learner, cooldown, reductions):
    scripted = Scripted(PLATEAU)
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=cooldown)
    learner = make_learner(None, [scripted, plateau])
    learner.fit(8)
    assert plateau.reductions == reductions
    expected, lr = [], 0.1
    for epoch in range(8):
        expected.append((round(lr, 12),) * 4)
        if epoch in reductions:
            lr *= 0.5
    assert scripted.epoch_lrs() == expected
    assert [g["lr_factor"] for g in learner.optimizer.param_groups] == [0.5 ** len(reductions)] * 4
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** len(reductions))


def test_discriminative_rates_keep_their_ratio_and_respect_min_lr(make_learner):
    scripted = Scripted([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    plateau = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.03)
    learner = make_learner(None, [scripted, plateau])
    learner.fit(TrainingPhase(epochs=6, lr=slice(0.01, 0.1)))  # body groups 0.01, head groups 0.1
    body, head = zip(*[(lrs[0], lrs[2]) for lrs in scripted.epoch_lrs()])
    assert plateau.reductions == [1, 2]  # later reductions would cross min_lr everywhere: none
    assert body == (0.01,) * 6  # already under min_lr: never touched
    assert head == pytest.approx([0.1, 0.1, 0.05, 0.03, 0.03, 0.03])  # floored at min_lr, then left alone
    factors = [g["lr_factor"] for g in learner.optimizer.param_groups]
    assert factors == pytest.approx([1.0, 1.0, 0.3, 0.3])


def test_min_lr_per_group_must_match_the_groups(make_learner):
    plateau = ReduceLROnPlateau(patience=0, min_lr=[0.0, 0.0])
    with pytest.raises(ValueError, match="min_lr has 2 values but the optimizer has 4"):
        make_learner(None, [Scripted(PLATEAU), plateau]).fit(3)


def test_improvements_reset_the_counter_and_the_direction_comes_from_the_metric(make_learner):
    class Accuracy(Callback):
        order = -10

        def after_validate(self):
            self.learner.epoch_metrics["valid/accuracy"] = [0.5, 0.6, 0.7, 0.8, 0.8, 0.8][self.learner.state.epoch]

    plateau = ReduceLROnPlateau("accuracy", factor=0.1, patience=2)
    make_learner(None, [Accuracy(), plateau]).fit(6)
    assert plateau.higher_is_better is True and plateau.reductions == [5]


def test_unknown_monitor_raises_with_the_available_keys(make_learner):
    learner = make_learner(None, [ReduceLROnPlateau("valid/los")])
    with pytest.raises(KeyError, match=r"did you mean 'valid/loss'.*available keys"):
        learner.fit(2)
    assert len(learner.history) == 1


def test_bad_arguments_name_the_argument():
    for kwargs, word in [({"factor": 1.0}, "factor"), ({"patience": -1}, "patience"),
                         ({"cooldown": 1.5}, "cooldown"), ({"min_lr": -1.0}, "min_lr")]:
        with pytest.raises(ValueError, match=word):
            ReduceLROnPlateau(**kwargs)


def test_state_dict_round_trip(make_learner):
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2)
    make_learner(None, [Scripted(PLATEAU), plateau]).fit(5)
    copy = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2)
    copy.load_state_dict(plateau.state_dict())
    assert (copy.best, copy.wait, copy.cooldown_counter, copy.reductions) == (0.9, 0, 1, [3])
    assert copy.group_factors == [0.5] * 4 and copy.name == "reduce_lr_on_plateau"


def test_resume_keeps_the_reduced_rates(crash_at, make_learner, tmp_path):
    reference = Scripted(PLATEAU)
    make_learner(tmp_path / "a", [reference, ReduceLROnPlateau(factor=0.5, patience=2)]).fit(8)

    crashed = make_learner(tmp_path / "b", [Scripted(PLATEAU), ReduceLROnPlateau(factor=0.5, patience=2),
                                            ModelCheckpoint(), crash_at(4)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(8)
    resumed_lrs, plateau = Scripted(PLATEAU), ReduceLROnPlateau(factor=0.5, patience=2)
    make_learner(tmp_path / "b", [resumed_lrs, plateau, ModelCheckpoint()]).fit(8, resume=tmp_path / "b")
    assert plateau.reductions == [3, 5, 7]
    assert resumed_lrs.epoch_lrs() == reference.epoch_lrs()[5:]


def test_a_new_fit_starts_from_the_schedule_rates(make_learner):
    scripted = Scripted(PLATEAU)
    plateau = ReduceLROnPlateau(factor=0.5, patience=2)
    learner = make_learner(None, [scripted, plateau])
    learner.fit(5)
    scripted.lrs.clear()
    learner.fit(2)
    assert plateau.reductions == [] and scripted.epoch_lrs() == [(0.1,) * 4] * 2
