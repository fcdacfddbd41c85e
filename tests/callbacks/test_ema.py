"""EMA: the closed form on the recorded trajectory, per-step updates with no host read, valid_ema evaluation
that restores the live weights, compile / bf16 / gradient accumulation, and exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.callbacks.ema import EMA
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.schedules import one_cycle
from epochal.state import load_checkpoint


def _learner(run_dir, callbacks, **kwargs) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(80, 4)
    y = (x[:, 0] - x[:, 2] > 0).long()
    train = ArrayLoader(x[:64], y[:64], batch_size=8, shuffle=True, seed=0)  # 8 batches per epoch
    valid = ArrayLoader(x[64:], y[64:], batch_size=8)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(model, (train, valid), optimizer="sgd", lr=0.1, metrics=["accuracy"], callbacks=callbacks,
                   device="cpu", run_dir=run_dir, **kwargs)


class Record(Callback):
    """The live parameters at the start and after every optimizer step (runs before EMA's update)."""

    order = 40

    def before_fit(self):
        self.seen, self.weights = 0, [self._params()]

    def _params(self):
        return {k: v.detach().double().clone() for k, v in self.learner.model.named_parameters()}

    def after_batch(self):
        if self.learner.training and self.learner.state.step != self.seen:
            self.seen = self.learner.state.step
            self.weights.append(self._params())


def _closed_form(weights, decay, warmup, every=1):
    """ema_0 = the starting weights; each update: ema = d_n * ema + (1 - d_n) * w."""
    ema = dict(weights[0])
    for n, w in enumerate(weights[every::every]):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        ema = {k: d * ema[k] + (1 - d) * w[k] for k in ema}
    return ema


@pytest.mark.parametrize(("decay", "warmup", "every"), [(0.9, False, 1), (0.99, True, 1), (0.8, True, 3)])
def test_ema_equals_the_closed_form_on_the_trajectory(decay, warmup, every):
    record, ema = Record(), EMA(decay=decay, warmup=warmup, update_every=every, final=False)
    _learner(None, [record, ema]).fit(2)
    assert ema.averaged.n_averaged == 16 // every
    expected = _closed_form(record.weights, decay, warmup, every)
    for name, value in expected.items():
        torch.testing.assert_close(ema.averaged.state()[name].double(), value, rtol=1e-5, atol=1e-6)


def test_updates_never_read_the_device(monkeypatch):
    ema = EMA(decay=0.9)
    learner = _learner(None, [ema])
    learner.fit(1)

    def refuse(*args, **kwargs):
        raise AssertionError("a device value was read back to the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for _ in range(3):
        ema.update()  # a foreach lerp with a decay computed on the host from the update count
    monkeypatch.undo()
    assert ema.averaged.n_averaged == 8 + 3


class Watch(Callback):
    """The live weights around EMA's evaluation."""

    def __init__(self, order):
        self.order, self.states = order, []

    def after_validate(self):
        if self.learner.valid_prefix == "valid":
            self.states.append({k: v.clone() for k, v in self.learner.model.state_dict().items()})


def test_valid_ema_is_logged_and_the_live_weights_come_back(tmp_path):
    before, after = Watch(40), Watch(60)
    ema = EMA(decay=0.9, bn_update=True)
    learner = _learner(tmp_path, [before, ema, after, ModelCheckpoint(monitor="valid_ema/accuracy")])
    history = learner.fit(3)
    for a, b in zip(before.states, after.states, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert {"valid_ema/loss", "valid_ema/accuracy"} <= set(history[-1])
    assert history[-1]["valid_ema/loss"] != history[-1]["valid/loss"]
    assert learner.metric_directions["valid_ema/accuracy"] is True
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_weights"]["source"] == "ema" and summary["final_weights"]["updates"] == 24
    final = load_checkpoint(tmp_path / "checkpoints" / "ema.pt")["model"]
    assert all(torch.equal(final[k], v) for k, v in learner.model.state_dict().items())
    assert learner.validate()["valid/loss"] == pytest.approx(history[-1]["valid_ema/loss"])


@pytest.mark.parametrize("setting", [{"compile": "eager"}, {"precision": "bf16"}, {"grad_accum": 3}],
                         ids=["compile-eager", "bf16", "grad-accum-3"])
def test_works_with_compile_bf16_and_gradient_accumulation(setting):
    record, ema = Record(), EMA(decay=0.9, warmup=False, final=False)
    learner = _learner(None, [record, ema], **setting)
    learner.fit(2)
    steps = learner.state.step
    assert steps == (2 * 3 if "grad_accum" in setting else 16)  # updates count optimizer steps
    assert ema.averaged.n_averaged == steps == len(record.weights) - 1
    expected = _closed_form(record.weights, 0.9, False)
    for name, value in expected.items():
        torch.testing.assert_close(ema.averaged.state()[name].double(), value, rtol=1e-5, atol=1e-6)
    assert math.isfinite(learner.history[-1]["valid_ema/loss"])


class CrashAfter(Callback):
    order = 200

    def after_epoch(self):
        if self.learner.state.epoch == 1:
            raise RuntimeError("simulated crash")


def test_resume_continues_the_average_exactly(tmp_path):
    full = EMA(decay=0.9)
    reference = _learner(tmp_path / "full", [full, ModelCheckpoint()])
    reference.fit(one_cycle(3, 0.1))
    crashed = _learner(tmp_path / "crash", [EMA(decay=0.9), ModelCheckpoint(), CrashAfter()])
    with pytest.raises(RuntimeError, match="simulated"):
        crashed.fit(one_cycle(3, 0.1))
    resumed_ema = EMA(decay=0.9)
    resumed = _learner(tmp_path / "crash", [resumed_ema, ModelCheckpoint()])
    resumed.fit(one_cycle(3, 0.1), resume=tmp_path / "crash")
    assert resumed_ema.averaged.n_averaged == full.averaged.n_averaged == 24
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


@pytest.mark.parametrize(("kwargs", "message"), [({"decay": 1.0}, "decay"), ({"update_every": 0}, "update_every")])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EMA(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run with -m gpu on a GPU machine)")
def test_cuda_updates_never_synchronise():
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.Linear(64, 8)).cuda()
    ema = EMA(decay=0.99)
    learner = Learner(model, (ArrayLoader(torch.randn(64, 64).cuda(), torch.zeros(64, dtype=torch.long).cuda()),
                              None), callbacks=[ema], device="cuda")
    learner.fit(1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            ema.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert ema.averaged.n_averaged == 6
