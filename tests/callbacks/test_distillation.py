"""Distillation in the loop: the learner's loss becomes the closed form, only the student learns, the
teacher stays frozen in eval mode in the learner's precision, and cached logits are the fresh ones."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from epochal.callbacks import Distillation
from epochal.callbacks.base import Callback
from epochal.data.base import ArrayLoader
from epochal.data.loaders import ImageLoader
from epochal.learner import Learner
from epochal.losses import soft_target_loss


def data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return x, y


def teacher_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))


def learner(callbacks, train=None, precision="fp32", loss=None):
    torch.manual_seed(0)
    x, y = data()
    train = train if train is not None else ArrayLoader(x, y, batch_size=16, shuffle=True)
    return Learner(nn.Linear(6, 3), (train, ArrayLoader(x, y, batch_size=24)), loss=loss, optimizer="sgd",
                   lr=0.1, metrics=["accuracy"], callbacks=callbacks, device="cpu", precision=precision)


class Spy(Callback):
    """Records, per training batch, what the closed form needs and what the learner's loss became."""

    order = 0  # after Distillation (-5)

    def __init__(self, teacher):
        self.teacher, self.records = teacher, []

    def after_forward(self):
        if self.learner.training:
            self.record = {"logits_dtype": self.learner.callbacks[0].teacher_logits.dtype}

    def after_loss(self):
        if self.learner.training:
            with torch.no_grad():
                fresh = self.teacher(self.learner.xb)
            self.record.update(pred=self.learner.pred.detach().clone(), y=self.learner.yb.clone(),
                               fresh=fresh, loss=self.learner.loss.detach().clone(),
                               teacher_training=self.teacher.training)

    def after_backward(self):
        if self.learner.training:
            self.record["teacher_grads"] = [p.grad for p in self.teacher.parameters()]
            self.record["student_grads"] = [p.grad is not None for p in self.learner.model.parameters()]
            self.records.append(self.record)


