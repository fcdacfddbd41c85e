"""The classic families: sizes from the papers, stems, and the special pieces (whitening, embeddings, codes)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from epochal.models import (
    AirbenchNet,
    ConvAutoencoder,
    InceptionResNetBlock,
    InceptionStem,
    MLPAutoencoder,
    PreResNet,
    TabularMLP,
    count_params,
    create,
    embedding_size,
)


def test_resnet_stems_replace_each_other():
    x = torch.randn(1, 3, 64, 64)
    for stem in ("imagenet", "inception"):
        model = create("resnet50", stem=stem)
        assert model.stem(x).shape == (1, 64, 16, 16)  # both: stride 4, 64 channels
        assert model.default_input_size == (3, 224, 224)
    assert isinstance(create("resnet50", stem="inception").stem, InceptionStem)
    cifar = create("resnet18", stem="cifar", num_classes=10)
    assert cifar.default_input_size == (3, 32, 32)
    assert cifar.stem(torch.randn(1, 3, 32, 32)).shape == (1, 64, 32, 32)


def test_inception_stem_uses_factorised_1x7_and_7x1_convolutions():
    kernels = {m.kernel_size for m in InceptionStem().modules() if isinstance(m, nn.Conv2d)}
    assert {(1, 7), (7, 1)} <= kernels


@pytest.mark.parametrize("kind", ["a", "b"])
def test_inception_resnet_block_is_a_scaled_residual(kind):
    block = InceptionResNetBlock(32, width=16, kind=kind, scale=0.2)
    x = torch.randn(2, 32, 8, 8)
    assert block(x).shape == x.shape
    nn.init.zeros_(block.project.weight)
    nn.init.zeros_(block.project.bias)
    torch.testing.assert_close(block(x), torch.relu(x))  # branch silenced: relu(x + 0)
    with pytest.raises(ValueError, match="kind must be one of"):
        InceptionResNetBlock(32, kind="c")


def _preresnet_params(n: int, num_classes: int = 10) -> int:
    """Parameters of SWA's bottleneck PreResNet counted by hand: BN(in), 1x1, BN, 3x3, BN, 1x1 (x4)."""
    total, in_ch = 3 * 16 * 9, 16
    for w in (16, 32, 64):
        for i in range(n):
            total += 2 * in_ch + in_ch * w + 2 * w + 9 * w * w + 2 * w + 4 * w * w
            total += in_ch * 4 * w if i == 0 else 0  # 1x1 projection shortcut, no BN
            in_ch = 4 * w
    return total + 2 * in_ch + in_ch * num_classes + num_classes


@pytest.mark.parametrize("depth", [110, 164])
def test_preresnet_swa_sizes(depth):
    # SWA's PreResNet-110/164: depth 9n+2 with bottleneck blocks, widths 16-32-64 (x4); 164 is "1.7M"
    n = (depth - 2) // 9
    with torch.device("meta"):
        model = create(f"preresnet{depth}")
    assert count_params(model) == _preresnet_params(n)
    assert [len(stage) for stage in model.stages] == [n, n, n]
    with pytest.raises(ValueError, match="9n\\+2"):
        PreResNet(depth=100)


def test_vgg16_bn_has_13_convolutions_with_batchnorm_and_the_swa_head():
    model = create("vgg16_bn_cifar")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert [m.out_features for m in model.head.modules() if isinstance(m, nn.Linear)] == [512, 512, 10]


def test_densenet_sizes():
    with torch.device("meta"):
        assert count_params(create("densenet121")) == 7_978_856  # torchvision's DenseNet-121
        bc = create("densenet_bc_100_12")
    assert 0.76e6 < count_params(bc) < 0.81e6  # "0.8M" in the DenseNet paper
    layers = [len(stage.block.layers) for stage in bc.stages]
    assert layers == [16, 16, 16]


def test_separable_convnet_uses_depthwise_convolutions():
    model = create("separable_convnet")
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(depthwise) == 7  # two per residual block, three blocks, and the final one
    assert [m.out_channels for m in depthwise[::2][:3]] == [128, 256, 512]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_airbench_shape_frozen_bn_scales_and_scaled_logits():
    model = AirbenchNet()
    assert model.stem.whiten.weight.shape == (24, 3, 2, 2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and not any(b.weight.requires_grad for b in bns)
    assert model.head.fc.bias is None and model.head.scale == pytest.approx(1 / 9)
    conv = model.stages[0].conv2
    assert torch.equal(conv.weight[:, :, 1, 1][:64, :64], torch.eye(64))  # Dirac (identity) start


def test_airbench_matches_airbench94_layer_for_layer():
    model = AirbenchNet()
    shapes = [tuple(p.shape) for p in model.parameters()]
    # whiten 2x2 (24 filters + bias), three groups of conv3x3-BN-conv3x3-BN (64, 256, 256), bias-free head
    assert shapes[:2] == [(24, 3, 2, 2), (24,)] and shapes[-1] == (10, 256)
    convs = [s for s in shapes if len(s) == 4][1:]
    assert convs == [(64, 24, 3, 3), (64, 64, 3, 3), (256, 64, 3, 3), *[(256, 256, 3, 3)] * 3]
    assert sum(p.numel() for p in model.parameters()) == 1_972_792
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [(b.eps, round(b.momentum, 9)) for b in bns] == [(1e-12, 0.4)] * 6
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 256, 3, 3)  # 32 -> 31 (2x2 whitening, no padding) -> 15 -> 7 -> 3
    torch.testing.assert_close(model(x), model.head.fc(nn.functional.max_pool2d(features, 3).flatten(1)) / 9)


