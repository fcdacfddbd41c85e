"""ResNet-18/34/50: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).

The bottleneck carries its stride on the 3x3 convolution ("ResNet v1.5", as in torchvision and
timm), so ImageNet weights of both load with ``epochal.models.convert``. Three stems:

* "imagenet": 7x7/2 convolution and 3x3/2 max pooling (224 px);
* "cifar": one 3x3 stride-1 convolution (32 px), as in the CIFAR ResNet-18 of Kuang Liu's recipes;
* "inception": the factorised ``InceptionStem`` (stride 4, 64 channels), a drop-in replacement.

Options: zero-initialised last BatchNorm in each block (Goyal et al. 2017), stochastic depth.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.inception import InceptionStem
from epochal.models.layers import ClassifierHead, ConvBNAct, DropPath, drop_path_rates

__all__ = ["STEMS", "BasicBlock", "Bottleneck", "ImageNetStem", "ResNet", "make_stem"]

STEMS = ("imagenet", "cifar", "inception")


class ImageNetStem(nn.Sequential):
    """7x7/2 conv, BN, ReLU, 3x3/2 max pool: output stride 4."""

    def __init__(self, in_chans: int, width: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)


def make_stem(stem: str, in_chans: int, width: int = 64) -> tuple[nn.Module, int]:
    """The stem module and the input size it is designed for."""
    if stem == "imagenet":
        return ImageNetStem(in_chans, width), 224
    if stem == "cifar":
        return ConvBNAct(in_chans, width, 3), 32
    if stem == "inception":
        return InceptionStem(in_chans, width), 224
    raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions on a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = ConvBNAct(in_channels, width, 3, stride=stride)
        self.conv2 = ConvBNAct(width, out, 3, act=None)
        needs_projection = stride != 1 or in_channels != out
        self.shortcut = ConvBNAct(in_channels, out, 1, stride, act=None) if needs_projection else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.act = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.conv2.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.conv2(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride), 1x1 expand by 4, on a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = ConvBNAct(in_channels, width, 1)
        self.conv2 = ConvBNAct(width, width, 3, stride=stride)
        self.conv3 = ConvBNAct(width, out, 1, act=None)
        needs_projection = stride != 1 or in_channels != out
        self.shortcut = ConvBNAct(in_channels, out, 1, stride, act=None) if needs_projection else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.act = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.conv3.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(out) + self.shortcut(x))


class ResNet(StagedClassifier):
    """ResNet with four stages of widths 64-128-256-512 (times the block expansion).

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        depths: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-34/50.
        num_classes: classifier outputs (0: feature extractor).
        in_chans: input channels.
        stem: "imagenet", "cifar" or "inception".
        zero_init_last: zero the last BN gamma of each block so blocks start as identities.
        drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
        dropout: dropout before the classifier.
        pool: head pooling ("avg", "max" or "concat").

    Examples:
        >>> model = ResNet(BasicBlock, (2, 2, 2, 2), num_classes=10, stem="cifar")
    """

    family = "resnet"

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        zero_init_last: bool = True,
        drop_path_rate: float = 0.0,
        dropout: float = 0.0,
        pool: str = "avg",
    ) -> None:
        stem_module, size = make_stem(stem, in_chans)
        super().__init__((in_chans, size, size))
        self.stem = stem_module
        rates = drop_path_rates(drop_path_rate, depths)
        stages, in_ch = [], 64
        for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512))):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_ch, width, stride, rates[i][j]))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, num_classes, pool=pool, dropout=dropout)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)


for _name, _block, _depths, _label in (
    ("resnet18", BasicBlock, (2, 2, 2, 2), "ResNet-18"),
    ("resnet34", BasicBlock, (3, 4, 6, 3), "ResNet-34"),
    ("resnet50", Bottleneck, (3, 4, 6, 3), "ResNet-50"),
):
    register_model(_name, family="resnet", description=f"{_label} (stems: imagenet, cifar, inception)")(
        partial(ResNet, _block, _depths)
    )
