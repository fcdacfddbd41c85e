"""VGG-16 with BatchNorm for CIFAR.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015), with BatchNorm after every convolution (Ioffe & Szegedy 2015) and the CIFAR head of the
SWA experiments (Izmailov et al. 2018): dropout, 512-512 hidden layers, then the classifier.
"""

from __future__ import annotations

from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead

__all__ = ["VGG", "VGG16_CONFIG"]

#: Output widths of the 13 convolutions, grouped into the five blocks that end in max pooling.
VGG16_CONFIG: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # The convolution keeps its bias, as in the torchvision/SWA VGG-BN definitions.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


class VGG(StagedClassifier):
    """VGG with BatchNorm: the first conv is the stem, each pooled block a stage.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        config: convolution widths per block (each block ends in 2x2 max pooling).
        hidden: widths of the head's hidden layers.
        dropout: dropout before each hidden layer of the head.
        pool: global pooling before the head (at 32 px the map is already 1x1).

    Examples:
        >>> model = VGG(num_classes=100)  # VGG-16-BN for CIFAR-100
    """

    family = "vgg"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        config: tuple[tuple[int, ...], ...] = VGG16_CONFIG,
        hidden: tuple[int, ...] = (512, 512),
        dropout: float = 0.5,
        pool: str = "avg",
    ) -> None:
        super().__init__((in_chans, 32, 32))
        if not config or not config[0]:
            raise ValueError(f"config needs at least one block with one convolution, got {config}")
        self.stem = _conv_bn_relu(in_chans, config[0][0])
        stages, prev = [], config[0][0]
        for i, block in enumerate(config):
            layers = []
            for width in block[1:] if i == 0 else block:
                layers.append(_conv_bn_relu(prev, width))
                prev = width
            layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(prev, num_classes, pool=pool, hidden=hidden, hidden_dropout=dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


register_model("vgg16_bn_cifar", family="vgg", description="VGG-16 with BatchNorm for CIFAR (SWA head)")(VGG)