def test_airbench_muon_head_and_trainable_bn_scales():
    torch.manual_seed(0)
    model = AirbenchNet(scale=1 / 256, head_std=1.0, trainable_bn_scale=True)
    assert model.head.fc.weight.std().item() == pytest.approx(1.0)
    assert model.head.scale == 1 / 256
    assert all(m.weight.requires_grad for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match="head_std must be > 0"):
        AirbenchNet(head_std=0.0)


def test_airbench_init_from_data_sets_and_freezes_the_whitening():
    torch.manual_seed(0)
    images = torch.randn(50, 3, 8, 8)
    model, reference = AirbenchNet(), AirbenchNet()
    assert model.stem.whiten.weight.requires_grad
    model.init_from_data(images)
    reference.init_whitening(images)
    assert torch.equal(model.stem.whiten.weight, reference.stem.whiten.weight)
    assert not model.stem.whiten.weight.requires_grad and model.stem.whiten.bias.requires_grad


def test_airbench_whitening_decorrelates_patches():
    torch.manual_seed(0)
    mixing = torch.tensor([[1.0, 0.8, 0.3], [0.0, 0.5, 0.9], [0.2, 0.0, 0.4]])
    images = torch.einsum("dc,nchw->ndhw", mixing, torch.randn(200, 3, 16, 16))
    model = AirbenchNet()
    model.init_whitening(images)
    assert not model.stem.whiten.weight.requires_grad
    out = nn.functional.conv2d(images, model.stem.whiten.weight[:12])
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    covariance = flat @ flat.T / flat.shape[1]
    torch.testing.assert_close(covariance, torch.eye(12), atol=0.02, rtol=0)
    torch.testing.assert_close(model.stem.whiten.weight[12:], -model.stem.whiten.weight[:12])
    with pytest.raises(ValueError, match="images must have shape"):
        model.init_whitening(torch.randn(4, 1, 8, 8))


@pytest.mark.parametrize(("cardinality", "size"), [(1, 2), (2, 2), (10, 6), (100, 21), (1000, 77), (10**7, 600)])
def test_embedding_size_rule(cardinality, size):
    assert embedding_size(cardinality) == size  # min(600, round(1.6 * n ** 0.56))


def test_embedding_size_rejects_bad_cardinalities():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="cardinality"):
            embedding_size(bad)


def test_tabular_mlp_from_cardinalities():
    model = TabularMLP([10, 3], n_continuous=4, num_classes=3, hidden=(32, 16))
    assert [e.embedding_dim for e in model.embeddings] == [6, 3]
    assert model.layers[0][0].in_features == 6 + 3 + 4
    x_cat = torch.tensor([[9, 2], [0, 0], [5, 1]])
    out = model(x_cat, torch.randn(3, 4))
    assert out.shape == (3, 3)
    assert model.default_input_size == (6,)
    only_cat = TabularMLP([5], n_continuous=0, num_classes=1)
    assert only_cat(torch.tensor([[4], [0]]), torch.empty(2, 0)).shape == (2, 1)
    with pytest.raises(ValueError, match="x_cont has 2 columns"):
        model(x_cat, torch.randn(3, 2))
    with pytest.raises(ValueError, match="at least one input column"):
        TabularMLP([], n_continuous=0, num_classes=2)


def test_periodic_embeddings_follow_the_plr_formula_column_by_column():
    from epochal.models.tabular import PeriodicEmbeddings

    torch.manual_seed(0)
    embed = PeriodicEmbeddings(3, frequencies=4, sigma=0.1, size=5)
    x = torch.randn(7, 3)
    out = embed(x)
    assert out.shape == (7, 15)
    for j in range(3):  # ReLU(W_j [cos 2 pi c_j x_j, sin 2 pi c_j x_j] + b_j), one layer per column
        angles = 2 * math.pi * embed.frequencies[j] * x[:, j : j + 1]
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        expected = torch.relu(features @ embed.weight[j] + embed.bias[j])
        torch.testing.assert_close(out[:, 5 * j : 5 * (j + 1)], expected)
    assert 0.05 < embed.frequencies.detach().std().item() < 0.2  # N(0, sigma^2) initialisation
    out.sum().backward()
    assert embed.frequencies.grad is not None and embed.frequencies.grad.abs().sum() > 0  # trained
    with pytest.raises(ValueError, match="sigma must be > 0"):
        PeriodicEmbeddings(3, sigma=0.0)


def test_tabular_mlp_with_periodic_numeric_embeddings():
    model = TabularMLP([10, 3], n_continuous=4, num_classes=2, hidden=(32,), numeric_embedding="periodic",
                       frequencies=8, numeric_embedding_size=6)
    assert model.layers[0][0].in_features == 6 + 3 + 4 * 6
    assert model(torch.tensor([[9, 2], [0, 0]]), torch.randn(2, 4)).shape == (2, 2)
    assert model.continuous_norm in model.layer_groups()[0]  # trained with the input group's rate
    with pytest.raises(ValueError, match=r"numeric_embedding='plr' is not valid; use one of \[None, 'periodic'\]"):
        TabularMLP([10], n_continuous=4, numeric_embedding="plr")


def test_conv_autoencoder_encodes_and_reconstructs():
    model = ConvAutoencoder(latent_dim=24)
    x = torch.randn(3, 3, 32, 32)
    assert model.encode(x).shape == (3, 24)
    assert model(x).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 8"):
        ConvAutoencoder(input_size=36)


def test_mlp_autoencoder_learns_a_low_rank_code():
    torch.manual_seed(0)
    basis = torch.randn(4, 20)
    data = torch.randn(256, 4) @ basis  # rank-4 data: a 4-d code can reconstruct it
    model = MLPAutoencoder(20, latent_dim=4, hidden=(32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = nn.functional.mse_loss(model(data), data)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.encode(data).shape == (256, 4)
    assert loss.item() < 0.1 * first
