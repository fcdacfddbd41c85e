"""EarlyStopping: Keras 3's stopping epochs (a table of metric sequences), restored weights, direction, exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.data.base import ArrayLoader
from epochal.events import CancelFit
from epochal.learner import Learner

LOSSES = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6, 0.5, 0.4, 0.3]


def test_stops_after_patience_and_restores_best_weights(assert_same_weights, make_learner, scripted_metric, tmp_path):
    scripted = scripted_metric(LOSSES)
    stopper = EarlyStopping("valid/loss", patience=2, restore_best_weights=True)
    learner = make_learner(tmp_path, [scripted, stopper])
    history = learner.fit(10)
    # best 0.8 at epoch 2 (epochs count from 1); epochs 3 and 4 do not improve: stop at the end of epoch 4
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch, stopper.wait) == (0.8, 2, 4, 2)
    assert learner.state.step == 4 * 4
    assert_same_weights(learner.model.state_dict(), scripted.weights[1])
    assert not torch.equal(scripted.weights[1]["weight"], scripted.weights[3]["weight"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["epochs"] == 4 and summary["final"]["epoch"] == 4
    assert summary["stop_reason"].startswith("EarlyStopping: valid/loss did not improve") and "epoch 2" in summary[
        "stop_reason"]
    # the model holds epoch 2's weights: the summary says so, and best.pt is not there to hold them
    weights = summary["final_weights"]
    assert (weights["source"], weights["epoch"], weights["step"]) == ("best", 2, 8)
    assert weights["metrics"] == {"valid/loss": 0.8, "valid/accuracy": learner.history[1]["valid/accuracy"]}
    assert weights["checkpoint"] is None and "restored by EarlyStopping(restore_best_weights=True)" in weights[
        "description"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4  # the last epoch is recorded


def test_without_restore_keeps_last_weights_and_patience_zero(
    assert_same_weights, make_learner, scripted_metric, tmp_path
):
    scripted = scripted_metric(LOSSES)
    stopper = EarlyStopping(patience=0)
    learner = make_learner(tmp_path, [scripted, stopper])
    learner.fit(10)
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 2
    assert_same_weights(learner.model.state_dict(), scripted.weights[2])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["final_weights"]["source"] == "last"  # 3 epochs ran, not "2"


def test_direction_comes_from_the_metric(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping("accuracy", patience=2)  # a bare name means valid/accuracy
    scripted = scripted_metric([0.5, 0.6, 0.55, 0.58, 0.9], key="valid/accuracy")
    make_learner(tmp_path, [scripted, stopper]).fit(5)
    assert stopper.monitor == "valid/accuracy" and stopper.higher_is_better is True
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch) == (0.6, 2, 4)


def test_mode_overrides_the_declared_direction(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping("valid/accuracy", patience=1, mode="min")
    make_learner(tmp_path, [scripted_metric([0.5, 0.6, 0.7], key="valid/accuracy"), stopper]).fit(3)
    assert stopper.higher_is_better is False and stopper.stopped_epoch == 2 and stopper.best == 0.5


NAN = float("nan")

# Keras 3's rule, epoch by epoch from `start_from_epoch` on: (1) wait += 1; (2) a value that beats the
# best by more than min_delta becomes the best, never stops the fit, and resets wait only if it
# also beats the baseline; (3) otherwise stop once wait >= patience, but never at epoch 0. Losses
# (lower is better) unless the row monitors valid/accuracy. Each row is worked out by hand from
# that rule; "fails today" rows failed on the callback before Keras parity, "guard" rows already
# matched and keep matching. The table and its comments index epochs from 0 as Keras does inside
# (index i is values[i]); the callback's attributes number them from 1, so they are index + 1.
KERAS_STOPS = [
    # Keras' own test_early_stopping_patience: best 8 at epoch 2, then wait 1, 2, 3 at epochs 3, 4, 5,
    # so patience p stops at epoch max(p, 1) + 2 (patience 0 and 1 both stop at the first bad epoch).
    # Guard.
    pytest.param([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], {"patience": 0}, 3, 2, id="keras-patience-0"),
    pytest.param([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], {"patience": 1}, 3, 2, id="keras-patience-1"),
    pytest.param([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], {"patience": 2}, 4, 2, id="keras-patience-2"),
    pytest.param([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], {"patience": 3}, 5, 2, id="keras-patience-3"),
    # Keras' default patience=0: epoch 2 (0.95) is the first that does not improve: stop there.
    # Fails today (the default was patience=3: no stop in 4 epochs).
    pytest.param([1.0, 0.9, 0.95, 0.8], {}, 2, 1, id="default-patience-0"),
    # baseline 0.5 never beaten but every epoch to 4 improves: wait 1..5 without a stop (improving
    # epochs never stop); epoch 5 (0.55, equal) does not improve and wait 6 >= 2: stop at 5.
    # Fails today (stopped at epoch 1, while still improving).
    pytest.param([0.9, 0.8, 0.7, 0.6, 0.55, 0.55], {"patience": 2, "baseline": 0.5}, 5, 4,
                 id="baseline-improving-never-stops"),
    # epochs 0, 1 improve below the baseline (wait 1, 2, no stop); epoch 2 (0.4) beats best and
    # baseline: wait 0; epochs 3, 4 do not improve: wait 1, 2 -> stop at 4. Fails today (stopped at 1).
    pytest.param([0.9, 0.8, 0.4, 0.45, 0.5, 0.3], {"patience": 2, "baseline": 0.5}, 4, 2,
                 id="baseline-beaten-later"),
    # Keras' test_early_stopping_final_weights_when_restoring_model_weights (second case): wait 1, 2,
    # 3 while improving to 0.7 at epoch 2, then 4, 5 -> stop at 4, restore epoch 2. Guard.
    pytest.param([0.9, 0.8, 0.7, 0.71, 0.72, 0.73], {"patience": 5, "baseline": 0.5, "restore_best_weights": True},
                 4, 2, id="keras-baseline-restore"),
    # 0.4 beats the baseline at once (wait 0), then wait 1, 2 -> stop at 2. Guard.
    pytest.param([0.4, 0.45, 0.42, 0.3], {"patience": 2, "baseline": 0.5}, 2, 0, id="baseline-beaten-first"),
    # improving all the way, the baseline beaten at epoch 3 (0.2): no stop, epoch 3 restored.
    # Fails today (stopped at epoch 1 and restored epoch 1).
    pytest.param([0.9, 0.8, 0.7, 0.2], {"patience": 2, "baseline": 0.5, "restore_best_weights": True},
                 None, 3, id="baseline-restore-improving"),
    # epochs 0, 1 are ignored; epoch 2 (3.0) is the first watched value, the best; 2.5 improves;
    # epoch 4 (2.6): wait 1 >= 1 -> stop at 4. Fails today (no start_from_epoch; the rule alone would
    # have stopped at epoch 1).
    pytest.param([1.0, 2.0, 3.0, 2.5, 2.6, 2.7], {"patience": 1, "start_from_epoch": 2}, 4, 3, id="start-from-epoch"),
    # Keras' boundary case patience=0: epoch 3 is the first watched (the best), epoch 4 does not
    # improve: stop at 4. Fails today.
    pytest.param([5.0, 6.0, 7.0, 8.0, 9.0], {"patience": 0, "start_from_epoch": 3}, 4, 3,
                 id="start-from-epoch-patience-0"),
    # the warm-up is longer than the fit: nothing is watched, no best, no stop. Fails today.
    pytest.param([1.0, 2.0, 3.0], {"patience": 0, "start_from_epoch": 5}, None, None, id="start-after-the-fit"),
    # warm-up values that beat the baseline do not count; 0.9 and 0.8 improve below it (wait 1, 2),
    # epoch 4 (0.8, equal) does not: wait 3 >= 1 -> stop at 4. Fails today.
    pytest.param([0.2, 0.2, 0.9, 0.8, 0.8, 0.7], {"patience": 1, "start_from_epoch": 2, "baseline": 0.5}, 4, 3,
                 id="start-from-epoch-with-baseline"),
    # min_delta 0.125 (binary-exact values, so the strict comparisons are exact): 0.875 is not below
    # 1 - 0.125 (wait 1); 0.75 is below 0.875 (best, wait 0); 0.6875 and 0.625 are not below
    # 0.625: wait 1, 2 -> stop at 4. Guard.
    pytest.param([1.0, 0.875, 0.75, 0.6875, 0.625, 0.5], {"patience": 2, "min_delta": 0.125}, 4, 2, id="min-delta"),
    # the same on accuracy (higher is better, read from the metric): 0.625 is not above 0.5 + 0.125;
    # 0.75 is; 0.8125 and 0.875 are not above 0.875 -> stop at 4. Guard.
    pytest.param([0.5, 0.625, 0.75, 0.8125, 0.875], {"monitor": "valid/accuracy", "patience": 2, "min_delta": 0.125},
                 4, 2, id="min-delta-max"),
    # mode="max" forced on a loss: 1.5 is the best, 1.25 does not improve -> stop at 2. Guard.
    pytest.param([1.0, 1.5, 1.25, 1.25], {"patience": 1, "mode": "max"}, 2, 1, id="mode-max"),
    # torch's relative threshold 0.1: 9.5 is not below 10 * 0.9 (wait 1); 8.9 is below 9.0 (best);
    # 8.5 and 8.2 are not below 8.9 * 0.9 = 8.01: wait 1, 2 -> stop at 4. Fails today.
    pytest.param([10.0, 9.5, 8.9, 8.5, 8.2, 8.15], {"patience": 2, "min_delta": 0.1, "threshold_mode": "rel"},
                 4, 2, id="rel-min"),
    # the same values with the default absolute 0.1: every epoch to 4 improves by more than 0.1,
    # 8.15 does not (wait 1 < 2): no stop. Guard (and the contrast with the row above).
    pytest.param([10.0, 9.5, 8.9, 8.5, 8.2, 8.15], {"patience": 2, "min_delta": 0.1}, None, 4, id="abs-min"),
    # relative 0.1 on accuracy: 0.54 is not above 0.5 * 1.1 (wait 1); 0.56 is above 0.55 (best);
    # 0.6 and 0.61 are not above 0.56 * 1.1 = 0.616: wait 1, 2 -> stop at 4. Fails today.
    pytest.param([0.5, 0.54, 0.56, 0.6, 0.61, 0.62],
                 {"monitor": "valid/accuracy", "patience": 2, "min_delta": 0.1, "threshold_mode": "rel"},
                 4, 2, id="rel-max"),
    # NaN never improves: wait 1 at epoch 1, 0.9 is the new best, NaN twice: wait 1, 2 -> stop at 4.
    # Guard.
    pytest.param([1.0, NAN, 0.9, NAN, NAN], {"patience": 2}, 4, 2, id="nan-later"),
    # a NaN first value: wait 1 >= 1, but Keras never stops at epoch 0; 1.0 is the best, 1.1 is
    # not: stop at 2. Fails today (stopped at epoch 0). (Keras versions whose best starts at +inf
    # agree; recent Keras, whose best starts as None, would take the NaN as its best for good.)
    pytest.param([NAN, 1.0, 1.1], {"patience": 1}, 2, 1, id="nan-first"),
    # nothing ever improves: the first watched epoch's weights stand in for the best (Keras), wait
    # 1, 2 -> stop at 1, restore epoch 0. Fails today (nothing restored, best_epoch None).
    pytest.param([NAN, NAN, NAN], {"patience": 2, "restore_best_weights": True}, 1, 0, id="nan-only-restores-first"),
]


@pytest.mark.parametrize(("values", "kwargs", "stopped_epoch", "best_epoch"), KERAS_STOPS)
def test_stops_where_keras_stops(assert_same_weights, make_learner, scripted_metric,
                                 values, kwargs, stopped_epoch, best_epoch):
    stopper = EarlyStopping(**kwargs)
    scripted = scripted_metric(values, key=stopper.monitor)
    learner = make_learner(None, [scripted, stopper])
    history = learner.fit(len(values))
    number = {None: None, **{i: i + 1 for i in range(len(values))}}  # index -> epoch number
    assert (stopper.stopped_epoch, stopper.best_epoch) == (number[stopped_epoch], number[best_epoch])
    assert len(history) == (len(values) if stopped_epoch is None else stopped_epoch + 1)
    improved = best_epoch is not None and not math.isnan(values[best_epoch])
    assert stopper.best == (values[best_epoch] if improved else None)
    if stopper.restore_best_weights:
        assert_same_weights(learner.model.state_dict(), scripted.weights[best_epoch])


def test_restores_the_best_weights_when_another_callback_cancels(assert_same_weights, make_learner, scripted_metric):
    """Keras' third restoring case: another callback stops the fit at epoch 3; the best is epoch 2."""

    class StopAt3(Callback):
        order = 96  # after EarlyStopping saw the epoch

        def after_epoch(self):
            if self.learner.state.epoch == 3:
                raise CancelFit("another callback")

    scripted = scripted_metric([0.9, 0.8, 0.7, 0.71, 0.72, 0.73])
    stopper = EarlyStopping(patience=5, baseline=0.5, restore_best_weights=True)
    learner = make_learner(None, [scripted, stopper, StopAt3()])
    assert len(learner.fit(6)) == 4
    assert stopper.stopped_epoch is None and stopper.best_epoch == 3
    assert_same_weights(learner.model.state_dict(), scripted.weights[2])


