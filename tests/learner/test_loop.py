"""The Learner's loop: events, cancellation, accumulation, clipping, precision, phases, predict."""

import pytest
import torch
from torch import nn

from epochal.callbacks.base import Callback
from epochal.data.base import ArrayLoader, DataLoaders
from epochal.events import EVENTS, CancelBatch, CancelEpoch, CancelFit, CancelTrain
from epochal.learner import Learner
from epochal.metrics import get_metric
from epochal.schedules import TrainingPhase


def make_data(n=64, batch_size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return ArrayLoader(x, y, batch_size=batch_size, shuffle=True, seed=seed), ArrayLoader(x[:20], y[:20], batch_size=7)


def make_learner(callbacks=(), **kwargs):
    torch.manual_seed(0)
    train, valid = make_data()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    kwargs.setdefault("optimizer", "sgd")
    kwargs.setdefault("lr", 0.1)
    metrics = kwargs.pop("metrics", ["accuracy"]) or ["accuracy"]
    return Learner(model, (train, valid), metrics=metrics, callbacks=callbacks, device="cpu", **kwargs)


class Recorder(Callback):
    def __init__(self):
        self.events = []
        for event in EVENTS:
            setattr(self, event, lambda e=event: self.events.append(e))


def test_event_order_for_one_epoch():
    rec = Recorder()
    learner = make_learner([rec])
    learner.fit(1)
    ev = rec.events
    assert ev[:4] == ["before_fit", "before_phase", "before_epoch", "before_train"]
    assert ev[4:14] == ["before_batch", "before_forward", "after_forward", "before_loss", "after_loss",
                        "before_backward", "after_backward", "before_step", "after_step", "after_batch"]
    assert ev.count("before_step") == 4  # 64 samples / 16
    assert ev[-4:] == ["after_validate", "after_epoch", "after_phase", "after_fit"]
    # validation batches: ceil(20 / 7) = 3, no backward or step inside validation
    val = ev[ev.index("before_validate"):]
    assert val.count("before_batch") == 3 and "before_backward" not in val


def test_unknown_event_method_is_rejected_with_suggestion():
    class Typo(Callback):
        def after_epcoh(self):
            """A typo of after_epoch: attaching must fail."""

    with pytest.raises(AttributeError, match="after_epoch"):
        make_learner([Typo()])


def test_callbacks_added_or_removed_for_a_block_are_restored_also_on_error():
    rec = Recorder()
    learner = make_learner([rec])
    extra = Recorder()
    with pytest.raises(RuntimeError, match="inside"), learner.added_callbacks(extra):
        assert learner.callbacks == [rec, extra] and learner.get_callback(Recorder) is rec
        raise RuntimeError("inside")
    assert learner.callbacks == [rec]
    with learner.removed_callbacks(rec):
        assert learner.get_callback(Recorder) is None
        learner.fit(1)
    assert rec.events == [] and learner.callbacks == [rec]
    learner.fit(1)
    assert rec.events[0] == "before_fit" and rec.events[-1] == "after_fit"
    with pytest.raises(TypeError, match=r"write Recorder\(\)"):
        learner.add_callback(Recorder)


def test_show_training_loop_lists_callbacks_in_order(capsys):
    class Late(Callback):
        order = 50

        def after_epoch(self):
            """Registered at after_epoch, shown after Early."""

    class Early(Callback):
        order = -5

        def after_epoch(self):
            """Registered at after_epoch, shown first."""

    learner = make_learner([Late(), Early()])
    text = learner.show_training_loop()
    line = next(line for line in text.splitlines() if line.startswith("after_epoch "))
    assert line.split()[1:] == ["Early,", "Late"]
    assert "after_epoch" in capsys.readouterr().out


def test_cancel_batch_skips_backward_and_step():
    class SkipOdd(Callback):
        def before_batch(self):
            if self.learner.training and self.learner.iteration % 2 == 1:
                raise CancelBatch

    rec = Recorder()
    learner = make_learner([SkipOdd(), rec])
    learner.fit(1)
    assert rec.events.count("after_cancel_batch") == 2
    assert rec.events.count("before_step") == 2
    assert rec.events.count("after_batch") == 4 + 3  # after_batch still runs for cancelled batches


def test_cancel_fit_runs_after_cancel_then_after_fit_and_stops():
    class StopAt(Callback):
        def after_epoch(self):
            if self.learner.state.epoch == 1:
                raise CancelFit

    rec = Recorder()
    learner = make_learner([StopAt(), rec])
    history = learner.fit(5)
    assert len(history) == 2
    assert rec.events[-2:] == ["after_cancel_fit", "after_fit"]


def test_cancel_train_still_validates_and_cancel_epoch_does_not():
    class CancelTrainAt(Callback):
        def after_batch(self):
            if self.learner.training and self.learner.iteration == 1:
                raise CancelTrain

    learner = make_learner([CancelTrainAt()])
    learner.fit(1)
    assert "valid/loss" in learner.history[0]

    class CancelEpochAt(Callback):
        def after_train(self):
            raise CancelEpoch

    rec = Recorder()
    learner = make_learner([CancelEpochAt(), rec])
    learner.fit(1)
    assert "before_validate" not in rec.events and "after_cancel_epoch" in rec.events


def test_gradient_accumulation_matches_a_larger_batch():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g)
    weights = []
    for batch_size, accum in ((16, 1), (8, 2)):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        learner = Learner(model, (ArrayLoader(x, y, batch_size=batch_size), None), optimizer="sgd", lr=0.5,
                          grad_accum=accum, device="cpu")
        learner.fit(2)
        assert learner.state.step == 4
        weights.append(model.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])


