"""TensorBoard: scalars, histograms and hparams read back from the event files; resume purges."""

from __future__ import annotations

import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from epochal.callbacks.base import Callback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.tensorboard import TensorBoard, flatten_hparams


def load_events(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_epoch_and_running_scalars(make_learner, tmp_path):
    learner = make_learner(tmp_path, [TensorBoard()], log_every=2)
    history = learner.fit(3)
    events = load_events(tmp_path / "tensorboard")
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "valid/loss", "valid/accuracy", "lr", "epoch", "running/loss", "running/lr",
            "lr/group_0", "lr/group_1"} <= tags
    for key in ("train/loss", "valid/loss", "valid/accuracy"):
        assert [s for s, _ in scalars(events, key)] == [4, 8, 12]
        assert [v for _, v in scalars(events, key)] == pytest.approx([r[key] for r in history], rel=1e-6)
    assert [v for _, v in scalars(events, "epoch")] == [1, 2, 3]  # the epochs' numbers, as on the screen
    running = scalars(events, "running/loss")
    assert [s for s, _ in running] == [2, 4, 6, 8, 10, 12]
    # the two running losses of an epoch average to the epoch's training loss (equal batch sizes)
    assert (running[4][1] + running[5][1]) / 2 == pytest.approx(history[2]["train/loss"], rel=1e-5)
    assert [v for _, v in scalars(events, "running/lr")] == pytest.approx([0.1] * 6)


def test_histograms_every_n_epochs(make_learner, tmp_path):
    weights = {}

    class Keep(Callback):
        def after_epoch(self):
            weights[self.learner.state.step] = self.learner.model.weight.detach().clone()

    make_learner(tmp_path, [Keep(), TensorBoard(histogram_every=2)]).fit(4)
    events = load_events(tmp_path / "tensorboard")
    assert set(events.Tags()["histograms"]) == {"weights/weight", "weights/bias", "grads/weight", "grads/bias"}
    for tag in ("weights/weight", "grads/weight"):
        assert [h.step for h in events.Histograms(tag)] == [8, 16]  # epochs 2 and 4
    for h in events.Histograms("weights/weight"):
        value = h.histogram_value
        assert value.num == 8
        assert (value.min, value.max) == pytest.approx((weights[h.step].min().item(), weights[h.step].max().item()))
    grads = events.Histograms("grads/weight")[0].histogram_value
    assert grads.num == 8 and grads.max > grads.min


def _hparams(events):
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: (v.number_value if v.HasField("number_value") else v.string_value) for k, v in info.hparams.items()}


def test_hparams_from_the_flattened_config_with_final_metrics(make_learner, tmp_path):
    config = {"optim": {"name": "sgd", "lr": 0.1, "betas": [0.9, 0.99]}, "epochs": 2, "note": None}
    learner = make_learner(tmp_path, [TensorBoard()], config=config)
    history = learner.fit(2)
    events = load_events(tmp_path / "tensorboard")
    assert _hparams(events) == {"optim.name": "sgd", "optim.lr": 0.1, "optim.betas": "[0.9, 0.99]",
                                "epochs": 2.0, "note": "None"}
    for key in ("valid/loss", "valid/accuracy", "train/loss"):
        assert scalars(events, f"hparam/{key}")[0][1] == pytest.approx(history[-1][key], rel=1e-6)


def test_hparams_default_to_the_learner_settings_or_given_ones(make_learner, tmp_path):
    make_learner(tmp_path / "a", [TensorBoard()]).fit(1)
    recorded = _hparams(load_events(tmp_path / "a" / "tensorboard"))
    assert recorded["optimizer"] == "sgd" and recorded["lr"] == pytest.approx(0.1)
    assert recorded["batch_size"] == 16 and recorded["model"] == "Linear" and recorded["epochs"] == 1
    make_learner(None, [TensorBoard(tmp_path / "b", hparams={"width": 64})]).fit(1)
    assert _hparams(load_events(tmp_path / "b")) == {"width": 64.0}


def test_resume_purges_what_the_crashed_run_logged_after_its_checkpoint(make_learner, tmp_path):
    class CrashAtStep(Callback):
        order = 200

        def after_batch(self):
            if self.learner.training and self.learner.state.step == 10:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        make_learner(tmp_path, [TensorBoard(), ModelCheckpoint(), CrashAtStep()], log_every=2).fit(3)
    learner = make_learner(tmp_path, [TensorBoard(), ModelCheckpoint()], log_every=2)
    history = learner.fit(3, resume=tmp_path)  # resumes at step 8: the crashed run's step-10 value is purged
    events = load_events(tmp_path / "tensorboard")
    assert [s for s, _ in scalars(events, "running/loss")] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in scalars(events, "valid/loss")] == [4, 8, 12]
    assert scalars(events, "valid/loss")[2][1] == pytest.approx(history[2]["valid/loss"], rel=1e-6)


def test_errors_name_the_extra_and_the_missing_folder(make_learner, monkeypatch):
    with pytest.raises(ValueError, match="run_dir.*log_dir"):
        make_learner(None, [TensorBoard()]).fit(1)
    with pytest.raises(ValueError, match="histogram_every"):
        TensorBoard(histogram_every=0)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"epochal\[tensorboard\]"):
        TensorBoard()


def test_flatten_hparams():
    assert flatten_hparams({"a": {"b": {"c": 1}, "d": True}, "e": (1, 2), "f": "x"}) == {
        "a.b.c": 1, "a.d": True, "e": "(1, 2)", "f": "x"}
