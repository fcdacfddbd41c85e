"""LARS steps against hand computations (You et al., 2017, with decoupled weight decay)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from epochal.optim import LARS, build_optimizer, param_groups


def _param(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_two_momentum_steps_match_hand_computation():
    w = _param([3.0, 4.0])  # ||w|| = 5
    optimizer = LARS([w], lr=0.1, momentum=0.9, weight_decay=0.1, trust_coefficient=0.01, eps=0.0)
    g = [0.6, 0.8]  # ||g|| = 1
    w.grad = torch.tensor(g, dtype=torch.float64)
    optimizer.step()
    # trust = 0.01 * 5 / 1 = 0.05; w *= 1 - 0.01; buf = 0.05 * g; w -= 0.1 * buf
    assert w.tolist() == pytest.approx([2.967, 3.956], rel=1e-12)
    w.grad = torch.tensor(g, dtype=torch.float64)
    optimizer.step()
    trust = 0.01 * math.hypot(2.967, 3.956)
    buf = [0.9 * 0.05 * gi + trust * gi for gi in g]
    expected = [wi * 0.99 - 0.1 * bi for wi, bi in zip((2.967, 3.956), buf)]
    assert w.tolist() == pytest.approx(expected, rel=1e-12)


def test_nesterov_step():
    w = _param([3.0, 4.0])
    optimizer = LARS([w], lr=0.1, momentum=0.9, trust_coefficient=0.01, eps=0.0, nesterov=True)
    w.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    optimizer.step()
    # buf = 0.05 g; update = 0.05 g + 0.9 * 0.05 g = 0.095 g
    assert w.tolist() == pytest.approx([3.0 - 0.1 * 0.095 * 0.6, 4.0 - 0.1 * 0.095 * 0.8], rel=1e-12)


def test_norm_and_bias_groups_take_plain_sgd_steps():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    optimizer = build_optimizer("lars", param_groups(model), lr=0.1, momentum=0.9, trust_coefficient=0.01)
    bias_before = model[0].bias.detach().clone()
    weight_before = model[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    torch.testing.assert_close(model[0].bias.detach(), bias_before - 0.1)  # no trust ratio
    trust = 0.01 * weight_before.norm() / (torch.ones(2, 2).norm() + 1e-8)
    torch.testing.assert_close(model[0].weight.detach(), weight_before - 0.1 * trust)
    group = next(g for g in optimizer.param_groups if g["norm_or_bias"])
    group["lars_adapt"] = True  # an explicit flag overrides the exclusion
    assert LARS._adapts(group)


def test_zero_weights_use_trust_one_and_zero_grads_stay_put():
    w = _param([0.0, 0.0])
    optimizer = LARS([w], lr=0.1, momentum=0.0)
    w.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    optimizer.step()
    assert w.tolist() == pytest.approx([-0.1, 0.1])
    v = _param([1.0, 2.0])
    optimizer = LARS([v], lr=0.1, momentum=0.9)
    v.grad = torch.zeros_like(v)
    optimizer.step()
    assert v.tolist() == [1.0, 2.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="trust_coefficient must be > 0"):
        LARS([_param([1.0])], trust_coefficient=0)
    with pytest.raises(ValueError, match="momentum must be >= 0"):
        LARS([_param([1.0])], momentum=-0.1)
