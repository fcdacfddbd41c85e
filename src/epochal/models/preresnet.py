"""Pre-activation ResNet for CIFAR: He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016).

PreResNet-110 and PreResNet-164 as used by Izmailov et al., "Averaging Weights Leads to Wider
Optima and Better Generalization" (SWA, UAI 2018): depth ``9n + 2`` with ``n`` bottleneck blocks per
stage (12 for 110, 18 for 164), stage widths 16-32-64 (x4 expansion), a plain 1x1 convolution on
the shortcut when the shape changes, and the final BN-ReLU before global pooling. Depths below 44
use basic blocks (``6n + 2``) as in the original CIFAR code.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead

__all__ = ["PreActBasicBlock", "PreActBottleneck", "PreResNet"]


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class PreActBasicBlock(nn.Module):
    """BN-ReLU-3x3, BN-ReLU-3x3 on an identity (or 1x1-projected) shortcut."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.norm1 = _bn_relu(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.norm2 = _bn_relu(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        needs_projection = stride != 1 or in_channels != width
        self.shortcut = nn.Conv2d(in_channels, width, 1, stride, bias=False) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.norm2(self.conv1(self.norm1(x))))
        return out + self.shortcut(x)


class PreActBottleneck(nn.Module):
    """BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1 (x4) on a shortcut of the raw input."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out = width * self.expansion
        self.norm1 = _bn_relu(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm2 = _bn_relu(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.norm3 = _bn_relu(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        needs_projection = stride != 1 or in_channels != out
        self.shortcut = nn.Conv2d(in_channels, out, 1, stride, bias=False) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.norm1(x))
        out = self.conv3(self.norm3(self.conv2(self.norm2(out))))
        return out + self.shortcut(x)


class PreResNet(StagedClassifier):
    """Pre-activation ResNet for 32 px inputs.

    Args:
        depth: 9n+2 (>= 44, bottleneck blocks) or 6n+2 (< 44, basic blocks).
        num_classes: classifier outputs.
        in_chans: input channels.
        dropout: dropout before the classifier.
        pool: head pooling ("avg", "max" or "concat").

    Examples:
        >>> model = PreResNet(depth=164, num_classes=100)
    """

    family = "preresnet"

    def __init__(
        self, depth: int = 164, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.0, pool: str = "avg"
    ) -> None:
        super().__init__((in_chans, 32, 32))
        if depth >= 44:
            if (depth - 2) % 9:
                raise ValueError(f"depth >= 44 must be 9n+2 (e.g. 110, 164), got {depth}")
            block, n = PreActBottleneck, (depth - 2) // 9
        else:
            if depth < 8 or (depth - 2) % 6:
                raise ValueError(f"depth < 44 must be 6n+2 (e.g. 20, 32), got {depth}")
            block, n = PreActBasicBlock, (depth - 2) // 6
        self.depth = depth
        self.stem = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        stages, in_ch = [], 16
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, width, 2 if i > 0 and j == 0 else 1))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, num_classes, pool=pool, dropout=dropout, norm=_bn_relu(in_ch))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


for _depth in (110, 164):
    register_model(f"preresnet{_depth}", family="preresnet", description=f"PreResNet-{_depth} for CIFAR (SWA)")(
        partial(PreResNet, _depth)
    )
