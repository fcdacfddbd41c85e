"""Freezing layer groups: requires_grad flags, the BatchNorm choice, records and restoration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.optim import (
    build_optimizer,
    freeze,
    freeze_to,
    frozen,
    param_groups,
    set_frozen_norm_eval,
    unfreeze,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))

    def layer_groups(self) -> list[nn.Module]:
        return [self.stem, self.body, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def _trainable(module):
    return [p.requires_grad for p in module.parameters()]


def test_freeze_keeps_batchnorm_trainable_by_default():
    model = Net()
    record = freeze(model)
    assert record.frozen_groups == (0, 1) and record.n_groups == 3 and record.train_bn
    assert _trainable(model.stem[0]) == [False, False] and _trainable(model.body[0]) == [False, False]
    assert _trainable(model.stem[1]) == [True, True] and _trainable(model.body[1]) == [True, True]
    assert _trainable(model.head) == [True, True]
    assert set(record.newly_frozen) == {"stem.0.weight", "stem.0.bias", "body.0.weight", "body.0.bias"}
    assert record.newly_trainable == () and record.eval_norm_modules == ()


def test_freeze_without_batchnorm_holds_running_stats():
    model = Net().train()
    record = freeze_to(model, 2, train_bn=False)
    assert _trainable(model.stem[1]) == [False, False]
    assert record.eval_norm_modules == ("stem.1", "body.1")
    assert not model.stem[1].training and not model.body[1].training
    model.train()  # what every epoch does
    assert set_frozen_norm_eval(model, record) == 2
    stats = model.stem[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(model.stem[1].running_mean, stats)


def test_freeze_to_counts_and_unfreeze_reports_changes():
    model = Net()
    assert freeze_to(model, -2).frozen_groups == (0,)
    assert _trainable(model.body) == [True] * 4
    record = freeze_to(model, 3)
    assert record.frozen_groups == (0, 1, 2) and _trainable(model.head) == [False, False]
    back = unfreeze(model)
    assert back.frozen_groups == () and all(p.requires_grad for p in model.parameters())
    assert set(back.newly_trainable) == {
        "body.0.weight",
        "body.0.bias",
        "head.1.weight",
        "head.1.bias",
        "stem.0.weight",
        "stem.0.bias",
    }
    for bad in (4, -4, 1.5, True):
        with pytest.raises(ValueError, match=r"n must be an int in \[-3, 3\]"):
            freeze_to(model, bad)


def test_unfreeze_returns_eval_batchnorm_to_the_model_mode():
    model = Net().train()
    freeze(model, train_bn=False)
    unfreeze(model)
    assert model.stem[1].training and all(p.requires_grad for p in model.stem[1].parameters())


def test_frozen_parameters_get_no_update_but_stay_in_the_optimizer():
    model = Net()
    optimizer = build_optimizer("sgd", param_groups(model), lr=0.1, weight_decay=0.1)
    freeze(model)
    conv = model.stem[0].weight.detach().clone()
    optimizer.zero_grad()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    torch.testing.assert_close(model.stem[0].weight.detach(), conv)
    assert model.stem[0].weight.grad is None
    unfreeze(model)
    optimizer.zero_grad()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.stem[0].weight.detach(), conv)


def test_frozen_context_restores_flags_and_modes_also_on_error():
    model = Net().train()
    model.head[1].bias.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"), frozen(model, -1, train_bn=False) as record:
        assert record.frozen_groups == (0, 1) and not model.stem[1].training
        raise RuntimeError("boom")
    assert _trainable(model.stem) == [True] * 4 and model.head[1].bias.requires_grad is False
    assert model.stem[1].training


def test_fallback_groups_for_models_without_layer_groups():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    record = freeze(model)
    assert record.n_groups == 2
    assert _trainable(model[0]) == [False, False] and _trainable(model[1]) == [True, True]
    assert _trainable(model[2]) == [True, True]
