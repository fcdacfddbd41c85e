"""Inception-style stem and Inception-ResNet blocks.

From Szegedy et al., "Rethinking the Inception Architecture" (CVPR 2016: factorising an n x n
convolution into 1 x n and n x 1) and "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning" (AAAI 2017: multi-branch blocks added to a scaled residual).

* ``InceptionStem``: a stride-4, 64-channel stem with parallel pooling/convolution downsampling and a
  factorised 1x7/7x1 branch; it replaces a ResNet stem one for one (``create("resnet50", stem="inception")``).
* ``InceptionResNetBlock``: kind "a" (3x3 branches) or "b" (factorised 1x7/7x1 branch), the branch
  outputs concatenated, projected back by a linear 1x1 convolution and added with a small scale.
* ``InceptionResNet``: a small CIFAR network built from these blocks (``inception_resnet_cifar``).
"""

from __future__ import annotations

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead, ConvBNAct, make_divisible

__all__ = ["InceptionReduction", "InceptionResNet", "InceptionResNetBlock", "InceptionStem"]

BLOCK_KINDS = ("a", "b")


class InceptionReduction(nn.Module):
    """Halve the resolution with max pooling and a strided 3x3 convolution side by side.

    The pooled input keeps its ``in_channels``; the convolution adds ``out_channels - in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"out_channels ({out_channels}) must exceed in_channels ({in_channels})")
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv = ConvBNAct(in_channels, out_channels - in_channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.pool(x), self.conv(x)], dim=1)


class InceptionStem(nn.Module):
    """Inception-style stem with output stride 4, a drop-in replacement for the ResNet stem.

    3x3/2 conv -> 3x3 conv -> [max pool || 3x3/2 conv] -> [1x1 -> 3x3 || 1x1 -> 1x7 -> 7x1 -> 3x3]
    -> 1x1 projection to ``out_channels``.

    Args:
        in_chans: input channels.
        out_channels: output channels (64 for a ResNet).
    """

    def __init__(self, in_chans: int = 3, out_channels: int = 64) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_chans, 32, 3, stride=2)
        self.conv2 = ConvBNAct(32, 32, 3)
        self.reduce = InceptionReduction(32, 96)
        self.branch3x3 = nn.Sequential(ConvBNAct(96, 48, 1), ConvBNAct(48, 64, 3))
        self.branch7x7 = nn.Sequential(
            ConvBNAct(96, 48, 1), ConvBNAct(48, 48, (1, 7)), ConvBNAct(48, 48, (7, 1)), ConvBNAct(48, 64, 3)
        )
        self.proj = ConvBNAct(128, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.conv2(self.conv1(x)))
        return self.proj(torch.cat([self.branch3x3(x), self.branch7x7(x)], dim=1))


class InceptionResNetBlock(nn.Module):
    """Multi-branch block on a scaled residual: ``relu(x + scale * project(concat(branches(x))))``.

    Args:
        channels: input and output channels.
        width: base branch width ``w`` (a multiple of 8 keeps all branches hardware-friendly).
        kind: "a": 1x1 | 1x1-3x3 | 1x1-3x3(1.5w)-3x3(2w); "b": 1x1 | 1x1-1x7(1.25w)-7x1(1.5w).
        scale: residual scale (0.1-0.3 in the paper) that keeps wide residual sums stable.
    """

    def __init__(self, channels: int, width: int = 32, kind: str = "a", scale: float = 0.17) -> None:
        super().__init__()
        if kind not in BLOCK_KINDS:
            raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")
        w15, w2 = width * 3 // 2, 2 * width
        if kind == "a":
            branches = [
                ConvBNAct(channels, width, 1),
                nn.Sequential(ConvBNAct(channels, width, 1), ConvBNAct(width, width, 3)),
                nn.Sequential(ConvBNAct(channels, width, 1), ConvBNAct(width, w15, 3), ConvBNAct(w15, w2, 3)),
            ]
            concat = width + width + w2
        else:
            w125 = width * 5 // 4
            branches = [
                ConvBNAct(channels, w2, 1),
                nn.Sequential(
                    ConvBNAct(channels, width, 1), ConvBNAct(width, w125, (1, 7)), ConvBNAct(w125, w15, (7, 1))
                ),
            ]
            concat = w2 + w15
        self.branches = nn.ModuleList(branches)
        self.project = nn.Conv2d(concat, channels, 1, bias=True)
        self.scale = scale
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(torch.cat([b(x) for b in self.branches], dim=1))
        return self.act(x + self.scale * out)


class InceptionResNet(StagedClassifier):
    """A small Inception-ResNet for 32 px images: 3x3 stem, then three stages of blocks.

    Stage 1 keeps the resolution with "a" blocks; stages 2 and 3 start with an ``InceptionReduction``
    and use "b" and "a" blocks.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        widths: channels of the three stages.
        depths: blocks per stage.
        dropout: dropout before the classifier.
        pool: head pooling ("avg", "max" or "concat").

    Examples:
        >>> model = InceptionResNet(num_classes=10, depths=(1, 1, 1))
    """

    family = "inception"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, int, int] = (64, 128, 256),
        depths: tuple[int, int, int] = (2, 2, 2),
        dropout: float = 0.0,
        pool: str = "avg",
    ) -> None:
        super().__init__((in_chans, 32, 32))
        if len(widths) != 3 or len(depths) != 3:
            raise ValueError(f"widths and depths need 3 entries each, got {widths} and {depths}")
        self.stem = ConvBNAct(in_chans, widths[0], 3)
        stages, prev = [], widths[0]
        for i, (w, d, kind) in enumerate(zip(widths, depths, ("a", "b", "a"))):
            layers: list[nn.Module] = [] if i == 0 else [InceptionReduction(prev, w)]
            layers += [InceptionResNetBlock(w, width=make_divisible(w / 4, 8), kind=kind) for _ in range(d)]
            stages.append(nn.Sequential(*layers))
            prev = w
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(prev, num_classes, pool=pool, dropout=dropout)


register_model("inception_resnet_cifar", family="inception", description="Small Inception-ResNet for 32 px")(
    InceptionResNet
)
