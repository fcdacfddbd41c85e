"""TerminateOnNaN: stops at the first logging point after a bad loss; checkpoints stay finite."""

from __future__ import annotations

import json

import pytest
import torch

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint, weights_are_finite
from epochal.callbacks.terminate_on_nan import TerminateOnNaN
from epochal.state import load_checkpoint


class PoisonInputs(Callback):
    """Multiplies the inputs of the batch that takes optimizer step ``step + 1`` by ``value``."""

    def __init__(self, step, value=float("nan"), training=True):
        self.step, self.value, self.training = step, value, training

    def before_forward(self):
        if self.learner.training == self.training and (not self.training or self.learner.state.step == self.step):
            self.learner.xb = self.learner.xb * self.value


@pytest.mark.parametrize(("log_every", "stop_step", "skipped"), [(2, 6, []), (4, 8, [6, 7])])
def test_stops_at_the_next_log_and_keeps_the_last_good_checkpoint(
    make_learner, tmp_path, log_every, stop_step, skipped
):
    # the batch after step 5 has NaN inputs: its step makes the weights NaN (step 6)
    terminate = TerminateOnNaN()
    checkpoint = ModelCheckpoint(every_n_steps=1)
    learner = make_learner(tmp_path, [PoisonInputs(5), terminate, checkpoint], log_every=log_every)
    with pytest.warns(RuntimeWarning) as warned:
        learner.fit(4)
    assert sum("non-finite loss" in str(w.message) for w in warned) == 1
    assert terminate.stopped_step == stop_step and terminate.bad_batches == stop_step - 5
    assert learner.state.step == stop_step and [r["epoch"] for r in learner.history] == [1]
    assert not weights_are_finite(learner.model)
    assert [step for step, _ in checkpoint.skipped] == skipped  # NaN weights were never written
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert last["state"]["step"] == 5 and best["state"]["step"] == 4
    for payload in (last, best):
        assert all(torch.isfinite(t).all() for t in payload["model"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "stopped"


def test_infinite_loss_also_stops(make_learner, tmp_path):
    terminate = TerminateOnNaN()

    class InfiniteLoss(Callback):
        def after_loss(self):
            if self.learner.training and self.learner.state.step == 2:
                self.learner.loss = self.learner.loss * float("inf")

    learner = make_learner(None, [InfiniteLoss(), terminate], log_every=1)
    with pytest.warns(RuntimeWarning):
        learner.fit(2)
    assert terminate.stopped_step == 3 and learner.state.step == 3


def test_finite_training_and_validation_only_nan_run_to_the_end(make_learner, tmp_path):
    terminate = TerminateOnNaN()
    learner = make_learner(None, [PoisonInputs(0, training=False), terminate], log_every=1)
    learner.fit(2)  # only validation losses are NaN: training is healthy, the fit completes
    assert terminate.stopped_step is None and learner.state.step == 8
    assert all(r["valid/loss"] != r["valid/loss"] for r in learner.history)  # NaN


def test_the_flag_stays_on_the_device_until_the_log(make_learner, tmp_path):
    terminate = TerminateOnNaN()

    class Inspect(Callback):
        order = 100

        def after_loss(self):
            if self.learner.training:
                assert isinstance(terminate._bad, torch.Tensor) and terminate._bad.device == self.learner.device

    make_learner(None, [terminate, Inspect()]).fit(1)
    assert terminate._bad is None  # released at the end of the fit


def test_state_dict_round_trip():
    terminate = TerminateOnNaN()
    terminate.stopped_step = 7
    copy = TerminateOnNaN()
    copy.load_state_dict(terminate.state_dict())
    assert copy.stopped_step == 7 and copy.name == "terminate_on_nan"


def test_per_batch_hooks_never_read_device_values(make_learner, tmp_path, monkeypatch):
    """The hooks that run every batch must not read a tensor back to the host (a device sync)."""
    from epochal.callbacks.progress_bar import ProgressBar
    from epochal.callbacks.tensorboard import TensorBoard

    inside = []
    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, _original=original, _name=name, **kwargs):
            assert not inside, f"Tensor.{_name} called in a per-batch hook"
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)

    def watch(callback, event):
        handler = getattr(callback, event)

        def hook():
            inside.append(True)
            try:
                handler()
            finally:
                inside.pop()

        setattr(callback, event, hook)
        return callback

    class ReadsLoss(Callback):  # the negative control: this is what the guard must catch
        def after_loss(self):
            float(self.learner.loss)

    with pytest.raises(AssertionError, match=r"Tensor.__float__ called in a per-batch hook"):
        make_learner(None, [watch(ReadsLoss(), "after_loss")]).fit(1)

    terminate = watch(TerminateOnNaN(), "after_loss")
    callbacks = [terminate, watch(ProgressBar(quiet=True), "after_batch"),
                 watch(ModelCheckpoint(save_best=False, every_n_steps=1000), "after_batch"),
                 watch(TensorBoard(), "before_step")]
    learner = make_learner(tmp_path, callbacks, log_every=3)
    learner.fit(2)
    assert terminate.stopped_step is None and learner.state.step == 8
