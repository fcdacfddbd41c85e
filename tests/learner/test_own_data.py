"""The Learner on a user's own data: torch DataLoaders, IterableDatasets, dict batches, NumPy arrays."""

from __future__ import annotations

import csv
import io
import json
import warnings

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from epochal.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, ProgressBar
from epochal.callbacks.base import Callback
from epochal.data import TensorLoader, from_loader
from epochal.learner import Learner
from epochal.schedules import one_cycle


def points(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def callbacks(tmp_path):
    return [ProgressBar(console=Console(file=io.StringIO(), force_terminal=True)),
            ModelCheckpoint(monitor="valid/accuracy"), EarlyStopping("valid/accuracy", patience=5),
            CSVLogger(tmp_path / "log.csv")]


def test_a_shuffled_dataloader_trains_exactly_like_epochals_own_loader(tmp_path):
    x, y = points()
    valid = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=10)
    runs = {}
    for kind, train in {
        "torch": DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True),
        "epochal": TensorLoader(x[:64], y[:64], batch_size=16, shuffle=True, seed=0),
    }.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner = Learner(mlp(), (train, valid), metrics=["accuracy"], callbacks=callbacks(tmp_path / kind),
                              device="cpu", seed=0, run_dir=tmp_path / kind / "run")
        learner.fit(one_cycle(3, 0.05))
        runs[kind] = learner
    assert runs["torch"].history == runs["epochal"].history
    for a, b in zip(runs["torch"].model.parameters(), runs["epochal"].model.parameters()):
        assert torch.equal(a, b)
    for kind in runs:
        summary = json.loads((tmp_path / kind / "run" / "summary.json").read_text())
        assert summary["steps"] == 12 and summary["mid_epoch_resume"]["exact"] is True
        assert (tmp_path / kind / "run" / "checkpoints" / "best.pt").is_file()
        assert len(list(csv.DictReader((tmp_path / kind / "log.csv").open()))) == 3


class Stream(IterableDataset):
    """A user's IterableDataset: the same 80 points each pass, without a length."""

    def __init__(self):
        self.x, self.y = points(80)

    def __iter__(self):
        yield from zip(self.x, self.y)


class SizedStream(Stream):
    """``Stream`` with a ``__len__``."""

    def __len__(self):
        return 80


class CrashAt(Callback):
    """Raises after the checkpoint of ``step`` is written (ModelCheckpoint runs first)."""

    order = 200

    def __init__(self, step):
        self.step = step

    def after_step(self):
        if self.learner.state.step == self.step:
            raise RuntimeError("simulated crash")


class FirstBatch(Callback):
    def __init__(self):
        self.inputs = None

    def before_batch(self):
        if self.inputs is None and self.learner.training:
            self.inputs = self.learner.xb.clone()


def test_an_iterable_dataset_resumes_by_restarting_its_epoch_and_the_summary_says_so(tmp_path):
    x, y = points(80)
    valid = DataLoader(TensorDataset(x[:20], y[:20]), batch_size=10)

    def learner(extra):
        train = DataLoader(SizedStream(), batch_size=16)  # 5 batches a pass
        return Learner(mlp(), (train, valid), metrics=["accuracy"], device="cpu", seed=0, run_dir=tmp_path,
                       callbacks=[ModelCheckpoint(every_n_steps=1), *extra])

    with pytest.raises(RuntimeError, match="simulated crash"):
        learner([CrashAt(8)]).fit(one_cycle(3, 0.05))  # step 8 = after batch 3 of epoch 2 (1-based, as on screen)
    first = FirstBatch()
    resumed = learner([first])
    with pytest.warns(RuntimeWarning, match="after batch 3 of epoch 2, .*fresh pass"):
        resumed.fit(one_cycle(3, 0.05), resume=tmp_path)
    assert torch.equal(first.inputs, x[:16])  # the restarted epoch reads the stream from its start
    assert resumed.state.step == 15 and [r["step"] for r in resumed.history] == [5, 10, 15]
    summary = json.loads((tmp_path / "summary.json").read_text())
    statement = summary["mid_epoch_resume"]
    assert summary["status"] == "finished" and summary["steps"] == 15
    assert statement["exact"] is False and "IterableDataset" in statement["note"]
    assert statement["restarted"] == [{"epoch": 2, "batch": 3}]  # summary.json numbers epochs from 1


class Records(Dataset):
    """Hugging Face style rows: a dict per sample with names of its own."""

    def __init__(self, n=96):
        self.x, self.y = points(n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"left": self.x[i, :2], "right": self.x[i, 2:], "category": self.y[i], "row_id": i}


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.left, self.right = nn.Linear(2, 8), nn.Linear(2, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, left, right):
        return self.head(torch.relu(self.left(left) + self.right(right)))


def test_dict_batches_with_keys_of_their_own(tmp_path):
    def loader(shuffle):
        return DataLoader(Records(), batch_size=16, shuffle=shuffle)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = from_loader(loader(True), inputs=("left", "right"), targets="category")
    valid = from_loader(loader(False), inputs=("left", "right"), targets="category")
    learner = Learner(TwoInputs(), (train, valid), metrics=["accuracy"], device="cpu", callbacks=callbacks(tmp_path),
                      run_dir=tmp_path / "run")
    learner.fit(one_cycle(4, 0.1))
    assert learner.history[-1]["valid/accuracy"] > 0.8
    assert learner.validate(valid) == {k: v for k, v in learner.history[-1].items() if k.startswith("valid/")}
    assert learner.predict(valid).shape == (96, 2)
    unnamed = Learner(TwoInputs(), (loader(False), None), device="cpu")
    with pytest.raises(ValueError, match=r"keys \['left', 'right', 'category', 'row_id'\].*from_loader"):
        unnamed.fit(1)


def test_numpy_arrays_keras_style():
    x, y = points()
    x64, y32 = x.double().numpy(), y.int().numpy()
    learner = Learner(mlp(), (x64[:64], y32[:64]), valid=(x64[64:], y32[64:]), metrics=["accuracy"],
                      device="cpu", seed=0)
    assert isinstance(learner.data.train, TensorLoader) and len(learner.data.train) == 1  # batch_size 64
    learner.fit(one_cycle(5, 0.05))
    assert learner.history[-1]["valid/accuracy"] > 0.6
    assert learner.validate((x64[64:], y32[64:])) == learner.validate()
    preds, targets = learner.predict((x64[64:], y32[64:]), with_targets=True)
    assert preds.shape == (32, 2) and torch.equal(targets, y[64:])


def test_progress_bar_with_loaders_without_a_length():
    out = io.StringIO()
    train = from_loader(DataLoader(Stream(), batch_size=16), steps_per_epoch=3)
    valid = DataLoader(Stream(), batch_size=16)  # no length: an indeterminate validation bar
    bar = ProgressBar(console=Console(file=out, force_terminal=True, width=160), refresh_per_second=50)
    learner = Learner(mlp(), (train, valid), device="cpu", callbacks=[bar])
    learner.fit(2)
    assert learner.state.step == 6 and len(bar.lines) == 2
    assert "epoch 2/2" in bar.lines[-1]
    needs_steps = Learner(mlp(), (DataLoader(Stream(), batch_size=16), None), device="cpu")
    with pytest.raises(TypeError, match=r"no length.*steps_per_epoch=N"):
        needs_steps.fit(one_cycle(1, 0.1))