def test_the_learners_loss_is_the_closed_form_and_only_the_student_learns():
    teacher = teacher_model()
    teacher_weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    smooth = nn.CrossEntropyLoss(label_smoothing=0.1)
    spy = Spy(teacher)
    fitted = learner([Distillation(teacher, temperature=3.0, alpha=0.7), spy], loss=smooth)
    fitted.fit(2)
    assert len(spy.records) == 6
    for r in spy.records:  # alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * the learner's own loss
        p_t = torch.softmax(r["fresh"] / 3.0, dim=1)
        kl = (p_t * (p_t.log() - torch.log_softmax(r["pred"] / 3.0, dim=1))).sum(dim=1).mean()
        expected = 0.7 * 9.0 * float(kl) + 0.3 * float(smooth(r["pred"], r["y"]))
        assert float(r["loss"]) == pytest.approx(expected, rel=1e-5)
        assert r["teacher_training"] is False
        assert all(g is None for g in r["teacher_grads"]) and all(r["student_grads"])
    assert teacher.training is False and not any(p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():  # eval mode: not even the BatchNorm buffers moved
        assert torch.equal(value, teacher_weights[key]), key


def test_validation_keeps_the_hard_loss():
    teacher = teacher_model()
    distilled = learner([Distillation(teacher, temperature=4.0, alpha=0.9)])
    distilled.fit(1)
    plain = Learner(distilled.model, distilled.data, optimizer="sgd", metrics=["accuracy"], device="cpu")
    assert distilled.validate()["valid/loss"] == plain.validate()["valid/loss"]


def test_alpha_zero_trains_exactly_like_no_distillation():
    alone, distilled = learner([]), learner([Distillation(teacher_model(), alpha=0.0)])
    alone.fit(2)
    distilled.fit(2)
    assert [h["train/loss"] for h in alone.history] == [h["train/loss"] for h in distilled.history]
    for a, b in zip(alone.model.parameters(), distilled.model.parameters()):
        assert torch.equal(a, b)


def test_the_teacher_runs_in_the_learners_precision():
    teacher = teacher_model()
    spy = Spy(teacher)
    learner([Distillation(teacher), spy], precision="bf16").fit(1)
    assert {r["logits_dtype"] for r in spy.records} == {torch.bfloat16}


def test_cached_logits_equal_fresh_ones_and_are_reused(tmp_path):
    teacher = teacher_model()
    cached = Distillation(teacher, cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no augmentation: no warning
        first = learner([cached])
        first.fit(3)
    files = list(tmp_path.glob("teacher-logits-*.pt"))
    assert len(files) == 1
    assert cached.cache_hits == 6  # epochs 2 and 3 read every batch from the cache
    stored = torch.load(files[0], weights_only=True)
    x, _ = data()
    with torch.no_grad():
        fresh = teacher(x)
    assert bool(stored["filled"].all()) and torch.equal(stored["logits"], fresh)

    fresh_run = learner([Distillation(teacher)])
    fresh_run.fit(3)
    assert [h["train/loss"] for h in first.history] == [h["train/loss"] for h in fresh_run.history]

    again = Distillation(teacher, cache_dir=tmp_path)  # a later run of the same teacher on the same data
    learner([again]).fit(1)
    assert again.cache_hits == 3

    other = teacher_model()
    with torch.no_grad():
        other[0].weight.add_(1.0)
    learner([Distillation(other, cache_dir=tmp_path)]).fit(1)
    assert len(list(tmp_path.glob("teacher-logits-*.pt"))) == 2  # another teacher, another key


def _flip(x, y, generator):
    return x.flip(1) if float(torch.rand((), generator=generator)) < 0.5 else x, y


def test_augmented_data_are_refused_by_the_cache_with_a_warning(tmp_path):
    teacher = teacher_model()
    spy = Spy(teacher)
    x, y = data()
    augmented = ArrayLoader(x, y, batch_size=16, shuffle=True, transform=_flip)
    callback = Distillation(teacher, cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="not cached: the training data are augmented"):
        learner([callback, spy], train=augmented).fit(2)
    assert callback.cache_hits == 0 and not list(tmp_path.iterdir())
    for r in spy.records:  # every batch got the logits of its own (augmented) inputs
        expected = 0.9 * float(soft_target_loss(r["pred"], r["fresh"], 4.0)) + 0.1 * float(
            nn.functional.cross_entropy(r["pred"], r["y"]))
        assert float(r["loss"]) == pytest.approx(expected, rel=1e-6)


def test_image_loaders_with_augmentation_refuse_and_without_it_cache(tmp_path):
    images = torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8)
    targets = torch.arange(24) % 3
    model = lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))  # noqa: E731
    for augment, cached in ((["flip"], False), (None, True)):
        loader = ImageLoader(images, targets, batch_size=8, augment=augment)
        callback = Distillation(model(), cache_dir=tmp_path / str(cached))
        torch.manual_seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Learner(model(), (loader, None), optimizer="sgd", device="cpu", callbacks=[callback]).fit(2)
        assert any("not cached" in str(w.message) for w in caught) is not cached
        assert callback.cache_hits == (3 if cached else 0)
        assert (tmp_path / str(cached)).exists() is cached


def test_a_teacher_must_be_a_module():
    with pytest.raises(TypeError, match="restore_model"):
        Distillation("runs/teacher")


def test_the_cache_is_refused_in_a_data_parallel_job_and_the_teacher_runs_on_every_batch(tmp_path):
    from epochal.distributed import World

    teacher = teacher_model()
    spy = Spy(teacher)
    callback = Distillation(teacher, cache_dir=tmp_path)
    run = learner([callback, spy])
    # a rank of a two-process job as the callback sees it (the collectives stay those of one process)
    run.strategy.world = World(rank=0, world_size=2, local_world_size=2)
    with pytest.warns(UserWarning, match="not cached: a data-parallel job"):
        run.fit(2)
    assert callback.cache_hits == 0 and not list(tmp_path.iterdir())
    assert len(spy.records) == 6
    for r in spy.records:  # every batch got its teacher's fresh logits
        expected = 0.9 * float(soft_target_loss(r["pred"], r["fresh"], 4.0)) + 0.1 * float(
            nn.functional.cross_entropy(r["pred"], r["y"]))
        assert float(r["loss"]) == pytest.approx(expected, rel=1e-6)