def test_unknown_monitor_raises_at_the_first_epoch_with_the_available_keys(make_learner, tmp_path):
    learner = make_learner(tmp_path, [EarlyStopping("valid/acc")])
    with pytest.raises(KeyError, match=r"valid/acc.*did you mean 'valid/accuracy'.*available keys.*valid/loss"):
        learner.fit(3)
    assert len(learner.history) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patience": -1}, "patience must be an int >= 0"),
    ({"patience": 1.5}, "patience must be an int >= 0"),
    ({"start_from_epoch": -1}, "start_from_epoch must be an int >= 0"),
    ({"mode": "lowest"}, "mode must be 'auto', 'min' or 'max', got 'lowest'"),
    ({"threshold_mode": "relative"}, "threshold_mode must be 'abs' or 'rel', got 'relative'"),
    ({"min_delta": -0.1}, "min_delta must be >= 0"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=f"EarlyStopping: {message}"):
        EarlyStopping(**kwargs)


def test_defaults_are_keras_and_arguments_after_monitor_are_keywords():
    stopper = EarlyStopping()
    assert (stopper.monitor, stopper.patience, stopper.min_delta, stopper.baseline, stopper.start_from_epoch,
            stopper.restore_best_weights, stopper.threshold_mode) == ("valid/loss", 0, 0.0, None, 0, False, "abs")
    with pytest.raises(TypeError):
        EarlyStopping("valid/loss", 3)  # Keras' second positional is min_delta, epochal's was patience