def test_clip_grad_value_and_norm():
    seen = {}

    class Grads(Callback):
        def after_step(self):
            grads = [p.grad for p in self.learner.model.parameters() if p.grad is not None]
            seen["max"] = max(seen.get("max", 0), max(float(g.abs().max()) for g in grads))
            norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
            seen["norm"] = max(seen.get("norm", 0), norm)

    make_learner([Grads()], clip_grad_value=1e-3).fit(1)
    assert seen["max"] <= 1e-3 + 1e-9
    seen.clear()
    make_learner([Grads()], clip_grad_norm=0.01).fit(1)
    assert seen["norm"] <= 0.01 * (1 + 1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_trains(precision):
    learner = make_learner(precision=precision)
    learner.fit(2)
    assert torch.isfinite(torch.tensor(learner.history[-1]["train/loss"]))
    assert learner.scaler.is_enabled() == (precision == "fp16")


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="precision"):
        make_learner(precision="fp8")
    with pytest.raises(ValueError, match="grad_accum"):
        make_learner(grad_accum=0)
    with pytest.raises(ValueError, match="epochs"):
        make_learner().fit(0)


def test_training_improves_and_history_has_train_and_valid_metrics():
    learner = make_learner()
    history = learner.fit(8)
    assert history[-1]["valid/accuracy"] >= 0.9
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert learner.metric_directions["valid/accuracy"] is True and learner.metric_directions["valid/loss"] is False


