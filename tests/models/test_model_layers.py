"""Shared layers: heads and pooling, drop path, SE, hardware-friendly widths and input padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epochal.models import ClassifierHead, DropPath, create, get_model_info, list_models, make_divisible
from epochal.models.layers import SqueezeExcite, drop_path_rates, pad_input_channels


def test_concat_pooling_puts_average_and_max_side_by_side():
    head = ClassifierHead(3, num_classes=0, pool="concat")
    x = torch.arange(2 * 3 * 4.0).reshape(2, 3, 2, 2)
    out = head(x)
    assert out.shape == (2, 6)
    torch.testing.assert_close(out[:, :3], x.mean((2, 3)))
    torch.testing.assert_close(out[:, 3:], x.amax((2, 3)))
    assert ClassifierHead(3, 5, pool="concat").fc.in_features == 6


def test_head_dropout_hidden_layers_and_scale():
    head = ClassifierHead(8, 4, pool="avg", dropout=0.5, hidden=(16,), scale=0.5)
    assert [m.out_features for m in head.modules() if isinstance(m, nn.Linear)] == [16, 4]
    head.eval()
    x = torch.randn(2, 8, 3, 3)
    unscaled = head.fc(head.hidden(x.mean((2, 3))))
    torch.testing.assert_close(head(x), 0.5 * unscaled)
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head(x), head(x))  # dropout is active in training
    with pytest.raises(ValueError, match="pool must be one of"):
        ClassifierHead(8, 4, pool="sum")
    with pytest.raises(ValueError, match="dropout must be in"):
        ClassifierHead(8, 4, dropout=1.0)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    out = layer(torch.ones(4000, 3, 2, 2))
    per_sample = out.flatten(1)
    torch.testing.assert_close(per_sample.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # all or nothing per sample
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)
    assert torch.equal(layer.eval()(torch.ones(3, 2)), torch.ones(3, 2))
    assert drop_path_rates(0.3, [1, 2]) == [[0.0], [0.15, 0.3]]


def test_squeeze_excite_scales_channels_by_a_gate_in_0_1():
    se = SqueezeExcite(4, 2)
    x = torch.rand(2, 4, 5, 5) + 0.1
    gate = se(x) / x
    assert torch.all((gate > 0) & (gate < 1))
    torch.testing.assert_close(gate, gate[:, :, :1, :1].expand_as(gate))  # one gate per channel


@pytest.mark.parametrize(
    ("value", "expected"), [(3, 8), (12, 16), (20, 24), (100, 104), (99, 96), (44, 48), (250, 248), (9, 16)]
)
def test_make_divisible(value, expected):
    assert make_divisible(value, 8) == expected
    assert make_divisible(value, 8) % 8 == 0
    assert make_divisible(value, 8) >= 0.9 * value


IMAGE_MODELS = [n for n in list_models() if get_model_info(n).family not in ("tabular", "autoencoder")]
# DenseNet-BC-100-12's growth rate 12 is part of the paper's definition; its widths are 24 + 12 k.
NOT_MULTIPLE_OF_8 = {"densenet_bc_100_12"}


@pytest.mark.parametrize("name", [n for n in IMAGE_MODELS if n not in NOT_MULTIPLE_OF_8])
def test_convolution_widths_are_multiples_of_8(name):
    with torch.device("meta"):
        model = create(name)
    se_convs = {id(m) for se in model.modules() if isinstance(se, SqueezeExcite) for m in se.modules()}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in se_convs]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert all(c.in_channels % 8 == 0 for c in convs[1:] if c.in_channels != 3)


def test_pad_input_channels_to_4_is_exact_and_idempotent():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 6, 6)
    expected = model(x)
    pad_input_channels(model, 4)
    assert model[0].weight.shape == (8, 4, 3, 3)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model(torch.cat([x, torch.zeros(2, 1, 6, 6)], 1)), expected)
    pad_input_channels(model, 4)
    assert model[0].weight.shape == (8, 4, 3, 3)
    with pytest.raises(ValueError, match="more than this layer"):
        model(torch.randn(1, 5, 6, 6))
