"""Averaging rules: the SWA running mean equals the arithmetic mean (and AveragedModel), EMA its closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from epochal.averaging import EqualMean, ExponentialMean


def _snapshots(k: int, shapes=((3, 4), (5,))) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(s, generator=g) for s in shapes] for _ in range(k)]


def test_equal_mean_of_k_snapshots_is_their_arithmetic_mean():
    snapshots = _snapshots(7)
    averaged = [torch.full_like(t, 99.0) for t in snapshots[0]]  # the start is overwritten by the first copy
    for n, snapshot in enumerate(snapshots):
        EqualMean().update(averaged, snapshot, n)
    for i, tensor in enumerate(averaged):
        expected = torch.stack([s[i].double() for s in snapshots]).mean(0)
        torch.testing.assert_close(tensor.double(), expected, rtol=0, atol=1e-6)


def test_equal_mean_is_bit_identical_to_torch_averaged_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    reference = AveragedModel(model)
    averaged = [p.detach().clone() for p in model.parameters()]
    for n in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        reference.update_parameters(model)
        EqualMean().update(averaged, [p.detach() for p in model.parameters()], n)
    for ours, theirs in zip(averaged, reference.module.parameters()):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("warmup", [False, True])
def test_exponential_mean_matches_the_closed_form(warmup):
    decay = 0.8
    rule = ExponentialMean(decay, warmup=warmup)
    start = torch.tensor([1.0, -2.0, 3.0])
    sequence = [torch.tensor([float(k), 2.0 * k, -float(k)]) for k in range(1, 9)]
    averaged = [start.clone()]
    for n, w in enumerate(sequence):
        rule.update(averaged, [w], n)
    # ema_K = prod(d_n) * start + sum_n (1 - d_n) * prod_{m > n} d_m * w_n
    d = [min(decay, (1 + n) / (10 + n)) if warmup else decay for n in range(len(sequence))]
    expected = start.double() * torch.tensor(d, dtype=torch.float64).prod()
    for n, w in enumerate(sequence):
        expected += (1 - d[n]) * torch.tensor(d[n + 1:], dtype=torch.float64).prod() * w.double()
    torch.testing.assert_close(averaged[0].double(), expected, rtol=1e-6, atol=1e-6)


def test_exponential_warmup_decay_and_first_copy():
    rule = ExponentialMean(0.999, warmup=True)
    assert rule.decay_at(0) == pytest.approx(0.1) and rule.decay_at(90) == pytest.approx(0.91)
    assert rule.decay_at(10_000) == 0.999
    copying = ExponentialMean(0.5, copy_first=True)
    averaged = [torch.zeros(2)]
    copying.update(averaged, [torch.tensor([4.0, 8.0])], 0)
    assert torch.equal(averaged[0], torch.tensor([4.0, 8.0]))
    copying.update(averaged, [torch.tensor([0.0, 0.0])], 1)
    assert torch.equal(averaged[0], torch.tensor([2.0, 4.0]))


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, float("nan")])
def test_bad_decay_is_an_error_naming_it(decay):
    with pytest.raises(ValueError, match="decay"):
        ExponentialMean(decay)