def test_validation_is_exact_over_uneven_batches():
    learner = make_learner()
    learner.fit(1)
    metrics = learner.validate()
    preds, targets = learner.predict(learner.data.valid, with_targets=True)
    expected_acc = float((preds.argmax(1) == targets).float().mean())
    expected_loss = float(nn.functional.cross_entropy(preds, targets))
    assert metrics["valid/accuracy"] == pytest.approx(expected_acc, abs=1e-7)
    assert metrics["valid/loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_predict_activations():
    learner = make_learner()
    probs = learner.predict(learner.data.valid, activation="softmax")
    assert probs.shape == (20, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(20))
    with pytest.raises(ValueError, match="activation"):
        learner.predict(learner.data.valid, activation="tanh")


class ReusedOutput(nn.Module):
    """Writes every output into the same tensor, as a model compiled with CUDA graphs
    (``compile_mode="reduce-overhead"`` or ``"max-autotune"``) does on each replay."""

    def __init__(self, model):
        super().__init__()
        self.model, self.out = model, None

    def forward(self, x):
        value = self.model(x)
        if self.out is None or self.out.shape != value.shape:
            self.out = value.clone()
        else:
            self.out.copy_(value)
        return self.out


def test_predictions_and_collected_scores_survive_an_output_buffer_reused_per_call():
    learner = make_learner(metrics=None)
    learner.fit(1)
    expected = learner.predict(learner.data.valid)
    scores = learner.validate()
    learner.model = ReusedOutput(learner.model)
    learner.metrics = [get_metric("auroc"), get_metric("accuracy")]
    reused = learner.validate()
    assert reused["valid/accuracy"] == scores["valid/accuracy"]
    learner.model = learner.model.model
    assert reused["valid/auroc"] == learner.validate()["valid/auroc"]  # scores of 3 batches collected
    learner.model = ReusedOutput(learner.model)
    torch.testing.assert_close(learner.predict(learner.data.valid), expected, rtol=0, atol=0)


def test_compile_mode_reaches_torch_compile_and_is_checked(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: calls.append(kwargs) or module)
    learner = make_learner(compile=True, compile_mode="max-autotune")
    learner.fit(1)
    assert calls[0] == {"backend": "inductor", "mode": "max-autotune"}
    make_learner(compile=True).fit(1)
    assert calls[-1] == {"backend": "inductor"}
    make_learner(compile="eager", compile_mode="max-autotune").fit(1)  # a mode is inductor's alone
    assert calls[-1] == {"backend": "eager"}
    with pytest.raises(ValueError, match=r"unknown torch.compile mode 'max-autotun'.*did you mean 'max-autotune'"):
        make_learner(compile=True, compile_mode="max-autotun")


def test_phases_switch_optimizer_and_data_with_image_size():
    calls = []
    train, valid = make_data()
    other, _ = make_data(n=32, seed=3)
    other.set_image_size = calls.append
    torch.manual_seed(0)
    learner = Learner(nn.Linear(4, 2), DataLoaders(train, valid), device="cpu")
    phases = [TrainingPhase(1.5, optimizer="sgd", lr=0.1, momentum=0.9),
              TrainingPhase(1, optimizer="adamw", lr=1e-3, data=other, image_size=24)]
    learner.fit(phases)
    # phase 0: 1.5 epochs of 4 steps = 6 steps; phase 1: 1 epoch of 2 steps = 2 steps
    assert learner.schedule.boundaries == (0, 6, 8)
    assert learner.state.step == 8
    assert isinstance(learner.optimizer, torch.optim.AdamW)
    assert calls == [24]
    # the epoch of phase 0 that is cut at the data change is its own (partial) epoch
    assert [r["step"] for r in learner.history] == [4, 6, 8]


def test_group_past_its_train_epochs_stops_computing_gradients_with_the_same_weights(monkeypatch):
    # airbench detaches its whitening bias after 3 of 8 epochs: autograd then skips work only it needed
    import functools

    from epochal.optim import GroupRule, build_optimizer

    class GradSeen(Callback):
        def __init__(self):
            self.seen = []

        def after_backward(self):
            bias = self.learner.model[0].bias
            self.seen.append((self.learner.state.epoch, bias.requires_grad, bias.grad is not None))

    def run():
        spec = functools.partial(build_optimizer, "sgd", momentum=0.9, weight_decay=1e-2,
                                 rules=[GroupRule("0.bias", train_epochs=1)])
        seen = GradSeen()
        learner = make_learner([seen], optimizer=spec)
        learner.fit(3)
        return learner, seen.seen

    learner, seen = run()
    assert {s for s in seen if s[0] == 0} == {(0, True, True)}
    assert {s for s in seen if s[0] > 0} == {(1, False, False), (2, False, False)}
    assert learner.model[0].bias.requires_grad  # the flag is the parameter's own again after fit
    monkeypatch.setattr(Learner, "_retire_spent_groups", lambda self: None)
    kept, kept_seen = run()
    assert {s[1:] for s in kept_seen} == {(True, True)}
    for a, b in zip(learner.model.parameters(), kept.model.parameters(), strict=True):
        assert torch.equal(a, b)  # the group's rate was 0 anyway: the weights are the same
