"""Output-bias initialisation from class priors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.models import TabularMLP, class_priors_from_targets, create, init_output_bias


def _silence_weights(model: nn.Module) -> None:
    with torch.no_grad():
        model.head.fc.weight.zero_()


def test_softmax_bias_reproduces_the_priors():
    model = create("resnet18", stem="cifar", num_classes=3).eval()
    priors = torch.tensor([0.7, 0.2, 0.1])
    bias = init_output_bias(model, priors)
    torch.testing.assert_close(bias, priors.log())
    _silence_weights(model)
    probs = model(torch.randn(2, 3, 32, 32)).softmax(1)
    torch.testing.assert_close(probs, priors.expand(2, 3))


def test_sigmoid_bias_is_log_odds():
    model = TabularMLP([4], n_continuous=2, num_classes=3).eval()
    priors = [0.01, 0.5, 0.9]
    bias = init_output_bias(model, priors, multilabel=True)
    torch.testing.assert_close(bias, torch.tensor([-4.59512, 0.0, 2.197225]), atol=1e-5, rtol=0)
    _silence_weights(model)
    out = model(torch.tensor([[1], [3]]), torch.randn(2, 2)).sigmoid()
    torch.testing.assert_close(out, torch.tensor(priors).expand(2, 3))


def test_scaled_heads_get_the_bias_divided_by_the_scale():
    model = create("regnetx_002", num_classes=2, stem="cifar")
    model.head.scale = 0.5
    init_output_bias(model, [0.25, 0.75])
    _silence_weights(model)
    probs = model.eval()(torch.randn(1, 3, 32, 32)).softmax(1)
    torch.testing.assert_close(probs, torch.tensor([[0.25, 0.75]]))


def test_zero_frequencies_are_clipped_and_bad_priors_rejected():
    model = create("resnet18", stem="cifar", num_classes=2)
    bias = init_output_bias(model, [1.0, 0.0])
    assert torch.isfinite(bias).all() and bias[1] < -10
    with pytest.raises(ValueError, match="must sum to 1"):
        init_output_bias(model, [0.5, 0.6])
    with pytest.raises(ValueError, match="3 entries, the output layer 2"):
        init_output_bias(model, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="frequencies in"):
        init_output_bias(model, [1.5, -0.5])
    with pytest.raises(ValueError, match="no bias"):
        init_output_bias(create("airbench"), [0.1] * 10)


def test_priors_from_targets():
    single = class_priors_from_targets(torch.tensor([0, 0, 0, 2]), num_classes=3)
    torch.testing.assert_close(single, torch.tensor([0.75, 0.0, 0.25]))
    multi = class_priors_from_targets(torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]]), 2, multilabel=True)
    torch.testing.assert_close(multi, torch.tensor([0.75, 0.25]))
    with pytest.raises(ValueError, match="class indices"):
        class_priors_from_targets(torch.tensor([0, 3]), num_classes=3)
