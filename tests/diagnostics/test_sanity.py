"""The sanity check: it passes on learnable data, names each planted fault, and leaves the learner as it was."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data import image_folder_loaders
from epochal.data.base import ArrayLoader, DataLoaders
from epochal.data.loaders import ImageLoader
from epochal.diagnostics import CHECKS
from epochal.learner import Learner


def blobs(n=192, features=8, classes=3, seed=0):
    """Inputs with mean 0 and std 1 whose class is the nearest of ``classes`` centres (learnable)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, features, generator=g) * 2
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, features, generator=g)
    return (x - x.mean(0)) / x.std(0), y


class MLP(nn.Module):
    def __init__(self, features=8, classes=3, width=32):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, width), nn.BatchNorm1d(width), nn.ReLU(),
                                  nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x))


def make(x=None, y=None, model=None, lr=0.05, optimizer="adamw", valid=None, callbacks=(), loss=None):
    torch.manual_seed(0)
    if x is None:
        x, y = blobs()
    train = ArrayLoader(x, y, batch_size=32, shuffle=True)
    return Learner(model or MLP(x.shape[1], int(y.max()) + 1), (train, valid), loss=loss, optimizer=optimizer,
                   lr=lr, callbacks=callbacks, metrics=["accuracy"], device="cpu")


def failed(report):
    return [c.name for c in report.failed]


class Counter(Callback):
    def __init__(self):
        self.calls = 0

    def before_batch(self):
        self.calls += 1


def test_learnable_data_pass_every_check_and_the_learner_is_left_exactly_as_it_was():
    counter = Counter()
    x, y = blobs()
    learner = make(x, y, valid=ArrayLoader(*blobs(60, seed=1), batch_size=30), callbacks=[counter],
                   loss=nn.CrossEntropyLoss(label_smoothing=0.1))
    learner.fit(1)  # optimizer state, BatchNorm buffers and a history to protect
    weights = {k: v.clone() for k, v in learner.model.state_dict().items()}
    saved = learner.optimizer.state_dict()["state"]
    optimizer_state = {i: {k: v.clone() for k, v in s.items()} for i, s in saved.items()}
    state, history, calls = learner.state.state_dict(), list(learner.history), counter.calls
    optimizer = learner.optimizer
    learner.model.eval()
    torch_rng, py_rng, np_rng = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()

    report = learner.overfit_batch(max_steps=300)

    assert report.passed, str(report)
    assert [c.name for c in report.checks] == list(CHECKS)
    assert report["overfit"].passed and report["overfit"].value["last_loss"] <= 0.05
    assert report["overfit"].value["accuracy"] == 1.0
    assert report["lr_sweep"].passed is None  # not needed: the batch was overfit
    assert any("label smoothing 0.1" in note for note in report.settings["notes"])
    for key, value in learner.model.state_dict().items():  # weights and BatchNorm buffers, bit for bit
        assert torch.equal(value, weights[key]), key
    assert learner.optimizer is optimizer
    for i, s in learner.optimizer.state_dict()["state"].items():
        for k, v in s.items():
            assert torch.equal(v, optimizer_state[i][k])
    assert learner.state.state_dict() == state and learner.history == history
    assert counter.calls == calls and learner.callbacks == [counter]
    assert learner.model.training is False
    assert all(p.grad is None for p in learner.model.parameters())
    assert torch.equal(torch.get_rng_state(), torch_rng) and random.getstate() == py_rng
    assert (np.random.get_state()[1] == np_rng).all()
    as_dict = report.to_dict()
    assert as_dict["passed"] is True and as_dict["failed"] == []
    assert {tuple(sorted(c)) for c in as_dict["checks"]} == {("message", "name", "passed", "value")}


def test_dropout_is_off_for_the_overfit_and_its_mode_restored():
    model = MLP()
    model.body.append(nn.Dropout(0.9))  # in training mode no batch could be fit exactly
    learner = make(model=model)
    report = learner.overfit_batch(max_steps=300, skip=["lr_sweep"])
    assert report["overfit"].passed, str(report)
    assert "Dropout off for the check" in report.settings["notes"]
    assert model.body[-1].training is True  # a fresh model is in training mode, and stays so


def test_shuffled_labels_are_named():
    x, y = blobs()
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(3))]
    report = make(x, shuffled).overfit_batch(max_steps=300)
    assert failed(report) == ["label_signal"], str(report)  # a network memorises a batch of random labels
    check = report["label_signal"]
    assert "shuffled" in check.message and check.value["z"] < 3
    assert make(x, y).overfit_batch(max_steps=1, skip=["overfit"])["label_signal"].value["z"] > 10


def test_constant_labels_are_named():
    x, _ = blobs()
    report = make(x, torch.full((len(x),), 2), model=MLP(classes=3)).overfit_batch(max_steps=50)
    assert "labels_constant" in failed(report)
    assert "every training label is class 2" in report["labels_constant"].message
    assert report["label_signal"].passed is None  # one class: nothing to test


def test_a_frozen_model_is_named_and_not_trained():
    learner = make()
    learner.model.requires_grad_(False)
    report = learner.overfit_batch(max_steps=20)
    assert failed(report) == ["trainable"]
    assert "frozen" in report["trainable"].message
    assert report["overfit"].passed is None and "no trainable parameter" in report["overfit"].message
    assert not any(p.requires_grad for p in learner.model.parameters())  # left as it was


