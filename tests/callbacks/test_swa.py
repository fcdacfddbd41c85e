"""SWA: the average of the epochs' weights (as torch's AveragedModel), BatchNorm as update_bn, the hand-over
phase, evaluation that leaves the live model alone, final weights in the run folder, and resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from epochal.callbacks.base import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.ema import EMA
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.swa import SWA
from epochal.config.inference import locate_run
from epochal.data.base import ArrayLoader
from epochal.learner import Learner
from epochal.schedules import TrainingPhase, flat_linear, sgdr, swa_phase
from epochal.state import load_checkpoint


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def _noisy(x, y, generator):
    return x + 0.1 * torch.randn(x.shape, generator=generator), y


def _learner(run_dir, callbacks, model=None, **kwargs) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(96, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    train = ArrayLoader(x[:64], y[:64], batch_size=16, shuffle=True, seed=0, transform=_noisy)  # 4 steps/epoch
    valid = ArrayLoader(x[64:], y[64:], batch_size=16)
    return Learner(model if model is not None else _bn_model(), (train, valid), optimizer="sgd", lr=0.1,
                   metrics=["accuracy"], callbacks=callbacks, device="cpu", run_dir=run_dir, **kwargs)


PHASES = [*flat_linear(3, 0.1, final_ratio=0.5), *swa_phase(3, lr=0.05)]  # 6 epochs; SWA from epoch 3


class Trajectory(Callback):
    """Drives torch's AveragedModel by hand at the same points as SWA (after it, at the end of each epoch)."""

    order = 60

    def __init__(self, start_epoch: int):
        self.start_epoch = start_epoch
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.reference: AveragedModel | None = None

    def after_train(self):
        if self.learner.state.epoch >= self.start_epoch:
            model = self.learner.model
            self.snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
            self.reference = self.reference or AveragedModel(model)
            self.reference.update_parameters(model)


def test_after_k_epochs_the_weights_are_the_mean_of_the_k_snapshots_as_averaged_model(tmp_path):
    swa, trajectory = SWA(start="swa", lr=0.05), Trajectory(start_epoch=3)
    learner = _learner(tmp_path, [swa, trajectory])
    learner.fit(PHASES)
    assert swa.start_step == 12 and swa.averaged.n_averaged == len(trajectory.snapshots) == 3
    averaged = swa.averaged.state()
    for name, reference in trajectory.reference.module.named_parameters():
        assert torch.equal(averaged[name], reference), name
        mean = torch.stack([s[name].double() for s in trajectory.snapshots]).mean(0)
        torch.testing.assert_close(averaged[name].double(), mean, rtol=0, atol=1e-6)
    # BatchNorm: recalibrated by one fresh cumulative pass over the training data, as update_bn does
    torch.manual_seed(123)
    update_bn(learner.data.train, trajectory.reference)
    for name, buffer in trajectory.reference.module.named_buffers():
        assert torch.equal(learner.model.state_dict()[name], buffer), name
    assert torch.equal(learner.model[0].weight, averaged["0.weight"])  # the model ends with the average


class Watch(Callback):
    """Records the live model (and the RNG) just before and just after SWA's evaluation at each validation."""

    def __init__(self, order):
        self.order, self.states = order, []

    def after_validate(self):
        if self.learner.valid_prefix == "valid":
            state = {k: v.clone() for k, v in self.learner.model.state_dict().items()}
            self.states.append((state, torch.get_rng_state()))


def test_evaluation_leaves_live_weights_buffers_and_the_trajectory_alone(tmp_path):
    before, after = Watch(order=40), Watch(order=60)
    swa = SWA(start=2, update_every=2, final=False)
    learner = _learner(tmp_path / "swa", [before, swa, after])
    learner.fit(PHASES)
    assert swa.averaged.n_averaged == 8  # steps 10, 12, ..., 24
    for (a, rng_a), (b, rng_b) in zip(before.states, after.states, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a) and torch.equal(rng_a, rng_b)
    plain = _learner(tmp_path / "plain", [])
    plain.fit(PHASES)
    for key, value in plain.model.state_dict().items():  # with dropout: the RNG is untouched too
        assert torch.equal(learner.model.state_dict()[key], value), key
    assert learner.history[-1]["valid/loss"] == plain.history[-1]["valid/loss"]
    assert learner.history[-1]["valid_swa/loss"] != learner.history[-1]["valid/loss"]


def test_valid_swa_keys_directions_and_monitors(tmp_path):
    checkpoint = ModelCheckpoint(monitor="valid_swa/accuracy")
    stopper = EarlyStopping("valid_swa/loss", patience=10)
    learner = _learner(tmp_path, [SWA(start=0.5), checkpoint, stopper])
    history = learner.fit(PHASES)
    assert learner.metric_directions["valid_swa/accuracy"] is True
    assert learner.metric_directions["valid_swa/loss"] is False
    assert checkpoint.higher_is_better is True and stopper.higher_is_better is False
    first, last = history[0], history[-1]
    assert first["valid_swa/accuracy"] == first["valid/accuracy"]  # no average yet: the live model's values
    assert last["valid_swa/loss"] != last["valid/loss"]
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["callbacks"]["swa"]["averaged"]
    assert saved["n_averaged"] == 3 and set(saved["tensors"]) == set(learner.model.state_dict())


