"""PhaseFreezing: each phase's freeze setting is applied when the phase starts, also after a resume."""

import functools

import pytest
import torch
from torch import nn

from epochal.callbacks import ModelCheckpoint, PhaseFreezing
from epochal.callbacks.base import Callback
from epochal.schedules import TrainingPhase


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def layer_groups(self):
        return [self.stem, self.body, self.head]

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


class Trainable(Callback):
    """Records, at the first batch of every phase, whether the stem's linear and BatchNorm, the body
    and the head have trainable weights."""

    order = 10

    def __init__(self):
        self.seen: dict[int, tuple[bool, ...]] = {}

    def before_batch(self):
        model = self.learner.model
        layers = (model.stem[0], model.stem[1], model.body[0], model.head)
        self.seen.setdefault(self.learner.state.phase, tuple(m.weight.requires_grad for m in layers))


@pytest.fixture
def make_learner(make_learner):
    """The shared tiny learner with a three-group model."""
    return functools.partial(make_learner, model=Model)


PHASES = [TrainingPhase(epochs=1, lr=0.1), TrainingPhase(epochs=1, lr=0.01), TrainingPhase(epochs=1, lr=0.01)]


def test_each_phase_gets_its_setting_and_none_keeps_the_previous_one(make_learner):
    probe = Trainable()
    freezing = PhaseFreezing([-1, None, 0])
    learner = make_learner(None, [freezing, probe])
    learner.fit(PHASES)
    assert freezing.applied == [(0, -1), (2, 0)]
    # train_bn=True (the default): the frozen stem's BatchNorm keeps training
    assert probe.seen == {0: (False, True, False, True), 1: (False, True, False, True), 2: (True,) * 4}


def test_frozen_groups_do_not_change_and_train_bn_false_freezes_norms(make_learner):
    learner = make_learner(None, [PhaseFreezing([1], train_bn=False)])
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.fit([TrainingPhase(epochs=1, lr=0.1)])
    after = learner.model.state_dict()
    assert not learner.model.stem[1].weight.requires_grad
    stem = [k for k in before if k.startswith("stem.")]
    assert stem and all(torch.equal(after[k], before[k]) for k in stem)  # weights and BN statistics
    assert not torch.equal(after["body.0.weight"], before["body.0.weight"])


def test_the_setting_is_applied_again_after_a_resume(crash_at, make_learner, tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_learner(tmp_path, [PhaseFreezing([-1, 0, 0]), ModelCheckpoint(), crash_at(0)]).fit(PHASES)
    probe = Trainable()
    freezing = PhaseFreezing([-1, 0, 0])
    make_learner(tmp_path, [freezing, probe, ModelCheckpoint()]).fit(PHASES, resume=tmp_path)
    assert freezing.applied[0] == (1, 0)
    assert probe.seen[1] == (True,) * 4


def test_too_few_settings_raise_naming_the_counts(make_learner):
    with pytest.raises(ValueError, match="settings for 1 phases"):
        make_learner(None, [PhaseFreezing([-1])]).fit(PHASES)


def test_state_dict_holds_the_settings():
    assert PhaseFreezing([-1, None, "0"]).state_dict() == {"groups": [-1, None, 0]}


def test_recipes_add_it_from_the_phases_not_by_name():
    from epochal.config.builders import callback_registry

    registry = callback_registry()
    assert "phase_freezing" not in registry and PhaseFreezing not in registry.values()
