"""EarlyStopping: the stopping epoch, restored weights, baseline, direction and exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.data.base import ArrayLoader
from epochal.learner import Learner

LOSSES = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6, 0.5, 0.4, 0.3]


def test_stops_after_patience_and_restores_best_weights(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric(LOSSES)
    stopper = EarlyStopping("valid/loss", patience=2, restore_best_weights=True)
    learner = make_learner(tmp_path, [scripted, stopper])
    history = learner.fit(10)
    # best 0.8 at epoch 1; epochs 2 and 3 do not improve: stop at the end of epoch 3
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch, stopper.wait) == (0.8, 1, 3, 2)
    assert learner.state.step == 4 * 4
    assert_same_weights(learner.model.state_dict(), scripted.weights[1])
    assert not torch.equal(scripted.weights[1]["weight"], scripted.weights[3]["weight"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped"
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4  # the last epoch is recorded


def test_without_restore_keeps_last_weights_and_patience_zero(
    assert_same_weights, make_learner, scripted_metric, tmp_path
):
    scripted = scripted_metric(LOSSES)
    stopper = EarlyStopping(patience=0)
    learner = make_learner(tmp_path, [scripted, stopper])
    learner.fit(10)
    assert stopper.stopped_epoch == 2 and stopper.best_epoch == 1
    assert_same_weights(learner.model.state_dict(), scripted.weights[2])


def test_min_delta_counts_small_gains_as_no_improvement(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    learner = make_learner(tmp_path, [scripted_metric([1.0, 0.95, 0.92, 0.5, 0.4]), stopper])
    learner.fit(5)
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch) == (1.0, 0, 2)


def test_direction_comes_from_the_metric(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping("accuracy", patience=2)  # a bare name means valid/accuracy
    scripted = scripted_metric([0.5, 0.6, 0.55, 0.58, 0.9], key="valid/accuracy")
    make_learner(tmp_path, [scripted, stopper]).fit(5)
    assert stopper.monitor == "valid/accuracy" and stopper.higher_is_better is True
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch) == (0.6, 1, 3)


def test_mode_overrides_the_declared_direction(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping("valid/accuracy", patience=1, mode="min")
    make_learner(tmp_path, [scripted_metric([0.5, 0.6, 0.7], key="valid/accuracy"), stopper]).fit(3)
    assert stopper.higher_is_better is False and stopper.stopped_epoch == 1 and stopper.best == 0.5


def test_baseline_must_be_beaten_to_reset_the_counter(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric([0.9, 0.8, 0.7, 0.2])
    stopper = EarlyStopping(patience=2, baseline=0.5, restore_best_weights=True)
    learner = make_learner(tmp_path, [scripted, stopper])
    learner.fit(4)
    # no epoch beats the baseline: stop after `patience` epochs, restoring the best of them
    assert (stopper.stopped_epoch, stopper.best, stopper.best_epoch) == (1, 0.8, 1)
    assert_same_weights(learner.model.state_dict(), scripted.weights[1])


def test_unknown_monitor_raises_at_the_first_epoch_with_the_available_keys(make_learner, tmp_path):
    learner = make_learner(tmp_path, [EarlyStopping("valid/acc")])
    with pytest.raises(KeyError, match=r"valid/acc.*did you mean 'valid/accuracy'.*available keys.*valid/loss"):
        learner.fit(3)
    assert len(learner.history) == 1


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="lowest")


def test_state_dict_round_trip(assert_same_weights, make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping(patience=3, restore_best_weights=True)
    make_learner(tmp_path, [scripted_metric(LOSSES), stopper]).fit(3)
    state = stopper.state_dict()
    copy = EarlyStopping(patience=3, restore_best_weights=True)
    copy.load_state_dict(state)
    assert (copy.best, copy.best_epoch, copy.wait, copy.higher_is_better) == (0.8, 1, 1, False)
    assert_same_weights(copy.best_weights, stopper.best_weights)


def test_resume_stops_at_the_same_epoch_with_the_same_weights(
    assert_same_weights, crash_at, make_learner, scripted_metric, tmp_path
):
    reference = make_learner(
        tmp_path / "a", [scripted_metric(LOSSES), EarlyStopping(patience=2, restore_best_weights=True)]
    )
    reference.fit(10)

    crashed = make_learner(
        tmp_path / "b",
        [scripted_metric(LOSSES), EarlyStopping(patience=2, restore_best_weights=True), ModelCheckpoint(), crash_at(2)],
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(10)
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    resumed = make_learner(tmp_path / "b", [scripted_metric(LOSSES), stopper, ModelCheckpoint()])
    resumed.fit(10, resume=tmp_path / "b")
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1 and len(resumed.history) == 4
    assert_same_weights(resumed.model.state_dict(), reference.model.state_dict())


def test_a_new_fit_starts_from_a_clean_state(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping(patience=2)
    learner = make_learner(tmp_path, [scripted_metric(LOSSES), stopper])
    learner.fit(10)
    assert stopper.stopped_epoch == 3
    learner.fit(2)  # same values again from epoch 0: no early stop within two epochs
    assert stopper.stopped_epoch is None and stopper.best == 0.8 and stopper.wait == 0


def test_training_loss_can_be_monitored_without_validation(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    stopper = EarlyStopping("train/loss", patience=1, min_delta=10.0)  # nothing improves by 10
    learner = Learner(nn.Linear(4, 2), (ArrayLoader(x, y, batch_size=16), None), optimizer="sgd", lr=0.1,
                      callbacks=[stopper], device="cpu")
    history = learner.fit(5)
    assert stopper.stopped_epoch == 1 and stopper.best == history[0]["train/loss"]
    assert "valid/loss" not in history[0]
