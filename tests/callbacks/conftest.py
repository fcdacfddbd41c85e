"""Helpers shared by the callback tests: a tiny learner, scripted metric values and a simulated crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data.base import ArrayLoader
from epochal.learner import Learner


class Scripted(Callback):
    """Overwrites a validation value from a list (runs before the monitor callbacks) and keeps each
    epoch's weights, so tests know exactly which epoch should win."""

    order = -10

    def __init__(self, values, key="valid/loss"):
        self.values, self.key = values, key
        self.weights: list[dict[str, torch.Tensor]] = []

    def after_validate(self):
        self.learner.epoch_metrics[self.key] = self.values[self.learner.state.epoch]

    def after_epoch(self):
        self.weights.append({k: v.clone() for k, v in self.learner.model.state_dict().items()})


class CrashAt(Callback):
    """Raises at the end of an epoch, after every callback with a lower ``order`` has run."""

    def __init__(self, epoch, order=200):
        self.epoch, self.order = epoch, order

    def after_epoch(self):
        if self.learner.state.epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _make_learner(run_dir, callbacks, *, batch_size: int = 16, model: Callable[[], nn.Module] | None = None,
                  optimizer="sgd", **kwargs) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    train = ArrayLoader(x, y, batch_size=batch_size, shuffle=True, seed=0)  # 64 / batch_size steps per epoch
    valid = ArrayLoader(x[:32], y[:32], batch_size=batch_size)
    module = model() if model is not None else nn.Linear(4, 2)
    return Learner(module, (train, valid), loss=nn.CrossEntropyLoss(), optimizer=optimizer, lr=0.1,
                   metrics=["accuracy"], callbacks=callbacks, device="cpu", run_dir=run_dir, **kwargs)


def _assert_same_weights(actual, expected):
    assert actual.keys() == expected.keys()
    for key in actual:
        assert torch.equal(actual[key].cpu(), expected[key].cpu()), key


@pytest.fixture
def make_learner():
    """``make_learner(run_dir, callbacks, batch_size=16, model=None, optimizer="sgd", **learner_kwargs)``:
    SGD (unless ``optimizer`` names another) at lr 0.1 on 64 seeded 4-feature samples (a linear model
    unless ``model`` builds another), validated on 32."""
    return _make_learner


@pytest.fixture
def scripted_metric():
    """``scripted_metric(values, key="valid/loss")``: a :class:`Scripted` callback."""
    return Scripted


@pytest.fixture
def crash_at():
    """``crash_at(epoch, order=200)``: a callback that raises ``simulated crash`` after that epoch."""
    return CrashAt


@pytest.fixture
def assert_same_weights():
    """``assert_same_weights(actual, expected)``: two state dicts hold the same keys and equal tensors."""
    return _assert_same_weights