def test_state_dict_round_trip(assert_same_weights, make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping(patience=3, restore_best_weights=True)
    make_learner(tmp_path, [scripted_metric(LOSSES), stopper]).fit(3)
    state = stopper.state_dict()
    copy = EarlyStopping(patience=3, restore_best_weights=True)
    copy.load_state_dict(state)
    assert (copy.best, copy.best_epoch, copy.wait, copy.higher_is_better) == (0.8, 2, 1, False)
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
    assert stopper.stopped_epoch == 4 and stopper.best_epoch == 2 and len(resumed.history) == 4
    assert_same_weights(resumed.model.state_dict(), reference.model.state_dict())


@pytest.mark.parametrize("crash_epoch", [0, 1, 2, 3])  # in the warm-up, at its last epoch, watched
def test_resume_with_a_warm_up_stops_at_the_same_epoch(
    assert_same_weights, crash_at, make_learner, scripted_metric, tmp_path, crash_epoch
):
    values = [0.2, 0.2, 0.9, 0.8, 0.8, 0.7]  # the start-from-epoch-with-baseline row: stop at index 4, best 3

    def stopper():
        return EarlyStopping(patience=1, start_from_epoch=2, baseline=0.5, restore_best_weights=True)

    reference = make_learner(tmp_path / "a", [scripted_metric(values), stopper()])
    reference.fit(6)
    crashed = make_learner(tmp_path / "b",
                           [scripted_metric(values), stopper(), ModelCheckpoint(), crash_at(crash_epoch)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(6)
    resumed_stopper = stopper()
    resumed = make_learner(tmp_path / "b", [scripted_metric(values), resumed_stopper, ModelCheckpoint()])
    resumed.fit(6, resume=tmp_path / "b")
    assert (resumed_stopper.stopped_epoch, resumed_stopper.best_epoch, resumed_stopper.wait) == (5, 4, 3)
    assert len(resumed.history) == 5
    assert_same_weights(resumed.model.state_dict(), reference.model.state_dict())


def test_a_new_fit_starts_from_a_clean_state(make_learner, scripted_metric, tmp_path):
    stopper = EarlyStopping(patience=2)
    learner = make_learner(tmp_path, [scripted_metric(LOSSES), stopper])
    learner.fit(10)
    assert stopper.stopped_epoch == 4
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
    assert stopper.stopped_epoch == 2 and stopper.best == history[0]["train/loss"]
    assert "valid/loss" not in history[0]