def test_the_run_folder_ends_with_the_averaged_model_and_says_so(tmp_path):
    (tmp_path / "config.yaml").write_text("model: {name: airbench}\n")  # locate_run needs a run folder
    swa = SWA(start="swa", lr=0.05)
    learner = _learner(tmp_path, [swa, ModelCheckpoint(monitor="valid_swa/accuracy")])
    learner.fit(PHASES)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_weights"] == {"source": "swa", "checkpoint": "checkpoints/swa.pt", "updates": 3}
    assert summary["averaging"]["swa"]["start_step"] == 12
    assert "valid_swa/accuracy" in summary["final"]
    payload = load_checkpoint(tmp_path / "checkpoints" / "swa.pt")
    assert all(torch.equal(payload["model"][k], v) for k, v in learner.model.state_dict().items())
    assert locate_run(tmp_path)[1].name == "swa.pt"
    assert locate_run(tmp_path, "best")[1].name == "best.pt"
    again = learner.validate()
    assert again["valid/loss"] == pytest.approx(learner.history[-1]["valid_swa/loss"])


@pytest.mark.parametrize(("start", "step"), [(3, 12), (0.5, 12), (4.5, 18), ("swa", 12)])
def test_start_as_epoch_fraction_or_phase_name(tmp_path, start, step):
    swa = SWA(start=start, update_every=1, final=False)
    _learner(None, [swa]).fit(PHASES)
    assert swa.start_step == step and swa.averaged.n_averaged == 24 - step


def test_cycle_updates_at_the_low_end_of_every_cycle(tmp_path):
    swa = SWA(start=0, update_every="cycle", final=False)
    _learner(None, [swa]).fit(sgdr(0.1, cycle_len=2, n_cycles=3))
    assert swa.averaged.n_averaged == 3
    cyclic = SWA(start="swa", update_every="cycle", lr=0.01, cycle_len=1, lr_max=0.05, final=False)
    _learner(None, [cyclic]).fit([TrainingPhase(2, lr=0.1), *swa_phase(3, lr=0.01, cycle_len=1, lr_max=0.05)])
    assert cyclic.averaged.n_averaged == 3


@pytest.mark.parametrize(("callback", "phases", "message"), [
    (SWA(start="tail"), PHASES, "not the name of a phase"),
    (SWA(start=6), PHASES, "at or after the end"),
    (SWA(start=0.5, lr=0.05), flat_linear(6, 0.1), "no 'swa' phase"),
    (SWA(start="swa", lr=0.02), PHASES, "are not swa_phase"),
    (SWA(start="swa", lr=0.05, anneal_epochs=1), PHASES, "are not swa_phase"),
    (SWA(update_every="cycle"), PHASES, "decreasing rate"),
])
def test_bad_settings_fail_before_training_naming_the_fix(callback, phases, message):
    learner = _learner(None, [callback])
    with pytest.raises(ValueError, match=message):
        learner.fit(phases)
    assert learner.state.step == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": -1}, "start must be"), ({"start": True}, "start must be"), ({"start": float("nan")}, "start must be"),
    ({"update_every": 0}, "update_every"), ({"update_every": "step"}, "update_every"),
    ({"bn_batches": 0}, "bn_batches"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SWA(**kwargs)


def test_conflicting_final_weights_are_refused(tmp_path):
    for other in (EMA(), EarlyStopping(restore_best_weights=True)):
        with pytest.raises(ValueError, match="final"):
            _learner(None, [SWA(), other]).fit(PHASES)
    _learner(None, [SWA(), EMA(final=False)]).fit(PHASES)


class Crash(Callback):
    order = 200

    def after_epoch(self):
        if self.learner.state.epoch == 4:
            raise RuntimeError("simulated crash")


def test_a_failed_fit_keeps_the_live_weights_and_resume_continues_the_average(tmp_path):
    full = SWA(start="swa", lr=0.05)
    reference = _learner(tmp_path / "full", [full, ModelCheckpoint()])
    reference.fit(PHASES)
    swa = SWA(start="swa", lr=0.05)
    crashed = _learner(tmp_path / "crash", [swa, ModelCheckpoint(), Crash()])
    with pytest.raises(RuntimeError, match="simulated"):
        crashed.fit(PHASES)
    assert swa.averaged.n_averaged == 2 and not (tmp_path / "crash" / "checkpoints" / "swa.pt").exists()
    assert not torch.equal(crashed.model[0].weight, swa.averaged.state()["0.weight"])
    resumed_swa = SWA(start="swa", lr=0.05)
    resumed = _learner(tmp_path / "crash", [resumed_swa, ModelCheckpoint()])
    resumed.fit(PHASES, resume=tmp_path / "crash")
    assert resumed_swa.averaged.n_averaged == 3
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert copy.deepcopy(resumed.history) == reference.history
