"""A depthwise-separable ConvNet: the Xception-style network of Keras' "Image classification from
scratch" example (``SeparableConv2D`` blocks with residual 1x1 shortcuts).

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions" (CVPR 2017): a 3x3
convolution is factored into a per-channel (depthwise) 3x3 and a 1x1 (pointwise) convolution, which
costs about ``1/9 + 1/C_out`` of the full convolution's multiply-accumulates.

Layout (as in the Keras example, default 180 px input): 3x3/2 conv 128 -> three blocks of widths
256, 512, 728, each ReLU-SepConv-BN-ReLU-SepConv-BN-MaxPool(3, stride 2) plus a strided 1x1
shortcut -> SepConv 1024-BN-ReLU -> global average pooling -> dropout 0.25 -> classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead, ConvBNAct

__all__ = ["SeparableBlock", "SeparableConv2d", "SeparableConvNet"]


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel_size`` convolution (no bias) then a pointwise 1x1 convolution (with bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SeparableBlock(nn.Module):
    """Two separable convolutions and max pooling, added to a strided 1x1 projection of the input."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),  # not in place: the shortcut still reads the block input
            SeparableConv2d(in_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            SeparableConv2d(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class SeparableConvNet(StagedClassifier):
    """The Keras separable-convolution example network.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        widths: widths of the residual separable blocks.
        stem_width: channels of the first (full) convolution.
        final_width: channels of the last separable convolution.
        dropout: dropout before the classifier.
        pool: head pooling ("avg", "max" or "concat").

    Examples:
        >>> model = SeparableConvNet(num_classes=2)  # cats vs dogs at 180 px, as in the Keras example
    """

    family = "separable"

    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 3,
        widths: tuple[int, ...] = (256, 512, 728),
        stem_width: int = 128,
        final_width: int = 1024,
        dropout: float = 0.25,
        pool: str = "avg",
    ) -> None:
        super().__init__((in_chans, 180, 180))
        # Keras' Conv2D has a bias even before BatchNorm; kept so parameter counts match the example.
        self.stem = ConvBNAct(in_chans, stem_width, 3, stride=2, bias=True)
        stages, prev = [], stem_width
        for width in widths:
            stages.append(SeparableBlock(prev, width))
            prev = width
        stages.append(
            nn.Sequential(SeparableConv2d(prev, final_width), nn.BatchNorm2d(final_width), nn.ReLU(inplace=True))
        )
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(final_width, num_classes, pool=pool, dropout=dropout)


register_model("separable_convnet", family="separable", description="Keras SeparableConv2D example network")(
    SeparableConvNet
)
