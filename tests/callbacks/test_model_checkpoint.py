"""ModelCheckpoint: best.pt at the best epoch, last.pt at every cadence, mid-epoch resume, NaN guard."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.model_checkpoint import ModelCheckpoint, weights_are_finite
from epochal.state import load_checkpoint


class CrashAtStep(Callback):
    order = 200

    def __init__(self, step):
        self.step = step

    def after_batch(self):
        if self.learner.training and self.learner.state.step == self.step:
            raise RuntimeError("simulated crash")


def test_best_and_last_hold_the_right_epochs(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric([1.0, 0.6, 0.8, 0.7])
    checkpoint = ModelCheckpoint()
    make_learner(tmp_path, [scripted, checkpoint]).fit(4)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert_same_weights(best["model"], scripted.weights[1])
    assert best["state"]["epoch"] == 2 and best["state"]["step"] == 8 and len(best["history"]) == 2
    assert best["callbacks"]["model_checkpoint"]["best"] == 0.6
    assert_same_weights(last["model"], scripted.weights[3])
    assert last["state"]["epoch"] == 4 and last["state"]["step"] == 16
    assert (checkpoint.best, checkpoint.best_epoch) == (0.6, 2)  # the second epoch: epochs count from 1


def test_best_follows_the_metric_direction(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric([0.5, 0.7, 0.6], key="valid/accuracy")
    checkpoint = ModelCheckpoint(monitor="accuracy")
    learner = make_learner(tmp_path, [scripted, checkpoint])
    learner.fit(3)
    assert checkpoint.higher_is_better is True and checkpoint.best_epoch == 2
    learner.load_checkpoint(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert_same_weights(learner.model.state_dict(), scripted.weights[1])


def test_mid_epoch_checkpoints_resume_exactly(assert_same_weights, make_learner, tmp_path):
    reference = make_learner(tmp_path / "a", [])
    reference.fit(3)

    crashed = make_learner(tmp_path / "b", [ModelCheckpoint(every_n_steps=3), CrashAtStep(7)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(3)
    last = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    # written at step 6 = the second batch of epoch 1: resume at epoch 1, batch 2
    assert {k: last["state"][k] for k in ("epoch", "batch", "step")} == {"epoch": 1, "batch": 2, "step": 6}

    resumed = make_learner(tmp_path / "b", [ModelCheckpoint(every_n_steps=3)])
    resumed.fit(3, resume=tmp_path / "b")
    assert resumed.state.step == 12 and [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert_same_weights(resumed.model.state_dict(), reference.model.state_dict())


def test_every_n_epochs_and_kept_epoch_files(make_learner, tmp_path):
    make_learner(tmp_path, [ModelCheckpoint(every_n_epochs=2, keep_epochs=True, save_best=False)]).fit(5)
    folder = tmp_path / "checkpoints"
    # epochs 2 and 4 (every second one, counted from 1 as the screen does) and the last, epoch 5
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0002.pt", "epoch_0004.pt", "epoch_0005.pt", "last.pt"]
    assert load_checkpoint(folder / "epoch_0002.pt")["state"]["step"] == 8
    assert load_checkpoint(folder / "epoch_0002.pt")["history"][-1]["epoch"] == 2
    assert load_checkpoint(folder / "last.pt")["state"]["step"] == 20  # the fit's last epoch is always saved


def test_best_only_into_a_given_folder_without_run_dir(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric([1.0, 0.6, 0.8])
    make_learner(None, [scripted, ModelCheckpoint(tmp_path / "ckpt", save_last=False)]).fit(3)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.pt"]
    assert_same_weights(load_checkpoint(tmp_path / "ckpt" / "best.pt")["model"], scripted.weights[1])


def test_missing_folder_and_bad_arguments_raise(make_learner):
    with pytest.raises(ValueError, match="run_dir.*dirpath"):
        make_learner(None, [ModelCheckpoint()]).fit(1)
    with pytest.raises(ValueError, match="every_n_steps"):
        ModelCheckpoint(every_n_steps=0)
    with pytest.raises(ValueError, match="nothing would be saved"):
        ModelCheckpoint(save_best=False, save_last=False)


def test_unknown_monitor_raises_at_the_first_epoch(make_learner, tmp_path):
    learner = make_learner(tmp_path, [ModelCheckpoint(monitor="valid/f1")])
    with pytest.raises(KeyError, match=r"available keys.*valid/accuracy"):
        learner.fit(2)
    assert len(learner.history) == 1


def test_non_finite_weights_are_never_saved(assert_same_weights, make_learner, scripted_metric, tmp_path):
    class Poison(Callback):
        order = 50

        def after_epoch(self):
            if self.learner.state.epoch == 2:
                with torch.no_grad():
                    self.learner.model.weight.fill_(float("nan"))

    scripted = scripted_metric([1.0, 0.9, 0.8])
    checkpoint = ModelCheckpoint()
    with pytest.warns(RuntimeWarning, match="not finite at step 12"):
        make_learner(tmp_path, [scripted, Poison(), checkpoint]).fit(3)
    assert checkpoint.skipped == [(12, "last.pt and best.pt")] and checkpoint.best_epoch == 2
    for name in ("last.pt", "best.pt"):
        payload = load_checkpoint(tmp_path / "checkpoints" / name)
        assert payload["state"]["step"] == 8
        assert_same_weights(payload["model"], scripted.weights[1])


def test_epoch_cancelled_by_early_stopping_is_saved(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric([1.0, 0.8, 0.9])
    make_learner(tmp_path, [scripted, EarlyStopping(patience=1), ModelCheckpoint()]).fit(5)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["state"]["epoch"] == 3 and len(last["history"]) == 3
    assert last["callbacks"]["early_stopping"]["stopped_epoch"] == 3
    assert_same_weights(last["model"], scripted.weights[2])


def test_state_dict_round_trip_and_resume_keeps_the_best(make_learner, scripted_metric, tmp_path):
    values = [1.0, 0.6, 0.8, 0.7, 0.5]
    checkpoint = ModelCheckpoint()
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_learner(tmp_path, [scripted_metric(values), checkpoint, CrashAtStep(13)]).fit(5)
    copy = ModelCheckpoint()
    copy.load_state_dict(checkpoint.state_dict())
    assert (copy.best, copy.best_epoch, copy.higher_is_better) == (0.6, 2, False)

    resumed_cb = ModelCheckpoint()
    make_learner(tmp_path, [scripted_metric(values), resumed_cb]).fit(5, resume=tmp_path)
    # epoch 4 (0.7) is worse than the restored best (0.6); epoch 5 (0.5) is better
    assert (resumed_cb.best, resumed_cb.best_epoch) == (0.5, 5)
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["state"]["step"] == 20


def test_weights_are_finite():
    model = nn.Linear(2, 2)
    assert weights_are_finite(model)
    with torch.no_grad():
        model.bias[0] = float("inf")
    assert not weights_are_finite(model)
