"""Regression losses compare a one-output head's (N, 1) predictions with (N,) targets pairwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.losses import L1Loss, MSELoss, SmoothL1Loss

PAIRS = [(MSELoss, nn.MSELoss), (L1Loss, nn.L1Loss), (SmoothL1Loss, nn.SmoothL1Loss)]


@pytest.mark.parametrize(("ours", "torch_loss"), PAIRS)
def test_one_output_head_matches_the_flat_loss(ours, torch_loss):
    prediction, target = torch.tensor([[0.0], [3.0], [10.0]]), torch.tensor([1.0, 2.0, 4.0])
    expected = torch_loss()(prediction.flatten(), target)
    assert ours()(prediction, target) == pytest.approx(float(expected))
    with pytest.warns(UserWarning, match="target size"):  # what torch's own loss does with the pair
        broadcast = torch_loss()(prediction, target)
    assert float(broadcast) != pytest.approx(float(expected))
    summed = torch_loss(reduction="sum")(prediction.flatten(), target)
    assert ours(reduction="sum")(prediction, target) == pytest.approx(float(summed))