class Detached(MLP):
    """The first layer's output is detached: no gradient reaches it."""

    def forward(self, x):
        hidden = self.body[0](x).detach()
        return self.head(self.body[4](self.body[3](self.body[2](self.body[1](hidden)))))


def test_a_layer_without_gradient_is_named():
    report = make(model=Detached()).overfit_batch(max_steps=30)
    assert "gradient_flow" in failed(report)
    assert report["gradient_flow"].value["without_gradient"] == ["body.0.weight", "body.0.bias"]
    assert "body.0.weight" in report["gradient_flow"].message


def test_a_learning_rate_too_low_is_named_with_a_better_one():
    report = make(lr=1e-9).overfit_batch(max_steps=40)
    assert failed(report) == ["overfit", "lr_sweep"]
    sweep = report["lr_sweep"]
    assert "too low" in sweep.message and sweep.value["best_lr"] >= 1e-3
    assert len(sweep.value["sweep"]) == 7


def test_a_diverging_learning_rate_is_named():
    report = make(lr=1e4, optimizer="sgd").overfit_batch(max_steps=40)
    assert "overfit" in failed(report) and "lr_sweep" in failed(report)
    assert "diverges" in report["lr_sweep"].message
    assert report["lr_sweep"].value["best_lr"] < 1e4


def test_inputs_far_from_zero_mean_unit_std_are_named():
    x, y = blobs()
    report = make(x * 40 + 120, y).overfit_batch(max_steps=1, skip=["overfit"])
    assert failed(report) == ["input_normalization"]
    assert "not normalised" in report["input_normalization"].message
    assert min(report["input_normalization"].value["mean"]) > 50


def test_a_data_and_label_count_mismatch_is_named():
    x, y = blobs()
    learner = make(x, y)
    learner.data = DataLoaders(ArrayLoader(x, y[:150], batch_size=32, shuffle=True))
    report = learner.overfit_batch(max_steps=20)
    assert "data_label_count" in failed(report)
    assert report["data_label_count"].value["data_inputs"] == 192
    assert report["data_label_count"].value["data_targets"] == 150
    assert report["overfit"].passed is None


class DeadHead(MLP):
    """A ReLU after the output layer, whose bias is so negative that every output is 0."""

    def __init__(self):
        super().__init__()
        self.out = nn.ReLU()
        nn.init.constant_(self.head.bias, -100.0)

    def forward(self, x):
        return self.out(super().forward(x))


def test_dead_outputs_are_named():
    report = make(model=DeadHead()).overfit_batch(max_steps=20, sweep_steps=5)
    assert "dead_outputs" in failed(report) and "overfit" in failed(report)
    assert report["dead_outputs"].value["dead_relu_layers"] == ["out"]
    assert "same for every input" in report["dead_outputs"].message


def test_duplicates_between_the_splits_are_named_by_file(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / name / f"{i:02d}.png")
    for i in range(10):  # byte-identical copies under other names: the split scatters them over both sides
        (tmp_path / "a" / f"copy{i:02d}.png").write_bytes((tmp_path / "a" / f"{i:02d}.png").read_bytes())
    data = image_folder_loaders(tmp_path, valid_pct=0.4, batch_size=8, augment=None, progress=False, workers=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    learner = Learner(model, data, optimizer="adamw", lr=1e-2, device="cpu")
    report = learner.overfit_batch(max_steps=1, skip=["overfit", "label_signal"])
    check = report["duplicates"]
    assert check.passed is False and check.value["duplicates"] >= 1
    pair = check.value["examples"][0]
    stem = lambda name: name.split("/")[-1].replace("copy", "")  # noqa: E731
    assert stem(pair["train"]) == stem(pair["valid"]) and pair["train"] != pair["valid"]
    assert pair["valid"] in check.message


def test_duplicates_of_uint8_image_rows():
    images = torch.randint(0, 256, (12, 3, 4, 4), dtype=torch.uint8)
    images[9] = images[2]
    targets = torch.arange(12) % 2
    train = ImageLoader(images, targets, rows=list(range(8)), batch_size=4)
    valid = ImageLoader(images, targets, rows=[8, 9, 10, 11], batch_size=4, shuffle=False)
    from epochal.diagnostics import duplicates_check

    check = duplicates_check(train, valid)
    assert check.passed is False and check.value["duplicates"] == 1
    assert check.value["examples"] == [{"train": "sample 2", "valid": "sample 1"}]
    assert duplicates_check(train, ImageLoader(images, targets, rows=[8, 10, 11], batch_size=4)).passed


def test_unknown_check_names_and_bad_arguments_are_refused():
    learner = make()
    with pytest.raises(ValueError, match="did you mean 'duplicates'"):
        learner.overfit_batch(skip=["duplicate"])
    with pytest.raises(ValueError, match="max_steps"):
        learner.overfit_batch(max_steps=0)


def test_a_learner_in_a_data_parallel_job_is_refused_naming_the_way_out():
    from epochal.distributed import World

    learner = make()
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.strategy.world = World(rank=1, world_size=2, local_world_size=2)  # rank 1 as the check sees it
    with pytest.raises(ValueError, match=r"rank 1 of a data-parallel job of 2.*without torchrun/--nproc"):
        learner.overfit_batch()
    assert all(torch.equal(v, before[k]) for k, v in learner.model.state_dict().items())
