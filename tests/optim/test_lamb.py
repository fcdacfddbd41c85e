"""LAMB steps against hand computations (You et al., 2020, with decoupled weight decay)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from epochal.optim import LAMB


def _param(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step(w, m, v, g, t, lr=0.1, wd=0.1, b1=0.9, b2=0.999):
    m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
    v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
    r = [mi / (1 - b1**t) / math.sqrt(vi / (1 - b2**t)) for mi, vi in zip(m, v)]
    trust = math.sqrt(sum(x * x for x in w)) / math.sqrt(sum(x * x for x in r))
    return [wi * (1 - lr * wd) - lr * trust * ri for wi, ri in zip(w, r)], m, v


def test_two_steps_match_hand_computation():
    w = _param([3.0, 4.0])
    optimizer = LAMB([w], lr=0.1, weight_decay=0.1, eps=0.0)
    expected, m, v = [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]
    for t, g in enumerate(([0.5, -1.0], [1.0, 1.0]), start=1):
        w.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        expected, m, v = _step(expected, m, v, g, t)
        assert w.tolist() == pytest.approx(expected, rel=1e-10)
        if t == 1:  # by hand: r = sign(g) = (1, -1), trust = 5 / sqrt(2)
            assert w.tolist() == pytest.approx(
                [2.97 - 0.5 / math.sqrt(2), 3.96 + 0.5 / math.sqrt(2)], rel=1e-12
            )
    assert optimizer.state[w]["step"].item() == 2


def test_excluded_group_is_adam_without_trust_ratio():
    w = _param([3.0, 4.0])
    optimizer = LAMB([{"params": [w], "norm_or_bias": True}], lr=0.1, eps=0.0)
    w.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    optimizer.step()
    assert w.tolist() == pytest.approx([2.9, 4.1], rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="betas must be in"):
        LAMB([_param([1.0])], betas=(0.9, 1.0))
