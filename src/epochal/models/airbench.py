"""The fast CIFAR-10 network of the speed records: Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on
a Single GPU" (airbench, 2024), building on Page's and tysam-code's ResNet-8 variants.

A 2x2 *whitening* convolution (24 filters: the eigenvectors of the training-patch covariance and
their negatives, scaled by the inverse square-root eigenvalues; ``init_whitening`` computes them
from images), GELU, then three conv groups ``conv-maxpool-BN-GELU-conv-BN-GELU`` of widths
64-256-256, a global max pool (airbench's ``MaxPool2d(3)`` on the 3x3 map of a 32 px input) and a
bias-free linear classifier whose logits are scaled: by 1/9 in airbench94, by 1/256 (one over the
width) with unit-variance initial weights in airbench94_muon (``scale=1/256, head_std=1``). The 3x3
convolutions start as partial identities (Dirac init) and BatchNorm (eps 1e-12, running statistics
kept with weight 0.6 on the old value) learns only its shifts, its scales frozen at 1, unless
``trainable_bn_scale``.

``init_from_data(images)`` is the data-dependent initialisation hook the recipe builder calls
(``model.data_init: 5000``): here it sets the whitening filters and freezes them.
"""

from __future__ import annotations

import torch
from torch import nn

from epochal.models._base import StagedClassifier
from epochal.models._registry import register_model
from epochal.models.layers import ClassifierHead

__all__ = ["AirbenchNet", "ConvGroup"]


def _dirac_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


def _batchnorm(channels: int, momentum: float, trainable_scale: bool) -> nn.BatchNorm2d:
    # airbench's "momentum 0.6" is the weight of the old running value; PyTorch's is the new one's.
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=1 - momentum)
    bn.weight.requires_grad_(trainable_scale)
    return bn


class ConvGroup(nn.Module):
    """conv -> 2x2 max pool -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(
        self, in_channels: int, out_channels: int, bn_momentum: float = 0.6, trainable_bn_scale: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = _dirac_conv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batchnorm(out_channels, bn_momentum, trainable_bn_scale)
        self.conv2 = _dirac_conv(out_channels, out_channels)
        self.norm2 = _batchnorm(out_channels, bn_momentum, trainable_bn_scale)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(StagedClassifier):
    """airbench94's network.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        widths: widths of the three conv groups.
        whiten_kernel: size of the whitening convolution (its width is ``2 * in_chans * k * k``).
        bn_momentum: airbench's BatchNorm momentum (weight of the old running statistics).
        scale: logit scale.
        head_std: rescale the classifier's initial weights to this standard deviation
            (airbench94_muon: 1, with ``scale=1/256``); None keeps PyTorch's initialisation.
        trainable_bn_scale: train the BatchNorm scales too (airbench freezes them at 1).

    Examples:
        >>> model = AirbenchNet(scale=1 / 256, head_std=1.0)
        >>> model.init_from_data(normalised_train_images[:5000])
    """

    family = "airbench"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, int, int] = (64, 256, 256),
        whiten_kernel: int = 2,
        bn_momentum: float = 0.6,
        scale: float = 1 / 9,
        head_std: float | None = None,
        trainable_bn_scale: bool = False,
    ) -> None:
        super().__init__((in_chans, 32, 32))
        whiten_width = 2 * in_chans * whiten_kernel**2
        self.stem = nn.Sequential()
        self.stem.whiten = nn.Conv2d(in_chans, whiten_width, whiten_kernel, bias=True)
        self.stem.act = nn.GELU()
        nn.init.zeros_(self.stem.whiten.bias)
        stages, prev = [], whiten_width
        for width in widths:
            stages.append(ConvGroup(prev, width, bn_momentum, trainable_bn_scale))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(prev, num_classes, pool="max", bias=False, scale=scale)
        if head_std is not None:
            if not head_std > 0:
                raise ValueError(f"head_std must be > 0, got {head_std}")
            with torch.no_grad():
                self.head.fc.weight.mul_(head_std / self.head.fc.weight.std())

    def init_from_data(self, images: torch.Tensor) -> None:
        """Data-dependent initialisation: the whitening filters from (normalised) training images.

        The hook the recipe builder calls with ``model.data_init`` training images.
        """
        self.init_whitening(images)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4, freeze: bool = True) -> None:
        """Set the whitening filters from the patch covariance of (normalised) training images.

        Args:
            images: a float batch (N, C, H, W), e.g. 5000 normalised training images.
            eps: added to the eigenvalues before the inverse square root.
            freeze: stop training the filters afterwards (airbench trains only their bias).
        """
        conv = self.stem.whiten
        c, (h, w) = conv.in_channels, conv.kernel_size
        if images.ndim != 4 or images.shape[1] != c:
            raise ValueError(f"images must have shape (N, {c}, H, W), got {tuple(images.shape)}")
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        covariance = patches.T @ patches / patches.shape[0]
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        filters = (eigenvectors / torch.sqrt(eigenvalues + eps)[:, None]).reshape(c * h * w, c, h, w)
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight))
        conv.weight.requires_grad_(not freeze)


register_model("airbench", family="airbench", description="airbench94 fast CIFAR-10 network")(AirbenchNet)
