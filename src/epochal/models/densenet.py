"""DenseNet: Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017).

Every layer sees the concatenation of all earlier feature maps of its block. Both models here use
the "BC" form: a 1x1 bottleneck (4 x growth channels) before each 3x3 convolution and transitions
that halve the channels.

* ``densenet_bc_100_12``: the CIFAR DenseNet-BC with depth 100 and growth rate 12 (3 blocks of 16).
* ``densenet121``: the ImageNet model (growth 32, blocks 6-12-24-16); its parameter names follow
  torchvision's (``norm1``, ``conv1``, ``norm2``, ``conv2`` in each layer), so ``convert`` loads
  torchvision and timm weights.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead
from epochal.models.resnet import ImageNetStem

__all__ = ["DenseBlock", "DenseLayer", "DenseNet", "Transition"]


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (bottleneck) then BN-ReLU-3x3 producing ``growth`` new channels."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        width = bottleneck * growth
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, growth, 3, padding=1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.norm1(x)))
        return self.dropout(self.conv2(self.act(self.norm2(out))))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; the output is the input with all new features appended."""

    def __init__(self, num_layers: int, in_channels: int, growth: int, bottleneck: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth, bottleneck, dropout) for i in range(num_layers)
        )
        self.out_channels = in_channels + num_layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 compression then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2)


class DenseStage(nn.Module):
    """A dense block followed by its transition (the identity after the last block)."""

    def __init__(self, block: DenseBlock, transition: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.transition = transition

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition(self.block(x))


class DenseNet(StagedClassifier):
    """DenseNet-BC.

    Args:
        block_depths: layers per dense block.
        growth: channels each layer adds (k).
        stem: "imagenet" (7x7/2 conv + max pool, 2k channels) or "cifar" (one 3x3 conv, 2k channels).
        num_classes: classifier outputs.
        in_chans: input channels.
        compression: channel ratio kept by each transition (0.5 for "C").
        bottleneck: bottleneck width as a multiple of ``growth`` (4 for "B").
        dropout: dropout after each dense layer's 3x3 convolution.
        pool: head pooling ("avg", "max" or "concat").

    Examples:
        >>> model = DenseNet((16, 16, 16), growth=12, stem="cifar", num_classes=10)  # DenseNet-BC-100-12
    """

    family = "densenet"

    def __init__(
        self,
        block_depths: tuple[int, ...],
        growth: int,
        stem: str,
        num_classes: int = 1000,
        in_chans: int = 3,
        compression: float = 0.5,
        bottleneck: int = 4,
        dropout: float = 0.0,
        pool: str = "avg",
    ) -> None:
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        size = 224 if stem == "imagenet" else 32
        super().__init__((in_chans, size, size))
        channels = 2 * growth
        if stem == "imagenet":
            self.stem = ImageNetStem(in_chans, channels)
        else:
            self.stem = nn.Sequential()
            self.stem.conv = nn.Conv2d(in_chans, channels, 3, padding=1, bias=False)
        stages = []
        for i, depth in enumerate(block_depths):
            block = DenseBlock(depth, channels, growth, bottleneck, dropout)
            channels = block.out_channels
            transition: nn.Module = nn.Identity()
            if i < len(block_depths) - 1:
                out = int(channels * compression)
                transition, channels = Transition(channels, out), out
            stages.append(DenseStage(block, transition))
        self.stages = nn.Sequential(*stages)
        norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.head = ClassifierHead(channels, num_classes, pool=pool, norm=norm)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


register_model("densenet121", family="densenet", description="DenseNet-121 (ImageNet)")(
    partial(DenseNet, block_depths=(6, 12, 24, 16), growth=32, stem="imagenet")
)
register_model("densenet_bc_100_12", family="densenet", description="DenseNet-BC (L=100, k=12) for CIFAR")(
    partial(DenseNet, block_depths=(16, 16, 16), growth=12, stem="cifar", num_classes=10)
)
